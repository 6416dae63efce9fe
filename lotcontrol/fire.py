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
from pathlib import Path

from .config import FireConfig, FireZoneConfig

NORMAL, PREALARM, ALARM = "normal", "prealarm", "alarm"
RANGE = (-55.0, 125.0)
POWER_ON_RESET = 85.0
RISE_WINDOW = 60.0  # seconds of history the rate of rise is taken over
RISE_MIN_SPAN = 20.0  # at least this much of it, so two noisy readings make no "rise"


@dataclass(frozen=True)
class Reading:
    """One poll of one probe: a temperature, or the fault that stands in its place."""

    probe: str
    celsius: float | None
    fault: str | None
    time: float


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


def read_probe(folder: Path, probe: str, now: float) -> Reading:
    """Read a DS18B20 through the kernel: ``temperature`` (millidegrees) or ``w1_slave`` (with CRC)."""
    base = folder / probe
    try:
        if (base / "temperature").exists():
            text = (base / "temperature").read_text().strip()
            milli = int(text)
        else:
            lines = (base / "w1_slave").read_text().splitlines()
            if len(lines) < 2 or not lines[0].strip().endswith("YES"):
                return Reading(probe, None, "CRC check failed", now)
            milli = int(lines[1].rsplit("t=", 1)[1])
    except FileNotFoundError:
        return Reading(probe, None, "probe missing (no file in the 1-Wire tree)", now)
    except (OSError, ValueError, IndexError) as exc:
        return Reading(probe, None, f"unreadable ({exc.__class__.__name__})", now)
    celsius = milli / 1000.0
    if celsius == POWER_ON_RESET:
        return Reading(probe, None, "85.000 °C power-on reset value", now)
    if not RANGE[0] <= celsius <= RANGE[1]:
        return Reading(probe, None, f"{celsius:.3f} °C is outside -55…125 °C", now)
    return Reading(probe, celsius, None, now)


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
        """Whether this zone's own state allows charging (any alarm anywhere also cuts it)."""
        if self.level != NORMAL:
            return False
        return not (self.faults and self.settings.fault_cuts_power)
