"""The controller's one thread for the database and the disk: the loop never waits on either.

The loop hands over events, entry snapshots, pruning and snapshot clean-up through a bounded
in-memory queue (``PENDING`` jobs; when it is full the oldest job is dropped and counted). The
thread writes them in order. While the database cannot be written (locked by another process past
its busy timeout, read-only, disk full) the jobs wait in the queue, ``store.degraded`` is logged
once, dated with the first event kept back, and ``store.restored`` once they are written. The same
thread keeps the residents' records in memory (``Directory``), so the loop decides on a passage
without reading the database either.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .store import Resident, Store, isotime, name_key

log = logging.getLogger("lotcontrol")

PENDING = 10_000  # jobs kept in memory while the database cannot be written
RETRY_SECONDS = 1.0  # after a failed write, try again this often
REFRESH_SECONDS = 1.0  # re-read the residents this often


@dataclass(frozen=True)
class EventJob:
    type: str
    resident_id: int | None
    details: dict[str, Any]
    time: dt.datetime
    snapshot: tuple[str, bytes] | None = None  # (file name, JPEG) written before the event
    synced: bool | None = None  # the wall clock was synchronised at ``time`` (None: the kernel's word when written)


@dataclass(frozen=True)
class CallJob:
    """Work on the store that is not an event (pruning, clean-up); ``what`` names it in the log."""

    what: str
    call: Callable[[Store], None]


class Directory:
    """The residents' records in memory, by id: replaced whole by the writer thread, read by the loop;
    with their credentials (card digests to ids, PIN hashes by id, the card keys), which the Wiegand
    reader's thread reads (lotcontrol.site.reader): never the cards or PINs themselves."""

    def __init__(self, residents: dict[int, Resident] | None = None, cards: dict[str, int] | None = None,
                 pins: dict[int, str] | None = None, card_keys: tuple[bytes, ...] = ()):
        self.by_id: dict[int, Resident] = residents or {}
        self.cards: dict[str, int] = cards or {}
        self.pins: dict[int, str] = pins or {}
        self.card_keys = card_keys  # this lot's own key first, then the hub's
        self._by_key: dict[str, int] | None = None  # built on first use by name

    def id_of(self, name: str) -> int | None:
        """The id of the resident with this name (as the store compares names), or None."""
        if self._by_key is None:
            self._by_key = {name_key(r.name): r.id for r in self.by_id.values()}
        return self._by_key.get(name_key(name))

    def get(self, resident_id: int | None) -> Resident | None:
        return None if resident_id is None else self.by_id.get(resident_id)

    def name(self, resident_id: int | None) -> str | None:
        if resident_id is None:
            return None
        resident = self.by_id.get(resident_id)
        return resident.name if resident else f"#{resident_id}"


class EventListeners:
    """Who hears of each event besides the database (lotcontrol.fleet.publish: MQTT), called on the
    thread that made it; each must only hand it on, never wait. Events made before anyone listens
    (``fire.alarm.restored`` at start, a database that cannot be opened) are kept, the last
    ``EARLY`` of them, and told to the first listener as it is added. A listener that is there from
    the start (the alerts, lotcontrol.alerts) is added with ``early=False``: it takes none of them
    and leaves them for the first one that is added later."""

    EARLY = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, int | None, dict, dt.datetime], None]] = []
        self._early: collections.deque = collections.deque(maxlen=self.EARLY)
        self._keeping = True  # no listener has taken the early events yet

    def add(self, listener: Callable[[str, int | None, dict, dt.datetime], None], *, early: bool = True) -> None:
        with self._lock:
            events: list = []
            if early and self._keeping:
                events, self._early, self._keeping = list(self._early), collections.deque(maxlen=self.EARLY), False
            self._listeners.append(listener)
        for event in events:
            self._call(listener, *event)

    def __call__(self, type: str, resident_id: int | None, details: dict, when: dt.datetime) -> None:
        with self._lock:
            listeners = list(self._listeners)
            if self._keeping:
                self._early.append((type, resident_id, details, when))
        for listener in listeners:
            self._call(listener, type, resident_id, details, when)

    @staticmethod
    def _call(listener, *event) -> None:
        try:
            listener(*event)
        except Exception:
            log.exception("an event listener failed on %s", event[0])


