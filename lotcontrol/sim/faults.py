"""Faults the rig and the benchmarks inject from outside the controller's process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..errors import LotControlError


def lock_database(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that holds the database's write lock for ``seconds`` (a backup, a long
    read-write session), started here and waited for until it holds the lock. Kill it to end early."""
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(float(sys.argv[2]))")
    locker = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE)
    if locker.stdout.readline().strip() != b"locked":
        locker.kill()
        raise LotControlError(f"could not lock the database {path}")
    return locker
