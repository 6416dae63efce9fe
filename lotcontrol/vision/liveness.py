"""Liveness: whether the face of one passage is a head or a flat picture held up to the camera.

One RGB camera cannot see depth in one frame, but it sees it over the frames of a passage. The cue
used, **depth**, is the rank of the landmarks' motion (Tomasi and Kanade's factorisation): stack the
68 landmarks of each frame, each frame's centred on its mean and scaled by its distance between the
eyes, into a (2 x frames) x 68 matrix. Under a distant (affine) camera, the landmarks of a flat
object span 2 dimensions whatever it does (it moves, turns, comes closer: every frame is an affine
map of the same plane), and those of a head span 3 as soon as it turns a little: the nose moves
against the cheeks and the jaw's outline. The depth cue is the third singular value less the fourth
(the landmarks' noise, which lifts both alike), over the second. Over the growing window of frames
the gate judges, its highest value is 0.00-0.10 (median 0.02) for a synthetic printed sheet or screen
moved by hand toward the camera, and 0.18 for the one person of the shared clips the gate admits
(``python -m lotcontrol.bench.liveness`` measures it; docs/benchmarks.md gives the figures and how the
limit was chosen). A planar homography's residual, and the structure of that residual, were tried as
cues too and separated worse: dlib's landmarks on a photo seen under perspective do not move as one
plane's points would.

Two more cues are looked at on a few detected frames (``look``, every ``LOOK_SECONDS``): the
**presentation border** (``border``: straight edges around the face that keep their place against it
while it moves against the room) and **screen and print** (``surface``: the sharpest high-frequency
peak of the face's spectrum, with the share of clipped highlights beside it). On the synthetic attacks
the depth cue alone refused every one the gate would admit, so neither adds a refusal: they are recorded
in ``log`` and fused only where ``BORDER_LIMIT``/``SURFACE_LIMIT`` are set (unset; docs/benchmarks.md).

Several faces in view are judged each on its own track's landmarks and looks: a photo held up beside
a real head does not borrow the head's depth.

A face that does not turn at all shows no depth either way: the verdict is then *undecided*, and
the gate waits for more frames (``vision.liveness = "enforce"``) or records that it could not tell
(``"log"``). Not live is said only of a full window (``KEEP_FRAMES``) without depth: a face that leaves
before (it turns away, walks out of frame, detections miss it) stays undecided, and ``enforce`` refuses
it as ``liveness_undecided`` (not admitted, not an attack: not counted toward ``gate.spoof_attempt``). A phone replaying a video of the resident shows the recorded head's depth: this cue
cannot refuse it, and the README says so.

This runs in the vision worker (dlib's 68-point landmarks, ``face_recognition_models``' file that
``import face_recognition`` already loads). The pipeline (pipeline.py) feeds each face track's
landmarks to a ``FaceMotion`` from the first frame the face is ``vision.min_face_px`` wide and whole
in the frame (turned or blurred frames too: a turn is what shows depth), and asks it for a verdict
when the face is decided; ``vision.liveness`` says what is done with it (off, log, enforce).

**A second camera** (infrared or depth) is what stops a replayed video, a mask or a 3D print, which
one RGB camera cannot. The hook for it is ``SecondStream``: an object the pipeline is given
(``Pipeline(..., second=...)``) that receives each face's box in the RGB frame at the frame's time
and answers live, not live or undecided for the track; its answer, where it has one, overrides the
RGB cues (``Liveness.second``). No camera source for it exists yet: the worker starts none, and the
configuration has no setting for it (docs/configuration.md, "Liveness").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from .faces import Box, _face_recognition

#: Landmarks by face_recognition's 68-point groups, in dlib's order.
GROUPS = ("chin", "left_eyebrow", "right_eyebrow", "nose_bridge", "nose_tip", "left_eye", "right_eye",
          "top_lip", "bottom_lip")
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
#: Frames kept per face (the latest), and the fewest that give a verdict.
KEEP_FRAMES = 30
MIN_FRAMES = 6
#: The depth a passage must show to be live: chosen by ``python -m lotcontrol.bench.liveness`` on the
#: tuning half of the synthetic attacks and the shared clips' live tracks (docs/benchmarks.md, "Liveness").
#: 2026-12-05, with the held face's landmarks every STEP_SECONDS: 0.1220, with 40 attacks of each kind
#: (all 40 printed sheets and 32 screens the gate would admit refused, tuning and test halves; the one live
#: face the clips hold that the gate admits peaks at 0.181). Before the steps (every frame): 0.0806.
LIMIT = 0.1220


#: Between the gate's looks, a face liveness alone still watches (held by ``enforce``, followed by
#: ``log``) gets its landmarks at most this often, from its last box moved with them, without a detection:
#: the cue needs the head's motion over time, not every frame of a 30 fps camera (docs/benchmarks.md,
#: "Liveness": what that saves per decision).
STEP_SECONDS = 1 / 15
#: How far a face followed by its landmarks may change between two steps before it is not believed
#: (its size by this factor either way, its centre by this share of its width): a jump is something
#: else than the face, and the next detection says.
FOLLOW_SCALE, FOLLOW_SHIFT = 1.25, 0.5


class SecondStream(Protocol):
    """The hook for a second camera (IR or depth) beside the RGB one; see the module's docstring."""

    def observe(self, track: int, box: Box, time: float) -> None:
        """The face of ``track`` is at ``box`` (RGB frame pixels) in the frame taken at ``time``."""

    def verdict(self, track: int) -> bool | None:
        """Live (True), not live (False), or not known yet (None) for the track so far."""

    def forget(self, track: int) -> None:
        """The track has ended."""


