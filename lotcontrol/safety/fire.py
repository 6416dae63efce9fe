"""Fire watch as pure logic: sensor readings in, zone states and transitions out.

Per zone: normal → pre-alarm (a probe at ``prealarm_c``, or rising ``rise_c_per_minute`` over the
last minute while above ``rise_above_c``) → alarm (a probe at ``alarm_c``, any burst contact, the
panel contact, the call point, or a drill). An alarm latches until staff reset it, and a reset is
refused while any input still reads alarm. Pre-alarm and fault clear themselves after readings have
been normal for ``hold_seconds``. A probe value of 85.000 °C (power-on reset), a CRC failure, a
missing file, a value outside -55…125 °C or no reading for ``stale_seconds`` is a FAULT, never a
temperature; a contact that cannot be read counts as open (alarm), never as normal.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ..config import FireConfig, FireZoneConfig
from ..messages import ContactChange, Reading
from .debounce import Debouncer
from .latch import EVERY_ZONE

NORMAL, PREALARM, ALARM = "normal", "prealarm", "alarm"
RISE_WINDOW = 60.0  # seconds of history the rate of rise is taken over
RISE_MIN_SPAN = 20.0  # at least this much of it, so two noisy readings make no "rise"


@dataclass(frozen=True)
class Transition:
    """A change of a zone's state: becomes one event (fire.prealarm, fire.alarm, fire.fault, …)."""

    type: str
    zone: str
    sensor: str | None = None
    reading: float | str | None = None
    drill: bool = False

    def details(self) -> dict:
        out: dict = {"zone": self.zone}
        if self.sensor is not None:
            out["sensor"] = self.sensor
        if self.reading is not None:
            out["reading"] = self.reading
        if self.drill:
            out["drill"] = True
        return out


