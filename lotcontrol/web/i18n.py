"""Languages of the web console: gettext catalogues through Babel, and dates in ``site.timezone``.

The catalogue's source is ``locale/zh_CN/LC_MESSAGES/messages.po`` (extracted with ``pybabel extract
-F babel.cfg``, see docs/web.md); it is compiled in memory when the web process starts (a few
milliseconds), so no binary ``.mo`` file is kept in git nor built at install. English is the source
language.
"""

from __future__ import annotations

import datetime as dt
import io
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.core import Locale, negotiate_locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("en", "zh_CN")
DEFAULT = "en"


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=None)
def translations(language: str) -> NullTranslations:
    if language == DEFAULT:
        return NullTranslations()
    with catalogue_path(language).open("rb") as po:
        catalogue = read_po(po, locale=language)
    mo = io.BytesIO()
    write_mo(mo, catalogue)
    mo.seek(0)
    return Translations(mo)


def from_header(accept_language: str | None) -> str:
    """The best of LANGUAGES for an Accept-Language header (zh, zh-CN, zh-Hans → zh_CN), else English."""
    wanted = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            continue
        if tag and weight > 0:
            wanted.append((-weight, position, tag.strip().replace("-", "_")))
    for _, _, tag in sorted(wanted):
        if tag.lower().startswith("zh"):
            return "zh_CN"  # the lot's Chinese is simplified (zh-TW readers still read it better than English)
        chosen = negotiate_locale([tag], list(LANGUAGES))
        if chosen:
            return chosen
        if tag.lower().startswith("en"):
            return "en"
    return DEFAULT


def when(moment: str | dt.datetime | None, language: str, timezone: str, fmt: str = "medium") -> str:
    """An ISO time (UTC, as the event log has it) in the lot's time zone, as the language writes it."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return format_datetime(moment, fmt, tzinfo=ZoneInfo(timezone), locale=Locale.parse(language))