@dataclass
class Writer:
    """Owns the store's connection while the controller runs. ``flush()`` waits until everything
    handed over so far was tried (tests, shutdown); ``close()`` writes what it can and stops."""

    store: Store | None
    snapshots: Path | None = None
    wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    synced: Callable[[], bool | None] = lambda: None  # whether ``wall`` is synchronised (the Clock's word)
    opener: Callable[[], Store] | None = None  # opens and checks the store on this thread, when it can
    directory: Directory = field(default_factory=Directory)
    jobs: collections.deque = field(default_factory=collections.deque)
    dropped: int = 0
    degraded: bool = False
    # told of the events the writer makes itself (store.degraded, store.restored), on its thread
    listeners: EventListeners = field(default_factory=EventListeners)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._kick = False  # try now, even while degraded (a new job, a flush)
        self._next_refresh = 0.0
        self._key_warned = False
        self._thread: threading.Thread | None = None
        if self.store is not None:
            self.refresh_directory()

    # --- the loop's side: never blocks on I/O ---

    def put(self, job: EventJob | CallJob) -> None:
        with self._cond:
            if len(self.jobs) >= PENDING:
                self.jobs.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("store: %d job(s) dropped, the database has not been writable for long", self.dropped)
            self.jobs.append(job)
            self._kick = True
            self._cond.notify()

    @property
    def waiting(self) -> int:
        return len(self.jobs)

    def start(self) -> None:
        if self._thread is None and (self.store is not None or self.opener is not None):
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every job handed over so far was written or failed; True if the queue is
        empty then. Without the thread started, writes them here."""
        if self._thread is None:
            self._open()
            self._write_all()
            self.refresh_directory()
            return not self.jobs
        with self._cond:
            self._kick = True
            self._cond.notify()
            self._cond.wait_for(lambda: not self._kick and not self._busy, timeout)
            return not self.jobs

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread after one last try to write what waits; False if it is still inside the
        store after ``timeout`` (then the store must not be closed under it). Safe to call twice."""
        with self._cond:
            if self._stopping:
                return self.stopped
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("store: the writer is still busy after %g s; the database is left open for it", timeout)
                return False
            self._thread = None
        else:
            self._open()
            self._write_all()
        if self.jobs:
            log.warning("store: %d job(s) could not be written before the stop", len(self.jobs))
        return True

    @property
    def stopped(self) -> bool:
        """No thread of ours is inside the store (it never started, or it has ended)."""
        return self._thread is None or not self._thread.is_alive()

    # --- the thread ---

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._kick or self._stopping or (self.jobs and not self.degraded),
                                    timeout=RETRY_SECONDS if self.degraded else REFRESH_SECONDS)
                stopping, self._kick = self._stopping, False
                self._busy = True
            try:
                self._open()
                self._write_all()
                if time.monotonic() >= self._next_refresh:
                    self.refresh_directory()
            except Exception:  # a bug here must not stop the writes that follow
                log.exception("store writer")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if stopping:
                return

    def _open(self) -> None:
        """Open the store if it is not yet (a database locked, damaged or on a full disk at start-up
        is a degraded store, not a controller that cannot start: the fire watch runs meanwhile)."""
        if self.store is not None or self.opener is None:
            return
        try:
            self.store = self.opener()
        except Exception as exc:
            if not self.degraded:
                self.degraded = True
                degraded = EventJob("store.degraded", None, {"error": str(exc)}, self.wall(), synced=self.synced())
                with self._cond:
                    self.jobs.appendleft(degraded)
                self._tell(degraded)
                log.warning("store.degraded: the database cannot be opened (events kept in memory): %s", exc)
            return
        self.refresh_directory()

    def refresh_directory(self) -> None:
        if self.store is None:
            return
        self._next_refresh = time.monotonic() + REFRESH_SECONDS
        try:
            residents = {r.id: r for r in self.store.residents()}
            cards, pins = self.store.credentials()
        except sqlite3.Error as exc:
            log.warning("residents not re-read (the last copy stays in use): %s", exc)
            return
        try:  # the key is made at first use: a database that cannot be written leaves cards unknown, not faces
            keys = self.store.card_keys()
        except sqlite3.Error as exc:
            keys = self.directory.card_keys
            if not keys and not self._key_warned:
                self._key_warned = True
                log.warning("the card key cannot be made (cards are refused until it can): %s", exc)
        self.directory = Directory(residents, cards, pins, keys)

    def _write_all(self) -> None:
        if self.store is None:
            return  # not open (yet): the jobs wait
        written = 0
        while self.jobs:
            job = self.jobs[0]
            try:
                self._write(job)
            except sqlite3.Error as exc:
                if not self.degraded:
                    self.degraded = True
                    # dated with the first event it kept back, so the log reads in order
                    degraded = (EventJob("store.degraded", None, {"error": str(exc)}, job.time, synced=job.synced)
                                if isinstance(job, EventJob) else
                                EventJob("store.degraded", None, {"error": str(exc)}, self.wall(), synced=self.synced()))
                    with self._cond:
                        self.jobs.appendleft(degraded)
                    self._tell(degraded)
                    log.warning("store.degraded: events kept in memory until the database can be written: %s", exc)
                return
            except Exception as exc:  # not the database: never retried as it is, or it would block the queue
                with self._cond:
                    if not (self.jobs and self.jobs[0] is job):
                        continue
                    if isinstance(job, EventJob) and job.snapshot is not None and isinstance(exc, OSError):
                        log.warning("snapshot not written (the event is kept without it): %s", exc)
                        self.jobs[0] = replace(job, snapshot=None)
                        continue
                    self.jobs.popleft()
                    self.dropped += 1
                log.error("store: %s dropped, it cannot be done: %s: %s",
                          job.what if isinstance(job, CallJob) else f"event {job.type}", type(exc).__name__, exc)
                continue
            with self._cond:
                if self.jobs and self.jobs[0] is job:
                    self.jobs.popleft()
            written += 1
        if self.degraded:
            self.degraded = False
            restored = EventJob("store.restored", None, {"events_written": written}, self.wall(), synced=self.synced())
            self.store.log_event(restored.type, None, restored.details, time=restored.time, synced=restored.synced)
            log.info("store.restored events_written=%d", written)
            self._tell(restored)

    def _tell(self, job: EventJob) -> None:
        self.listeners(job.type, job.resident_id, job.details, job.time)

    def _write(self, job: EventJob | CallJob) -> None:
        if isinstance(job, CallJob):
            job.call(self.store)
            return
        details = job.details
        if job.snapshot is not None and self.snapshots is not None:
            name, jpeg = job.snapshot
            self.snapshots.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.snapshots / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(jpeg)
            details = {**details, "snapshot": f"snapshots/{name}"}
        self.store.log_event(job.type, job.resident_id, details, time=job.time, synced=job.synced)


def snapshot_name(when: dt.datetime, outcome: str, track: int) -> str:
    return f"{isotime(when).replace(':', '')}-{outcome}-{track}.jpg"
