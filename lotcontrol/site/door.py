"""Door supervision as pure logic: the door contact, whether the gate was released, and a clock.

A door that opens while the gate relay is off (no grant, no exit button, no fire release) was
forced: ``gate.forced``. A door still open ``held_open_seconds`` after it opened on a release is held
open: ``gate.held_open`` and the buzzer until it closes. A door held open by a fire release is
neither. A contact that cannot be read counts as open.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DoorWatch:
    held_open_seconds: float
    is_open: bool = False
    opened_at: float | None = None
    released_when_opened: bool = False
    held: bool = False  # the held-open alarm stands (the buzzer sounds)

    def door(self, is_open: bool | None, now: float, released: bool) -> list[tuple[str, dict]]:
        is_open = True if is_open is None else is_open
        events: list[tuple[str, dict]] = []
        if is_open and not self.is_open:
            self.opened_at, self.released_when_opened = now, released
            if not released:
                events.append(("gate.forced", {}))
        elif not is_open and self.is_open:
            if self.held:
                events.append(("gate.closed", {"open_seconds": round(now - (self.opened_at or now), 1)}))
            self.held, self.opened_at = False, None
        self.is_open = is_open
        return events

    def update(self, now: float, fire_hold: bool) -> list[tuple[str, dict]]:
        if (self.is_open and not self.held and not fire_hold and self.released_when_opened
                and self.opened_at is not None and now - self.opened_at >= self.held_open_seconds):
            self.held = True
            return [("gate.held_open", {"open_seconds": round(now - self.opened_at, 1)})]
        if fire_hold and self.held:
            self.held = False  # the fire release holds it open on purpose
        return []

    def next_deadline(self) -> float | None:
        if self.is_open and not self.held and self.opened_at is not None and self.released_when_opened:
            return self.opened_at + self.held_open_seconds
        return None
