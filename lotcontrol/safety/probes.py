"""Temperature probes: reading a DS18B20 through the kernel, and the poller that reads them all.

A value of 85.000 °C (power-on reset), a CRC failure, a missing file or a value outside -55…125 °C
is a fault, never a temperature. The poller runs in its own thread and only posts ``Reading``
messages: a 1-Wire read takes about 750 ms and never happens on the controller's loop.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ..config import FireConfig
from ..messages import Reading

RANGE = (-55.0, 125.0)
POWER_ON_RESET = 85.0


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


class ProbePoller:
    """Reads every probe every ``poll_seconds`` in its own thread and posts each ``Reading``.

    ``poll()`` reads them all once; the rig on a simulated clock calls it at the simulated times
    instead of starting the thread.
    """

    def __init__(self, settings: FireConfig, deliver: Callable[[Reading], None], clock: Callable[[], float]):
        self.settings = settings
        self.deliver = deliver
        self.clock = clock
        self.probes = [p for zone in settings.zones for p in zone.probes]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-poller", daemon=True)

    def poll(self) -> None:
        folder = Path(self.settings.w1_path)
        for probe in self.probes:
            self.deliver(read_probe(folder, probe, self.clock()))

    def start(self) -> None:
        if self.probes:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
