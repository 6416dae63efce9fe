"""Spoof attempts (pure): a face refused as not live (``vision.liveness = "enforce"``) three times
within a minute is someone trying pictures of a resident at the gate.

A refusal is counted against the resident the face looked like (the "claimed" resident: a photo of
one resident, held up again and again, is one attempt however many tracks it makes), or against its
track where it looked like nobody. The third refusal within ``window`` seconds of one face raises
``gate.spoof_attempt`` (alarm-class: lotcontrol.alerts), and the count starts again.
"""

from __future__ import annotations

from collections import deque

#: refusals of one face, and the seconds they must fall within
ATTEMPTS, WINDOW_SECONDS = 3, 60.0


class SpoofWatch:
    def __init__(self, attempts: int = ATTEMPTS, window: float = WINDOW_SECONDS):
        self.attempts, self.window = attempts, window
        self._refused: dict[tuple[str, int], deque[float]] = {}

    def refused(self, now: float, resident_id: int | None, track: int) -> dict | None:
        """A face refused as not live at ``now`` (the controller's clock); the alarm's details when
        it is the ``attempts``-th refusal of that face within ``window`` seconds, else None."""
        key = ("resident", resident_id) if resident_id is not None else ("track", track)
        times = self._refused.setdefault(key, deque())
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        for other in [k for k, v in self._refused.items() if not v or now - v[-1] > self.window]:
            del self._refused[other]  # forget faces not refused for a minute: memory stays bounded
        if len(times) < self.attempts:
            return None
        first = times[0]
        del self._refused[key]
        return {"refusals": self.attempts, "within": round(now - first, 3), "track": track}
