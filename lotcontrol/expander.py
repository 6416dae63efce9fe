"""The MCP23017 I²C expander: 16 more pins for relays and inputs, through ``smbus2``.

``Mcp23017`` drives one chip through any object with SMBus's ``read_byte_data`` and
``write_byte_data`` (``smbus2.SMBus`` on a Pi; ``lotcontrol.sim.i2c`` in tests and the rig). Its
pins are opened as gpiozero-like devices by lotcontrol.pins (``open_output``, ``open_input``), so
a port relay or a bay sensor on the expander is used exactly as one on a GPIO:

- ``ExpanderOutput``: ``value``, ``is_active``, ``on()``, ``off()``, ``close()``. It starts off: its
  output latch is written *before* the pin is turned into an output, so it never glitches on. At
  power-up and after a reset the chip's pins are inputs (high impedance): wire relay boards whose
  inputs are pulled to "off" (hardware/README.md).
- Switching an output never waits for the bus: ``on()`` and ``off()`` record the level asked for
  and wake the chip's writer thread, which writes the latch (about 0.3 ms at 100 kHz). An I²C
  transfer can hang for the kernel's timeout (1 s on a Pi) when a chip or the bus is stuck; it
  does so in that thread, never in the controller's loop, which goes on switching the GPIO relays,
  contactors, siren and gate. A failed write is kept in ``error`` (the chip's ports are reported
  faulty by lotcontrol.charging.ports) and tried again every ``RETRY_SECONDS`` until it succeeds;
  a chip in ``error`` is read back before it counts as answering again, even with nothing to write.
- ``Mcp23017.request_verify()`` (once a second, by the controller's loop through
  lotcontrol.charging.ports) asks the writer thread to find a chip that reset itself and set its
  pins again (``resets`` counts them). ``flush()`` waits for the writer (tests, the rig).
- ``ExpanderInput``: ``is_active``, ``when_activated``, ``when_deactivated``, ``close()``; the
  chip's pull-up is used for pulled-up inputs (it has no pull-down). Changes are found by reading
  the chip's GPIO registers every ``INPUT_POLL_SECONDS`` in a thread of the chip's own (about 0.6 ms
  of a 100 kHz bus each time), or, on a bus that reports changes itself (an INT line; the simulated
  bus), when it says so. A read that fails makes ``is_active`` raise, which lotcontrol.pins reads as
  "unreadable" (alarm or fault), never as a normal state. Where the thread polls, ``is_active``
  gives its last reading (the loop's once-a-second re-read waits for no bus).

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
RETRY_SECONDS = 0.2  # a failed latch write is tried again this often by the writer thread


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
        # the outputs: levels asked for by the loop, written by the writer thread (never the loop)
        self.error: str | None = None  # why the last transfer of the writer failed; None while the chip answers
        self.resets = 0  # how often the writer found the chip reset (and set it again)
        self._asked = threading.Condition()  # guards wanted, _verify, passes
        self._verify = self._kick = False
        self.started = self.passes = 0  # the writer's passes begun and finished (flush waits for one)
        self._writer: threading.Thread | None = None
        self._writer_stop = threading.Event()
        try:  # the chip's power-up state, read back: it answers, and no pin is changed
            self.iodir = [bus.read_byte_data(address, IODIR), bus.read_byte_data(address, IODIR + 1)]
            self.olat = [bus.read_byte_data(address, OLAT), bus.read_byte_data(address, OLAT + 1)]
            self.gppu = [bus.read_byte_data(address, GPPU), bus.read_byte_data(address, GPPU + 1)]
        except OSError as exc:
            raise ExpanderError(f"no {self.name} answers ({exc}): check its address pins, wiring and "
                                f"`i2cdetect -y {bus_number}`") from None
        self.wanted = list(self.olat)  # the latches asked for

    # --- registers ---

    def _set_bit(self, register: int, cache: list[int], pin: int, on: bool) -> None:
        port, bit = divmod(pin, 8)
        value = cache[port] | (1 << bit) if on else cache[port] & ~(1 << bit)
        self.bus.write_byte_data(self.address, register + port, value)
        cache[port] = value  # only once the chip has it

    def setup_output(self, pin: int, level: bool) -> None:
        """At start-up, synchronously: the level first (never a glitch), then the direction."""
        with self._asked:
            self._set_wanted(pin, level)
        with self.lock:
            self._set_bit(OLAT, self.olat, pin, level)
            self._set_bit(IODIR, self.iodir, pin, False)

    def setup_input(self, pin: int, pull_up: bool) -> None:
        with self.lock:
            self._set_bit(IODIR, self.iodir, pin, True)
            self._set_bit(GPPU, self.gppu, pin, pull_up)

    def _set_wanted(self, pin: int, level: bool) -> None:
        port, bit = divmod(pin, 8)
        self.wanted[port] = self.wanted[port] | (1 << bit) if level else self.wanted[port] & ~(1 << bit)

    def write(self, pin: int, level: bool) -> None:
        """Ask for a latch level; the writer thread writes it. Never waits for the bus."""
        with self._asked:
            self._set_wanted(pin, level)
            self._asked.notify_all()
        self._start_writer()

    def request_verify(self) -> None:
        """Ask the writer thread to check the chip for a reset (``verify``); never waits."""
        with self._asked:
            self._verify = True
            self._asked.notify_all()
        self._start_writer()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the writer has finished a pass begun after this call (every level asked for
        written, or ``error`` set); False on timeout. For tests and the rig."""
        if self._writer is None:
            return True
        with self._asked:
            target = self.started + 1  # a pass under way may have begun before this call: the next one
            self._kick = True
            self._asked.notify_all()
            return self._asked.wait_for(lambda: self.passes >= target or self._writer is None, timeout)

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer_stop = threading.Event()
            self._writer = threading.Thread(target=self._write_loop, args=(self._writer_stop,),
                                            name=f"expander-out-0x{self.address:02x}", daemon=True)
            self._writer.start()

    def _write_loop(self, stop: threading.Event) -> None:
        while True:
            with self._asked:
                if stop.is_set():
                    return
                verify, self._verify, self._kick = self._verify, False, False
                wanted = list(self.wanted)
                self.started += 1
                # a chip whose last transfer failed is heard from before it counts as answering again,
                # even when there is nothing to write (asked back the level its latch still holds)
                verify = verify or self.error is not None
            try:
                with self.lock:
                    for port in (0, 1):
                        if wanted[port] != self.olat[port]:
                            self.bus.write_byte_data(self.address, OLAT + port, wanted[port])
                            self.olat[port] = wanted[port]
                    if verify and not self._verify_locked():
                        self.resets += 1
                self.error = None
            except OSError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - a bug must not end the writes: said as an error
                log.exception("%s: writer", self.name)
                self.error = f"{type(exc).__name__}: {exc}"
            with self._asked:
                self.passes += 1
                self._asked.notify_all()
                if self.error is not None:  # tried again in a while, or at once when asked or flushed
                    self._asked.wait(RETRY_SECONDS)
                else:
                    self._asked.wait_for(lambda: stop.is_set() or self._verify or self._kick or self.wanted != self.olat)

    def release(self, pin: int) -> None:
        """Back to an input (high impedance), as at power-up; the latch low."""
        with self._asked:
            self._set_wanted(pin, False)
        with self.lock:
            self._set_bit(IODIR, self.iodir, pin, True)
            self._set_bit(OLAT, self.olat, pin, False)

    def verify(self) -> bool:
        """Whether the chip still has the pins' directions it was given; after a reset (a brown-out:
        every pin an input, every latch low) they are written again, latches first, and False is
        returned. Raises OSError when the chip does not answer."""
        with self.lock:
            return self._verify_locked()

    def _verify_locked(self) -> bool:
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

    def close_writer(self) -> None:
        """End the writer thread, after one last pass (the levels last asked for; safe twice)."""
        self.flush(timeout=1.0)
        with self._asked:
            self._writer_stop.set()
            self._asked.notify_all()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join(timeout=1.5)


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
        """The level asked for, written by the chip's writer thread (``chip.error`` when it fails)."""
        if self.closed:
            raise ExpanderError(f"{self!r} is closed")
        self.chip.write(self.pin, bool(on) == self.active_high)
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
        if not self.chip.outputs:
            self.chip.close_writer()


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
        state = self._last if self.chip._thread is not None else self._read()  # polled: its last reading
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
            chip.close_writer()
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
