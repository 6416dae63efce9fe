"""The fire watch's pins: the charger contactors and the siren (outputs), and the fire contacts
(inputs).

Outputs are created first and off: charger contactors de-energized (no charging power) and the siren
silent, until the controller's first evaluation says otherwise. Contacts are inputs with the
internal pull-up, wired normally closed to ground, so a burst, an open panel relay or a cut wire all
read high: alarm. Their callbacks only put a ``ContactChange`` into the controller's inbox; what the
zones make of it is decided in safety.fire, and what the outputs do in lotcontrol.policy.
"""

from __future__ import annotations

import logging
from typing import Callable

from gpiozero import OutputDevice

from ..config import FireConfig
from ..messages import ContactChange
from ..pins import InputLine, open_line, switch

log = logging.getLogger("lotcontrol")


def fire_sensors(zone) -> list[tuple[str, int]]:
    """A zone's contacts as (sensor name, pin)."""
    named = [(f"sprinkler-{i + 1}(GPIO{pin})", pin) for i, pin in enumerate(zone.sprinklers)]
    if zone.panel_pin is not None:
        named.append((f"panel(GPIO{zone.panel_pin})", zone.panel_pin))
    if zone.call_point_pin is not None:
        named.append((f"call-point(GPIO{zone.call_point_pin})", zone.call_point_pin))
    return named


class FireDevices:
    """The charger contactors and the siren, created safe; the fire contacts once ``open_inputs``."""

    def __init__(self, settings: FireConfig, *, pin_factory=None):
        self.settings = settings
        self.pin_factory = pin_factory
        self.outputs: list[OutputDevice] = []
        self.inputs: list[InputLine] = []
        try:
            self.chargers = {z.name: self._output(z.charger_pin, z.charger_active_high)
                             for z in settings.zones if z.charger_pin is not None}
            self.siren = None if settings.siren_pin is None else self._output(
                settings.siren_pin, settings.siren_active_high)
        except Exception:
            self.close()
            raise

    def _output(self, pin: int, active_high: bool) -> OutputDevice:
        device = OutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=self.pin_factory)
        self.outputs.append(device)
        return device

    def open_inputs(self, deliver: Callable[[object], None], clock: Callable[[], float]) -> list[tuple[str, InputLine]]:
        """The contacts, pulled up: a closed loop holds the pin low ("active"), so active = closed.
        Returns (zone, line) for each; the line's name is the sensor's."""
        opened = []
        for zone in self.settings.zones:
            for sensor, pin in fire_sensors(zone):
                message = (lambda z, s: lambda closed, time: ContactChange(z, s, closed, time))(zone.name, sensor)
                line = open_line(sensor, pin, pull_up=True, message=message, deliver=deliver, clock=clock,
                                 pin_factory=self.pin_factory)
                self.inputs.append(line)
                opened.append((zone.name, line))
        return opened

    def apply(self, chargers: dict[str, bool], siren: bool) -> None:
        for name, charger in self.chargers.items():
            switch(charger, chargers.get(name, False))
        if self.siren is not None:
            switch(self.siren, siren)

    def charging(self, zone: str) -> bool | None:
        charger = self.chargers.get(zone)
        return None if charger is None else bool(charger.value)

    def close(self) -> None:
        """Charging off and siren off first, then release the pins; one that fails stops no other.
        Safe to call twice."""
        for device in getattr(self, "outputs", []):
            try:
                if not device.closed:
                    device.off()
                    device.close()
            except Exception:
                log.exception("output %s could not be switched off", device)
        for line in getattr(self, "inputs", []):
            try:
                line.close()
            except Exception:
                log.exception("input %s could not be closed", line.name)
