"""The inbox protocol: every message the controller's loop handles, in one place.

Messages come from six places, each on its own thread or process: the vision worker (over a pipe,
relayed by its supervisor), the GPIO inputs' callbacks, the probe poller, the control socket, the MQTT
link (lotcontrol.fleet) and the process itself (signals). Each carries the time it was made on the controller's clock (inputs) or
the worker's (vision). The controller handles them through one dispatch table
(``Controller.HANDLERS``); a message type without a handler is a programming error caught by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


# --- from the vision worker -----------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """The decision on one face that came to the gate (one track)."""

    track: int
    outcome: str  # "grant" or "unknown"
    resident_id: int | None
    reason: str | None  # why unknown: no_match, frames_disagree, not_confirmed
    distance: float | None  # the nearest distance seen, to whichever resident
    frames: int  # encoded frames the decision rests on
    first_seen: float  # frame time (seconds) the face was first detected
    decided: float  # frame time of the deciding frame
    cpu: float = 0.0  # CPU seconds the worker spent on frames from first_seen to decided
    snapshot: bytes | None = None  # JPEG of the face, only when events.snapshots is on
    liveness: dict | None = None  # vision.liveness log or enforce: its verdict and cues (Liveness.details)
    # 1:1: (resident id, distance) of the residents the face is within the 1:1 limit of, nearest first
    # (vision.matcher.Gallery.claims): what face_and_card and face_and_pin check a card or PIN against
    claims: tuple[tuple[int, float], ...] = ()

    @property
    def duration(self) -> float:
        return self.decided - self.first_seen


@dataclass(frozen=True)
class LivenessLogged:
    """``vision.liveness = "log"``: what liveness said of a face once it could tell, after the gate had
    decided it (a passage is decided in 2-3 frames, liveness needs more): its track, the resident the
    face was decided as (or None), the passage's outcome, and the verdict with its cues."""

    track: int
    resident_id: int | None
    outcome: str
    liveness: dict


@dataclass(frozen=True)
class PassShown:
    """A QR code the vision worker read in a frame where no face was being decided: its text, for the
    controller to check as a visitor pass (lotcontrol.passes). Sent once each time it comes into view.
    The text is never logged (``repr`` leaves it out)."""

    text: str = field(repr=False)
    time: float  # frame time


@dataclass(frozen=True)
class Heartbeat:
    time: float  # the worker's time.monotonic()
    frames: int  # frames processed since the worker started
    dropped: int  # frames the source had to drop because processing was busy
    time_base: float = 0.0  # time.monotonic() at frame time 0 of a paced file, else 0.0


@dataclass(frozen=True)
class FramesDone:
    """Stepped mode (the rig's simulated clock): the worker has handled every frame up to ``time``
    (clip seconds, the time the rig allowed) and sent what they decided; it now waits for the rig to
    allow ``next`` (the time of its next frame, or of its next attempt to reopen the camera)."""

    time: float
    next: float


@dataclass(frozen=True)
class GalleryLoaded:
    """The worker loaded the residents' templates (at start and after every change): the gallery's
    size, the accept limit ``match.max_stranger_rate`` gave for it and the expected risks
    (vision.matcher.Gallery.summary)."""

    summary: dict


@dataclass(frozen=True)
class CameraStatus:
    ok: bool
    detail: str


@dataclass(frozen=True)
class SourceEnded:
    """A video file has been played to its end."""

    frames: int


@dataclass(frozen=True)
class WorkerGone:
    """The vision worker's pipe closed: it exited or was killed (sent by its supervisor)."""

    generation: int
    exitcode: int | None


# --- from the inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactChange:
    """A fire contact (sprinkler burst switch, panel, call point) changed; closed = normal."""

    zone: str
    sensor: str
    closed: bool | None  # None: the input could not be read
    time: float


@dataclass(frozen=True)
class Reading:
    """One poll of one temperature probe: a temperature, or the fault that stands in its place."""

    probe: str
    celsius: float | None
    fault: str | None
    time: float


@dataclass(frozen=True)
class BaySensor:
    zone: str
    bay: str
    occupied: bool | None
    time: float


@dataclass(frozen=True)
class BeamBroken:
    beam: str  # "outer" or "inner"
    time: float


@dataclass(frozen=True)
class DoorChange:
    is_open: bool | None
    time: float


@dataclass(frozen=True)
class ExitChange:
    """The request-to-exit button's contact changed (pressed = True; None: unreadable)."""

    pressed: bool | None
    time: float


@dataclass(frozen=True)
class MeterReading:
    """One poll of a charging port's meter (lotcontrol.charging.meters): its values, or the error
    that stands in their place (never 0 W). ``answered``: the meter answered, but not with a number."""

    port: str
    watts: float | None
    kwh: float | None
    volts: float | None
    amps: float | None
    error: str | None
    time: float
    answered: bool = False


@dataclass(frozen=True)
class InterruptedSessions:
    """Metered sessions the last controller left open (it died during them), found in the database
    by the writer thread at start-up: each (key, port, meter_start kWh, checkpoint kWh, peak W), to
    be closed from its port's meter (lotcontrol.charging.sessions.Port.resume)."""

    sessions: tuple[tuple[str, str, float, float | None, float | None], ...]


@dataclass(frozen=True)
class Credential:
    """A finished credential at the Wiegand reader (lotcontrol.site.reader), matched in the reader's
    thread: never the card or the PIN. ``card``: "known" (the card of ``resident_id``), "unknown", or
    None (a PIN alone); ``pin``: "ok" or "wrong" (checked against the card's resident), "entered" (a
    PIN with no card yet to check it against), "not_set" (their resident has none), "locked" (the
    keypad is locked after wrong PINs), or None (no PIN). ``digest``: the card's keyed digest, for
    `card add --read` only; never logged."""

    reader: str
    card: str | None
    resident_id: int | None
    pin: str | None
    time: float
    digest: str | None = field(default=None, repr=False)


# --- from staff and the process ---------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A staff command from the control socket, already validated there; ``reply`` gets the answer.
    ``expires`` (time.monotonic()): when the socket told its client the controller did not answer;
    a command the loop reaches later is not carried out (a gate must not open after staff were told
    it failed)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    reply: Callable[[dict[str, Any]], None] = lambda answer: None
    expires: float | None = None


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass(frozen=True)
class Notice:
    """Something a helper thread saw that belongs in the event log (the MQTT link lost, a remote command
    refused): the loop logs it as event ``type`` with ``details``; it never changes an output."""

    type: str
    details: dict[str, Any] = field(default_factory=dict)
