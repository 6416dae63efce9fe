"""Simulated energy meters: a real pymodbus server, in this process, answering as Eastron SDM120
meters (or any profile) whose readings follow scripted charge curves.

Each unit id is one meter; its curve gives (watts, kWh) for the server's clock. The readings are
written into the registers as the profile maps them (IEEE floats, or scaled integers) the moment a
request arrives, so the client code path — pymodbus's client, the register map, the decoding — is
the one the controller uses on RS-485. Two ways to reach it:

- ``framing="tcp"`` (default): Modbus TCP on 127.0.0.1 (``url`` is ``tcp://127.0.0.1:PORT``). A meter
  made ``silent`` answers as a TCP gateway does for a meter that does not answer on its RS-485 side
  (exception 0x0B);
- ``framing="rtu"``: Modbus RTU over a pair of pseudo-terminals joined by a thread (``url`` is the
  client's end, ``/dev/pts/N``), as on the RS-485 bus; with ``baud``, the joining thread holds every
  chunk for its time on the wire (11 bits a byte), so a poll takes about as long as on the bus. A
  ``silent`` meter does not answer at all (the client times out).

``broken`` makes a meter refuse the registers (exception 0x02, illegal address). ``hold()`` keeps
every answer back until the event it returns is set (a bus busy with a slow transaction: the
poller's thread waits inside a request); ``held`` is set once a request waits.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import threading
import time
from typing import Callable

Curve = Callable[[float], tuple[float, float]]  # seconds since start -> (watts, kWh)


def charge_curve(watts: float = 200.0, taper_at: float = 3600.0, taper_seconds: float = 1800.0,
                 trickle: float = 3.0, kwh0: float = 0.0) -> Curve:
    """Constant power, then a linear taper to a trickle: a lithium battery's CC-CV charge, roughly."""
    def curve(t: float) -> tuple[float, float]:
        if t < taper_at:
            return watts, kwh0 + watts * t / 3.6e6
        into = min(t - taper_at, taper_seconds)
        power = watts - (watts - trickle) * into / taper_seconds
        energy = watts * taper_at + (watts + power) / 2 * into + trickle * max(0.0, t - taper_at - taper_seconds)
        return power, kwh0 + energy / 3.6e6
    return curve


def encode(value: float, type: str, scale: float, word_order: str) -> list[int]:
    raw = value / scale
    packed = {"float32": lambda: struct.pack(">f", raw), "int32": lambda: struct.pack(">i", round(raw)),
              "uint32": lambda: struct.pack(">I", round(raw)), "int16": lambda: struct.pack(">h", round(raw)),
              "uint16": lambda: struct.pack(">H", round(raw))}[type]()
    words = [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]
    return words if word_order == "big" else words[::-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimulatedMeters:
    """``SimulatedMeters({1: curve, 2: curve}, profile)``; ``url`` is ``tcp://127.0.0.1:PORT``.
    ``clock`` gives the curves' time (default: seconds since start, real time)."""

    def __init__(self, curves: dict[int, Curve], profile, clock: Callable[[], float] | None = None,
                 framing: str = "tcp", baud: int | None = None):
        from pymodbus import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.curves = dict(curves)
        self.profile = profile
        started = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - started)
        self.silent: set[int] = set()
        self.broken: set[int] = set()
        self.release: threading.Event | None = None
        self.held = threading.Event()
        self.requests = 0
        self.framing = framing
        self.bridge: PtyBridge | None = None
        if framing == "rtu":
            self.bridge = PtyBridge(baud)
            self.url = self.bridge.client_path
        else:
            self.port = free_port()
            self.url = f"tcp://127.0.0.1:{self.port}"
        size = max(r.address + 2 for r in self._registers().values()) + 1
        devices = [SimDevice(unit, [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
                             action=self._action(unit)) for unit in self.curves]
        self.loop = asyncio.new_event_loop()
        self.server = None
        ready = threading.Event()

        async def start():
            if framing == "rtu":
                self.server = ModbusSerialServer(devices, framer=FramerType.RTU, port=self.bridge.server_path,
                                                 baudrate=baud or 9600)
            else:
                self.server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
            await self.server.serve_forever(background=True)
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="simulated-meters", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the simulated meters' server did not start")

    def _registers(self) -> dict:
        return {name: getattr(self.profile, name) for name in ("voltage", "current", "power", "energy")
                if getattr(self.profile, name) is not None}

    def _action(self, unit: int):
        async def action(func_code, start_address, address, count, registers, values):
            self.requests += 1
            from pymodbus.constants import ExcCodes

            release = self.release
            if release is not None and not release.is_set():
                self.held.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)

            if unit in self.silent:
                if self.framing == "rtu":  # a meter that does not answer: nothing on the wire
                    await asyncio.sleep(3600)
                return ExcCodes.GATEWAY_NO_RESPONSE
            if unit in self.broken:
                return ExcCodes.ILLEGAL_ADDRESS
            watts, kwh = self.curves[unit](self.clock())
            readings = {"power": watts, "energy": kwh, "voltage": 230.0, "current": watts / 230.0}
            for name, register in self._registers().items():
                words = encode(readings[name], register.type, register.scale, self.profile.word_order)
                registers[register.address - start_address:register.address - start_address + len(words)] = words
            return None
        return action

    def hold(self) -> threading.Event:
        """Keep every answer back from now until the returned event is set (at most 30 s)."""
        self.held.clear()
        self.release = threading.Event()
        return self.release

    def close(self) -> None:
        if self.release is not None:
            self.release.set()

        async def cancel_requests():  # a silent meter's request still waiting
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(5)
            asyncio.run_coroutine_threadsafe(cancel_requests(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if self.bridge is not None:
            self.bridge.close()


class PtyBridge:
    """Two pseudo-terminal pairs joined by a thread: what one end writes, the other reads (a null
    modem); with ``baud``, each chunk arrives after its time on the wire."""

    def __init__(self, baud: int | None = None):
        import tty

        self.baud = baud
        self.fds = [*os.openpty(), *os.openpty()]  # client master, client end, server master, server end
        for fd in self.fds:
            tty.setraw(fd)
        self.client_path, self.server_path = os.ttyname(self.fds[1]), os.ttyname(self.fds[3])
        self._wake_r, self._wake_w = os.pipe()
        self.thread = threading.Thread(target=self._run, name="pty-bridge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, server = self.fds[0], self.fds[2]
        while True:
            ready, _, _ = select.select([client, server, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                if self.baud:
                    time.sleep(len(data) * 11 / self.baud)
                os.write(server if fd == client else client, data)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self.thread.join(5)
        for fd in (*self.fds, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
