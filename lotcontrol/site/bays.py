"""Free bays as pure logic: sensor changes and beam breaks in, counts and faults out.

A bay sensor's change counts once it has held for ``hold_seconds``. A sensor that chatters (more
than ``chatter_per_minute`` changes in a minute) or cannot be read is UNKNOWN: counted neither free
nor occupied, and reported once (``bay.fault``). A sensor that has not changed for ``stuck_hours``
is only *suspect* (``bay.suspect``): a bike left for a long weekend is normal, so it still counts
in its last state. The lot is full only when every bay is known to be occupied; when no bay is
known free but some are unknown, the lot's state is unknown, and the policy admits residents
(lotcontrol.policy). Zones without sensors are counted from a pair of beams at the gate: outer then
inner is an entry, inner then outer an exit; the count stays within 0…capacity and staff can
correct it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ..config import BaysConfig, BayZoneConfig, pin_label

FREE, OCCUPIED, UNKNOWN = "free", "occupied", "unknown"
FULL = "full"  # the lot's availability: FREE, FULL or UNKNOWN (the same words lotcontrol.policy uses)


@dataclass
class Bay:
    name: str
    state: str
    since: float
    pending: tuple[bool, float] | None = None  # (occupied, since) not yet held long enough
    changes: collections.deque = field(default_factory=collections.deque)
    last_change: float = 0.0
    fault: str | None = None
    suspect: bool = False
    unreadable: bool = False


@dataclass(frozen=True)
class BayEvent:
    type: str  # bay.fault, bay.suspect, bay.restored, bays.count_set, bays.full, bays.free
    details: dict


class BayWatch:
    def __init__(self, settings: BaysConfig, now: float):
        self.settings = settings
        self.zones: dict[str, BayZoneConfig] = {z.name: z for z in settings.zones}
        self.bays: dict[str, dict[str, Bay]] = {
            z.name: {bay_name(z, i): Bay(bay_name(z, i), UNKNOWN, now, last_change=now) for i in range(len(z.bays))}
            for z in settings.zones}
        self.counted: dict[str, int] = {z.name: 0 for z in settings.zones if z.capacity}
        self._beams: list[tuple[str, float]] = []  # beam breaks not yet paired
        self._was_full = False

    # --- bay sensors ---

    def initial(self, zone: str, bay: str, occupied: bool | None, now: float) -> None:
        """The reading at start-up: counts at once, with no hold."""
        record = self.bays[zone][bay]
        record.unreadable = occupied is None
        if occupied is not None:
            record.state, record.since = (OCCUPIED if occupied else FREE), now

    def sensor(self, zone: str, bay: str, occupied: bool | None, now: float) -> None:
        """A sensor's new reading (None: it could not be read)."""
        record = self.bays[zone][bay]
        record.unreadable = occupied is None
        if occupied is None:
            record.pending = None
            return
        record.pending = (occupied, now)
        record.changes.append(now)
        record.last_change = now

    def update(self, now: float) -> list[BayEvent]:
        events = []
        for zone, bays in self.bays.items():
            for bay in bays.values():
                while bay.changes and now - bay.changes[0] > 60.0:
                    bay.changes.popleft()
                fault = None
                if bay.unreadable:
                    fault = "unreadable"
                elif len(bay.changes) > self.settings.chatter_per_minute:
                    fault = f"chattering ({len(bay.changes)} changes in a minute)"
                suspect = fault is None and now - bay.last_change > self.settings.stuck_hours * 3600
                if suspect and not bay.suspect:
                    events.append(BayEvent("bay.suspect", {"zone": zone, "bay": bay.name, "state": bay.state,
                                                           "reason": f"no change for {self.settings.stuck_hours:g} h"}))
                bay.suspect = suspect
                if fault:
                    if bay.fault is None:
                        events.append(BayEvent("bay.fault", {"zone": zone, "bay": bay.name, "reason": fault}))
                    bay.fault, bay.state = fault, UNKNOWN
                    continue
                if bay.fault is not None:
                    events.append(BayEvent("bay.restored", {"zone": zone, "bay": bay.name}))
                    bay.fault = None
                if bay.pending is not None and now - bay.pending[1] >= self.settings.hold_seconds:
                    state = OCCUPIED if bay.pending[0] else FREE
                    if state != bay.state:
                        bay.state, bay.since = state, bay.pending[1]
                    bay.pending = None
        full = self.lot_full
        if full != self._was_full:
            events.append(BayEvent("bays.full" if full else "bays.free", {"free": self.free_total()}))
        self._was_full = full
        return events

    # --- beams ---

    def beam(self, which: str, now: float) -> BayEvent | None:
        """A beam was broken ("outer" or "inner"); the second of a pair gives the direction."""
        self._beams = [(w, t) for w, t in self._beams if now - t < 5.0]
        if self._beams and self._beams[-1][0] != which:
            first, _ = self._beams.pop()
            zone = self.settings.beams.zone
            capacity = self.zones[zone].capacity
            before = self.counted[zone]
            self.counted[zone] = min(capacity, before + 1) if first == "outer" else max(0, before - 1)
            return BayEvent("bays.entry" if first == "outer" else "bays.exit",
                            {"zone": zone, "occupied": self.counted[zone]})
        self._beams.append((which, now))
        return None

    def set_occupied(self, zone: str, occupied: int) -> BayEvent:
        if zone not in self.counted:
            counted = ", ".join(self.counted) or "none"
            raise ValueError(f"zone {zone!r} is not counted by passages (counted zones: {counted})")
        capacity = self.zones[zone].capacity
        if not 0 <= occupied <= capacity:
            raise ValueError(f"zone {zone!r} has {capacity} bays; occupied must be 0…{capacity}, not {occupied}")
        before, self.counted[zone] = self.counted[zone], occupied
        return BayEvent("bays.count_set", {"zone": zone, "occupied": occupied, "was": before})

    # --- counts ---

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for zone in self.zones.values():
            if zone.capacity:
                occupied = self.counted[zone.name]
                out[zone.name] = {"free": zone.capacity - occupied, "occupied": occupied, "unknown": 0}
            else:
                states = [b.state for b in self.bays[zone.name].values()]
                out[zone.name] = {s: states.count(s) for s in (FREE, OCCUPIED, UNKNOWN)}
        return out

    def free_total(self) -> int:
        return sum(c["free"] for c in self.counts().values())

    @property
    def lot_full(self) -> bool:
        """Every bay known to be occupied (with bays configured at all)."""
        return self.availability() == FULL

    def availability(self) -> str:
        """FREE when some bay is known free, FULL when every bay is known occupied (or no bays
        are configured: FREE), UNKNOWN otherwise."""
        if not self.zones:
            return FREE
        counts = self.counts().values()
        if any(c["free"] for c in counts):
            return FREE
        return UNKNOWN if any(c["unknown"] for c in counts) else FULL

    def status(self, now: float) -> list[dict]:
        return [{"zone": name, **counts,
                 "bays": [{"bay": b.name, "state": b.state, "for_seconds": round(now - b.since), "fault": b.fault,
                           "suspect": b.suspect}
                          for b in self.bays[name].values()]}
                for name, counts in self.counts().items()]


def bay_name(zone: BayZoneConfig, index: int) -> str:
    return f"{zone.name}-{index + 1}({pin_label(zone.bays[index])})"