#: dlib's 68 points in face_recognition's groups' order (``GROUPS``: the lips' corners and inner points
#: twice, 72 in all), the order the depth cue and its limit were measured in.
ORDER = np.array([*range(55), 64, 63, 62, 61, 60, *range(54, 60), 48, 60, 67, 66, 65, 64])


def landmarks(rgb: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
    """dlib's 68 landmarks of each face, as float (72, 2) x, y arrays in ``ORDER`` (face_recognition's
    ``face_landmarks``, without building its dictionaries: 1.5 ms a face instead of 2)."""
    if not boxes:
        return []
    fr = _face_recognition()
    predict, rectangle = fr.api.pose_predictor_68_point, fr.api.dlib.rectangle
    out = []
    for box in boxes:
        shape = predict(rgb, rectangle(box.left, box.top, box.right, box.bottom))
        out.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)[ORDER])
    return out


def anchor(box: Box, points: np.ndarray) -> tuple[float, float, float, float]:
    """Where a detected box sits against its landmarks: its centre's offset from their centroid and its
    width and height, in units of their spread (the root mean square distance from the centroid)."""
    centre, spread = points.mean(axis=0), _spread(points)
    middle = np.array([(box.left + box.right) / 2, (box.top + box.bottom) / 2])
    offset = (middle - centre) / spread
    return float(offset[0]), float(offset[1]), box.width / spread, (box.bottom - box.top) / spread


def followed(anchor_: tuple[float, float, float, float], before: np.ndarray, points: np.ndarray) -> Box | None:
    """The box that sits on ``points`` as the detected box sat on its landmarks (``anchor_``), or None
    when they jumped from ``before`` (the previous landmarks) further than a face moves in a step."""
    centre, spread = points.mean(axis=0), _spread(points)
    previous = _spread(before)
    if not 1 / FOLLOW_SCALE <= spread / previous <= FOLLOW_SCALE:
        return None
    dx, dy, width, height = anchor_
    if np.linalg.norm(centre - before.mean(axis=0)) > FOLLOW_SHIFT * width * previous:
        return None
    x, y = centre + np.array([dx, dy]) * spread
    half_w, half_h = width * spread / 2, height * spread / 2
    return Box(int(round(y - half_h)), int(round(x + half_w)), int(round(y + half_h)), int(round(x - half_w)))


def _spread(points: np.ndarray) -> float:
    return max(float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean())), 1e-6)


def depth(frames: np.ndarray) -> float | None:
    """The depth cue of a face's landmarks over frames, (frames, 68, 2); None with too few frames."""
    points = np.asarray(frames, dtype=np.float64)
    if len(points) < MIN_FRAMES:
        return None
    eyes = np.linalg.norm(points[:, LEFT_EYE].mean(axis=1) - points[:, RIGHT_EYE].mean(axis=1), axis=1)
    if np.any(eyes < 1.0):
        return None
    centred = (points - points.mean(axis=1, keepdims=True)) / eyes[:, None, None]
    matrix = np.concatenate([centred[:, :, 0], centred[:, :, 1]], axis=0)
    values = np.linalg.svd(matrix, compute_uv=False)
    if values[1] <= 0:
        return None
    return float((values[2] - values[3]) / values[1])


