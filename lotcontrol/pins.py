"""GPIO access, the one place it happens: which pin factory, inputs that report their changes, and
outputs switched only on change.

Every input (the fire contacts, bay sensors, beams, door contact, exit button) is an
``InputLine``: a gpiozero ``DigitalInputDevice`` whose callbacks turn the pin's state into a message
for the controller's inbox, and which the controller re-reads once a second to catch an edge the
callback missed. A pin is a GPIO number or a pin of an MCP23017 I²C expander (anything with
``bus``, ``address`` and ``pin``: config.ExpanderPin); ``open_input`` and ``open_output`` return a
gpiozero device or an expander device (lotcontrol.expander) with the same ``is_active``, ``value``,
``when_activated``, ``when_deactivated`` and ``close()``, so everything above them is the same. The
expanders come from the pin factory's ``expanders`` (the simulated factory's simulated I²C bus), or
else from the machine's I²C buses through smbus2. A pin that cannot be read reads as None, never as
a normal state; callers treat None as alarm or fault.
"""

from __future__ import annotations

import logging
from typing import Callable

from gpiozero import DigitalInputDevice, InputDevice, OutputDevice

from .errors import LotControlError
from .expander import Expanders, ExpanderInput, ExpanderOutput

log = logging.getLogger("lotcontrol")


class HardwareError(LotControlError, RuntimeError):
    """No GPIO can be driven on this machine."""


def real_factory():
    """The Pi's GPIO through lgpio (every Pi, and the only one on a Pi 5) or RPi.GPIO."""
    reasons = []
    for module, name in (("gpiozero.pins.lgpio", "LGPIOFactory"), ("gpiozero.pins.rpigpio", "RPiGPIOFactory")):
        try:
            return getattr(__import__(module, fromlist=[name]), name)()
        except Exception as exc:  # ImportError off a Pi, RuntimeError from RPi.GPIO, OSError from lgpio
            reasons.append(f"{name}: {exc}")
    raise HardwareError(
        "no GPIO on this machine (" + "; ".join(reasons) + "). On a Raspberry Pi run `make install "
        "EXTRAS=pi`; anywhere else run with --simulate"
    )


def switch(device, on: bool) -> None:
    """Switch an output only when it must change: the controller sets its outputs on every
    evaluation (every 50 ms), and a write is a GPIO call (and, simulated, a pin change reported)."""
    if device.is_active != on:
        device.value = on


_MACHINE_EXPANDERS = Expanders()  # the real I²C buses, opened on first use


def expanders(pin_factory=None) -> Expanders:
    """Where expander pins come from: the pin factory's own (simulated), or the machine's I²C buses."""
    return getattr(pin_factory, "expanders", None) or _MACHINE_EXPANDERS


def open_input(pin, *, pull_up: bool, pin_factory=None):
    """One input line: a GPIO, or an expander pin (pulled up by the chip, or left to an external pull)."""
    if isinstance(pin, int):
        return DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory)
    return ExpanderInput(expanders(pin_factory).chip(pin.bus, pin.address), pin.pin, pull_up=pull_up)


def open_output(pin, *, active_high: bool = True, pin_factory=None):
    """One output, created off (de-energized): a GPIO, or an expander pin."""
    if isinstance(pin, int):
        return OutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
    return ExpanderOutput(expanders(pin_factory).chip(pin.bus, pin.address), pin.pin, active_high=active_high)


def open_edges(pin: int, on_edge: Callable[[float, int], None], *, pin_factory=None) -> InputDevice:
    """A GPIO input (pulled up) whose every edge is reported as ``on_edge(ticks, level)``: the pin
    factory's own time of the edge, for timing pulses (the Wiegand reader). gpiozero keeps only a
    weak reference to ``on_edge``: pass a bound method of an object that lives as long as the pin."""
    device = InputDevice(pin, pull_up=True, pin_factory=pin_factory)
    try:
        device.pin.edges = "both"
        device.pin.when_changed = on_edge
    except Exception:
        device.close()
        raise
    return device


def read_input(device) -> bool | None:
    """Whether the input is active; None when it cannot be read (never taken as a normal reading)."""
    try:
        return bool(device.is_active)
    except Exception:
        return None


class InputLine:
    """One input and the message its state becomes.

    ``message(state, time)`` builds the inbox message from the state as read (active or not, None
    when unreadable), or returns None when that change means nothing (a beam becoming whole again).
    Every change the callbacks see is delivered; ``reread(now)`` reads the pin again and returns the
    message for a change no callback delivered (a missed edge), or None.
    """

    def __init__(self, name: str, device, message: Callable[[bool | None, float], object | None],
                 deliver: Callable[[object], None], clock: Callable[[], float]):
        self.name = name
        self.device = device
        self.message = message
        self.last = read_input(device)
        self._deliver = deliver
        self._clock = clock
        device.when_activated = device.when_deactivated = self._report

    def _report(self) -> None:
        self.last = state = read_input(self.device)
        message = self.message(state, self._clock())
        if message is not None:
            self._deliver(message)

    def reread(self, now: float):
        """The message for a state the callbacks did not report, or None when nothing was missed."""
        state = read_input(self.device)
        if state == self.last:
            return None
        log.warning("input.missed_edge %s: %s, last reported %s", self.name, state, self.last)
        self.last = state
        return self.message(state, now)

    @property
    def answers(self) -> bool:
        return read_input(self.device) is not None

    def close(self) -> None:
        if not self.device.closed:
            self.device.close()


def open_line(name: str, pin: int, *, pull_up: bool, message: Callable[[bool | None, float], object | None],
              deliver: Callable[[object], None], clock: Callable[[], float], pin_factory=None) -> InputLine:
    """Open one input and wire it as an ``InputLine``; the pin is released if wiring fails."""
    device = open_input(pin, pull_up=pull_up, pin_factory=pin_factory)
    try:
        return InputLine(name, device, message, deliver, clock)
    except Exception:
        device.close()
        raise
