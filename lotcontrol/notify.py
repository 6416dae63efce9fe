"""Staff notification: a configured command gets each event as JSON on stdin, in its own thread.

The safety logic only queues; a slow, hanging or failing command (an SMS gateway, a mail script)
is timed out and retried with growing pauses, and never delays an output.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import subprocess
import threading
from typing import Any

log = logging.getLogger("lotcontrol")


class Notifier:
    def __init__(self, command: list[str], *, timeout: float, retries: int, backoff: float = 2.0):
        self.command = list(command)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.delivered = 0  # how many were delivered (status)
        self.failed: collections.deque = collections.deque(maxlen=100)  # the last failures, with why
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        if self.command:
            self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        if not self.command:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("notification queue full; dropped %s", event.get("type"))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if event is None:
                break
            self._deliver(event)
            self._queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event, ensure_ascii=False).encode()
        error = ""
        for attempt in range(self.retries + 1):
            try:
                done = subprocess.run(self.command, input=payload, timeout=self.timeout, capture_output=True)
                if done.returncode == 0:
                    self.delivered += 1
                    return
                error = f"exit code {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}"
            except subprocess.TimeoutExpired:
                error = f"no answer within {self.timeout:g} s"
            except OSError as exc:
                error = str(exc)
            log.warning("notification %s failed (try %d of %d): %s", event.get("type"), attempt + 1,
                        self.retries + 1, error)
            if self._stop.wait(self.backoff * (2 ** attempt)):
                break
        self.failed.append((event, error))

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued notification was tried (tests, shutdown)."""
        if self.command and self._thread.is_alive():
            done = threading.Event()
            threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
            done.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            try:  # wakes a thread waiting for work; a full queue is not emptied any more: never wait for room
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout=self.timeout + 1)
