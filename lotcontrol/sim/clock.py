"""A simulated clock: time moves only when the rig (or a test) moves it."""

from __future__ import annotations

import datetime as dt

from ..clock import Clock


class SimClock(Clock):
    """Starts at ``start`` seconds and the wall time ``wall_start``; ``advance_to`` moves it."""

    def __init__(self, start: float = 0.0, wall_start: dt.datetime | None = None):
        self.t = start
        self.start = start
        self.wall_start = wall_start or dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone.utc)

    def now(self) -> float:
        return self.t

    def wall(self) -> dt.datetime:
        return self.wall_start + dt.timedelta(seconds=self.t - self.start)

    def today(self) -> dt.date:
        return self.wall().date()

    def advance_to(self, t: float) -> None:
        if t < self.t:
            raise ValueError(f"a clock does not go back: {t} < {self.t}")
        self.t = t

    @property
    def simulated(self) -> bool:
        return True
