"""The controller's one thread for the database and the disk: the loop never waits on either.

The loop hands over events, entry snapshots, pruning and snapshot clean-up through a bounded
in-memory queue (``PENDING`` jobs; when it is full the oldest job is dropped and counted). The
thread writes them in order, every job waiting in one transaction: a job waits at most
``commit_seconds`` (``events.commit_seconds``) for others to share its commit, and an urgent one (an
alarm-class event, lotcontrol.alerts; a resident from the hub) is committed at once with everything
before it. Each commit
is one fsync and rewrites the same few pages of the log: fewer commits, fewer bytes on the SD card
(docs/architecture.md, "Writes and the SD card"). While the database cannot be written (locked by another process past
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
import re
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
    urgent: bool = False  # an alarm-class event: committed at once, with every job before it


@dataclass(frozen=True)
class CallJob:
    """Work on the store that is not an event (pruning, clean-up); ``what`` names it in the log."""

    what: str
    call: Callable[[Store], None]
    # done at once (a resident from the hub, the sessions a dead controller left open); routine work
    # (a charging checkpoint or session row, pruning, clean-up) says False and shares the next commit
    urgent: bool = True


class Directory:
    """The residents' records in memory, by id: replaced whole by the writer thread, read by the loop;
    with their credentials (card digests to ids, PIN hashes by id, the card keys), which the Wiegand
    reader's thread reads (lotcontrol.site.reader): never the cards or PINs themselves."""

    def __init__(self, residents: dict[int, Resident] | None = None, cards: dict[str, int] | None = None,
                 pins: dict[int, str] | None = None, card_keys: tuple[bytes, ...] = (),
                 pass_keys: tuple[bytes, ...] = (), pass_uses: dict[str, tuple[int, int]] | None = None,
                 revoked_passes: dict[str, int] | None = None, hub_pass_uses: dict[str, dict[str, int]] | None = None,
                 lookalikes: list[tuple[int, int]] | None = None):
        self.by_id: dict[int, Resident] = residents or {}
        self.cards: dict[str, int] = cards or {}
        self.pins: dict[int, str] = pins or {}
        # residents of a look-alike pair of whom either has a PIN (lotcontrol.policy.mode_of: face_and_pin)
        self.lookalike_pin: frozenset[int] = frozenset(
            i for a, b in (lookalikes or ()) if a in self.pins or b in self.pins for i in (a, b))
        # each resident's flagged look-alikes (policy.nearer_lookalike: the 1:1 modes' look-alike rule)
        self.lookalikes: dict[int, frozenset[int]] = {}
        for a, b in lookalikes or ():
            self.lookalikes[a] = self.lookalikes.get(a, frozenset()) | {b}
            self.lookalikes[b] = self.lookalikes.get(b, frozenset()) | {a}
        self.card_keys = card_keys  # this lot's own key first, then the hub's
        # visitor passes (lotcontrol.passes): the keys they are checked under (this lot's, then the hub's),
        # their uses here (count, not-after), the revoked ones (id: not-after), each one's uses per lot from the hub
        self.pass_keys = pass_keys
        self.pass_uses: dict[str, tuple[int, int]] = pass_uses or {}
        self.revoked_passes: dict[str, int] = revoked_passes or {}
        self.hub_pass_uses: dict[str, dict[str, int]] = hub_pass_uses or {}
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
    commit_seconds: float = 0.0  # the longest a job waits for others to share its commit (0: none)
    now: Callable[[], float] = time.monotonic  # the clock commit_seconds is counted on
    directory: Directory = field(default_factory=Directory)
    jobs: collections.deque = field(default_factory=collections.deque)
    dropped: int = 0
    degraded: bool = False
    events_written: int = 0  # events this writer has committed (acknowledged) so far
    commits: int = 0  # transactions committed
    # told of the events the writer makes itself (store.degraded, store.restored), on its thread
    listeners: EventListeners = field(default_factory=EventListeners)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._kick = False  # write now, even while degraded (an urgent job, a flush)
        self._since: float | None = None  # when the oldest job waiting was handed over
        self._next_refresh = 0.0
        self._key_warned = False
        self._passes_warned = False
        self._asked = 0  # re-reads of the residents the loop has asked for (``reread``)
        self.answered = 0  # the last ask a re-read was tried for (read, or failed and the old copy kept)
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
            if self._since is None:
                self._since = self.now()
            if self.commit_seconds <= 0 or job.urgent:
                self._kick = True
            self._cond.notify()

    @property
    def waiting(self) -> int:
        return len(self.jobs)

    def reread(self) -> int:
        """Ask for the residents to be read again now (a face named someone this copy does not hold: the
        vision worker may have read the database after it); returns the ask's number, which
        ``answered`` reaches once a read begun after the ask has been tried."""
        with self._cond:
            self._asked += 1
            self._cond.notify()
            return self._asked

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

    def _reread_wanted(self) -> bool:
        """Whether the loop asked for a re-read of the residents that has not been tried yet."""
        return self._asked > self.answered

    def _due(self) -> bool:
        """Whether the jobs waiting are to be committed now (called holding the lock)."""
        return self._kick or (bool(self.jobs) and not self.degraded and self._since is not None
                              and self.now() - self._since >= self.commit_seconds)

    def _timeout(self) -> float:
        if self.degraded:
            return RETRY_SECONDS
        if self.jobs and self._since is not None:
            return max(0.0, min(REFRESH_SECONDS, self._since + self.commit_seconds - self.now()))
        return REFRESH_SECONDS

    def due_at(self) -> float | None:
        """When the jobs waiting are to be committed, or a re-read of the residents the loop asked for
        is to be made, on ``now``'s clock (None: nothing waits, or the store is degraded and tried again
        on its own timer). The rig's simulated clock wakes for it."""
        with self._cond:
            if self._kick or self._reread_wanted():
                return self.now()
            if not self.jobs or self.degraded or self._since is None:
                return None
            return self._since + self.commit_seconds

    def write_due(self) -> bool:
        """Without the thread (the rig's simulated clock): commit what is due now, and read the
        residents again if the loop asked, as the thread would; True if it committed."""
        with self._cond:
            due = self._due()
            self._kick = False
            asked = self._reread_wanted()
        if due:
            self._open()
            self._write_all()
        if asked:
            self.refresh_directory()
        return due

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._due() or self._reread_wanted(),
                                    timeout=self._timeout())
                stopping = self._stopping
                write = stopping or self.degraded or self._due()  # degraded: tried again every RETRY_SECONDS
                asked = self._reread_wanted()
                self._kick = False
                self._busy = True
            try:
                self._open()
                if write:
                    self._write_all()
                if asked or time.monotonic() >= self._next_refresh:
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
        """Read the residents and their credentials again (on the writer's thread, or where no thread
        runs); answers every ``reread`` asked before it began, whether the read succeeds or not."""
        with self._cond:
            asked = self._asked
        try:
            self._refresh()
        finally:
            with self._cond:
                self.answered = max(self.answered, asked)

    def _refresh(self) -> None:
        if self.store is None:
            return
        self._next_refresh = time.monotonic() + REFRESH_SECONDS
        try:
            residents = {r.id: r for r in self.store.residents()}
            cards, pins = self.store.credentials()
            lookalikes = self.store.lookalike_ids()
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
        try:
            pass_keys = self.store.pass_keys()
            pass_uses, revoked, hub_uses = self.store.pass_directory()
        except sqlite3.Error as exc:  # passes are refused until the key can be read (pass_bad_signature)
            pass_keys, pass_uses, revoked, hub_uses = (self.directory.pass_keys, self.directory.pass_uses,
                                                       self.directory.revoked_passes, self.directory.hub_pass_uses)
            if not self._passes_warned:
                self._passes_warned = True
                log.warning("visitor passes not re-read (the last copy stays in use; none: passes are refused): %s",
                            exc)
        self.directory = Directory(residents, cards, pins, keys, pass_keys, pass_uses, revoked, hub_uses,
                                   lookalikes=lookalikes)

    def _write_all(self) -> None:
        """Commit every job waiting, in one transaction per pass (each job in a savepoint of its own,
        so one that cannot be done leaves nothing and is dropped, the others are committed)."""
        if self.store is None:
            return  # not open (yet): the jobs wait
        written = 0
        while True:
            with self._cond:
                batch = list(self.jobs)
            if not batch:
                break
            failed: list = []
            try:
                with self.store.transaction():
                    for job in batch:
                        self._write_one(job, failed)
            except sqlite3.Error as exc:
                if not self.degraded:
                    self.degraded = True
                    first = next((j for j in batch if isinstance(j, EventJob)), None)
                    # dated with the first event it kept back, so the log reads in order
                    degraded = (EventJob("store.degraded", None, {"error": str(exc)}, first.time, synced=first.synced)
                                if first is not None else
                                EventJob("store.degraded", None, {"error": str(exc)}, self.wall(), synced=self.synced()))
                    with self._cond:
                        self.jobs.appendleft(degraded)
                    self._tell(degraded)
                    log.warning("store.degraded: events kept in memory until the database can be written: %s", exc)
                return
            with self._cond:
                for job in batch:  # the ones still there: the loop may have dropped the oldest meanwhile
                    if self.jobs and self.jobs[0] is job:
                        self.jobs.popleft()
                self._since = self.now() if self.jobs else None
                self.dropped += len(failed)
            self.commits += 1
            self.events_written += sum(isinstance(j, EventJob) and not any(j is f for f in failed) for j in batch)
            written += len(batch) - len(failed)
        if self.degraded:
            self.degraded = False
            restored = EventJob("store.restored", None, {"events_written": written}, self.wall(), synced=self.synced())
            self.store.log_event(restored.type, None, restored.details, time=restored.time, synced=restored.synced)
            self.events_written += 1
            log.info("store.restored events_written=%d", written)
            self._tell(restored)

    def _write_one(self, job: EventJob | CallJob, failed: list) -> None:
        """One job, in a savepoint of the batch's transaction. A database error ends the batch (it
        is tried again whole); anything else is not retried as it is, or it would block the queue:
        an event whose snapshot cannot be written is kept without it, any other job is dropped."""
        try:
            with self.store.transaction():
                self._write(job)
            return
        except sqlite3.Error:
            raise
        except Exception as exc:
            if isinstance(job, EventJob) and job.snapshot is not None and isinstance(exc, OSError):
                log.warning("snapshot not written (the event is kept without it): %s", exc)
                with self.store.transaction():
                    self._write(replace(job, snapshot=None))
                return
            failed.append(job)
            log.error("store: %s dropped, it cannot be done: %s: %s",
                      job.what if isinstance(job, CallJob) else f"event {job.type}", type(exc).__name__, exc)

    def _tell(self, job: EventJob) -> None:
        self.listeners(job.type, job.resident_id, job.details, job.time)

    def _write(self, job: EventJob | CallJob) -> None:
        if isinstance(job, CallJob):
            job.call(self.store)
            return
        details = job.details
        if job.snapshot is not None and self.snapshots is not None:
            name, jpeg = job.snapshot
            path = os.path.join(self.snapshots, name)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except FileNotFoundError:  # the folder, made at the first snapshot (or again, if removed)
                self.snapshots.mkdir(mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(jpeg)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            details = {**details, "snapshot": f"snapshots/{name}"}
        self.store.log_event(job.type, job.resident_id, details, time=job.time, synced=job.synced)


def snapshot_name(when: dt.datetime, outcome: str, track: int) -> str:
    return f"{isotime(when).replace(':', '')}-{outcome}-{track}.jpg"


_SNAPSHOT_NAME = re.compile(r"(\d{4}-\d\d-\d\dT\d{6}\.\d{3}\+0000)-")


def snapshot_time(name: str) -> str | None:
    """The time a snapshot's file name begins with (UTC, as snapshot_name writes it: sorts as text in
    time order), or None for a file named otherwise."""
    match = _SNAPSHOT_NAME.match(name)
    return match.group(1) if match else None