#: The presentation border: straight edges (Canny, then HoughLinesP) in a ring reaching ``RING`` face
#: widths around the face, looked at with the face ``RING_PX`` pixels wide; a line at least
#: ``LINE_MIN`` face widths long. A paper's edge or a phone's bezel keeps its place against the face
#: (its angle within ``LINE_ANGLE`` degrees, its distance from the face's centre within ``LINE_OFFSET``
#: face widths) while the face moves against the room (``MOVED`` face widths, or its size by that
#: share); the room's own lines keep their place in the frame instead and are not counted.
RING, RING_PX, LINE_MIN, LINE_ANGLE, LINE_OFFSET, MOVED = 1.0, 40, 0.6, 6.0, 0.08, 0.15
#: Screen and print: the face's middle (``PATCH`` pixels square, at the camera's resolution) for the
#: spectrum's sharpest peak among its high frequencies (moiré, halftone dots, a screen's pixel grid),
#: and the share of its pixels clipped white (a screen's glare).
PATCH, CLIPPED = 48, 250
#: The border and surface cues look at a detected frame of a face at most this often (about 1 ms a look).
LOOK_SECONDS, KEEP_LOOKS = 0.2, 10
#: Whether the border and surface cues are fused into the verdict (refusing a face where they reach
#: these limits), or only recorded (None): chosen by ``python -m lotcontrol.bench.liveness`` on the
#: tuning half of the synthetic attacks and the live faces of the shared clips (docs/benchmarks.md).
BORDER_LIMIT: float | None = None
SURFACE_LIMIT: float | None = None


@dataclass(frozen=True)
class Look:
    """What one detected frame shows around and on a face, for the border and surface cues."""

    centre: tuple[float, float]
    width: float
    lines: np.ndarray  # (n, 2): each straight edge's angle (radians, [0, pi)) and offset (pixels from the frame's origin)
    peak: float  # the face patch's sharpest high-frequency peak over the spectrum's median there
    clipped: float  # the share of the face's pixels clipped white


