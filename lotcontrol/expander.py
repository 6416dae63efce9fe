"""The MCP23017 I²C expander: 16 more pins for relays and inputs, through ``smbus2``.

``Mcp23017`` drives one chip through any object with SMBus's ``read_byte_data`` and
``write_byte_data`` (``smbus2.SMBus`` on a Pi; ``lotcontrol.sim.i2c`` in tests and the rig). Its
pins are opened as gpiozero-like devices by lotcontrol.pins (``open_output``, ``open_input``), so
a port relay or a bay sensor on the expander is used exactly as one on a GPIO:

- ``ExpanderOutput``: ``value``, ``is_active``, ``on()``, ``off()``, ``close()``. It starts off: its
  output latch is written *before* the pin is turned into an output, so it never glitches on. At
  power-up and after a reset the chip's pins are inputs (high impedance): wire relay boards whose
  inputs are pulled to "off" (hardware/README.md).
- ``Mcp23017.verify()`` (once a second, by the controller's loop through lotcontrol.charging.ports)
  finds a chip that reset itself and sets its pins again.
- ``ExpanderInput``: ``is_active``, ``when_activated``, ``when_deactivated``, ``close()``; the
  chip's pull-up is used for pulled-up inputs (it has no pull-down). Changes are found by reading
  the chip's GPIO registers every ``INPUT_POLL_SECONDS`` in a thread of the chip's own (about 0.6 ms
  of a 100 kHz bus each time), or, on a bus that reports changes itself (an INT line; the simulated
  bus), when it says so. A read that fails makes ``is_active`` raise, which lotcontrol.pins reads as
  "unreadable" (alarm or fault), never as a normal state.

Register addresses are those of IOCON.BANK = 0, the chip's power-up setting.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from .errors import LotControlError

log = logging.getLogger("lotcontrol")

IODIR, GPPU, GPIO, OLAT = 0x00, 0x0C, 0x12, 0x14  # port A; port B is the next address
INPUT_POLL_SECONDS = 0.02


class ExpanderError(LotControlError, OSError):
    """An MCP23017 does not answer, or a pin of one is already in use."""


class Mcp23017:
    """One chip on one bus. Thread-safe: the loop writes outputs while the input thread reads."""

    def __init__(self, bus: Any, bus_number: int, address: int):
        self.bus = bus
        self.bus_number = bus_number
        self.address = address
        self.name = f"MCP23017 at 0x{address:02x} on I2C bus {bus_number}"
        self.lock = threading.Lock()
        self.inputs: dict[int, ExpanderInput] = {}
        self.outputs: dict[int, ExpanderOutput] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:  # the chip's power-up state, read back: it answers, and no pin is changed
            self.iodir = [bus.read_byte_data(address, IODIR), bus.read_byte_data(address, IODIR + 1)]
            self.olat = [bus.read_byte_data(address, OLAT), bus.read_byte_data(address, OLAT + 1)]
            self.gppu = [bus.read_byte_data(address, GPPU), bus.read_byte_data(address, GPPU + 1)]
        except OSError as exc:
            raise ExpanderError(f"no {self.name} answers ({exc}): check its address pins, wiring and "
                                f"`i2cdetect -y {bus_number}`") from None

    # --- registers ---

    def _set_bit(self, register: int, cache: list[int], pin: int, on: bool) -> None:
        port, bit = divmod(pin, 8)
        value = cache[port] | (1 << bit) if on else cache[port] & ~(1 << bit)
        self.bus.write_byte_data(self.address, register + port, value)
        cache[port] = value  # only once the chip has it

    def setup_output(self, pin: int, level: bool) -> None:
        with self.lock:
            self._set_bit(OLAT, self.olat, pin, level)  # the level first: never a glitch
            self._set_bit(IODIR, self.iodir, pin, False)

    def setup_input(self, pin: int, pull_up: bool) -> None:
        with self.lock:
            self._set_bit(IODIR, self.iodir, pin, True)
            self._set_bit(GPPU, self.gppu, pin, pull_up)

    def write(self, pin: int, level: bool) -> None:
        with self.lock:
            self._set_bit(OLAT, self.olat, pin, level)

    def release(self, pin: int) -> None:
        """Back to an input (high impedance), as at power-up; the latch low."""
        with self.lock:
            self._set_bit(IODIR, self.iodir, pin, True)
            self._set_bit(OLAT, self.olat, pin, False)

    def verify(self) -> bool:
        """Whether the chip still has the pins' directions it was given; after a reset (a brown-out:
        every pin an input, every latch low) they are written again, latches first, and False is
        returned. Raises OSError when the chip does not answer."""
        with self.lock:
            found = [self.bus.read_byte_data(self.address, IODIR), self.bus.read_byte_data(self.address, IODIR + 1)]
            if found == self.iodir:
                return True
            for register, cache in ((OLAT, self.olat), (GPPU, self.gppu), (IODIR, self.iodir)):
                for port in (0, 1):
                    self.bus.write_byte_data(self.address, register + port, cache[port])
            return False

    def read_levels(self) -> int:
        """Both GPIO registers as one 16-bit value (bit n = pin n); raises OSError when unreadable."""
        with self.lock:
            return self.bus.read_byte_data(self.address, GPIO) | (self.bus.read_byte_data(self.address, GPIO + 1) << 8)

    # --- inputs' changes ---

    def poll(self) -> None:
        """Read the inputs once and report every one whose state changed (a read error: all of them)."""
        try:
            levels: int | None = self.read_levels()
        except OSError:
            levels = None
        for line in list(self.inputs.values()):
            line.check(levels)

    def watch(self, line: "ExpanderInput") -> None:
        self.inputs[line.pin] = line
        interrupts = getattr(self.bus, "interrupts", None)
        if interrupts is not None:  # the bus says when an input changed (an INT line)
            interrupts.setdefault(self.address, []).append(self.poll)
        elif self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name=f"expander-0x{self.address:02x}",
                                            daemon=True)
            self._thread.start()

    def unwatch(self, line: "ExpanderInput") -> None:
        """An input closed; the polling thread ends with the chip's last input."""
        self.inputs.pop(line.pin, None)
        interrupts = getattr(self.bus, "interrupts", None)
        if interrupts is not None and not self.inputs:
            interrupts.pop(self.address, None)
        if not self.inputs:
            self.close()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(INPUT_POLL_SECONDS):
            self.poll()

    def close(self) -> None:
        """End the polling thread (safe twice; a later input starts a new one)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1)


class ExpanderOutput:
    """One expander pin as an output, off (de-energized) until switched on."""

    def __init__(self, chip: Mcp23017, pin: int, *, active_high: bool = True, initial_value: bool = False):
        if pin in chip.outputs or pin in chip.inputs:
            raise ExpanderError(f"pin {pin} of the {chip.name} is already in use")
        self.chip, self.pin, self.active_high = chip, pin, active_high
        self._value = bool(initial_value)
        chip.setup_output(pin, self._value == active_high)
        chip.outputs[pin] = self
        self.closed = False

    def __repr__(self) -> str:
        return f"<ExpanderOutput pin {self.pin} of the {self.chip.name}>"

    @property
    def value(self) -> bool:
        return self._value

    @value.setter
    def value(self, on: bool) -> None:
        if self.closed:
            raise ExpanderError(f"{self!r} is closed")
        self.chip.write(self.pin, bool(on) == self.active_high)  # raises OSError: the value stays as it was
        self._value = bool(on)

    @property
    def is_active(self) -> bool:
        return self._value

    def on(self) -> None:
        self.value = True

    def off(self) -> None:
        self.value = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.chip.outputs.pop(self.pin, None)
        try:
            self.chip.release(self.pin)
        except OSError:
            log.exception("%r could not be released", self)


class ExpanderInput:
    """One expander pin as an input; active = low when pulled up (a contact closing to ground)."""

    def __init__(self, chip: Mcp23017, pin: int, *, pull_up: bool):
        if pin in chip.outputs or pin in chip.inputs:
            raise ExpanderError(f"pin {pin} of the {chip.name} is already in use")
        self.chip, self.pin, self.pull_up = chip, pin, pull_up
        chip.setup_input(pin, pull_up)
        self.when_activated: Callable[[], None] | None = None
        self.when_deactivated: Callable[[], None] | None = None
        self.closed = False
        self._last = self._read()
        chip.watch(self)

    def _read(self) -> bool | None:
        try:
            return self._active(self.chip.read_levels())
        except OSError:
            return None

    def _active(self, levels: int) -> bool:
        high = bool(levels >> self.pin & 1)
        return not high if self.pull_up else high

    @property
    def is_active(self) -> bool:
        state = self._read()
        if state is None:
            raise ExpanderError(f"pin {self.pin} of the {self.chip.name} cannot be read")
        return state

    def check(self, levels: int | None) -> None:
        """Called with the chip's levels (None: unreadable); reports a change through the callbacks."""
        if self.closed:
            return
        state = None if levels is None else self._active(levels)
        if state == self._last:
            return
        self._last = state
        callback = self.when_activated if state else self.when_deactivated
        if callback is not None:
            callback()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.chip.unwatch(self)


