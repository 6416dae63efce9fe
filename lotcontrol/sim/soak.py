"""A year at the lot on the simulated clock (``lotcontrol rig soak --days N``).

The real controller, policy, fire watch, charging logic, writer, SQLite database (in a data
directory on a real disk), retention, safety latch and hash chain, driven day after day by a model
of the lot: 1,400 residents on file and about 2,000 passages a day in two peaks (mostly residents,
some suspended, some strangers), charging sessions on 40 metered ports, a fire drill a month, a real
pre-alarm now and then (a probe warming up), camera and broker outages, and about once a week a
crash at a random instant (the controller abandoned as a SIGKILL leaves it: nothing flushed, nothing
stopped) followed by a new controller on the same data directory.

What is simulated, and why (365 days must run in minutes on two cores): the vision worker is not
run, its decisions (``Passage``, ``CameraStatus``) enter the inbox as it would send them; meter
readings enter as the meter pollers would post them (``MeterReading``), not over Modbus; the MQTT
link's state changes enter as the link reports them (``Notice``), with no broker. The rig's camera
scenarios and its pymodbus scenarios run those paths for real. The probes are read by the real
probe poller from a fake 1-Wire tree. Readings that change nothing (an idle port's meter, a probe at
22 °C) come less often than a real poll would take them (``IDLE_READING_SECONDS``): the controller
is given ``meter_lost_polls`` polls and ``stale_seconds`` for them, as configured here.

The controller's loop takes a turn when a message arrives or at its next deadline (as between its
idle ticks). Writes happen on this thread (as in the rig) at the instants the writer's thread would
make them (``Writer.due_at``, ``Writer.write_due``: an alarm at once, the rest
``events.commit_seconds`` after the first job waiting), with no thread in between.

Figures per day: the database (file, WAL and shared memory), the snapshot folder (its files counted
each day, their sizes read on metered days and the last: every snapshot sent is the same JPEG), the
process's resident memory (the controller's process; there is no worker process here), the bytes
written to the data directory on metered days (``/proc/self/io`` ``write_bytes``: what the process
sent to the disk, which a tmpfs does not count, so the data directory is on a real disk), events
acknowledged and lost, restarts, hash chain checks and latched alarms found standing after a restart.

Metered days (days 1-3 and every ``meter_every``-th) are written as the product writes them
(``synchronous=FULL``, each commit fsynced); the others commit the same transactions without fsync
(``synchronous=OFF`` on the writer's connection), since a SIGKILL leaves the page cache to the next
process either way; their bytes written are not taken (``Soak.synchronous``). The fsyncs are most of
what a day costs here.

An event is *acknowledged* once the writer has committed it (its transaction returned; with
``synchronous=FULL`` that means fsynced). An acknowledged event missing from the database after a
crash is *lost*; events still waiting in the writer's queue when the process dies were never
acknowledged and are counted apart (``in_flight``): at most ``commit_seconds`` of ordinary events,
never an alarm, which is committed before the loop goes on to the next message.
"""

from __future__ import annotations

import datetime as dt
import heapq
import io
import math
import mmap
import os
import random
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LotControlError

RESIDENTS = 1400
PASSAGES_PER_DAY = 2000
PORTS = 40
METER_EVERY = 30  # the bytes written are measured on days 1-3 and every 30th (``--meter-every``)
SESSIONS_PER_PORT_PER_DAY = 1.2
IDLE_READING_SECONDS = 300.0  # an idle meter (0 W, total unchanged) and a cool probe: read this often
BUSY_READING_SECONDS = 60.0  # a port charging, a probe warming: every poll (charging.poll_seconds)
DAY = 86400.0
# The write budget of an industrial microSD card, and the goal derived from it (docs/architecture.md,
# "Writes and the SD card"): an 8 GB pSLC card rated for 30,000 program/erase cycles holds 240 TB of
# flash writes; small synchronous writes (a commit of a few 4 KB pages) cost the card far more flash
# than their size: a write amplification of 32 is assumed; over 10 years, with a safety factor of 10
# for the system's other writes (the OS, its journal and logs, updates) and the uncertainty
CARD_BYTES, CARD_CYCLES, WRITE_AMPLIFICATION = 8e9, 30_000, 32
CARD_YEARS, SAFETY_FACTOR = 10, 10
GOAL_BYTES_PER_DAY = CARD_BYTES * CARD_CYCLES / WRITE_AMPLIFICATION / (CARD_YEARS * 365) / SAFETY_FACTOR  # 205 MB
SPRINKLERS = {"east": 5, "west": 18}
CHARGERS = {"east": 23, "west": 25}
PROBES = {"east": "28-0000000000e1", "west": "28-0000000000f1"}
SIREN = 22
GPIO_RELAYS = [6, 12, 13, 16, 19, 20, 21, 26]


