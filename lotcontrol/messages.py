"""What the vision worker tells the controller, over a pipe between the two processes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    """The decision on one face that came to the gate (one track)."""

    track: int
    outcome: str  # "grant" or "unknown"
    resident_id: int | None
    reason: str | None  # why unknown: no_match, frames_disagree, not_confirmed
    distance: float | None  # the nearest distance seen, to whichever resident
    frames: int  # encoded frames the decision rests on
    seen: int  # frames the face was tracked in
    first_seen: float  # frame time (seconds) the face was first detected
    decided: float  # frame time of the deciding frame
    cpu: float = 0.0  # CPU seconds the worker spent on frames from first_seen to decided
    snapshot: bytes | None = None  # JPEG of the face, only when events.snapshots is on

    @property
    def duration(self) -> float:
        return self.decided - self.first_seen


@dataclass(frozen=True)
class Heartbeat:
    time: float  # the worker's time.monotonic()
    frames: int  # frames processed since the worker started
    dropped: int  # frames the source had to drop because processing was busy
    encodings: int
    time_base: float = 0.0  # time.monotonic() at frame time 0 of a paced file, else 0.0


@dataclass(frozen=True)
class CameraStatus:
    ok: bool
    detail: str


@dataclass(frozen=True)
class SourceEnded:
    """A video file has been played to its end."""

    frames: int