class Expanders:
    """The chips in use, opened on first use through ``open_bus(bus number)`` (smbus2.SMBus)."""

    def __init__(self, open_bus: Callable[[int], Any] | None = None):
        self.open_bus = open_bus or _smbus
        self.buses: dict[int, Any] = {}
        self.chips: dict[tuple[int, int], Mcp23017] = {}

    def chip(self, bus: int, address: int) -> Mcp23017:
        key = (bus, address)
        if key not in self.chips:
            if bus not in self.buses:
                try:
                    self.buses[bus] = self.open_bus(bus)
                except OSError as exc:
                    raise ExpanderError(f"I2C bus {bus} cannot be opened ({exc}): enable I2C "
                                        "(`raspi-config`) and add the service user to the i2c group") from None
            self.chips[key] = Mcp23017(self.buses[bus], bus, address)
        return self.chips[key]

    def close(self) -> None:
        for chip in self.chips.values():
            chip.close()
        for bus in self.buses.values():
            close = getattr(bus, "close", None)
            if close is not None:
                close()
        self.chips.clear()
        self.buses.clear()


def _smbus(number: int):
    from smbus2 import SMBus

    return SMBus(number)


def check_addresses(wanted: list[tuple[int, int]], open_bus: Callable[[int], Any] | None = None,
                    ) -> tuple[list[str], list[str]]:
    """Whether each (bus, address) answers, without changing any pin: (problems, notes). A bus that
    is not on this machine is a note (``check-config`` on a laptop), not a problem."""
    open_bus = open_bus or _smbus
    problems, notes = [], []
    for number in sorted({bus for bus, _ in wanted}):
        try:
            bus = open_bus(number)
        except OSError as exc:
            notes.append(f"I2C bus {number} is not on this machine ({exc.strerror or exc}): its expanders "
                         "were not checked")
            continue
        try:
            for address in sorted({a for b, a in wanted if b == number}):
                try:
                    bus.read_byte_data(address, IODIR)
                except OSError:
                    problems.append(f"no MCP23017 answers at 0x{address:02x} on I2C bus {number} (check its "
                                    f"address pins A0-A2 and `i2cdetect -y {number}`)")
        finally:
            close = getattr(bus, "close", None)
            if close is not None:
                close()
    return problems, notes
