"""The bay sensors, the gate's beams, door contact and exit button as inputs that post messages.

Every input — these and the fire watch's contacts — is a gpiozero ``DigitalInputDevice`` on the Pi's
own GPIO today, opened by ``open_input`` and read by ``read_input``; their callbacks only put a
message into the controller's inbox, with the time. An I/O expander (an MCP23017 on I²C gives 16
inputs per chip, up to 8 chips) is another ``open_input`` that returns an object with the same
``is_active``, ``when_activated``, ``when_deactivated`` and ``close()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gpiozero import DigitalInputDevice

from .bays import bay_name
from .config import Config


@dataclass(frozen=True)
class BaySensor:
    zone: str
    bay: str
    occupied: bool | None
    time: float


@dataclass(frozen=True)
class BeamBroken:
    beam: str  # "outer" or "inner"
    time: float


@dataclass(frozen=True)
class DoorChange:
    is_open: bool | None
    time: float


@dataclass(frozen=True)
class ExitPressed:
    time: float


def open_input(pin: int, *, pull_up: bool, pin_factory=None):
    """One input line; the place to add another source (an I/O expander) later."""
    return DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory)


def read_input(device) -> bool | None:
    """Whether the input is active; None when it cannot be read (never taken as a normal reading)."""
    try:
        return bool(device.is_active)
    except Exception:
        return None


class Sensors:
    """Creates the inputs and wires their callbacks to ``deliver``; ``initial()`` reads them once."""

    def __init__(self, config: Config, deliver: Callable[[object], None], *, pin_factory=None,
                 clock: Callable[[], float]):
        self.devices: list = []
        self.bay_devices: dict[tuple[str, str], object] = {}
        self.door = None
        try:
            for zone in config.bays.zones:
                for index, pin in enumerate(zone.bays):
                    device = self._add(open_input(pin, pull_up=not zone.occupied_high, pin_factory=pin_factory))
                    name = bay_name(zone, index)
                    self.bay_devices[(zone.name, name)] = device
                    report = (lambda z, n, d: lambda: deliver(BaySensor(z, n, read_input(d), clock())))(zone.name, name, device)
                    device.when_activated = device.when_deactivated = report
            beams = config.bays.beams
            if beams is not None:
                for which, pin in (("outer", beams.outer_pin), ("inner", beams.inner_pin)):
                    device = self._add(open_input(pin, pull_up=False, pin_factory=pin_factory))
                    device.when_activated = (lambda w: lambda: deliver(BeamBroken(w, clock())))(which)
            gate = config.gate
            if gate.door_pin is not None:
                # pulled up, the contact closes to ground while the door is shut: active = shut
                self.door = self._add(open_input(gate.door_pin, pull_up=True, pin_factory=pin_factory))
                self.door.when_activated = self.door.when_deactivated = lambda: deliver(
                    DoorChange(self.door_open(), clock()))
            if gate.exit_pin is not None:
                button = self._add(open_input(gate.exit_pin, pull_up=True, pin_factory=pin_factory))
                button.when_activated = lambda: deliver(ExitPressed(clock()))
        except Exception:
            self.close()
            raise

    def _add(self, device):
        self.devices.append(device)
        return device

    def door_open(self) -> bool | None:
        if self.door is None:
            return False
        shut = read_input(self.door)
        return None if shut is None else not shut

    def bay_readings(self) -> dict[tuple[str, str], bool | None]:
        return {key: read_input(device) for key, device in self.bay_devices.items()}

    def close(self) -> None:
        for device in self.devices:
            if not device.closed:
                device.close()
