"""Starts the vision worker process, relays what it says, and tells when it died or went silent.

The worker is started with ``spawn`` (a fresh interpreter: no GPIO handles or controller threads
inherited) and with BLAS/OpenMP pinned to one thread, since a multithreaded OpenBLAS on two busy
cores made one encoding take over a second. A reader thread turns the pipe into calls of
``deliver(message)``; the controller decides when to restart (see controller.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .config import Config
from .messages import Heartbeat

log = logging.getLogger(__name__)

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class WorkerGone:
    """The pipe closed: the worker exited or was killed."""

    generation: int
    exitcode: int | None


def _entry(conn, config, data_dir, source, fast):  # pragma: no cover - runs in the child
    from .vision import worker_entry

    worker_entry(conn, config, data_dir, source, fast)


class VisionWorker:
    """One vision worker process at a time; ``start()`` again after it is gone starts a new one."""

    def __init__(self, config: Config, data_dir: str, source: str, *, as_fast_as_possible: bool = False,
                 deliver: Callable[[object], None], clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.data_dir = str(data_dir)
        self.source = source
        self.fast = as_fast_as_possible
        self.deliver = deliver
        self.clock = clock
        self.process: multiprocessing.Process | None = None
        self.generation = 0
        self.last_heard = 0.0
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        saved = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)  # the child reads its environment when it starts
        try:
            self.generation += 1
            self.process = context.Process(
                target=_entry, args=(send, self.config, self.data_dir, self.source, self.fast),
                name=f"lotcontrol-vision-{self.generation}", daemon=True)
            self.process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        send.close()
        self.last_heard = self.clock()
        self._reader = threading.Thread(target=self._read, args=(receive, self.process, self.generation),
                                        name="vision-reader", daemon=True)
        self._reader.start()

    def _read(self, receive, process, generation: int) -> None:
        while True:
            try:
                message = receive.recv()
            except (EOFError, OSError):
                break
            self.last_heard = self.clock()
            if not isinstance(message, Heartbeat):
                log.debug("vision: %s", message)
            self.deliver(message)
        receive.close()
        process.join(timeout=5)
        self.deliver(WorkerGone(generation, process.exitcode))

    def silent_for(self, now: float) -> float:
        return now - self.last_heard

    def kill(self) -> None:
        """Stop the worker at once (SIGKILL); its WorkerGone arrives through deliver()."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker and wait for its reader to finish."""
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
        if self._reader is not None:
            self._reader.join(timeout)
