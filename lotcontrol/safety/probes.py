"""Temperature probes: reading a DS18B20 through the kernel, and the poller that reads them all.

A value of 85.000 °C (power-on reset), a CRC failure, a missing file or a value outside -55…125 °C
is a fault, never a temperature. The poller runs in its own thread and only posts ``Reading``
messages: a 1-Wire read takes about 750 ms and never happens on the controller's loop.

One poll reads every probe concurrently, so it takes about one conversion, not one per probe:

- **Bulk conversion**, where the kernel offers it: each bus master directory
  (``<w1_path>/w1_bus_master*/therm_bulk_read``) starts a simultaneous conversion of every probe on
  its bus when ``trigger`` is written to it (the write returns once the conversion time has passed;
  reading the file gives ``-1`` while converting, ``1`` when done, ``0`` when nothing is pending).
  Each probe's ``temperature`` file then returns its converted value at once. The poller triggers
  every such bus that exists and is writable, waits until none reads ``-1``, then reads the probes.
  Any error (or no answer within the poll's time) makes that bus "not available" for
  ``BULK_RETRY_SECONDS``: its probes are simply read the other way.
- **Parallel reads** otherwise: every probe is read in its own task of a small thread pool (at most
  ``PARALLEL_READS`` at a time) kept for the poller's life and shut down by ``close()``. The kernel
  releases the bus during the conversion wait of an externally powered probe, so these conversions
  overlap; parasite-powered probes hold the bus while they convert and need the bulk conversion.

Every probe yields exactly one ``Reading`` per poll, delivered in the configured order once the poll
is over (``poll()`` returns only after that): a read that raises is a fault reading, and so is a read
with no answer within ``read_limit()`` (the poll interval, never less than ``MIN_READ_SECONDS``) —
never a temperature, never silence. A read still hanging from an earlier poll is not started again.

Capacity (checked by ``FireConfig`` for ``check-config`` and ``run``): one poll of N probes takes
``ceil(N / PARALLEL_READS) * CONVERSION_SECONDS`` with parallel reads (bulk conversion is faster,
but is not counted on). It must fit in ``fire.poll_seconds`` (or the next poll starts late; below
one conversion, polls simply run back to back, so one conversion is always allowed) and in half of
``fire.stale_seconds`` (a probe stays fresh even when one poll is lost). ``probes_per_poll()`` says
how many probes fit; ``capacity_problem()`` words the refusal.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from ..messages import Reading

if TYPE_CHECKING:  # config imports this module for the capacity model
    from ..config import FireConfig

log = logging.getLogger("lotcontrol")

RANGE = (-55.0, 125.0)
POWER_ON_RESET = 85.0
#: One 12-bit DS18B20 temperature conversion.
CONVERSION_SECONDS = 0.75
#: Probes read at the same time (the poller's threads); the capacity model counts on this many.
PARALLEL_READS = 16
#: A read is given at least this long (a conversion plus the bus traffic around it), whatever the
#: poll interval, before it counts as no answer.
MIN_READ_SECONDS = 1.25
#: A bus whose bulk conversion failed is read probe by probe for this long before it is tried again.
BULK_RETRY_SECONDS = 300.0
#: ``close()`` waits this long for reads still running before it leaves their threads behind.
CLOSE_WAIT_SECONDS = 5.0
BULK_FILE = "therm_bulk_read"


class PollTiming(Protocol):
    poll_seconds: float
    stale_seconds: float


def read_probe(folder: Path, probe: str, now: float) -> Reading:
    """Read a DS18B20 through the kernel: ``temperature`` (millidegrees) or ``w1_slave`` (with CRC)."""
    base = folder / probe
    try:
        if (base / "temperature").exists():
            text = (base / "temperature").read_text().strip()
            milli = int(text)
        else:
            lines = (base / "w1_slave").read_text().splitlines()
            if len(lines) < 2 or not lines[0].strip().endswith("YES"):
                return Reading(probe, None, "CRC check failed", now)
            milli = int(lines[1].rsplit("t=", 1)[1])
    except FileNotFoundError:
        return Reading(probe, None, "probe missing (no file in the 1-Wire tree)", now)
    except (OSError, ValueError, IndexError) as exc:
        return Reading(probe, None, f"unreadable ({exc.__class__.__name__})", now)
    celsius = milli / 1000.0
    if celsius == POWER_ON_RESET:
        return Reading(probe, None, "85.000 °C power-on reset value", now)
    if not RANGE[0] <= celsius <= RANGE[1]:
        return Reading(probe, None, f"{celsius:.3f} °C is outside -55…125 °C", now)
    return Reading(probe, celsius, None, now)


# --- the capacity model (pure) ---

def poll_duration(count: int) -> float:
    """Seconds one poll of ``count`` probes takes with parallel reads."""
    return math.ceil(count / PARALLEL_READS) * CONVERSION_SECONDS


def poll_budget(settings: PollTiming) -> tuple[float, str]:
    """How long one poll of all probes may take, and which setting limits it.

    At most ``poll_seconds`` (but one conversion is always allowed: polls cannot be faster) and at
    most half of ``stale_seconds``.
    """
    by_poll = max(settings.poll_seconds, CONVERSION_SECONDS)
    by_stale = settings.stale_seconds / 2
    return (by_poll, "poll_seconds") if by_poll <= by_stale else (by_stale, "stale_seconds")


def probes_per_poll(settings: PollTiming) -> int:
    """How many probes one controller can read within the budget of ``poll_budget``."""
    budget, _ = poll_budget(settings)
    return int(budget / CONVERSION_SECONDS + 1e-9) * PARALLEL_READS


def capacity_problem(settings: PollTiming, count: int) -> str | None:
    """Why ``count`` probes cannot all be read in time with these settings, or None when they can."""
    fit = probes_per_poll(settings)
    if count <= fit:
        return None
    _, limit = poll_budget(settings)
    if limit == "poll_seconds":
        within = f"fire.poll_seconds ({settings.poll_seconds:g} s"
        if settings.poll_seconds < CONVERSION_SECONDS:
            within += f", at least one {CONVERSION_SECONDS:g} s conversion"
        within += ")"
        remedy = "raise fire.poll_seconds or split the probes over more controllers"
    else:
        within = f"half of fire.stale_seconds ({settings.stale_seconds:g} s)"
        remedy = f"raise fire.stale_seconds to at least {2 * poll_duration(count):g} s"
        if fit:
            remedy += " or split the probes over more controllers"
    what = f"{count} probes cannot all be read" if count != 1 else "1 probe cannot be read"
    return (f"{what} within {within}: at most {fit} fit "
            f"({PARALLEL_READS} read in parallel, {CONVERSION_SECONDS:g} s each); {remedy}")


def read_limit(settings: PollTiming) -> float:
    """How long one poll waits for its reads: the poll interval, never less than ``MIN_READ_SECONDS``."""
    return max(settings.poll_seconds, MIN_READ_SECONDS)


# --- bulk conversion ---

def bulk_read_files(folder: Path) -> list[Path]:
    """The bus masters' ``therm_bulk_read`` files under ``folder`` that exist and are writable."""
    try:
        found = sorted(folder.glob(f"w1_bus_master*/{BULK_FILE}"))
    except OSError:
        return []
    return [path for path in found if os.access(path, os.W_OK)]