class SoakError(LotControlError, ValueError):
    """A soak that cannot be run as asked."""


def soak_config(keep_days: int, retention_days: int, commit_seconds: float, tree: Path,
                ports_count: int = PORTS) -> dict[str, Any]:
    """The soaked lot: two fire zones with a sprinkler, a probe and a contactor each, a siren, 40
    metered ports (8 on GPIOs, 32 on MCP23017s), snapshots on."""
    ports = []
    for i in range(ports_count):
        zone = "east" if i < ports_count // 2 else "west"
        switch = ({"relay_pin": GPIO_RELAYS[i]} if i < len(GPIO_RELAYS) else
                  {"expander": {"bus": 1, "address": 0x20 + (i - len(GPIO_RELAYS)) // 16,
                                "pin": (i - len(GPIO_RELAYS)) % 16}})
        ports.append({"id": f"P{i + 1:02d}", "zone": zone, "bay": f"{zone}-{i + 1}", **switch,
                      "meter": {"bus": "rs485", "unit": i + 1}})
    return {
        "events": {"snapshots": True, "retention_days": retention_days, "keep_days": keep_days,
                   "commit_seconds": commit_seconds},
        "fire": {"siren_pin": SIREN, "w1_path": str(tree), "poll_seconds": 10.0,
                 "stale_seconds": IDLE_READING_SECONDS + 60.0,
                 "zones": [{"name": zone, "sprinklers": [SPRINKLERS[zone]], "probes": [PROBES[zone]],
                            "charger_pin": CHARGERS[zone]} for zone in ("east", "west")]},
        "charging": {"poll_seconds": BUSY_READING_SECONDS, "meter_lost_polls": 20,
                     "buses": [{"name": "rs485", "port": "/dev/ttyUSB0"}], "ports": ports},
    }


@dataclass
class DayFigures:
    day: int
    passages: int
    events: int  # events committed that day
    commits: int
    database_bytes: int  # lotcontrol.db + -wal + -shm at the end of the day
    snapshot_bytes: int
    snapshots: int
    rss_bytes: int
    written_bytes: int | None  # written to the disk by this process that day (None: not a metered day)
    restarts: int


@dataclass
class Crash:
    day: int
    at: str  # simulated wall time
    acknowledged: int  # events acknowledged since the last check
    lost: int
    in_flight: int  # handed to the writer, not yet committed: gone with the process (not acknowledged)
    chain_events: int
    chain_ok: bool
    latched_before: list[str]
    latched_after: list[str]


@dataclass
class SoakReport:
    days: int
    seed: int
    data: str
    disk: str  # the file system the data directory is on
    commit_seconds: float
    keep_days: int
    retention_days: int
    meter_every: int = 1
    scale: float = 1.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    goal_bytes_per_day: float = GOAL_BYTES_PER_DAY
    rows: list[DayFigures] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    final_chain_events: int = 0
    final_chain_ok: bool = False
    drills: int = 0
    prealarms: int = 0
    camera_outages: int = 0
    broker_outages: int = 0
    sessions: int = 0

    @property
    def restarts(self) -> int:
        return len(self.crashes)

    @property
    def events_lost(self) -> int:
        return sum(c.lost for c in self.crashes)

    @property
    def chain_verified(self) -> bool:
        return self.final_chain_ok and all(c.chain_ok for c in self.crashes)

    @property
    def latch_kept(self) -> bool:
        return all(set(c.latched_before) <= set(c.latched_after) for c in self.crashes)

    @property
    def metered(self) -> list[DayFigures]:
        """The days whose bytes written were measured (written as the product writes: fsynced)."""
        return [r for r in self.rows if r.written_bytes is not None]

    def written_per_day(self, skip: int = 1) -> float:
        """Mean bytes written a metered day, after the first ``skip`` days (the first fills the empty files)."""
        rows = [r for r in self.metered if r.day > skip] or self.metered
        return sum(r.written_bytes for r in rows) / max(1, len(rows))

    def summary(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "days": self.days, "seconds": round(self.seconds, 1), "cpu_seconds": round(self.cpu_seconds, 1),
            "scale": self.scale, "passages": sum(r.passages for r in rows),
            "events": sum(r.events for r in rows), "bikes_plugged_in": self.sessions,
            "drills": self.drills, "prealarms": self.prealarms, "camera_outages": self.camera_outages,
            "broker_outages": self.broker_outages,
            "restarts": self.restarts, "events_lost": self.events_lost,
            "events_in_flight_at_crashes": sum(c.in_flight for c in self.crashes),
            "chain_verified": self.chain_verified, "final_chain_events": self.final_chain_events,
            "latched_alarms_restored": sum(len(c.latched_before) for c in self.crashes), "latch_kept": self.latch_kept,
            "database_bytes_max": max((r.database_bytes for r in rows), default=0),
            "snapshot_bytes_max": max((r.snapshot_bytes for r in rows), default=0),
            "rss_bytes_first": rows[0].rss_bytes if rows else 0,
            "rss_bytes_max": max((r.rss_bytes for r in rows), default=0),
            "rss_bytes_last": rows[-1].rss_bytes if rows else 0,
            "written_bytes_per_day": round(self.written_per_day()),
            "metered_days": [r.day for r in self.metered],
            "goal_bytes_per_day": round(self.goal_bytes_per_day),
            "commits_per_day": round(sum(r.commits for r in rows[1:] or rows) / max(1, len(rows[1:] or rows))),
        }

    def as_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "settings": {"commit_seconds": self.commit_seconds,
                "keep_days": self.keep_days, "retention_days": self.retention_days, "seed": self.seed,
                "meter_every": self.meter_every, "scale": self.scale,
                "data": self.data, "disk": self.disk},
                "days": [asdict(r) for r in self.rows], "crashes": [asdict(c) for c in self.crashes]}