def look(rgb: np.ndarray, box: Box) -> Look:
    """The straight edges around the face and its surface, on one frame (about 1 ms)."""
    height, width = rgb.shape[:2]
    reach = int(RING * box.width)
    top, left = max(0, box.top - reach), max(0, box.left - reach)
    bottom, right = min(height, box.bottom + reach), min(width, box.right + reach)
    gray = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
    scale = RING_PX / max(box.width, 1)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(small, 60, 150)
    inner = [int((v - o) * scale) for v, o in ((box.top, top), (box.left, left), (box.bottom, top), (box.right, left))]
    edges[max(0, inner[0]):max(0, inner[2]), max(0, inner[1]):max(0, inner[3])] = 0  # the face's own edges
    found = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=int(LINE_MIN * RING_PX * 0.6),
                            minLineLength=LINE_MIN * RING_PX, maxLineGap=3)
    lines = np.zeros((0, 2))
    if found is not None:
        segments = found.reshape(-1, 4).astype(np.float64) / scale + [left, top, left, top]
        angle = np.arctan2(segments[:, 3] - segments[:, 1], segments[:, 2] - segments[:, 0]) % np.pi
        offset = -segments[:, 0] * np.sin(angle) + segments[:, 1] * np.cos(angle)  # the normal form's rho
        lines = np.column_stack([angle, offset])
    middle = ((box.top + box.bottom) // 2, (box.left + box.right) // 2)
    half = min(PATCH // 2, box.width // 3)
    patch = cv2.cvtColor(rgb[max(0, middle[0] - half):middle[0] + half, max(0, middle[1] - half):middle[1] + half],
                         cv2.COLOR_RGB2GRAY).astype(np.float32)
    face = rgb[max(0, box.top):box.bottom, max(0, box.left):box.right]
    clipped = float((face.max(axis=2) >= CLIPPED).mean()) if face.size else 0.0
    return Look(((box.left + box.right) / 2, (box.top + box.bottom) / 2), float(box.width), lines,
                _spectrum_peak(patch), clipped)


def _spectrum_peak(patch: np.ndarray) -> float:
    if min(patch.shape) < 16:
        return 0.0
    size = min(patch.shape)
    patch = patch[:size, :size]
    window = np.outer(np.hanning(size), np.hanning(size))
    power = np.abs(np.fft.fftshift(np.fft.fft2((patch - patch.mean()) * window))) ** 2
    rows, cols = np.indices(power.shape) - size // 2
    radius = np.hypot(rows, cols) / (size / 2)
    high = power[(radius >= 0.35) & (radius <= 1.0)]
    median = float(np.median(high))
    return float(high.max() / median) if median > 0 else 0.0


def _offset_from(lines: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Each line's distance from a point, signed as its normal form's."""
    return lines[:, 1] - (-centre[0] * np.sin(lines[:, 0]) + centre[1] * np.cos(lines[:, 0]))


def border(looks: list[Look]) -> float | None:
    """The presentation border cue: the most straight edges around the face that kept their place
    against it, and not in the frame, between the first look and a later one after the face moved
    against the room; None before it has moved enough."""
    if len(looks) < 2:
        return None
    first, best = looks[0], None
    for later in looks[1:]:
        shift = np.hypot(later.centre[0] - first.centre[0], later.centre[1] - first.centre[1]) / first.width
        if shift < MOVED and abs(np.log(later.width / first.width)) < MOVED:
            continue
        best = max(best or 0, _kept(first, later))
    return None if best is None else float(best)


def _kept(first: Look, later: Look) -> int:
    if not len(first.lines) or not len(later.lines):
        return 0
    turn = np.abs(later.lines[:, None, 0] - first.lines[None, :, 0])
    turn = np.degrees(np.minimum(turn, np.pi - turn)) <= LINE_ANGLE
    on_face = np.abs(_offset_from(later.lines, later.centre)[:, None] / later.width
                     - _offset_from(first.lines, first.centre)[None, :] / first.width) <= LINE_OFFSET
    in_frame = np.abs(later.lines[:, None, 1] - first.lines[None, :, 1]) / first.width <= LINE_OFFSET
    kept = (turn & on_face).any(axis=1) & ~(turn & in_frame).any(axis=1)
    return int(kept.sum())


def surface(looks: list[Look]) -> float | None:
    """The screen and print cue over the looks: the sharpest spectral peak seen on the face (a
    screen's or a print's regular pattern stands out of the skin's texture); None without looks."""
    return max((x.peak for x in looks), default=None)


@dataclass
class Liveness:
    """What liveness says of one passage: ``live`` True, False, or None (undecided), and its cues."""

    live: bool | None
    depth: float | None
    frames: int
    second: bool | None = None  # the second camera's answer, where there is one (SecondStream)
    border: float | None = None  # the presentation border cue, where looked at (LOOK_SECONDS)
    surface: float | None = None  # the screen and print cue, likewise

    def details(self) -> dict:
        out = {"live": self.live, "depth": None if self.depth is None else round(self.depth, 4),
               "frames": self.frames}
        if self.border is not None or self.surface is not None:
            out["border"] = self.border
            out["surface"] = None if self.surface is None else round(self.surface, 1)
        if self.second is not None:
            out["second"] = self.second
        return out


@dataclass
class FaceMotion:
    """The latest landmarks of one face, frame by frame, and the verdict they give."""

    limit: float = LIMIT
    frames: list[np.ndarray] = field(default_factory=list)
    #: landmarks taken between detections (the face followed by them): provisional until a detection
    #: finds the face again (``confirm``); the verdict at the end of the passage leaves them out. The
    #: landmarks of a face that left are the background's, and must not make a picture taken away look
    #: live; a look that misses a face does not drop them (HOG misses a head turned away, the very
    #: frames that show its depth), and a grant on them needs a detection on the face's crop (pipeline)
    pending: list[np.ndarray] = field(default_factory=list)
    looks: list[Look] = field(default_factory=list)  # the border and surface cues' frames (detected ones)

    def add(self, points: np.ndarray, provisional: bool = False) -> None:
        if not provisional:
            self.confirm()
        (self.pending if provisional else self.frames).append(np.asarray(points, dtype=np.float64))
        del self.frames[:-KEEP_FRAMES]

    def confirm(self) -> None:
        self.frames += self.pending
        self.pending = []
        del self.frames[:-KEEP_FRAMES]

    @property
    def latest(self) -> np.ndarray | None:
        return (self.pending or self.frames or [None])[-1]

    def verdict(self, final: bool = False) -> Liveness:
        """Live once the depth reaches the limit; not live when it has not over a full window of
        frames; undecided before, and still undecided when the passage ends first (``final``: on the
        confirmed frames only): a face that turned away or walked out of frame before the window was
        full did not show liveness anything either way (the pipeline refuses it ``liveness_undecided``,
        not ``not_live``)."""
        frames = (self.frames if final else self.frames + self.pending)[-KEEP_FRAMES:]
        cue = depth(np.asarray(frames)) if len(frames) >= MIN_FRAMES else None
        edge, screen = border(self.looks), surface(self.looks)
        if (BORDER_LIMIT is not None and edge is not None and edge >= BORDER_LIMIT) or \
                (SURFACE_LIMIT is not None and screen is not None and screen >= SURFACE_LIMIT):
            live = False  # a presentation border or a screen's or print's pattern: not live, whatever the depth
        elif cue is not None and cue >= self.limit:
            live = True
        elif len(frames) >= KEEP_FRAMES:
            live = False
        else:
            live = None
        return Liveness(live, cue, len(frames), border=edge, surface=screen)
