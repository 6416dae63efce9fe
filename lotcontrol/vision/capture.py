"""Taking a resident's face at the gate camera: frames in, a spread of good templates of one person out.

``FaceCapture`` looks at each frame as the gate will see the resident: the largest face, large enough,
whole, sharp, not turned too far. It encodes each good frame and keeps it as a candidate, with how far
the head is turned (``faces.signed_turn``), and says after every frame what it still needs ("come
closer", "hold still", "turn a little left", ...). At the end ``chosen()`` picks at most ``templates``
candidates spread out in encoding space (farthest-point selection from the most frontal sharp one), so
the templates cover the resident's turns and expressions instead of repeating one still frame.

It refuses, and the caller must then change nothing, when two faces are in view (whose face would it
be?) or when the face changes person: a frame whose encoding is further than ``same_person`` from
the mean of the first frames' encodings. No frame is kept: only encodings, boxes and measures.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..config import Config
from ..errors import CaptureError
from ..phrases import Phrase, error
from .camera import FrameSource
from . import encoders
from .faces import Box, detect, five_points, sharpness, signed_turn
from .matcher import SamePerson

#: Turns (``signed_turn``) beyond this count as turned; within it as facing the camera.
TURNED = 0.08
#: At most this many candidates are kept (the earliest are thinned out past it): bounded memory.
MAX_CANDIDATES = 120
#: Fewer good frames than this and nothing is enrolled.
MIN_FRAMES = 2
#: Frames are searched with HOG (one upsample) at this width (faces from about 40 px), so that a face too
#: small to use is seen and told to come closer, and a second face of ``vision.min_face_px`` in view is
#: refused: on the first frame, on a frame where the search at the gate's scale (``vision.detect_width``,
#: where it is narrower: faces from about 80 px at 320 for a 640-px frame) finds no face, at least every
#: FULL_SEARCH_SECONDS, and on the frame that completes the capture. The other frames are searched at the
#: gate's scale only (at 320 against 640: 45 against 185 ms here).
DETECT_WIDTH = 640
FULL_SEARCH_SECONDS = 1.0

#: What the resident should do next: phrases (lotcontrol.phrases), said in English by the command line
#: and by their code in the web console's language.
NO_FACE = Phrase("need.no_face")
CLOSER = Phrase("need.closer")
CENTRE = Phrase("need.centre")
STILL = Phrase("need.still")
TOO_TURNED = Phrase("need.too_turned")
FRONT = Phrase("need.front")
LEFT = Phrase("need.left")  # the resident's own left
RIGHT = Phrase("need.right")
DONE = Phrase("need.done")


@dataclass(frozen=True)
class Candidate:
    """One good frame of the resident: its template and what it looked like. Never the frame."""

    encoding: np.ndarray  # dlib's
    box: Box
    sharpness: float
    turn: float  # signed_turn: + the resident's left, - their right
    time: float  # seconds since the capture started
    others: dict = field(default_factory=dict)  # the other encoders' embeddings: {name: vector}
    vector: np.ndarray | None = None  # the face in the configured space (None: ``encoding``, dlib's)

    @property
    def point(self) -> np.ndarray:
        """Where the face is in the space it is compared in."""
        return self.encoding if self.vector is None else self.vector


class FaceCapture:
    """One resident in front of a camera, one frame at a time. Owns its state: no locks."""

    def __init__(self, config: Config, *, templates: int | None = None, same_person: float | None = None):
        self.config = config
        self.templates = templates or config.enroll.camera_templates
        self.same_person = SamePerson(same_person if same_person is not None else config.enroll.camera_same_person,
                                      config.vision.encoder)
        self.min_face_px = max(config.enroll.min_face_px, config.vision.min_face_px)
        self.candidates: list[Candidate] = []
        self.need = NO_FACE
        self._full_search = float("-inf")  # the frame time of the last search at DETECT_WIDTH

    @property
    def complete(self) -> bool:
        """Enough good frames, facing the camera and turned to either side."""
        return len(self.candidates) >= self.templates and not self._missing_turns()

    def _missing_turns(self) -> list[Phrase]:
        turns = [c.turn for c in self.candidates]
        missing = []
        if not any(abs(t) <= TURNED for t in turns):
            missing.append(FRONT)
        if not any(t > TURNED for t in turns):
            missing.append(LEFT)
        if not any(t < -TURNED for t in turns):
            missing.append(RIGHT)
        return missing

    def feed(self, image: np.ndarray, now: float) -> Phrase:
        """Look at one BGR frame; return what the resident should do next (CaptureError: refused)."""
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        gate_width = min(self.config.vision.detect_width, DETECT_WIDTH)
        boxes, full = [], False
        if gate_width < min(DETECT_WIDTH, rgb.shape[1]) and now - self._full_search < FULL_SEARCH_SECONDS:
            boxes = self._detect(rgb, gate_width)
        if not boxes:
            boxes, full = self._detect(rgb, DETECT_WIDTH), True
            self._full_search = now
        self.need = self._look(rgb, boxes, now)
        if self.need == DONE and not full:  # the last frame: nobody too small for the gate's scale beside them
            self._one_face(self._detect(rgb, DETECT_WIDTH), now)
        return self.need

    def _detect(self, rgb: np.ndarray, width: int) -> list[Box]:
        """Faces in the frame scaled to ``width``, largest first; boxes in frame pixels."""
        factor = min(1.0, width / rgb.shape[1])
        small = rgb if factor == 1.0 else cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return [b.scaled(1 / factor) for b in detect(small, 1)]

    def _look(self, rgb: np.ndarray, boxes: list[Box], now: float) -> Phrase:
        if not boxes:
            return NO_FACE
        self._one_face(boxes, now)
        box = boxes[0]
        height, width = rgb.shape[:2]
        if box.width < self.min_face_px:
            return CLOSER
        if box.top < 0 or box.left < 0 or box.bottom > height or box.right > width:
            return CENTRE
        sharp = sharpness(rgb, box)
        if sharp < self.config.enroll.min_sharpness:
            return STILL
        points = five_points(rgb, [box])  # once: the turn and faceres's alignment
        turn = signed_turn(rgb, box, points[0]) if points else float("inf")
        if not abs(turn) <= self.config.vision.max_turn:  # inf: no eyes found
            return TOO_TURNED
        found = {name: vectors[0] for name, vectors in encoders.embed_all(rgb, [box], points).items()}
        vector = encoders.face_vector(self.config.vision.encoder, found)  # None: faceres is not installed
        candidate = Candidate(found["dlib"], box, sharp, turn, now,
                              {k: v for k, v in found.items() if k != "dlib"}, vector)
        if vector is None and self.same_person.space != "dlib":  # no faceres: compared on dlib, at dlib's limit
            self.same_person = SamePerson(self.same_person.setting)
        self._check_same_person(candidate.point, now)
        self._keep(candidate)
        if self.complete:
            return DONE
        missing = self._missing_turns()
        return missing[0] if missing else STILL

    def _one_face(self, boxes: list[Box], now: float) -> None:
        """CaptureError if a second face big enough to be used is in view (``boxes``: largest first)."""
        if len(boxes) > 1 and boxes[1].width >= self.config.vision.min_face_px:
            raise error(CaptureError, "camera.two_faces", at=f"{now:.1f}")

    def _check_same_person(self, encoding: np.ndarray, now: float) -> None:
        distance = self.same_person.add(encoding)
        if self.same_person.breaks(distance):
            raise error(CaptureError, "camera.changed_person", at=f"{now:.1f}", distance=f"{distance:.2f}",
                        limit=self.same_person.described)

    def _keep(self, candidate: Candidate) -> None:
        self.candidates.append(candidate)
        if len(self.candidates) > MAX_CANDIDATES:  # a long session: drop every other early frame
            self.candidates = self.candidates[: MAX_CANDIDATES // 2: 2] + self.candidates[MAX_CANDIDATES // 2:]

    def chosen(self) -> list[Candidate]:
        """At most ``templates`` candidates, spread out: the most frontal of the sharper half first,
        then each time the candidate farthest from all chosen so far. CaptureError if too few."""
        if len(self.candidates) < MIN_FRAMES:
            raise error(CaptureError, "camera.too_few", count=len(self.candidates), needed=MIN_FRAMES, last=self.need)
        return farthest_point(self.candidates, self.templates)


def farthest_point(candidates: list[Candidate], count: int) -> list[Candidate]:
    """``count`` candidates spread out in encoding space, in the order chosen."""
    sharp = np.median([c.sharpness for c in candidates])
    first = min(range(len(candidates)),
                key=lambda i: (candidates[i].sharpness < sharp, abs(candidates[i].turn), i))
    matrix = np.array([c.point for c in candidates], dtype=np.float64)
    nearest = np.linalg.norm(matrix - matrix[first], axis=1)  # distance to the nearest chosen
    picked = [first]
    while len(picked) < min(count, len(candidates)):
        far = int(np.argmax(nearest))
        if nearest[far] <= 0.0:
            break  # the rest are copies of frames chosen already
        picked.append(far)
        nearest = np.minimum(nearest, np.linalg.norm(matrix - matrix[far], axis=1))
    return [candidates[i] for i in picked]


def capture(source: FrameSource, session: FaceCapture, seconds: float,
            say: Callable[[Phrase], None] = lambda need: None, clock: Callable[[], float] = time.monotonic,
            preview: Callable[[np.ndarray], None] | None = None) -> list[Candidate]:
    """Feed the newest frames of ``source`` to ``session`` for at most ``seconds`` (less once it is
    complete, or when a file or script ends), telling ``say`` each new instruction; the chosen
    candidates. A recording (``source.live`` False) is timed by its frames' own clock: its seconds
    are the clip's, however long the machine takes over each frame. ``preview`` is shown each frame
    before it is looked at (the web console's live picture; it must not keep it). CaptureError if
    refused; SourceError if the camera fails."""
    started = clock() if source.live else 0.0
    last = None
    while not session.complete and not (source.live and clock() - started >= seconds):
        frame = source.read(timeout=2.0)
        if frame is None:
            break
        elapsed = (clock() if source.live else frame.time) - started
        if elapsed >= seconds:
            break
        if preview is not None:
            preview(frame.image)
        need = session.feed(frame.image, elapsed)
        if need != last:
            say(need)
            last = need
    return session.chosen()


#: The live picture (``PreviewPipe``): this wide, at most one frame every PREVIEW_EVERY seconds.
PREVIEW_WIDTH = 320
PREVIEW_EVERY = 0.2


class PreviewPipe:
    """The camera's frames for a live picture elsewhere (the web console's enrollment page): each
    scaled to ``width``, as JPEG, written to the pipe ``fd`` as a 4-byte big-endian length and the
    JPEG, at most one every ``every`` seconds. Nothing is kept; a reader that has gone ends the
    preview, not the enrollment."""

    def __init__(self, fd: int, width: int = PREVIEW_WIDTH, every: float = PREVIEW_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.out = open(fd, "wb")  # buffered: a frame longer than the pipe's buffer is written whole
        self.width, self.every, self.clock = width, every, clock
        self.last = float("-inf")

    def __call__(self, image: np.ndarray) -> None:
        now = self.clock()
        if self.out is None or now - self.last < self.every:
            return
        self.last = now
        factor = min(1.0, self.width / image.shape[1])
        small = image if factor == 1.0 else cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
        if not ok:
            return
        try:
            self.out.write(struct.pack(">I", len(jpeg)) + jpeg.tobytes())
            self.out.flush()
        except OSError:  # the reader went away: no more pictures
            self.close()

    def close(self) -> None:
        if self.out is not None:
            try:
                self.out.close()
            except OSError:
                pass
            self.out = None
