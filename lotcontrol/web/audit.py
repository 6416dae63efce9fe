"""The web console's own events (logins, refusals, language changes) into the lot's event log.

One thread of the web process appends them through ``Store.log_event``, as the command line's
writing commands do, so a page never waits on the database. What the controller does for a user (the
gate opened, a drill, a reset) is logged by the controller itself, with ``by`` = the user's name.
The controller's writer thread is not used here: it also keeps the residents in memory, which this
process does not need. While the database cannot be written, the events wait (at most PENDING) and
are tried again every RETRY_SECONDS.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

from ..store import Store

log = logging.getLogger("lotcontrol")

PENDING = 1000
RETRY_SECONDS = 2.0
WRITE_TIMEOUT = 10.0


class Audit:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self._jobs: collections.deque = collections.deque(maxlen=PENDING)
        self._cond = threading.Condition()
        self._stopping = False
        self._store: Store | None = None
        self._thread = threading.Thread(target=self._run, name="web-audit", daemon=True)
        self._thread.start()

    def log_event(self, type: str, details: dict[str, Any]) -> None:
        with self._cond:
            self._jobs.append((type, details, dt.datetime.now(dt.timezone.utc)))
            self._cond.notify()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every event handed over was written (tests, the end); False if some wait still."""
        with self._cond:
            self._cond.notify()
            return self._cond.wait_for(lambda: not self._jobs, timeout)

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=WRITE_TIMEOUT + 5)
        if self._store is not None:
            self._store.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._stopping, timeout=RETRY_SECONDS)
                if not self._jobs and self._stopping:
                    return
                job = self._jobs[0] if self._jobs else None
            if job is None:
                continue
            try:
                if self._store is None:
                    self._store = Store.in_dir(self.data_dir, busy_timeout=WRITE_TIMEOUT)
                type, details, when = job
                self._store.log_event(type, None, details, time=when)
            except Exception as exc:  # a locked or missing database, a full disk: never the end of the thread
                log.warning("web: event %s not written yet (tried again in %g s): %s", job[0], RETRY_SECONDS, exc)
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(RETRY_SECONDS)
                continue
            with self._cond:
                if self._jobs and self._jobs[0] is job:
                    self._jobs.popleft()
                self._cond.notify_all()
