"""Starts the vision worker process, relays what it says, and restarts it when it dies or goes silent.

The worker is forked from a ``forkserver`` (a fresh interpreter started once, with no GPIO handles
or controller threads inherited), which has loaded the worker's code and the verified face models
(vision/preload.py): a worker restarted after a crash or a stall has them at once, instead of reading
and checking 130 MB of models again. The server and the workers run with BLAS/OpenMP pinned to one
thread, since a multithreaded OpenBLAS on two busy cores made one encoding take over a second.

``start()`` never waits: the worker's own reader thread starts the process, because a start waits
until the server has forked it, and a new server (the first start, or after the server died) loads
the models first. A start that fails is logged and ends as the worker gone. The reader thread then
turns the pipe into calls of ``deliver(message)``. The restart policy lives here: the controller's
loop hands over the worker's ``WorkerGone`` and calls ``tick(now)``, and logs the events these return. Vision trouble never
stops the controller and never stops the systemd watchdog: fire, bays, door and exit go on, and
face entry stays shut while the worker is down.

On a simulated clock (the rig) the worker runs *stepped*: ``start()`` gives each worker a fresh pipe
of allowed times, and ``step_to(t)`` lets it have its frames up to time t and waits (blocking) until
it has handled them and what they decided has been delivered (lotcontrol.vision.worker).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Callable

from ..config import Config
from ..messages import FramesDone, Heartbeat, WorkerGone

log = logging.getLogger(__name__)

PRELOAD = "lotcontrol.vision.preload"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# One start at a time, across every VisionWorker of the process (they share the fork server).
_STARTING = threading.Lock()
#: A fork server that has just died (killed: its worker dies with it, which is how the supervisor hears
#: of it) can still be exiting when the next start comes: its socket refuses the connection, but
#: multiprocessing sees the server dead, and starts a new one, only once it has exited. Such a start is
#: tried again for this long (on the reader thread: nothing waits for it).
SERVER_EXIT_SECONDS = 10.0
SERVER_EXIT_POLL = 0.05
PR_SET_PDEATHSIG = 1


def _entry(conn, config, data_dir, source, fast, steps=None):  # pragma: no cover - runs in the child
    # Die with the fork server, our parent: its supervisor can no longer signal us once it is gone (the
    # exit code it would read comes through the server), and our closed pipe reports us gone.
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the server died before the line above
        os._exit(1)
    from .worker import worker_entry

    worker_entry(conn, config, data_dir, source, fast, steps)


class VisionWorker:
    """One vision worker process at a time; ``start()`` again after it is gone starts a new one."""

    def __init__(self, config: Config, data_dir: str, source: str, *, as_fast_as_possible: bool = False,
                 deliver: Callable[[object], None], clock: Callable[[], float] = time.monotonic,
                 stepped: bool = False):
        self.config = config
        self.data_dir = str(data_dir)
        self.source = source
        self.fast = as_fast_as_possible
        self.deliver = deliver
        self.clock = clock
        self.process: multiprocessing.Process | None = None
        self.generation = 0
        self.last_heard = 0.0
        self.heard = False  # the running worker has said something: it is past loading its models
        self.restarts = 0  # restarts in a row (reset once it has stayed up for a minute)
        self.heartbeat: Heartbeat | None = None
        self._restart_at: float | None = None
        self._started_at = 0.0
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._killed = 0  # the generation last killed (perhaps before its process had started)
        self._in_start = 0  # the generation whose process.start() is under way (waiting on the fork server)
        self.stepped = stepped  # in lockstep with the rig's simulated clock (``step_to``)
        self._allow = None  # stepped: our end of the running worker's pipe of allowed times
        self._steps = threading.Condition()
        self._done = -float("inf")  # stepped: the running worker has handled its frames up to this time
        self.next_frame: float | None = None  # stepped: the time the running worker waits for
        self._ended = False  # stepped: the running worker's pipe has closed (its WorkerGone is delivered)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        """Start a worker and return at once (its reader thread starts the process: the module's
        docstring says why). Its messages, then its WorkerGone, arrive through deliver()."""
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([PRELOAD])  # read once, when the first start starts the server
        receive, send = context.Pipe(duplex=False)
        allowed = allow = None
        if self.stepped:  # a fresh pipe for each worker: a restarted one never reads its predecessor's times
            allowed, allow = context.Pipe(duplex=False)
        with self._steps:
            self.generation += 1
            self._done, self.next_frame, self._ended = -float("inf"), None, False
        steps = None if allowed is None else (allowed, self.clock())  # it starts where the scene is now
        self.process = process = context.Process(
            target=_entry, args=(send, self.config, self.data_dir, self.source, self.fast, steps),
            name=f"lotcontrol-vision-{self.generation}", daemon=True)
        if allow is not None:
            if self._allow is not None:
                self._allow.close()
            self._allow = allow
        self.last_heard = self.clock()
        self.heard = False
        self._reader = threading.Thread(target=self._run, args=(receive, send, allowed, process, self.generation),
                                        name="vision-reader", daemon=True)
        self._reader.start()

    def _run(self, receive, send, allowed, process, generation: int) -> None:
        """The reader thread: start the process, then read its pipe until it closes."""
        try:
            with _STARTING:  # the fork server's environment is its own (vision/preload.py)
                if self._stopping or self._killed == generation:
                    raise RuntimeError("stopped or killed before it was started")
                self._in_start = generation
                try:
                    self._start_process(process, generation)
                finally:
                    self._in_start = 0
        except Exception:  # nobody holds the pipe's other end now: it reads as closed, WorkerGone
            log.warning("vision: worker %d could not be started", generation, exc_info=True)
        else:
            log.info("vision: worker %d started, pid %d", generation, process.pid)
            if self._stopping or self._killed == generation:
                try:
                    process.kill()  # stopped or killed while it was being started
                except OSError:
                    pass
        finally:
            send.close()  # the child has its own copy
            if allowed is not None:
                allowed.close()
            self._read(receive, process, generation)

    def _start_process(self, process, generation: int) -> None:
        """``process.start()``, tried again while the fork server it reaches is still exiting."""
        deadline = time.monotonic() + SERVER_EXIT_SECONDS
        for attempt in itertools.count():
            if attempt and (self._stopping or self._killed == generation):  # during the wait below
                raise RuntimeError("stopped or killed before it was started")
            try:
                process.start()
                return
            except ConnectionRefusedError:  # the server's socket, closed by its exit
                if time.monotonic() >= deadline or self._stopping or self._killed == generation:
                    raise
                if attempt == 0:
                    log.info("vision: the fork server is still exiting; worker %d waits for a new one", generation)
                time.sleep(SERVER_EXIT_POLL)

    def _read(self, receive, process, generation: int) -> None:
        while True:
            try:
                message = receive.recv()
            except (EOFError, OSError):
                break
            self.last_heard = self.clock()
            self.heard = True
            if isinstance(message, Heartbeat):
                self.heartbeat = message
            elif not isinstance(message, FramesDone):
                log.debug("vision: %s", message)
            self.deliver(message)
            if isinstance(message, FramesDone):
                with self._steps:  # after deliver(): what those frames decided is in the inbox
                    if generation == self.generation:
                        self._done, self.next_frame = message.time, message.next
                        self._steps.notify_all()
        receive.close()
        if process.pid is not None:
            process.join(timeout=5)
        self.deliver(WorkerGone(generation, process.exitcode))
        with self._steps:
            if generation == self.generation:
                self._ended = True
                self._steps.notify_all()

    def step_to(self, t: float, timeout: float) -> bool:
        """Stepped mode: let the running worker have its frames up to time ``t`` and wait until it has
        handled them and their messages are delivered, or its pipe has closed (killed, or its clip
        ended: its WorkerGone is delivered). True at once without a running worker; False if it did
        not finish within ``timeout`` (real) seconds, a failure guard."""
        with self._steps:
            if self._allow is None or self._ended or self._done >= t:
                return True
            generation = self.generation
        try:
            self._allow.send(t)
        except OSError:  # it is dead already: wait for its pipe to close
            pass
        with self._steps:
            return self._steps.wait_for(lambda: self._done >= t or self._ended or self.generation != generation,
                                        timeout)

    def silent_for(self, now: float) -> float:
        return now - self.last_heard

    def silence_allowed(self) -> float:
        """How long the worker may be silent: a start-up's model loading gets longer than a heartbeat."""
        vision = self.config.vision
        return vision.heartbeat_timeout_seconds if self.heard else vision.startup_timeout_seconds

    # --- the restart policy: called from the controller's loop, returns the events to log ---

    def gone(self, message: WorkerGone, now: float) -> list[tuple[str, dict]]:
        """The worker's pipe closed: restart it at once the first time, then after 1, 3, 7 … 30 s."""
        if message.generation != self.generation or self._stopping:
            return []
        self._restart_at = now + min(2 ** self.restarts - 1, 30)
        return [("vision.died", {"exitcode": message.exitcode})]

    def tick(self, now: float) -> list[tuple[str, dict]]:
        """Restart when it is time; kill a worker silent past ``vision.heartbeat_timeout_seconds``
        (``vision.startup_timeout_seconds`` while it has said nothing yet since it started)."""
        if self._restart_at is not None:
            if now < self._restart_at:
                return []
            self.restarts += 1
            try:
                self.start()
            except Exception as exc:  # tried again later, with the same back-off
                self._restart_at = now + min(2 ** self.restarts - 1, 30)
                return [("vision.restart_failed", {"attempt": self.restarts, "error": f"{type(exc).__name__}: {exc}"})]
            self._restart_at = None
            self._started_at = now
            return [("vision.restarted", {"attempt": self.restarts})]
        if self.restarts and now - self._started_at > 60:
            self.restarts = 0  # it has stayed up: the next failure restarts at once again
        silent = self.silent_for(now)
        if silent > self.silence_allowed():
            self.kill()  # its WorkerGone schedules the restart
            self.last_heard = now  # do not kill it twice while it dies
            return [("vision.stalled", {"silent_seconds": round(silent, 1)})]
        return []

    @property
    def down(self) -> bool:
        """Waiting to be restarted (face entry is shut meanwhile)."""
        return self._restart_at is not None

    def status(self, now: float) -> dict:
        return {"pid": self.pid, "up": not self.down and self.silent_for(now) <= self.silence_allowed(),
                "starting": not self.down and not self.heard,
                "silent_seconds": round(self.silent_for(now), 1),
                "frames": self.heartbeat.frames if self.heartbeat else 0,
                "dropped": self.heartbeat.dropped if self.heartbeat else 0, "restarts": self.restarts}

    def kill(self) -> None:
        """Stop the worker at once (SIGKILL), or as soon as it has started; its WorkerGone arrives
        through deliver()."""
        self._killed = self.generation
        if self.process is None:
            return
        if self.process.pid is not None:
            if self.process.is_alive():
                self.process.kill()
        elif self._in_start == self.generation:
            # Still being started: the fork server has not forked it, perhaps stuck loading the
            # models. Kill the server: the start fails (WorkerGone) and the next start makes a new one.
            from multiprocessing import forkserver

            server = getattr(forkserver._forkserver, "_forkserver_pid", None)
            if server:
                try:
                    os.kill(server, signal.SIGKILL)
                except OSError:
                    pass

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker and wait for its reader to finish."""
        self._stopping = True
        if self.process is not None and self.process.pid is None:
            self.kill()  # still being started: a fork server stuck in its preload is killed with it
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
        if self._reader is not None:
            self._reader.join(timeout)
        if self._allow is not None:
            self._allow.close()
            self._allow = None
