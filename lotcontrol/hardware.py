"""Which GPIO the controller drives: the Pi's own (gpiozero's lgpio or RPi.GPIO factory), or a
simulated one (gpiozero's MockFactory) that reports every pin change. Never a silent fallback.
``switch`` is how every output the controller re-evaluates is set."""

from __future__ import annotations

from typing import Callable

from gpiozero.pins.mock import MockFactory, MockPin

from .errors import LotControlError


class HardwareError(LotControlError, RuntimeError):
    """No GPIO can be driven on this machine."""


class LoopPin(MockPin):
    """A simulated input wired as the fire contacts are: a normally closed loop to ground, which holds
    the pin low whatever its pull-up, until the loop opens (``drive_high()``: a burst, a cut wire)."""

    def _set_pull(self, value):
        self._pull = value


def simulated_factory(on_change: Callable[[str, bool], None] | None = None) -> MockFactory:
    """A MockFactory of closed-loop pins that call ``on_change(pin name, state)`` on every change."""

    class ReportingPin(LoopPin):
        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed and on_change is not None:
                on_change(self.info.name, bool(value))
            return changed

    return MockFactory(pin_class=ReportingPin)


def switch(device, on: bool) -> None:
    """Switch an output only when it must change: the controller sets its outputs on every
    evaluation (every 50 ms), and a write is a GPIO call (and, simulated, a pin change reported)."""
    if device.is_active != on:
        device.value = on


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