@dataclass
class ZoneWatch:
    """One zone's state. Feed it contacts and readings, then ``update(now)`` for the transitions."""

    zone: FireZoneConfig
    settings: FireConfig
    level: str = NORMAL
    faults: dict[str, str] = field(default_factory=dict)  # sensor -> reason, as last reported
    contacts: dict[str, bool | None] = field(default_factory=dict)  # sensor -> closed (None: unreadable)
    readings: dict[str, Reading] = field(default_factory=dict)
    history: dict[str, collections.deque] = field(default_factory=dict)
    drill: bool = False
    calm_since: float | None = None  # since when no pre-alarm cause
    sound_since: float | None = None  # since when no fault
    started: float = 0.0

    def contact(self, sensor: str, closed: bool | None) -> None:
        self.contacts[sensor] = closed

    def reading(self, reading: Reading) -> None:
        last = self.readings.get(reading.probe)
        if last is not None and last.time > reading.time:
            return  # a late arrival older than what is known
        self.readings[reading.probe] = reading
        if reading.celsius is not None:
            history = self.history.setdefault(reading.probe, collections.deque())
            history.append((reading.time, reading.celsius))
            while history and reading.time - history[0][0] > RISE_WINDOW:
                history.popleft()

    # --- what the inputs say now ---

    def alarm_causes(self) -> list[tuple[str, float | str]]:
        causes: list[tuple[str, float | str]] = []
        for sensor, closed in self.contacts.items():
            if closed is not True:
                causes.append((sensor, "open" if closed is False else "unreadable"))
        for probe, reading in self.readings.items():
            if reading.celsius is not None and reading.celsius >= self.settings.alarm_c:
                causes.append((probe, reading.celsius))
        if self.drill:
            causes.append(("drill", "drill"))
        return causes

    def prealarm_causes(self) -> list[tuple[str, float | str]]:
        causes: list[tuple[str, float | str]] = []
        for probe, reading in self.readings.items():
            if reading.celsius is None:
                continue
            if reading.celsius >= self.settings.prealarm_c:
                causes.append((probe, reading.celsius))
            elif reading.celsius > self.settings.rise_above_c:
                rise = self.rise_per_minute(probe)
                if rise is not None and rise >= self.settings.rise_c_per_minute:
                    causes.append((probe, f"rising {rise:.1f} °C/min at {reading.celsius:.1f} °C"))
        return causes

    def rise_per_minute(self, probe: str) -> float | None:
        history = self.history.get(probe)
        if not history or history[-1][0] - history[0][0] < RISE_MIN_SPAN:
            return None
        (t0, c0), (t1, c1) = history[0], history[-1]
        return (c1 - c0) / (t1 - t0) * 60.0

    def current_faults(self, now: float) -> dict[str, str]:
        faults = {}
        for probe in self.zone.probes:
            reading = self.readings.get(probe)
            last = reading.time if reading else self.started
            if reading is not None and reading.fault:
                faults[probe] = reading.fault
            elif now - last > self.settings.stale_seconds:
                faults[probe] = f"no reading for {now - last:.0f} s"
        return faults

    # --- state changes ---

    def update(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        alarm = self.alarm_causes()
        if alarm and self.level != ALARM:
            self.level = ALARM
            sensor, value = alarm[0]
            out.append(Transition("fire.alarm", self.zone.name, sensor, value, drill=self.drill))
        prealarm = self.prealarm_causes()
        if self.level == NORMAL and prealarm:
            self.level = PREALARM
            sensor, value = prealarm[0]
            out.append(Transition("fire.prealarm", self.zone.name, sensor, value))
        self.calm_since = None if prealarm else (self.calm_since if self.calm_since is not None else now)
        if self.level == PREALARM and not prealarm and now - self.calm_since >= self.settings.hold_seconds:
            self.level = NORMAL
            out.append(Transition("fire.cleared", self.zone.name, None, "prealarm"))
        faults = self.current_faults(now)
        for sensor, reason in faults.items():
            if sensor not in self.faults:
                out.append(Transition("fire.fault", self.zone.name, sensor, reason))
        if faults:
            self.faults.update(faults)
            self.sound_since = None
        elif self.faults:
            self.sound_since = self.sound_since if self.sound_since is not None else now
            if now - self.sound_since >= self.settings.hold_seconds:
                out.append(Transition("fire.cleared", self.zone.name, ", ".join(sorted(self.faults)), "fault"))
                self.faults.clear()
                self.sound_since = None
        return out

    def reset(self, now: float) -> tuple[list[Transition], str | None]:
        """Staff reset after an alarm: refused, with the reason, while any input still reads alarm."""
        self.drill = False
        standing = self.alarm_causes()
        if standing:
            return [], ", ".join(f"{sensor} ({value})" for sensor, value in standing)
        if self.level != ALARM:
            return [], None
        self.level = NORMAL
        self.calm_since = None
        transitions = [Transition("fire.reset", self.zone.name)]
        return transitions + self.update(now), None

    @property
    def charger_may_run(self) -> bool:
        """Whether this zone's own state allows charging (any alarm anywhere also cuts it). A probe
        not read yet is not known to be cool: no charging until every probe has a reading."""
        if self.level != NORMAL or any(probe not in self.readings for probe in self.zone.probes):
            return False
        return not (self.faults and self.settings.fault_cuts_power)


class FireZones:
    """Every zone: debounced contacts and readings in, transitions out. Pure: no pins, no clock."""

    def __init__(self, settings: FireConfig, now: float):
        self.settings = settings
        self.zones = {z.name: ZoneWatch(z, settings, started=now) for z in settings.zones}
        self.contacts: Debouncer[tuple[str, str]] = Debouncer(settings.debounce_seconds)

    def initial_contact(self, zone: str, sensor: str, closed: bool | None) -> None:
        """A contact as read when the inputs open: it counts at once."""
        self.contacts.initial((zone, sensor), closed)
        self.zones[zone].contact(sensor, closed)

    def feed(self, message: ContactChange | Reading) -> None:
        if isinstance(message, ContactChange):
            self.contacts.feed((message.zone, message.sensor), message.closed, message.time)
        else:
            for zone in self.zones.values():
                if message.probe in zone.zone.probes:
                    zone.reading(message)

    def next_deadline(self) -> float | None:
        return self.contacts.next_deadline()

    def update(self, now: float) -> list[Transition]:
        """Apply the contacts that have settled, evaluate every zone; the transitions."""
        for (zone, sensor), closed in self.contacts.settled(now):
            self.zones[zone].contact(sensor, closed)
        return [t for zone in self.zones.values() for t in zone.update(now)]

    @property
    def alarm(self) -> bool:
        return any(zone.level == ALARM for zone in self.zones.values())

    def may_charge(self) -> dict[str, bool]:
        """Whether each zone's own state allows charging (an alarm anywhere cuts all: see policy)."""
        return {name: zone.charger_may_run for name, zone in self.zones.items()}

    # --- staff ---

    def reset(self, now: float) -> tuple[list[Transition], list[str]]:
        transitions, refused = [], []
        for zone in self.zones.values():
            done, reason = zone.reset(now)
            transitions += done
            if reason:
                refused.append(f"{zone.zone.name}: {reason}")
        return transitions, refused

    def drill(self, zone: str, now: float) -> list[Transition]:
        self.zones[zone].drill = True
        return self.update(now)

    # --- what survives a restart ---

    def latched(self) -> dict[str, dict]:
        """The zones whose alarm is latched (it waits for a staff reset), with the drill flag."""
        return {name: {"drill": zone.drill} for name, zone in self.zones.items() if zone.level == ALARM}

    def restore(self, latched: dict[str, dict]) -> list[str]:
        """Latch again the alarms that stood when the controller stopped; the zones no longer
        configured (their names), which are not restored."""
        if EVERY_ZONE in latched:  # the saved state could not be read: the worst case
            latched = {name: latched[EVERY_ZONE] for name in self.zones}
        unknown = []
        for name, state in latched.items():
            zone = self.zones.get(name)
            if zone is None:
                unknown.append(name)
                continue
            zone.level = ALARM
            zone.drill = bool(state.get("drill"))
        return unknown

    def status(self, now: float) -> list[dict]:
        return [{
            "zone": name, "state": zone.level, "faults": dict(zone.faults), "drill": zone.drill,
            "contacts": {s: ("closed" if c else "open" if c is False else "unreadable") for s, c in zone.contacts.items()},
            "probes": {p: (r.celsius if r.celsius is not None else r.fault) for p, r in zone.readings.items()},
        } for name, zone in self.zones.items()]
