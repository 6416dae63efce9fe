"""Time as the controller sees it: monotonic seconds for deadlines, and the wall time and date that
go with them (event times, a resident's validity). The rig swaps in lotcontrol.sim.clock.SimClock
to run a scenario's hours in milliseconds."""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    """The machine's clocks."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def today(self) -> dt.date:
        return dt.datetime.now().date()

    @property
    def simulated(self) -> bool:
        return False
