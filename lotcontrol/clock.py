"""Time as the controller sees it: monotonic seconds for deadlines, and the wall time and date that
go with them (event times, a resident's validity). The rig swaps in lotcontrol.sim.clock.SimClock
to run a scenario's hours in milliseconds.

Every timer (gate pulse, door held open, debounce, charging limit, a probe's rate of rise) runs on
``now()``, the monotonic clock: a Pi without a real-time clock boots in 1970 or at its last saved
time, and NTP then steps the wall clock by hours or years; monotonic time does not move with it.
The wall time only dates events, and ``synchronized()`` says whether it can be trusted yet: the
kernel's own NTP status, read with adjtimex(2) (no dbus, a few microseconds), the same answer as
``timedatectl show -p NTPSynchronized`` (which systemd-timedated reads from adjtimex as well).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import time

#: Seconds a read of the kernel's sync status is used before it is read again.
SYNC_REFRESH_SECONDS = 5.0
STA_UNSYNC = 0x0040  # struct timex status: the clock is not synchronised (linux/timex.h)
TIME_ERROR = 5  # adjtimex's return value while the clock is not synchronised


class _Timex(ctypes.Structure):
    """struct timex up to ``status``, then room for the rest (the kernel writes all of it)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("rest", ctypes.c_byte * 256)]


def _adjtimex():
    try:
        # the process's own symbols, libc's among them: find_library("c") runs `ldconfig -p` in a child
        # process, at the import of every command and of the controller
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.adjtimex
    except (OSError, AttributeError):  # not Linux
        return None
    function.argtypes = [ctypes.POINTER(_Timex)]
    function.restype = ctypes.c_int
    return function


_ADJTIMEX = _adjtimex()


def kernel_synchronized() -> bool | None:
    """Whether the kernel says the wall clock is synchronised (NTP has set it); None where it cannot
    be asked (not Linux). Reads only (modes 0): nothing is changed."""
    if _ADJTIMEX is None:
        return None
    timex = _Timex()
    state = _ADJTIMEX(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


class Clock:
    """The machine's clocks."""

    def __init__(self) -> None:
        self._synced: bool = True
        self._synced_until = float("-inf")

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def today(self) -> dt.date:
        return dt.datetime.now().date()

    def synchronized(self) -> bool:
        """Whether the wall time (and date) can be trusted: NTP has synchronised it. Read from the
        kernel at most every SYNC_REFRESH_SECONDS (cached in between, so the loop never waits on it);
        where the kernel cannot be asked, True (nothing says otherwise)."""
        now = time.monotonic()
        if now >= self._synced_until:
            state = kernel_synchronized()
            self._synced = True if state is None else state
            self._synced_until = now + SYNC_REFRESH_SECONDS
        return self._synced

    @property
    def simulated(self) -> bool:
        return False
