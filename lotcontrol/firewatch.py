"""The fire watch's hardware: contact inputs, the probe poller, the charger contactors and the siren.

Outputs are created first and off: charger contactors de-energized (no charging power) and the siren
silent, until the first evaluation finds the zone normal. Contacts are gpiozero inputs with the
internal pull-up, wired normally closed to ground, so a burst, an open panel relay or a cut wire all
read high: alarm. Their callbacks and the probe poller only put messages into the controller's
inbox; all decisions are made by fire.ZoneWatch in the controller's loop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpiozero import OutputDevice

from .config import FireConfig
from .fire import ALARM, Reading, Transition, ZoneWatch, read_probe
from .hardware import switch
from .sensors import open_input, read_input

log = logging.getLogger("lotcontrol")


@dataclass(frozen=True)
class ContactChange:
    zone: str
    sensor: str
    closed: bool | None  # None: the input could not be read
    time: float


def _sensors(zone) -> list[tuple[str, int]]:
    named = [(f"sprinkler-{i + 1}(GPIO{pin})", pin) for i, pin in enumerate(zone.sprinklers)]
    if zone.panel_pin is not None:
        named.append((f"panel(GPIO{zone.panel_pin})", zone.panel_pin))
    if zone.call_point_pin is not None:
        named.append((f"call-point(GPIO{zone.call_point_pin})", zone.call_point_pin))
    return named


class ProbePoller:
    """Reads every probe every ``poll_seconds`` in its own thread (a 1-Wire read takes ~750 ms)."""

    def __init__(self, settings: FireConfig, deliver: Callable[[Reading], None], clock: Callable[[], float]):
        self.settings = settings
        self.deliver = deliver
        self.clock = clock
        self.probes = [p for zone in settings.zones for p in zone.probes]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-poller", daemon=True)
        if self.probes:
            self.poll()  # the first readings are there before the controller's first evaluation
            self._thread.start()

    def poll(self) -> None:
        folder = Path(self.settings.w1_path)
        for probe in self.probes:
            self.deliver(read_probe(folder, probe, self.clock()))

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class FireWatch:
    """All zones: inputs in, transitions out, outputs switched before anything is written."""

    def __init__(self, settings: FireConfig, *, pin_factory=None, clock: Callable[[], float]):
        self.settings = settings
        self.clock = clock
        self.devices: list = []
        try:
            self.chargers = {z.name: self._keep(OutputDevice(z.charger_pin, active_high=z.charger_active_high,
                                                             initial_value=False, pin_factory=pin_factory))
                             for z in settings.zones if z.charger_pin is not None}
            self.siren = None if settings.siren_pin is None else self._keep(OutputDevice(
                settings.siren_pin, active_high=settings.siren_active_high, initial_value=False,
                pin_factory=pin_factory))
        except Exception:
            self.close()
            raise
        now = clock()
        self.zones = {z.name: ZoneWatch(z, settings, started=now) for z in settings.zones}
        self._pending: dict[tuple[str, str], tuple[bool | None, float]] = {}
        self.poller: ProbePoller | None = None

    def open_inputs(self, deliver: Callable[[object], None], *, pin_factory=None) -> None:
        """The contacts and the probe poller (after the outputs, and the database, are up). Until
        then no zone is evaluated, so charging stays off."""
        for zone in self.settings.zones:
            for sensor, pin in _sensors(zone):
                device = self._keep(open_input(pin, pull_up=True, pin_factory=pin_factory))
                device.when_activated = self._callback(deliver, zone.name, sensor, device)
                device.when_deactivated = self._callback(deliver, zone.name, sensor, device)
                self.zones[zone.name].contact(sensor, read_input(device))
        self.poller = ProbePoller(self.settings, deliver, self.clock)

    def _keep(self, device):
        self.devices.append(device)
        return device

    def _callback(self, deliver, zone: str, sensor: str, device):
        # pulled up: a closed loop holds the pin low, which is "active", so active = closed
        return lambda: deliver(ContactChange(zone, sensor, read_input(device), self.clock()))

    # --- inputs ---

    def feed(self, message: ContactChange | Reading) -> None:
        if isinstance(message, ContactChange):
            self._pending[(message.zone, message.sensor)] = (message.closed, message.time)
        else:
            for zone in self.zones.values():
                if message.probe in zone.zone.probes:
                    zone.reading(message)

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return min(t for _, t in self._pending.values()) + self.settings.debounce_seconds

    def update(self, now: float) -> list[Transition]:
        """Apply debounced contacts, evaluate every zone, switch the outputs; the transitions."""
        for key, (closed, since) in list(self._pending.items()):
            if now - since >= self.settings.debounce_seconds:
                del self._pending[key]
                self.zones[key[0]].contact(key[1], closed)
        transitions = [t for zone in self.zones.values() for t in zone.update(now)]
        self.apply_outputs()
        return transitions

    def apply_outputs(self) -> None:
        alarm = self.alarm
        for name, charger in self.chargers.items():
            switch(charger, (not alarm) and self.zones[name].charger_may_run)
        if self.siren is not None:
            switch(self.siren, alarm)

    @property
    def alarm(self) -> bool:
        return any(zone.level == ALARM for zone in self.zones.values())

    # --- staff ---

    def reset(self, now: float) -> tuple[list[Transition], list[str]]:
        transitions, refused = [], []
        for zone in self.zones.values():
            done, reason = zone.reset(now)
            transitions += done
            if reason:
                refused.append(f"{zone.zone.name}: {reason}")
        self.apply_outputs()
        return transitions, refused

    def drill(self, zone: str, now: float) -> list[Transition]:
        self.zones[zone].drill = True
        return self.update(now)

    def status(self, now: float) -> list[dict]:
        return [{
            "zone": name, "state": zone.level, "faults": dict(zone.faults),
            "charging": bool(self.chargers[name].value) if name in self.chargers else None,
            "drill": zone.drill,
            "contacts": {s: ("closed" if c else "open" if c is False else "unreadable") for s, c in zone.contacts.items()},
            "probes": {p: (r.celsius if r.celsius is not None else r.fault) for p, r in zone.readings.items()},
        } for name, zone in self.zones.items()]

    def close(self) -> None:
        """Stop polling; charging off, siren off; release the pins. Safe to call twice."""
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.close()
        for device in self.devices:
            if not device.closed:
                if isinstance(device, OutputDevice):
                    device.off()
                device.close()
