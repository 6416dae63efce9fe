"""A simulated I²C bus with MCP23017 expanders on it: the registers the driver uses (IODIR, GPPU,
GPIO, OLAT, ports A and B), modelled as the chip has them, behind smbus2's ``read_byte_data`` /
``write_byte_data``. Tests and the rig drive its inputs and read its outputs' levels and history.

An input pin's level is what is driven onto it (``drive``), else its pull-up's high, else low (an
external pull-down). An output pin's level is its latch. Reading GPIO gives the pins' levels; the
bus reports a change of a driven input at once through ``interrupts`` (the chip's INT line).
``fail = True`` makes every transfer raise OSError, as a chip that no longer answers; ``stick()``
makes every transfer hang until released, as a bus whose SDA line a chip holds low (on a Pi each
transfer then waits for the kernel's timeout); ``stuck_transfer`` is set once one hangs.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

IODIR, GPPU, GPIO, OLAT = 0x00, 0x0C, 0x12, 0x14


class SimulatedMcp23017:
    def __init__(self):
        self.reset()
        self.driven: dict[int, bool] = {}  # input pin -> level driven onto it from outside

    def _bit(self, register: int, pin: int) -> bool:
        return bool(self.registers[register + pin // 8] >> (pin % 8) & 1)

    def reset(self) -> None:
        """A brown-out or a pulse on RESET: the power-up registers (every pin an input, latches low)."""
        self.registers = {IODIR: 0xFF, IODIR + 1: 0xFF, GPPU: 0, GPPU + 1: 0, OLAT: 0, OLAT + 1: 0}

    def is_output(self, pin: int) -> bool:
        return not self._bit(IODIR, pin)

    def level(self, pin: int) -> bool:
        if self.is_output(pin):
            return self._bit(OLAT, pin)
        if pin in self.driven:
            return self.driven[pin]
        return self._bit(GPPU, pin)

    def read(self, register: int) -> int:
        if register in (GPIO, GPIO + 1):
            base = (register - GPIO) * 8
            return sum(1 << i for i in range(8) if self.level(base + i))
        return self.registers[register]


class SimulatedI2C:
    """One I²C bus; ``chips`` by address. ``history`` holds (time, address, pin, level) for every
    change of an output pin's level, on ``clock``."""

    def __init__(self, addresses=(0x20,), clock: Callable[[], float] = time.monotonic):
        self.chips = {address: SimulatedMcp23017() for address in addresses}
        self.clock = clock
        self.fail = False
        self.history: list[tuple[float, int, int, bool]] = []
        self.interrupts: dict[int, list[Callable[[], None]]] = {}
        self.release: threading.Event | None = None
        self.stuck_transfer = threading.Event()

    def stick(self) -> threading.Event:
        """From now on every transfer hangs until the returned event is set (at most 10 s)."""
        self.release = threading.Event()
        return self.release

    def _chip(self, address: int) -> SimulatedMcp23017:
        if self.release is not None and not self.release.is_set():
            self.stuck_transfer.set()
            self.release.wait(10)
        if self.fail or address not in self.chips:
            raise OSError(121, "Remote I/O error")  # what the kernel says for a NACK
        return self.chips[address]

    def read_byte_data(self, address: int, register: int) -> int:
        return self._chip(address).read(register)

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        chip = self._chip(address)
        before = [chip.level(pin) if chip.is_output(pin) else None for pin in range(16)]
        chip.registers[register] = value & 0xFF
        for pin in range(16):
            now = chip.level(pin) if chip.is_output(pin) else None
            if now is not None and now != before[pin]:
                self.history.append((self.clock(), address, pin, now))

    def output(self, address: int, pin: int) -> bool | None:
        """An output pin's level; None while the pin is an input (high impedance: a relay off)."""
        chip = self.chips[address]
        return chip.level(pin) if chip.is_output(pin) else None

    def drive(self, address: int, pin: int, level: bool | None) -> None:
        """Drive an input pin high or low (None: let go); the INT line reports it."""
        chip = self.chips[address]
        if level is None:
            chip.driven.pop(pin, None)
        else:
            chip.driven[pin] = level
        for report in self.interrupts.get(address, []):
            report()

    def close(self) -> None:
        pass


class SimulatedBuses:
    """What ``Expanders`` opens: bus number -> SimulatedI2C. By default bus 1 holds a chip at every
    address (0x20-0x27), so any configuration runs simulated; ``chips`` says otherwise."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, chips: dict[int, tuple[int, ...]] | None = None):
        chips = chips or {1: tuple(range(0x20, 0x28))}
        self.buses = {number: SimulatedI2C(addresses, clock) for number, addresses in chips.items()}

    def __call__(self, number: int) -> SimulatedI2C:
        if number not in self.buses:
            raise FileNotFoundError(2, f"No such file or directory: '/dev/i2c-{number}'")
        return self.buses[number]
