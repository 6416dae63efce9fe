"""Simulated GPIO: gpiozero's MockFactory with pins wired as the lot's contacts are, and a history
of every change with its time on the clock the rig runs (real or simulated).

Tests and the rig read a pin's history from here, never from gpiozero's private attributes.
"""

from __future__ import annotations

import time
from typing import Callable

from gpiozero.pins.mock import MockFactory, MockPin, PinState

from ..expander import Expanders
from .i2c import SimulatedBuses


class LoopPin(MockPin):
    """A simulated input wired as the fire contacts are: a normally closed loop to ground, which holds
    the pin low whatever its pull-up, until the loop opens (``drive_high()``: a burst, a cut wire).
    Every change is kept in ``history`` as (time, state) on the factory's clock."""

    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[str, bool], None] | None = None

    def clear_states(self):
        super().clear_states()
        self._last_change = self.clock()
        self.history: list[tuple[float, bool]] = [(self.clock(), bool(self._state))]

    def _set_pull(self, value):
        self._pull = value  # the loop, not the pull, decides the level

    def _change_state(self, value):
        """As MockPin's, on the factory's clock: the time of the change is what the pin's
        ``when_changed`` callback gets as its ``ticks`` (the Wiegand reader times pulses by it)."""
        if self._state == value:
            return False
        t = self.clock()
        self._state = value
        self.states.append(PinState(t - self._last_change, value))
        self._last_change = t
        self.history.append((t, bool(value)))
        if self.on_change is not None:
            self.on_change(self.info.name, bool(value))
        return True


def pulse_train(pin_d0: int, pin_d1: int, bits: list[int], start: float, *, width: float = 50e-6,
                gap: float = 0.002) -> list[tuple[float, int, bool]]:
    """The pin changes a Wiegand reader makes to send ``bits``: for each bit a ``width`` low pulse on
    D0 (a 0) or D1 (a 1), one every ``gap`` seconds from ``start``: (time, pin, high) as the rig
    schedules them. A bit of 2 is interference: both lines pulled low at once (the frame is noise)."""
    changes: list[tuple[float, int, bool]] = []
    for index, bit in enumerate(bits):
        at = start + index * gap
        for pin in (pin_d0, pin_d1) if bit == 2 else (pin_d1 if bit else pin_d0,):
            changes += [(at, pin, False), (at + width, pin, True)]
    return sorted(changes, key=lambda change: change[0])


def simulated_factory(on_change: Callable[[str, bool], None] | None = None,
                      clock: Callable[[], float] = time.monotonic) -> MockFactory:
    """A MockFactory of closed-loop pins that keep their history on ``clock`` and call
    ``on_change(pin name, state)`` on every change; with simulated I²C buses (``i2c``: MCP23017s at
    0x20-0x27 on bus 1) behind its ``expanders``."""

    pin_class = type("SimPin", (LoopPin,), {"clock": staticmethod(clock), "on_change": staticmethod(on_change)
                                            if on_change else None})
    factory = MockFactory(pin_class=pin_class)
    factory.ticks = clock  # the pins' callbacks and gpiozero's own timing on the same clock
    factory.i2c = SimulatedBuses(clock)
    factory.expanders = Expanders(factory.i2c)
    return factory
