"""The safety state that must survive a restart: which zones' alarms are latched (and drills).

Kept in ``DATA_DIR/safety.json``, apart from the database so that a locked database never holds it
back, written whole (a temporary file, fsync, rename, fsync of the folder) by a thread of its own, so
the loop never waits on the disk: the outputs have switched before the file is written. Read once
at start-up, before the first evaluation. A file that exists but cannot be read is taken as the
worst case, every zone latched, until staff reset (``fire reset``): an alarm is never forgotten
because its record was damaged.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from ..files import write_atomic

log = logging.getLogger("lotcontrol")

FILE_NAME = "safety.json"
EVERY_ZONE = "*"  # the zones to latch when the file cannot be read


def load(path: Path | None) -> tuple[dict[str, dict], str | None]:
    """The latched zones ({zone: {"drill": bool}}), and a problem to report (or None)."""
    if path is None or not path.exists():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        latched = data["latched"]
        if not isinstance(latched, dict) or not all(isinstance(v, dict) for v in latched.values()):
            raise ValueError("'latched' is not a table of zones")
        return latched, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {EVERY_ZONE: {"drill": False}}, f"{path} cannot be read ({exc}); every zone latched until reset"


def save(path: Path, latched: dict[str, dict]) -> None:
    """Write the file whole or not at all, and make it durable before returning."""
    write_atomic(path, json.dumps({"latched": latched}, sort_keys=True).encode("utf-8"))


class LatchFile:
    """Saves the newest latched state in its own thread; ``put`` never blocks."""

    def __init__(self, path: Path | None, saved: dict[str, dict] | None = None):
        """Nothing is written until ``start()`` (a thread) or ``flush()`` (here and now)."""
        self.path = path
        self.saved = saved if saved is not None else {}
        self.error: str | None = None
        self._wanted: dict[str, dict] | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="safety-state", daemon=True)

    def start(self) -> None:
        if self.path is not None and not self._thread.is_alive():
            self._thread.start()

    def put(self, latched: dict[str, dict]) -> None:
        """The state now; written soon unless it is what is saved already."""
        if self.path is None:
            return
        with self._cond:
            if latched == (self._wanted if self._wanted is not None else self.saved):
                return
            self._wanted = dict(latched)
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the newest state is on disk; without the thread, write it here."""
        if not self._thread.is_alive():
            if self._wanted is not None:
                self._save(self._wanted)
            return self._wanted is None
        with self._cond:
            return self._cond.wait_for(lambda: self._wanted is None, timeout)

    def _save(self, wanted: dict[str, dict]) -> bool:
        try:
            save(self.path, wanted)
        except OSError as exc:
            if self.error is None:
                log.warning("safety state not saved to %s: %s (retrying)", self.path, exc)
            self.error = str(exc)
            return False
        self.saved, self.error = wanted, None
        with self._cond:
            if self._wanted is wanted:
                self._wanted = None
            self._cond.notify_all()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None or self._stopping)
                if self._wanted is None:
                    return
                wanted = self._wanted
            if not self._save(wanted):
                with self._cond:
                    if self._cond.wait_for(lambda: self._stopping, timeout=1.0):
                        return
                continue
            with self._cond:
                if self._stopping and self._wanted is None:
                    return

    def close(self) -> None:
        """Write the newest state, then stop. Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        elif self._wanted is not None and self.path is not None:
            self._save(self._wanted)
