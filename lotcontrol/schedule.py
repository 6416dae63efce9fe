"""Access schedules (pure): weekly time windows and holidays, judged on the lot's local time.

A window is written ``DAYS HH:MM-HH:MM``: ``DAYS`` is ``daily``, a day (``mon`` ... ``sun``), a range
(``mon-fri``; ``fri-mon`` wraps over the week's end) or a comma list of those (``mon,wed,sat-sun``).
The start is inclusive and the end exclusive (``06:00-23:00`` admits 06:00:00 to 22:59:59); ``24:00``
ends at midnight; ``00:00-24:00`` is the whole day. An end before its start crosses midnight: the
window ``fri 22:00-02:00`` starts on Friday and runs into Saturday night. A holiday closes the windows
that *start* on that day (the Friday-night window above is shut when Friday is a holiday, open when only
the Saturday is). Nothing here reads a clock: callers pass the local time (lotcontrol.policy).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(\S+)\s+(\S+)-(\S+)\s*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # weekdays it starts on, Monday 0
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1..1440; at or before ``start``: crosses midnight

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


def _days(text: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all(ends):
            raise ValueError(f"{part!r} is not a day or a range of days (mon-fri)")
        for end in ends:
            if end not in DAYS:
                raise ValueError(f"unknown day {end!r} (days: {', '.join(DAYS)}, or daily)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


def _minutes(text: str, *, end: bool) -> int:
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a time HH:MM")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59; 24:00 only as an end)")
    return hours * 60 + minutes


def parse_window(text: str) -> Window:
    """``mon-fri 06:00-23:00`` as a Window; ValueError saying what is wrong."""
    match = _WINDOW.match(text.lower())
    if not match:
        raise ValueError(f"window {text!r} is not DAYS HH:MM-HH:MM (e.g. \"mon-fri 06:00-23:00\")")
    try:
        days = _days(match[1])
        start, end = _minutes(match[2], end=False), _minutes(match[3], end=True)
    except ValueError as exc:
        raise ValueError(f"window {text!r}: {exc}") from None
    if start == end or (start == 0 and end == 0):
        raise ValueError(f"window {text!r} is empty: its start and end are the same (the whole day is 00:00-24:00)")
    return Window(days, start, end)


def parse_holiday(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"holiday {text!r} is not a date YYYY-MM-DD") from None


@dataclass(frozen=True)
class Group:
    """One access group: its windows and holidays, parsed."""

    name: str
    windows: tuple[Window, ...]
    holidays: frozenset[dt.date]

    def open_at(self, local: dt.datetime) -> bool:
        """Whether a window of this group is open at ``local`` (the lot's local wall time)."""
        minute = local.hour * 60 + local.minute
        today, yesterday = local.date(), local.date() - dt.timedelta(days=1)
        for window in self.windows:
            if window.crosses_midnight:
                if today not in self.holidays and local.weekday() in window.days and minute >= window.start:
                    return True
                if (yesterday not in self.holidays and yesterday.weekday() in window.days
                        and minute < window.end):
                    return True
            elif (today not in self.holidays and local.weekday() in window.days
                  and window.start <= minute < window.end):
                return True
        return False


def group(name: str, windows: list[str], holidays: list[str]) -> Group:
    return Group(name, tuple(parse_window(w) for w in windows), frozenset(parse_holiday(h) for h in holidays))


def allowed(groups: dict[str, Group], names: tuple[str, ...], local: dt.datetime | None) -> tuple[bool, list[str]]:
    """Whether a resident in groups ``names`` may enter at ``local`` (None: the time is not known), and
    the groups they name that are not configured. No groups: always. A time not known: no (a schedule
    is a restriction staff chose; a clock not yet set by NTP cannot say it is met). A group not
    configured has no window."""
    unknown = [n for n in names if n not in groups]
    if not names:
        return True, unknown
    if local is None:
        return False, unknown
    return any(groups[n].open_at(local) for n in names if n in groups), unknown
