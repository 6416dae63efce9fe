"""Energy meters on RS-485 (Modbus RTU) through pymodbus: one poller thread per bus, which reads
every meter on it every ``charging.poll_seconds`` and posts one ``MeterReading`` per port to the
controller's inbox. The controller's loop never talks Modbus: a burst switches the port relays off
whatever the bus is doing.

A meter is read register by register as its profile (config.MeterProfile) maps them: power and
energy always, voltage and current when the profile has them, each a float32 or an integer times
its scale. A meter that does not answer (a timeout, a broken bus) gives a reading with ``error``; a
meter that answers with a Modbus exception, or with a value that is not a finite number, gives one
with ``answered`` too. Never 0 W: 0 W would read as a full battery.

A meter that reads above its port's ``max_watts`` is read again every half ``overload_seconds``,
between the other meters' reads, and at ``overload_seconds`` after its first reading over the limit,
until it reads below or the overload is decided: the cut comes within ``overload_seconds`` plus one
read of the first reading over the limit, not a poll later (at most two extra reads a poll for each
overloaded port). The re-reads keep to the first reading: an ordinary poll of the meter between them,
or a re-read that comes late behind another meter's read, never puts the next one off.

``port = "tcp://HOST:PORT"`` reads the same registers over Modbus TCP (a TCP gateway, and the tests'
in-process pymodbus server); the serial port with RTU framing is the production default. A profile's
``switch_coil`` is written by the poller, after the polls, to follow what the loop asked
(``want_switch``): the relays stay the first line, the coil (a charging pile's own switch) the second.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

from ..messages import MeterReading

log = logging.getLogger("lotcontrol")

FIELDS = ("power", "energy", "voltage", "current")
GATEWAY_SILENCE = (0x0A, 0x0B)  # gateway path unavailable; gateway target device failed to respond


def make_client(bus):
    """A pymodbus client for a bus: serial RTU, or TCP for ``tcp://HOST:PORT``. Never retried inside
    pymodbus: one poll is one try per register (the capacity check counts on it)."""
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    if bus.port.startswith("tcp://"):
        host, _, port = bus.port.removeprefix("tcp://").rpartition(":")
        return ModbusTcpClient(host, port=int(port), timeout=bus.timeout_seconds, retries=0)
    return ModbusSerialClient(bus.port, baudrate=bus.baud, parity=bus.parity, stopbits=bus.stopbits,
                              bytesize=8, timeout=bus.timeout_seconds, retries=0)


class MeterFailure(Exception):
    def __init__(self, message: str, answered: bool):
        super().__init__(message)
        self.answered = answered


def read_register(client, unit: int, register, word_order: str) -> float:
    """One register of the profile, scaled; MeterFailure when it cannot be read."""
    from pymodbus.exceptions import ModbusException

    count = 2 if register.type.endswith("32") else 1
    read = client.read_input_registers if register.table == "input" else client.read_holding_registers
    try:
        result = read(register.address, count=count, device_id=unit)
    except ModbusException as exc:
        raise MeterFailure(f"no answer from unit {unit} ({exc})", answered=False) from None
    if result.isError():
        code = getattr(result, "exception_code", None)
        if code in GATEWAY_SILENCE:  # a TCP gateway saying the meter behind it did not answer
            raise MeterFailure(f"no answer from unit {unit} (gateway exception {code})", answered=False)
        raise MeterFailure(f"unit {unit} refused register {register.address}: {result}", answered=True)
    data_type = getattr(client.DATATYPE, register.type.upper())
    value = client.convert_from_registers(result.registers, data_type, word_order=word_order)
    value = float(value) * register.scale
    if not math.isfinite(value):
        raise MeterFailure(f"unit {unit} register {register.address} is not a number ({value})", answered=True)
    return value


class BusPoller:
    """The meters of one bus: ``poll()`` reads each once and delivers its reading; ``start()`` polls
    every ``poll_seconds`` in a thread until ``close()``."""

    def __init__(self, bus, meters: list[tuple[str, object, object]], poll_seconds: float,
                 deliver: Callable[[MeterReading], None], clock: Callable[[], float], client=None,
                 limits: dict[str, float] | None = None, overload_seconds: float = 0.5):
        self.bus = bus
        self.meters = meters  # (port, PortMeterConfig, MeterProfile)
        self.poll_seconds = poll_seconds
        self.limits = limits or {}  # port -> max_watts: a reading above it is read again soon
        self.overload_seconds = overload_seconds
        self.suspects: dict[str, tuple[float, float]] = {}  # port -> (first reading over its limit, next read due)
        self.deliver = deliver
        self.clock = clock
        self.client = client  # made on the first poll: a port that cannot be opened is silent meters, not a stop
        self.want_switch: dict[str, bool] = {}  # port -> coil wanted on (set by the loop, never waited on)
        self._written: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"meters-{bus.name}", daemon=True)
        self.last_cycle: float | None = None  # seconds the last poll took

    def poll(self) -> None:
        started = time.monotonic()
        try:
            if self.client is None:
                self.client = make_client(self.bus)
            if not self.client.connected:
                self.client.connect()  # a failure shows as every meter silent
        except Exception as exc:  # noqa: BLE001 - no bus: every meter on it is silent (fail safe)
            for port, _, _ in self.meters:
                self.deliver(MeterReading(port, None, None, None, None, f"meter bus {self.bus.name!r} cannot be "
                                          f"opened: {type(exc).__name__}: {exc}", self.clock()))
            return
        for port, meter, profile in self.meters:
            if self._stop.is_set():
                return
            self.confirm()  # an overloaded meter due again goes before the rest of the cycle
            self._deliver(self._read(port, meter, profile))
        self._write_coils()
        self.last_cycle = time.monotonic() - started

    def confirm(self) -> None:
        """Read again each meter that read above its port's max_watts and is due (an overload is
        decided on readings spanning ``overload_seconds``, not a poll apart)."""
        if not self.suspects or self.client is None:
            return
        now = self.clock()
        for port, meter, profile in self.meters:
            due = self.suspects.get(port)
            if due is not None and due[1] <= now and not self._stop.is_set():
                self._deliver(self._read(port, meter, profile))

    def next_confirm(self) -> float | None:
        """When the next overloaded meter is due to be read again (on ``clock``), or None."""
        return min((due for _, due in self.suspects.values()), default=None)

    def _deliver(self, reading: MeterReading) -> None:
        self.deliver(reading)
        limit = self.limits.get(reading.port)
        first, due = self.suspects.pop(reading.port, (reading.time, math.inf))
        if limit is None or reading.watts is None or reading.watts <= limit or self.overload_seconds <= 0:
            return
        if reading.time - first < self.overload_seconds:  # not decided yet: read it again soon
            # half overload_seconds on, and never later than overload_seconds after the first reading;
            # a reading before the re-read was due (an ordinary poll) does not put the re-read off
            again = min(reading.time + self.overload_seconds / 2, first + self.overload_seconds)
            self.suspects[reading.port] = (first, min(again, due) if due > reading.time else again)

    def _read(self, port: str, meter, profile) -> MeterReading:
        values: dict[str, float | None] = {}
        try:
            for name in FIELDS:
                register = getattr(profile, name)
                values[name] = None if register is None else read_register(self.client, meter.unit, register,
                                                                           profile.word_order)
        except MeterFailure as exc:
            return MeterReading(port, None, None, None, None, str(exc), self.clock(), answered=exc.answered)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the meter has not answered
            return MeterReading(port, None, None, None, None, f"{type(exc).__name__}: {exc}", self.clock())
        return MeterReading(port, values["power"], values["energy"], values["voltage"], values["current"], None,
                            self.clock())

    def _write_coils(self) -> None:
        for port, meter, profile in self.meters:
            wanted = self.want_switch.get(port)
            if profile.switch_coil is None or wanted is None or self._written.get(port) == wanted:
                continue
            try:
                result = self.client.write_coil(profile.switch_coil, wanted, device_id=meter.unit)
                if not result.isError():
                    self._written[port] = wanted
            except Exception as exc:  # noqa: BLE001 - tried again after the next poll
                log.warning("charging port %s: its meter's switch coil was not written: %s", port, exc)

    def _run(self) -> None:
        next_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_poll:
                    self.poll()
                    next_poll = max(next_poll + self.poll_seconds, time.monotonic())
                else:
                    self.confirm()
            except Exception:  # a bug here must not end the polls: the meters would go silent (fail safe)
                log.exception("meter poller %s", self.bus.name)
                next_poll = max(next_poll + self.poll_seconds, time.monotonic())
            wait = next_poll - time.monotonic()
            due = self.next_confirm()
            if due is not None:
                wait = min(wait, due - self.clock())
            self._stop.wait(max(0.0, wait))

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            if self.client is not None:
                self.client.close()
        except Exception:
            log.exception("meter bus %s could not be closed", self.bus.name)


class MeterPollers:
    """A poller for every bus that has meters."""

    def __init__(self, settings, deliver: Callable[[MeterReading], None], clock: Callable[[], float]):
        profiles = settings.meter_profiles()
        self.pollers: list[BusPoller] = []
        self._wanted: dict[str, bool] | None = None  # the coils last asked for
        for bus in settings.buses:
            meters = [(p.id, p.meter, profiles[p.meter.profile]) for p in settings.ports
                      if p.meter is not None and p.meter.bus == bus.name]
            if meters:
                limits = {p.id: p.max_watts for p in settings.ports if p.meter is not None}
                self.pollers.append(BusPoller(bus, meters, settings.poll_seconds, deliver, clock, limits=limits,
                                              overload_seconds=settings.overload_seconds))

    def poll(self) -> None:
        for poller in self.pollers:
            poller.poll()

    def confirm(self) -> None:
        """The overloaded meters due to be read again (the rig calls it at ``next_confirm()``)."""
        for poller in self.pollers:
            poller.confirm()

    def next_confirm(self) -> float | None:
        return min((due for due in (p.next_confirm() for p in self.pollers) if due is not None), default=None)

    def start(self) -> None:
        for poller in self.pollers:
            poller.start()

    def want_switches(self, wanted: dict[str, bool]) -> None:
        if wanted == self._wanted:
            return  # the same as last asked (only this sets want_switch)
        self._wanted = dict(wanted)
        for poller in self.pollers:
            for port, _, _ in poller.meters:
                if port in wanted:
                    poller.want_switch[port] = wanted[port]

    def close(self) -> None:
        for poller in self.pollers:
            poller.close()
