"""Debounce as pure logic: an input's new state counts once it has held for a while.

Used for every contact that decides something: the fire contacts (``fire.debounce_seconds``), the
door contact and the exit button (``gate.debounce_seconds``). Times come with the changes (the
clock of whoever saw them), so it runs the same on the real and on a simulated clock.
"""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

Key = TypeVar("Key", bound=Hashable)


class Debouncer(Generic[Key]):
    """Raw changes in (``feed``), settled states out (``settled``) once they held ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.stable: dict[Key, object] = {}
        self._pending: dict[Key, tuple[object, float]] = {}

    def initial(self, key: Key, state: object) -> None:
        """The state found at start-up: it counts at once."""
        self.stable[key] = state
        self._pending.pop(key, None)

    def feed(self, key: Key, state: object, time: float) -> None:
        """A raw change; a bounce back to the settled state before the time is up cancels it."""
        if key in self.stable and self.stable[key] == state:
            self._pending.pop(key, None)
        else:
            self._pending[key] = (state, time)

    def settled(self, now: float) -> list[tuple[Key, object]]:
        """The changes that have now held long enough, each once."""
        out = []
        for key, (state, since) in list(self._pending.items()):
            if now >= since + self.seconds:  # the same sum as next_deadline: due at that deadline exactly
                del self._pending[key]
                self.stable[key] = state
                out.append((key, state))
        return out

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return min(since for _, since in self._pending.values()) + self.seconds
