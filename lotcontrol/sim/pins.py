"""Simulated GPIO: gpiozero's MockFactory with pins wired as the lot's contacts are, and a history
of every change with its time on the clock the rig runs (real or simulated).

Tests and the rig read a pin's history from here, never from gpiozero's private attributes.
"""

from __future__ import annotations

import time
from typing import Callable

from gpiozero.pins.mock import MockFactory, MockPin

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
        self.history: list[tuple[float, bool]] = [(self.clock(), bool(self._state))]

    def _set_pull(self, value):
        self._pull = value  # the loop, not the pull, decides the level

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self.history.append((self.clock(), bool(value)))
            if self.on_change is not None:
                self.on_change(self.info.name, bool(value))
        return changed


def simulated_factory(on_change: Callable[[str, bool], None] | None = None,
                      clock: Callable[[], float] = time.monotonic) -> MockFactory:
    """A MockFactory of closed-loop pins that keep their history on ``clock`` and call
    ``on_change(pin name, state)`` on every change; with simulated I²C buses (``i2c``: MCP23017s at
    0x20-0x27 on bus 1) behind its ``expanders``."""

    pin_class = type("SimPin", (LoopPin,), {"clock": staticmethod(clock), "on_change": staticmethod(on_change)
                                            if on_change else None})
    factory = MockFactory(pin_class=pin_class)
    factory.i2c = SimulatedBuses(clock)
    factory.expanders = Expanders(factory.i2c)
    return factory