def _written() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _disk(path: Path) -> str:
    """The file system type of the mount holding ``path`` (/proc/self/mounts)."""
    best, kind = "", "unknown"
    target = str(path.resolve())
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mount = parts[1]
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, kind = mount, parts[2]
    return kind


def _folder_size(folder: Path, each: int | None = None) -> tuple[int, int]:
    """The bytes and the number of files in ``folder``: each file's size read (a stat of each: a
    month of snapshots is 60,000), or, given ``each``, the files counted (a listing) at that size."""
    total = count = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                total += entry.stat().st_size if each is None else each
                count += 1
    except FileNotFoundError:
        pass
    return total, count


def _snapshot_jpeg() -> bytes:
    """A face crop as the worker sends it with events.snapshots on: 150 x 150 pixels, JPEG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(90, 170, (150, 150, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def _leaked(n: int) -> mmap.mmap:
    """``n`` bytes of memory the process holds, always new resident pages: an anonymous mapping,
    every page written. Not from the heap: ``b"x" * n`` reuses whatever the allocator has free, and in
    a test worker that earlier tests left with a fragmented heap the soak then saw 1 MB of growth for
    40 MB leaked (``bytearray(n)``, calloc'd pages never touched, is never resident at all)."""
    block = mmap.mmap(-1, n)
    block.write(b"\xa5" * n)
    return block


class Meter:
    """One port's meter as the soak models it: the bike's battery takes ``need`` Wh at ``watts``,
    the last tenth tapering to a trickle; energy counts only while the port's relay is on."""

    def __init__(self) -> None:
        self.kwh = 0.0
        self.need = 0.0  # Wh still to charge; 0: nothing plugged in that draws
        self.full = 0.0
        self.watts = 0.0
        self.plugged = False
        self.last = 0.0
        self.next = 0.0

    def plug(self, rng: random.Random) -> None:
        self.plugged = True
        self.watts = rng.uniform(150.0, 400.0)
        self.full = self.need = rng.uniform(200.0, 900.0)

    def power(self, on: bool) -> float:
        if not (on and self.plugged):
            return 0.0
        if self.need <= 0:
            return 3.0  # a full battery's charger: a trickle
        return self.watts if self.need > 0.1 * self.full else max(3.0, self.watts * self.need / (0.1 * self.full))

    def read(self, now: float, on: bool) -> tuple[float, float]:
        watts = self.power(on)
        energy = watts * (now - self.last) / 3600.0  # Wh since the last reading
        self.last = now
        self.kwh += energy / 1000.0
        if self.plugged and self.need > 0:
            self.need = max(0.0, self.need - energy)
        return watts, self.kwh


class Soak:
    """``Soak(days, data).run()``; the days metered: the first ``meter_first`` and every
    ``meter_every``-th (0 or 1: every day; None: no other; for the tests, whose fsyncs are most of
    their time); ``lose`` (for the tests) deletes the last acknowledged event at
    the first crash, as a writer that acknowledged what it had not written would; ``leak`` adds that
    many bytes to a list kept in memory at every passage."""

    def __init__(self, days: int, data: Path | None = None, *, seed: int = 1, keep_days: int = 30,
                 retention_days: int = 30, commit_seconds: float | None = None, meter_every: int | None = METER_EVERY,
                 meter_first: int = 3, scale: float = 1.0, lose: bool = False, leak: int = 0, progress=None):
        from ..config import EventsConfig

        if days < 1:
            raise SoakError(f"--days must be at least 1, not {days}")
        if meter_every is not None and meter_every < 0:
            raise SoakError(f"--meter-every must be 0 (every day) or more, not {meter_every}")
        if not 0.01 <= scale <= 1.0:
            raise SoakError(f"--scale must be between 0.01 and 1, not {scale:g}")
        self.meter_every, self.meter_first, self.scale = meter_every, meter_first, scale
        self.residents_count = max(50, round(RESIDENTS * scale))
        self.passages_per_day = PASSAGES_PER_DAY * scale
        self.ports_count = max(10, round(PORTS * scale))  # 8 on GPIOs, the rest on an expander
        self.days, self.data, self.seed = days, data, seed
        self.keep_days, self.retention_days = keep_days, retention_days
        self.commit_seconds = EventsConfig().commit_seconds if commit_seconds is None else commit_seconds
        self.lose, self.leak, self.leaked = lose, leak, []
        self.progress = progress
        self.rng = random.Random(seed)

    # --- the run ---

    def run(self) -> SoakReport:
        if self.data is not None:
            self.data.mkdir(parents=True, exist_ok=True)
            if any(self.data.iterdir()):
                raise SoakError(f"soak data directory {self.data} is not empty: give an empty or new folder")
            return self._run(self.data)
        # a real disk: /proc/self/io counts nothing written to a tmpfs (often /tmp)
        base = Path("/var/tmp") if Path("/var/tmp").is_dir() else None
        with tempfile.TemporaryDirectory(prefix="lotcontrol-soak-", dir=base) as tmp:
            return self._run(Path(tmp))

    def _run(self, root: Path) -> SoakReport:
        from ..config import parse_config, prepare_data_dir
        from ..store import Store
        from .clock import SimClock
        from .pins import simulated_factory

        started, cpu = time.monotonic(), time.process_time()
        tree = root / "w1"
        for probe in PROBES.values():
            (tree / probe).mkdir(parents=True, exist_ok=True)
            (tree / probe / "temperature").write_text("22000")
        self.tree = tree
        try:
            self.config = parse_config(soak_config(self.keep_days, self.retention_days, self.commit_seconds, tree,
                                                   self.ports_count), source="the soak's lot")
        except LotControlError as exc:
            raise SoakError(str(exc)) from None
        self.data_dir = prepare_data_dir(root / "data")
        report = SoakReport(self.days, self.seed, str(self.data_dir), _disk(self.data_dir), self.commit_seconds,
                            self.keep_days, self.retention_days, self.meter_every or 0, self.scale)
        self.report = report
        with Store.in_dir(self.data_dir) as store, store.transaction():
            for i in range(self.residents_count):
                store.add_resident(f"Resident {i + 1:04d}", unit=f"{1 + i // 40}-{1 + i % 40:02d}")
        self.clock = SimClock(0.0, dt.datetime(2027, 1, 1, 0, 0, tzinfo=dt.timezone.utc))
        self.factory = simulated_factory(clock=self.clock.now)
        self.jpeg = _snapshot_jpeg()
        self.meters = {f"P{i + 1:02d}": Meter() for i in range(self.ports_count)}
        self.heat: dict[str, list[tuple[float, float]]] = {}  # zone -> (time, °C) of a warming probe
        self.celsius: dict[str, float] = {}
        self.agenda: list[tuple[float, int, str, Any]] = []
        self._n = 0
        self.track = 1
        self.camera_ok = True
        self.probe_chain = 0
        self.later(BUSY_READING_SECONDS, "poll")  # the meters, every poll from now on
        self.later(self.rng.uniform(0, IDLE_READING_SECONDS), "probe", 0)
        self.start_lot()
        ids = sorted(self.lot.controller.writer.directory.by_id)
        self.suspended = set(self.rng.sample(ids, max(3, round(40 * self.scale))))
        with Store.in_dir(self.data_dir) as store:
            for resident_id in self.suspended:
                store.set_status(self.lot.controller.writer.directory.by_id[resident_id].name, "suspended")
        self.lot.controller.writer.refresh_directory()
        self.residents = [i for i in ids if i not in self.suspended]
        self.suspended_list = sorted(self.suspended)
        try:
            for day in range(self.days):
                self.day(day)
            self.settle(self.clock.now())
            self.lot.controller.writer.flush()
            count, broken = self.lot.controller.writer.store.verify_events()
            report.final_chain_events, report.final_chain_ok = count, broken is None
        finally:
            self.lot.stop()
            self.factory.reset()
        report.seconds, report.cpu_seconds = time.monotonic() - started, time.process_time() - cpu
        return report

    def start_lot(self) -> None:
        from ..app import Lot

        self.lot = Lot(self.config, self.data_dir, pin_factory=self.factory, clock=self.clock).start()
        writer = self.lot.controller.writer
        writer.flush()  # opens the database and checks it, as the writer thread does first
        self.synchronous()
        self.acked_id, self.acked_hash, self.acked = self._last_event(writer.store.db), None, 0
        self.acked_hash = self._hash_of(writer.store.db, self.acked_id)
        self.commits_seen = writer.commits

    @staticmethod
    def _last_event(db) -> int:
        row = db.execute("SELECT max(id) FROM events").fetchone()
        return row[0] or 0

    @staticmethod
    def _hash_of(db, event_id: int) -> str | None:
        row = db.execute("SELECT hash FROM events WHERE id = ?", [event_id]).fetchone()
        return row[0] if row else None

    # --- one day ---

    def later(self, at: float, kind: str, payload: Any = None) -> None:
        self._n += 1
        heapq.heappush(self.agenda, (at, self._n, kind, payload))

    def plan(self, day: int) -> None:
        """The day's passages, charging sessions, outages, drill, pre-alarm and crash."""
        rng, start = self.rng, day * DAY
        n = _poisson(rng, self.passages_per_day)
        for _ in range(n):  # two peaks: leaving in the morning, coming home in the evening; some all day
            pick = rng.random()
            hour = (rng.gauss(8.0, 1.0) if pick < 0.45 else rng.gauss(18.0, 1.5) if pick < 0.85
                    else rng.uniform(6.0, 23.0)) % 24
            self.later(start + hour * 3600, "passage")
        for port in self.meters:
            for _ in range(_poisson(rng, SESSIONS_PER_PORT_PER_DAY)):
                self.later(start + rng.uniform(7.0, 22.0) * 3600, "plug", port)
        if day % 30 == 2:  # a fire drill a month, staff reset it ten minutes later
            self.later(start + 10.5 * 3600, "drill", "east" if (day // 30) % 2 == 0 else "west")
            self.report.drills += 1
            if day == 2:  # the first drill has a crash in it: the latched alarm must come back
                self.later(start + 10.5 * 3600 + 300, "crash")
        if day % 45 == 20:  # a real pre-alarm: a probe warms up to 53 °C and cools again
            zone = rng.choice(sorted(PROBES))
            t0 = start + rng.uniform(12.0, 16.0) * 3600
            curve = [(t0 + i * 60, 22.0 + 31.0 * min(1.0, i / 15)) for i in range(16)]
            curve += [(t0 + (16 + i) * 60, 53.0 - 31.0 * min(1.0, i / 20)) for i in range(21)]
            self.later(t0, "heat", (zone, curve))
            self.report.prealarms += 1
        if rng.random() < 2 / 30:  # camera outages: a few a month, 10 min to 2 h
            t0 = start + rng.uniform(0, DAY - 7200)
            self.later(t0, "camera", False)
            self.later(t0 + rng.uniform(600, 7200), "camera", True)
            self.report.camera_outages += 1
        if rng.random() < 2 / 30:  # broker outages
            t0 = start + rng.uniform(0, DAY - 7200)
            self.later(t0, "broker", False)
            self.later(t0 + rng.uniform(300, 7200), "broker", True)
            self.report.broker_outages += 1
        if day % 7 == 5:  # about once a week, at a random instant of the day
            self.later(start + rng.uniform(0, DAY), "crash")

    def day(self, day: int) -> None:
        from ..store import DB_NAME

        self.plan(day)
        end = (day + 1) * DAY
        every = self.meter_every
        self.metering = day < self.meter_first or (every is not None and (every <= 1 or (day + 1) % every == 0))
        self.synchronous()
        written0, events0, commits0 = _written(), self._events_total(), self._commits_total()
        passages0, restarts0 = self._passages, len(self.report.crashes)
        while self.agenda and self.agenda[0][0] < end:
            t = self.agenda[0][0]
            deadline, due = self.wakes()
            if deadline is not None and deadline < t and (due is None or deadline <= due):
                self.settle(deadline)
                continue
            if due is not None and due < t:  # the writer's thread, on its own: no turn of the loop
                self.clock.advance_to(due)
                self.write()
                continue
            _, _, kind, payload = heapq.heappop(self.agenda)
            self.clock.advance_to(max(t, self.clock.now()))
            self.act(kind, payload, self.clock.now())
            if not self.lot.controller.inbox.empty():  # the loop wakes for a message (or a deadline: above)
                self.settle(self.clock.now())
        self.settle(end)
        self.factory_histories()
        size = sum((self.data_dir / name).stat().st_size for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm")
                   if (self.data_dir / name).exists())
        # every snapshot the soak sends is the same JPEG, written whole: its files are counted each day
        # and their sizes read on the metered days and the last
        snap_bytes, snaps = _folder_size(self.data_dir / "snapshots",
                                         None if self.metering or day == self.days - 1 else len(self.jpeg))
        row = DayFigures(day + 1, self._passages - passages0, self._events_total() - events0,
                         self._commits_total() - commits0, size, snap_bytes, snaps, _rss(),
                         _written() - written0 if self.metering else None, len(self.report.crashes) - restarts0)
        self.report.rows.append(row)
        if self.progress is not None:
            self.progress(row)

    _passages = 0
    _events_before = 0  # events committed by controllers that crashed
    _commits_before = 0

    def _events_total(self) -> int:
        return self._events_before + self.lot.controller.writer.events_written

    def _commits_total(self) -> int:
        return self._commits_before + self.lot.controller.writer.commits

    def factory_histories(self) -> None:
        """The simulator keeps every pin change for the tests to read; a year of them is not the
        controller's memory: cleared once a day."""
        for pin in self.factory.pins.values():
            pin.clear_states()  # gpiozero's own list of states and the simulator's history: from the state now
        for bus in self.factory.i2c.buses.values():
            del bus.history[:]

    metering = True

    def synchronous(self) -> None:
        """A metered day is written as the product writes (``synchronous=FULL``: every commit
        fsynced), its files first flushed so that what it dirties is counted (``write_bytes`` counts
        a page when it becomes dirty). Another day, the writer's connection commits the same
        transactions with ``synchronous=OFF``: no fsync, the same pages in the page cache, which a
        SIGKILL leaves to the next process as it does fsynced ones (the crash checks are the same),
        but its bytes written would read low (a page dirtied again before it is written back counts
        once), so they are not taken."""
        store = self.lot.controller.writer.store
        if store is None:
            return
        store.db.execute(f"PRAGMA synchronous={'FULL' if self.metering else 'OFF'}")
        if self.metering:
            from ..store import DB_NAME

            for name in (DB_NAME, DB_NAME + "-wal"):
                try:
                    fd = os.open(self.data_dir / name, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def wakes(self) -> tuple[float | None, float | None]:
        """When the lot next has something to do with no message: the controller's next deadline (the
        gate closing, a debounce, a session's timer), and the writer's commit falling due (its thread
        waits ``commit_seconds`` for others to share a commit)."""
        c, now = self.lot.controller, self.clock.now()
        deadline = c.next_deadline()
        due = c.writer.due_at()
        return (None if deadline is None or deadline <= now else deadline,  # past: handled at its turn
                None if due is None else max(due, now))

    def settle(self, t: float) -> None:
        """The controller's turn at ``t``, then what is due on the disk (the writer's decision)."""
        c = self.lot.controller
        if t > self.clock.now():
            self.clock.advance_to(t)
        c.step(self.clock.now())
        self.write()  # the expanders' writer threads run meanwhile: the relays' logical state is the controller's
        if c.faces_held:  # the writer has read the residents again for them: decided now, as the loop's next tick would
            c.step(self.clock.now())
            self.write()
        c.latch.flush()
        c.port_holds.flush()
        c.presence_file.flush()

    def write(self) -> None:
        """What is due on the disk now (the writer's decision), and what it acknowledged."""
        c = self.lot.controller
        c.writer.write_due()
        if c.writer.commits != self.commits_seen:  # acknowledged: committed (and fsynced)
            self.commits_seen = c.writer.commits
            self.acked_id = self._last_event(c.writer.store.db)
            self.acked_hash = None  # read at the crash, from the same connection, before it dies

    # --- what happens ---

    def act(self, kind: str, payload: Any, now: float) -> None:
        from ..messages import CameraStatus, Command, Notice, Passage

        c = self.lot.controller
        if kind == "passage":
            if not self.camera_ok:
                return  # nobody is seen while the camera is out
            self._passages += 1
            pick = self.rng.random()
            if pick < 0.90:
                resident, outcome, reason, distance = self.rng.choice(self.residents), "grant", None, 0.32
            elif pick < 0.93:
                resident, outcome, reason, distance = self.rng.choice(self.suspended_list), "grant", None, 0.35
            else:
                resident, outcome, reason, distance = None, "unknown", "no_match", 0.68
            c.inbox.put(Passage(self.track, outcome, resident, reason, distance, 4, now - 0.6, now, 0.3, self.jpeg))
            self.track += 1
            if self.leak:
                self.leaked.append(_leaked(self.leak))
        elif kind == "plug":
            meter = self.meters[payload]
            if meter.plugged:
                return  # the bay is taken
            meter.plug(self.rng)
            if c.charging.ports[payload].state != "ready":  # off since its last session: the resident enables it
                c.inbox.put(Command("charging.enable", {"port": payload}))
            self.report.sessions += 1
        elif kind == "poll":  # one poll of the bus: every meter of a port charging, the idle ones less often
            from ..messages import MeterReading

            idle_too = now % IDLE_READING_SECONDS < BUSY_READING_SECONDS
            for port_id, meter in self.meters.items():
                if not (meter.plugged or idle_too):
                    continue
                on = bool(c.charging.relay_on(port_id))
                watts, kwh = meter.read(now, on)
                c.inbox.put(MeterReading(port_id, watts, kwh, 230.0, watts / 230.0, None, now))
                state = c.charging.ports[port_id].state
                if meter.plugged and (state not in ("ready", "charging") or (meter.need <= 0 and state != "charging")):
                    # its session over and the port switched off (full to the port's eye while the battery
                    # trickles its last watt-hours, the timer, no load), or full: the bike is taken away,
                    # the bay is free again (kept plugged, a bay took no bike again for the rest of the run)
                    meter.plugged = False
            self.later(now + BUSY_READING_SECONDS, "poll")
        elif kind == "probe":  # one poll of every probe by the real poller; a chain of polls, one at a time
            if payload != self.probe_chain:
                return  # a pre-alarm's heat started a new chain, read at every poll
            for zone in PROBES:
                celsius = 22.0
                curve = self.heat.get(zone)
                if curve:
                    while len(curve) > 1 and curve[1][0] <= now:
                        curve.pop(0)
                    celsius = curve[0][1]
                    if len(curve) == 1 and now >= curve[0][0]:
                        del self.heat[zone]
                if celsius != self.celsius.get(zone, 22.0):  # the kernel's file, as the probe reads now
                    (self.tree / PROBES[zone] / "temperature").write_text(str(int(celsius * 1000)))
                    self.celsius[zone] = celsius
            c.poller.poll()  # the real poller reads every probe of the tree
            self.later(now + (self.config.fire.poll_seconds if self.heat else IDLE_READING_SECONDS), "probe", payload)
        elif kind == "heat":
            zone, curve = payload
            self.heat[zone] = list(curve)
            self.probe_chain += 1
            self.later(now, "probe", self.probe_chain)
        elif kind == "drill":
            c.inbox.put(Command("fire.drill", {"zone": payload}))
            self.later(now + 600, "reset")
        elif kind == "reset":
            self.lot.controller.inbox.put(Command("fire.reset"))
        elif kind == "camera":
            self.camera_ok = payload
            c.inbox.put(CameraStatus(payload, "the camera delivers frames again" if payload else
                                     "no frame from the camera for 5 s"))
        elif kind == "broker":
            c.inbox.put(Notice("mqtt.connected" if payload else "mqtt.disconnected",
                               {"detail": "connected" if payload else "broker unreachable"}))
        elif kind == "crash":
            self.crash(now)

    # --- a crash and the restart ---

    def crash(self, now: float) -> None:
        """Abandon the controller as a SIGKILL leaves it, check the data directory as the next one
        finds it, and start the next one on it."""
        from ..writer import EventJob
        from .rig import abandon

        old = self.lot.controller
        writer = old.writer
        latched = sorted(old.fire.latched())
        in_flight = sum(1 for job in writer.jobs if isinstance(job, EventJob))
        self.acked_hash = self._hash_of(writer.store.db, self.acked_id)
        self._events_before += writer.events_written
        self._commits_before += writer.commits
        abandon(self.lot)
        if writer.store is not None:
            writer.store.db.close()  # the dead process's connection: gone, with nothing uncommitted in it
        if self.lose and not self.report.crashes:
            with sqlite3.connect(self.data_dir / "lotcontrol.db") as db:  # an acknowledged event that is not there
                db.execute("DELETE FROM events WHERE id = ?", [self.acked_id])
        lost = self._lost()
        self.start_lot()
        count, broken = self.lot.controller.writer.store.verify_events()
        self.settle(now)
        after = sorted(self.lot.controller.fire.latched())
        self.report.crashes.append(Crash(int(now // DAY) + 1, self.clock.wall().isoformat(timespec="seconds"),
                                         self._acked_since, lost, in_flight, count, broken is None, latched, after))
        self._acked_since = 0

    _acked_since = 0

    def _lost(self) -> int:
        """Acknowledged events not in the database (read as the next controller will find it)."""
        from ..store import Store

        with Store.in_dir(self.data_dir, read_only=True) as store:
            db = store.db
            anchor = db.execute("SELECT pruned_through FROM chain_anchor").fetchone()
            low = max(self.checked_id + 1, (anchor[0] + 1) if anchor else 1)
            high = self.acked_id
            present = db.execute("SELECT count(*) FROM events WHERE id BETWEEN ? AND ?", [low, high]).fetchone()[0]
            lost = max(0, high - low + 1) - present
            if self._hash_of(db, high) != self.acked_hash and high >= low:
                lost = max(lost, 1)  # the last acknowledged event is not the one on disk
        self._acked_since = max(0, high - low + 1)
        self.checked_id = high
        return lost

    checked_id = 0


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (normal approximation for large means)."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def table(report: SoakReport) -> list[str]:
    """The report as text: one line per month (30 days) for long runs, per day for short ones."""
    per = 30 if report.days > 60 else 1
    lines = [f"{'days':>9} {'passages':>9} {'events':>8} {'commits':>8} {'database':>10} {'snapshots':>10} "
             f"{'RSS':>8} {'written/day':>12} {'restarts':>8}"]
    for i in range(0, len(report.rows), per):
        chunk = report.rows[i:i + per]
        last = chunk[-1]
        metered = [r.written_bytes for r in chunk if r.written_bytes is not None]
        written = _mb(sum(metered) / len(metered)) if metered else "-"
        lines.append(f"{chunk[0].day:>4}-{last.day:<4} {sum(r.passages for r in chunk):>9} "
                     f"{sum(r.events for r in chunk):>8} {sum(r.commits for r in chunk):>8} "
                     f"{_mb(last.database_bytes):>10} {_mb(last.snapshot_bytes):>10} {_mb(last.rss_bytes):>8} "
                     f"{written:>12} "
                     f"{sum(r.restarts for r in chunk):>8}")
    s = report.summary()
    lines += [
        "",
        f"{s['days']} days in {s['seconds']} s ({s['cpu_seconds']} s CPU)"
        f"{'' if report.scale == 1 else f' at {report.scale:g} of the traffic'}: {s['passages']} passages, {s['events']} events, "
        f"{s['bikes_plugged_in']} bikes plugged in to charge, {s['drills']} drills, {s['prealarms']} pre-alarms, "
        f"{s['camera_outages']} camera and {s['broker_outages']} broker outages",
        f"restarts after a crash: {s['restarts']}; events lost: {s['events_lost']} (not yet committed at the "
        f"crashes, never acknowledged: {s['events_in_flight_at_crashes']}); hash chain verified after every restart "
        f"and at the end: {'yes' if s['chain_verified'] else 'NO'} ({s['final_chain_events']} events at the end); "
        f"latched alarms back after a restart: {s['latched_alarms_restored']} ({'all' if s['latch_kept'] else 'NOT ALL'})",
        f"database at most {_mb(s['database_bytes_max'])}, snapshots at most {_mb(s['snapshot_bytes_max'])} "
        f"(events kept {report.keep_days} days, snapshots {report.retention_days}); memory (RSS) "
        f"{_mb(s['rss_bytes_first'])} on day 1, at most {_mb(s['rss_bytes_max'])}, {_mb(s['rss_bytes_last'])} at the end",
        f"written to the data directory ({report.disk}): {_mb(s['written_bytes_per_day'])} a day "
        f"(measured on {len(s['metered_days'])} metered days, fsynced as the product writes: days "
        f"{_days(s['metered_days'])}; the first not counted) in {s['commits_per_day']} commits a day "
        f"(goal at most {_mb(s['goal_bytes_per_day'])}; events.commit_seconds = {report.commit_seconds:g})",
    ]
    return lines


def _days(days: list[int]) -> str:
    return ", ".join(map(str, days)) if len(days) <= 8 else f"{', '.join(map(str, days[:6]))}, ..., {days[-1]}"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


#: The most the process's memory (RSS) may grow after the first day: the caches fill on day 1; a leak
#: of a few bytes a passage grows past this within a week (the tests inject one).
MEMORY_GROWTH_LIMIT = 24e6


def memory_growth(report: SoakReport) -> int:
    """How much the resident memory grew after the first day (the most it reached, over day 1's)."""
    rows = report.rows
    return max(r.rss_bytes for r in rows) - rows[0].rss_bytes if rows else 0
