"""What the controller, the store and enrollment say to the web page (an action's result, a refusal's
reason, why it does not answer, an enrollment's lines), in the page's language, by code.

The controller's answers carry the code and values of their phrase (lotcontrol.phrases: ``code``,
``params`` beside the English ``message`` the command line prints; ``phrases.of_answer``), and so do
enrollment's lines (``enroll --codes``, web/enrolling.py), the store's errors (a resident's field
refused, a card on file already, the database locked) and the control socket's (the controller not
running, busy or silent: ``LotControlError.code``, ``.params``). ``PHRASES`` has the English of each
code, which is the catalogue's message. ``error`` says it with its values, those that are phrases said
likewise and a field's name translated too; anything without a code is shown as it came, in English
(tests/test_web_residents.py fails on a code raised in the package that ``PHRASES`` lacks;
tests/test_web_charging.py drives the real controller through every command the page gives and checks
each answer has a code).
"""

from __future__ import annotations

from typing import Callable

from ..errors import LotControlError
from ..phrases import N_, PHRASES, Phrase

#: A resident's fields as an error names them (``field`` in its values).
FIELDS: dict[str, str] = {
    "unit": N_("unit"), "phone": N_("phone"), "note": N_("note"), "valid_from": N_("valid from"),
    "valid_until": N_("valid until"), "access_mode": N_("access mode"), "antipassback": N_("anti-passback"),
    "since": N_("From"), "until": N_("To"),  # the events page's dates (web.bad_date)
}


def error(exc: BaseException | str | None, gettext: Callable[[str], str]) -> str:
    """An error or a sentence the page shows, in its language: by its code where it has one (a phrase
    of lotcontrol.phrases, ``PHRASES``: a store's error too), its values that are phrases said likewise;
    else as it came."""
    if exc is None:
        return ""
    code = getattr(exc, "code", None) if isinstance(exc, (Phrase, LotControlError)) else None
    message = PHRASES.get(code) if code else None
    if message is None:
        return str(exc)
    values = {key: error(value, gettext) if isinstance(value, Phrase)
              else gettext(FIELDS[value]) if key == "field" and value in FIELDS else value
              for key, value in exc.params.items()}
    try:
        return gettext(message) % values
    except (KeyError, TypeError, ValueError):  # a translation naming a value the error lacks
        return str(exc)
