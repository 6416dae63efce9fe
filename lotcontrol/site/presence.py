"""Anti-passback's memory (pure): which residents the lot counts as inside, entry then exit.

A resident granted at the gate (face or reader) is counted inside (with beams, once the beams see an
entry in the opening the grant made: the controller keeps them awaited until then), with the wall
time of the entry (when the clock was synchronised) and the staff reset they had then
(``Resident.presence_reset``).
They are counted out again by:

- an exit reader (``wiegand.exit_d0_pin``): the card says who, and that resident is counted out;
- an exit: the beams (inner then outer), or the exit button on a lot without beams. These do not say
  who left: an exit counts out the resident counted inside the **longest** (first in, first out: at a
  bike lot people park and walk out in about the order they came). A resident who stays while others
  leave may so be counted out early, and one who left unseen keeps the next to leave counted in; the
  limits below bound both;
- staff: ``lotcontrol edit NAME --reset-presence`` changes ``presence_reset`` in the database, which
  voids the record (the controller sees it within a second, through the residents it re-reads);
- ``access.presence_hours`` after the entry (judged only on a synchronised clock; an entry made before
  the clock was set has no time, and waits for an exit or staff);
- a fire alarm's release: everyone is let out, and nobody is counted inside after it.

The records are saved by the controller in ``DATA_DIR/presence.json`` (written whole by a thread of its
own, as the latched alarms are), so a restart keeps them. Nothing here reads a clock or a file.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable


class Presence:
    """Who is counted inside, in the order they entered."""

    def __init__(self, saved: dict[str, dict] | None = None):
        self.records: dict[int, dict[str, Any]] = {}
        for key, record in (saved or {}).items():
            if key.isdigit() and isinstance(record, dict):
                self.records[int(key)] = {"since": record.get("since"), "reset": record.get("reset")}
        # in the order they came: by entry time where there is one, else as saved
        self.records = dict(sorted(self.records.items(), key=lambda item: item[1]["since"] or ""))
        self._since = {rid: _parse(record["since"]) for rid, record in self.records.items()}  # parsed once

    def saved(self) -> dict[str, dict]:
        """What to write to presence.json."""
        return {str(rid): dict(record) for rid, record in self.records.items()}

    def inside(self, resident_id: int, reset: str | None, wall: dt.datetime | None, hours: float) -> bool:
        """Whether the resident is counted inside: a record of an entry, not voided by a staff reset
        since (``reset``: their presence_reset now), nor older than ``hours`` at ``wall`` (None: the
        wall clock is not synchronised, time does not count a record out)."""
        record = self.records.get(resident_id)
        if record is None or record["reset"] != reset:
            return False
        since = self._since.get(resident_id)
        if hours > 0 and wall is not None and since is not None:
            return (wall - since).total_seconds() < hours * 3600
        return True

    def entered(self, resident_id: int, reset: str | None, wall: dt.datetime | None) -> None:
        """The resident entered (``wall`` None: the clock is not synchronised, the entry has no time)."""
        self.forget(resident_id)  # to the end: the newest entry
        self.records[resident_id] = {"since": None if wall is None else wall.isoformat(), "reset": reset}
        self._since[resident_id] = wall

    def exited(self, counts: Callable[[int], bool] = lambda resident_id: True) -> int | None:
        """Someone left: the resident counted inside the longest is counted out (their id), or None.
        Records ``counts`` says are void (reset by staff, too old, the resident gone) go first, unsaid."""
        for resident_id in list(self.records):
            counted = counts(resident_id)
            self.forget(resident_id)
            if counted:
                return resident_id
        return None

    def clear(self) -> int:
        """Everyone out (a fire alarm's release); how many were counted inside."""
        count = len(self.records)
        self.records.clear()
        self._since.clear()
        return count

    def forget(self, resident_id: int) -> None:
        self.records.pop(resident_id, None)
        self._since.pop(resident_id, None)


def _parse(since: str | None) -> dt.datetime | None:
    try:
        return None if since is None else dt.datetime.fromisoformat(since)
    except (TypeError, ValueError):
        return None  # a damaged time: the record waits for an exit or staff
