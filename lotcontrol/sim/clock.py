"""A simulated clock: time moves only when the rig (or a test) moves it."""

from __future__ import annotations

import datetime as dt

from ..clock import Clock


class SimClock(Clock):
    """Starts at ``start`` seconds and the wall time ``wall_start``; ``advance_to`` moves both.
    ``step_wall`` steps the wall time alone (NTP setting a clock that was wrong), as ``synced`` says
    whether it is synchronised (``sync`` sets it): the monotonic time never moves with them."""

    def __init__(self, start: float = 0.0, wall_start: dt.datetime | None = None, *, synced: bool = True):
        super().__init__()
        self.t = start
        self.start = start
        self.wall_start = wall_start or dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone.utc)
        self.wall_offset = dt.timedelta(0)  # the sum of the steps of the wall clock
        self.synced = synced

    def now(self) -> float:
        return self.t

    def wall(self) -> dt.datetime:
        return self.wall_start + self.wall_offset + dt.timedelta(seconds=self.t - self.start)

    def today(self) -> dt.date:
        return self.wall().date()

    def synchronized(self) -> bool:
        return self.synced

    def advance_to(self, t: float) -> None:
        if t < self.t:
            raise ValueError(f"a clock does not go back: {t} < {self.t}")
        self.t = t

    def step_wall(self, by: dt.timedelta) -> None:
        """The wall clock is set forward (or back) by ``by``; monotonic time goes on as it was."""
        self.wall_offset += by

    def sync(self, synced: bool = True) -> None:
        self.synced = synced

    @property
    def simulated(self) -> bool:
        return True