def trigger_bulk_read(path: Path, deadline: float) -> None:
    """Convert every probe on one bus at once; return when done, raise on any error or at ``deadline``."""
    with open(path, "w") as file:
        file.write("trigger")
    while True:
        with open(path) as file:
            state = file.read().strip()
        if state != "-1":
            return
        if time.monotonic() >= deadline:
            raise TimeoutError("still converting")
        time.sleep(0.01)


class ProbePoller:
    """Reads every probe every ``poll_seconds`` in its own thread and posts each ``Reading``.

    ``poll()`` reads them all once, concurrently (see the module's docstring); the rig on a
    simulated clock calls it at the simulated times instead of starting the thread.
    """

    def __init__(self, settings: FireConfig, deliver: Callable[[Reading], None], clock: Callable[[], float]):
        self.settings = settings
        self.deliver = deliver
        self.clock = clock
        self.probes = [p for zone in settings.zones for p in zone.probes]
        self.bulk_failed: dict[Path, float] = {}  # bus -> monotonic time its bulk conversion failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-poller", daemon=True)
        self._polling = threading.Lock()
        self._closed = False
        self._running: dict[str, concurrent.futures.Future] = {}  # probe -> its latest read
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=PARALLEL_READS, thread_name_prefix="probe-read")

    def poll(self) -> None:
        """Read every probe once and deliver one ``Reading`` each; returns after they were delivered."""
        if not self.probes:
            return
        with self._polling:
            limit = read_limit(self.settings)
            deadline = time.monotonic() + limit
            folder = Path(self.settings.w1_path)
            readings: dict[str, Reading] = {}
            if not self._closed:
                self._bulk_convert(folder, deadline)
            reads: dict[str, concurrent.futures.Future] = {}
            for probe in self.probes:
                earlier = self._running.get(probe)
                if earlier is not None and not earlier.done():
                    readings[probe] = Reading(probe, None, "no answer (an earlier read is still running)", self.clock())
                    continue
                try:
                    reads[probe] = self._running[probe] = self._executor.submit(self._read, folder, probe)
                except RuntimeError:  # closed
                    readings[probe] = Reading(probe, None, "not read (the poller is closed)", self.clock())
            concurrent.futures.wait(reads.values(), timeout=max(0.0, deadline - time.monotonic()))
            for probe, future in reads.items():
                if future.done() and not future.cancelled():
                    readings[probe] = future.result()
                else:
                    future.cancel()  # still queued: never starts; running: its answer is dropped
                    readings[probe] = Reading(probe, None, f"no answer within {limit:g} s", self.clock())
            for probe in self.probes:
                self.deliver(readings[probe])

    def _read(self, folder: Path, probe: str) -> Reading:
        try:
            return read_probe(folder, probe, self.clock())
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the probe reports a fault
            return Reading(probe, None, f"read failed ({exc.__class__.__name__}: {exc})", self.clock())

    def _bulk_convert(self, folder: Path, deadline: float) -> list[Path]:
        """Trigger the bulk conversion on every bus that offers it; the buses where it worked."""
        now = time.monotonic()
        buses = [b for b in bulk_read_files(folder) if now - self.bulk_failed.get(b, -math.inf) >= BULK_RETRY_SECONDS]
        if not buses:
            return []
        try:
            triggers = {bus: self._executor.submit(trigger_bulk_read, bus, deadline) for bus in buses}
        except RuntimeError:  # closed
            return []
        concurrent.futures.wait(triggers.values(), timeout=max(0.0, deadline - time.monotonic()))
        converted = []
        for bus, future in triggers.items():
            if not future.done():
                future.cancel()
                problem = "no answer"
            elif future.cancelled() or future.exception() is not None:
                problem = repr(future.exception()) if not future.cancelled() else "cancelled"
            else:
                converted.append(bus)
                self.bulk_failed.pop(bus, None)
                continue
            if bus not in self.bulk_failed:
                log.warning("1-Wire bulk conversion on %s is not available (%s): reading its probes one "
                            "by one, in parallel", bus.parent.name, problem)
            self.bulk_failed[bus] = time.monotonic()
        return converted

    def start(self) -> None:
        if self.probes:
            self._thread.start()

    def _run(self) -> None:
        interval = self.settings.poll_seconds
        due = time.monotonic() + interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self.poll()
            due = max(due + interval, time.monotonic())  # a late poll is followed at once, never twice

    def close(self) -> None:
        """Stop polling and shut the read threads down. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=read_limit(self.settings) + CLOSE_WAIT_SECONDS)
        self._closed = True
        running = [f for f in self._running.values() if not f.done()]
        if running:
            concurrent.futures.wait(running, timeout=CLOSE_WAIT_SECONDS)
        hanging = any(not f.done() for f in running)
        if hanging:
            log.warning("a 1-Wire probe read is still hanging; its thread is left behind")
        self._executor.shutdown(wait=not hanging, cancel_futures=True)
