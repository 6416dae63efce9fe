"""One grant, one entry (pure): the gate's beams count the people who enter while it is open.

An *opening* starts when the gate opens and ends ``grace_seconds`` after it shuts (a person who came
in just as the relay dropped still completes the outer-then-inner pair). Each face or credential
grant in the opening allows one entry; a resident whose own passage held the gate open allows none
more. An entry beyond what the opening allows is a tailgate: two people in on one grant is how bikes
are stolen. An opening by the exit button allows no entry at all (someone slipping in while another
leaves is a tailgate too). Openings that staff made (``gate open``) and the fire release are not
watched: staff chose to let people through, and in a fire everyone must pass.

Entries outside any opening are not judged here: a door opened without a grant is ``gate.forced``
(site/door.py). The tailgate's picture is the last face refused during the opening, where the vision
worker sent one (snapshots on): the camera's view of who came in behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Opening:
    watched: bool
    allowed: int = 0
    entries: int = 0
    residents: list[int] = field(default_factory=list)
    ends: float | None = None  # set once the gate has shut
    picture: tuple[str, bytes] | None = None


class EntryWatch:
    """Counts entries against grants, one opening at a time."""

    def __init__(self, grace_seconds: float):
        self.grace = grace_seconds
        self._opening: _Opening | None = None

    def _current(self, now: float) -> _Opening | None:
        opening = self._opening
        if opening is not None and opening.ends is not None and now > opening.ends:
            self._opening = opening = None
        return opening

    def granted(self, now: float, resident_id: int | None) -> None:
        """A grant opened the gate, or kept it open, for one more person."""
        opening = self._current(now)
        if opening is None or opening.ends is not None and not opening.watched:
            opening = self._opening = _Opening(watched=True)
        opening.ends = None
        if opening.watched:
            opening.allowed += 1
            if resident_id is not None:
                opening.residents.append(resident_id)

    def opened(self, now: float, *, watched: bool) -> None:
        """The gate opened without a grant: the exit button (watched, allows no entry) or staff or
        the fire release (not watched until the gate shuts)."""
        opening = self._current(now)
        if opening is None:
            self._opening = _Opening(watched=watched)
        else:
            opening.ends = None
            opening.watched = opening.watched and watched

    def refused(self, now: float, picture: tuple[str, bytes] | None) -> None:
        """A face refused while the gate is open: kept as the picture of a tailgate that follows."""
        opening = self._current(now)
        if opening is not None and picture is not None:
            opening.picture = picture

    def shut(self, now: float) -> None:
        """The gate shut: the opening ends after the grace."""
        opening = self._current(now)
        if opening is not None and opening.ends is None:
            opening.ends = now + self.grace

    def entry(self, now: float) -> tuple[dict, tuple[str, bytes] | None] | None:
        """Someone entered (outer then inner beam); the tailgate's details and picture, or None."""
        opening = self._current(now)
        if opening is None or not opening.watched:
            return None
        opening.entries += 1
        if opening.entries <= opening.allowed:
            return None
        return ({"entries": opening.entries, "grants": opening.allowed, "residents": list(opening.residents)},
                opening.picture)
