"""Synthetic presentation attacks: a printed photo or a screen held up to the gate camera, filmed.

Each attack is a flat object in a room, moved the way a hand moves it: brought toward the camera
(a sheet from about 1.6 m to 0.5 m, a phone from 0.5 m to 0.2 m: near enough for the gate to see the
face) over a few seconds, turned a few degrees back and forth, with a tremor.
The camera is a pinhole camera (``FOCAL`` px at 640x480, about 60 degrees across) with sensor noise.

- ``print``: the photo on a sheet with a white margin, paper grain, the room's light on it (a colour
  cast and a gradient), sometimes bent about its vertical axis (a cylinder, drawn as flat strips), and
  a hand holding one lower corner;
- ``screen``: the photo on a phone or a tablet: a black bezel, the screen's gamma and colour, moiré
  (the screen's pixel grid beating with the camera's), a glare spot and refresh banding rolling down;
- ``replay``: a screen showing a video (the frames of a real clip) instead of a still, held closer
  (``REPLAY_DISTANCES``: a phone from 0.3 m to 0.12 m), since a video shows the head with its
  surroundings and its face is smaller on the screen than a still's; filmed 4 s. A replay of a moving
  head shows that head's depth: it is the attack RGB liveness cannot refuse, measured to say so.

They are attacks for the liveness bench (``lotcontrol.bench.liveness``) and its tests, built by code
so that anybody can make them again; they are never used to tune a limit that is then reported on
them (bench.liveness says how the limits were chosen). Faces come from ../shared/faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

FOCAL = 560.0
SIZE = (640, 480)
Kind = Literal["print", "screen", "replay"]
#: metres from the camera at the start and at the end of an attack
DISTANCES = {"print": (1.6, 0.5), "phone": (0.5, 0.2), "tablet": (1.0, 0.35)}
#: the same for a video replay: held close, where the recorded face (about a third of the screen's
#: width) is as large to the gate as a still's, 60-110 px at the end
REPLAY_DISTANCES = {"phone": (0.3, 0.12), "tablet": (0.7, 0.28)}


@dataclass(frozen=True)
class Attack:
    kind: Kind
    seed: int
    bend: float = 0.0  # print: the sheet's bend, metres of depth at its edges (0: flat)
    hand: bool = False  # print: a hand holds a lower corner
    device: Literal["phone", "tablet"] = "phone"  # screen, replay
    seconds: float = 3.0
    fps: float = 15.0

    @property
    def name(self) -> str:
        extra = {"print": f"{'bent' if self.bend else 'flat'}{'-hand' if self.hand else ''}"}.get(self.kind, self.device)
        return f"{self.kind}-{extra}-{self.seed}"


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """A rotation from angles in degrees: roll about the view axis, then yaw, then pitch."""
    y, p, r = np.radians([yaw, pitch, roll])
    about_y = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    about_z = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


class HandMotion:
    """Where a held object is at time t: its rotation and the position of its centre (metres)."""

    def __init__(self, rng: np.random.Generator, seconds: float, distances: tuple[float, float]):
        self.seconds = seconds
        far, near = distances
        self.start, self.end = far * rng.uniform(0.85, 1.15), near * rng.uniform(0.85, 1.15)
        self.amplitude = rng.uniform(3.0, 10.0, size=3)  # degrees of yaw, pitch, roll
        self.rate = rng.uniform(0.2, 0.6, size=3)  # turns per second
        self.phase = rng.uniform(0, 2 * np.pi, size=3)
        self.drift = rng.uniform(-0.08, 0.08, size=2)
        self.tremor = rng.normal(0, 0.4, size=(int(seconds * 60) + 2, 3))  # degrees, smoothed below
        self.tremor = cv2.GaussianBlur(self.tremor, (1, 9), 0)

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        angles = self.amplitude * np.sin(2 * np.pi * self.rate * t + self.phase)
        angles = angles + self.tremor[min(int(t * 60), len(self.tremor) - 1)]
        z = self.start + (self.end - self.start) * min(1.0, t / self.seconds)
        scale = z / 3.0  # a hand drifts by angles: less in metres near the camera
        centre = np.array([self.drift[0] * t * scale, (-0.05 + self.drift[1] * t) * scale, z])
        return rotation(*angles), centre


def _camera() -> np.ndarray:
    return np.array([[FOCAL, 0, SIZE[0] / 2], [0, FOCAL, SIZE[1] / 2], [0, 0, 1]])


def _room(rng: np.random.Generator) -> np.ndarray:
    """A blurred, lit background: walls and shapes, not a face."""
    base = rng.uniform(60, 170, size=3)
    room = np.tile(base, (SIZE[1], SIZE[0], 1)).astype(np.float32)
    for _ in range(6):
        x0, y0 = rng.integers(0, SIZE[0]), rng.integers(0, SIZE[1])
        cv2.rectangle(room, (int(x0), int(y0)), (int(x0 + rng.integers(40, 300)), int(y0 + rng.integers(40, 300))),
                      rng.uniform(30, 220, size=3).tolist(), -1)
    room = cv2.GaussianBlur(room, (0, 0), 6)
    gradient = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.2), SIZE[0], dtype=np.float32)
    return room * gradient[None, :, None]


def _paper(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo printed: a white margin, ink that lifts the blacks, and paper grain."""
    height, width = photo.shape[:2]
    margin = int(width * rng.uniform(0.15, 0.4))
    sheet = cv2.copyMakeBorder(photo, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=(238, 238, 232))
    sheet = sheet.astype(np.float32) * 0.85 + 25  # print has no true black
    grain = cv2.GaussianBlur(rng.normal(0, 6, sheet.shape[:2]).astype(np.float32), (0, 0), 0.8)
    return sheet + grain[..., None]


def _screen(photo: np.ndarray, rng: np.random.Generator, device: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A device showing a picture: its bezel around the screen, and where the screen is."""
    height, width = photo.shape[:2]
    aspect = 16 / 9
    screen_h = int(width * aspect) if device == "phone" else int(width * 0.75)
    screen = np.zeros((screen_h, width, 3), np.float32)
    top = (screen_h - height) // 2
    if top >= 0:
        screen[top:top + height] = photo
    else:
        screen[:] = photo[-top:-top + screen_h]
    bezel = int(width * (0.06 if device == "phone" else 0.1))
    device_image = cv2.copyMakeBorder(screen, bezel, bezel, bezel, bezel, cv2.BORDER_CONSTANT, value=(18, 18, 20))
    return device_image, (bezel, bezel, width, screen_h)


def _screen_look(image: np.ndarray, area: tuple[int, int, int, int], rng: np.random.Generator, t: float) -> np.ndarray:
    """A screen as a camera sees it: gamma and a blue cast, moiré, a glare spot, refresh banding."""
    x, y, w, h = area
    screen = image[y:y + h, x:x + w]
    screen = 255.0 * (np.clip(screen, 0, 255) / 255.0) ** rng.uniform(0.7, 0.9)
    screen = screen * np.array([1.08, 1.0, 0.93], np.float32)  # BGR: displays look blue to a camera
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 7.0)
    moire = np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / period)
    screen = screen * (1 + 0.06 * moire[..., None])
    band = 1 + 0.05 * np.sin(2 * np.pi * (rows / h * 3 - t * 2.0))
    screen = screen * band[..., None]
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.5) * h
    glare = np.exp(-(((cols - cx) / (0.25 * w)) ** 2 + ((rows - cy) / (0.15 * h)) ** 2))
    screen = screen + 120 * glare[..., None]
    out = image.copy()
    out[y:y + h, x:x + w] = screen
    return out


def _hand(canvas: np.ndarray, corner: np.ndarray, size: float, rng_state: tuple) -> None:
    """A hand holding the object's lower corner: a skin-coloured blob over it."""
    colour, angle = rng_state
    cv2.ellipse(canvas, (int(corner[0]), int(corner[1])), (max(2, int(size * 0.5)), max(2, int(size * 0.28))),
                angle, 0, 360, colour, -1, cv2.LINE_AA)


def _strips(width: int, bend: float, metres_per_px: float, count: int = 12) -> list[tuple[int, int, float, float]]:
    """A sheet bent into a cylinder, as flat vertical strips: (x0, x1, depth at x0, depth at x1)."""
    edges = np.linspace(0, width, count + 1).astype(int)
    half = width / 2
    depth = lambda x: bend * ((x - half) / half) ** 2  # noqa: E731  deeper at the edges (bowed toward the camera)
    return [(int(a), int(b), -depth(a), -depth(b)) for a, b in zip(edges[:-1], edges[1:])]


def _project(surface: np.ndarray, rotation_: np.ndarray, centre: np.ndarray, metres_per_px: float,
             bend: float, canvas: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Draw ``surface`` (held at ``centre``, turned by ``rotation_``) into ``canvas``; its corners."""
    height, width = surface.shape[:2]
    camera = _camera()

    def to_image(points_px: np.ndarray, depths: np.ndarray) -> np.ndarray:
        local = np.column_stack([(points_px[:, 0] - width / 2) * metres_per_px,
                                 (points_px[:, 1] - height / 2) * metres_per_px, depths])
        world = local @ rotation_.T + centre
        image = world @ camera.T
        return image[:, :2] / image[:, 2:3]

    for x0, x1, d0, d1 in _strips(width, bend, metres_per_px) if bend else [(0, width, 0.0, 0.0)]:
        x1 = min(width, x1 + 1)  # strips overlap by a pixel: no seam between them
        source = np.float32([[x0, 0], [x1, 0], [x1, height], [x0, height]])
        target = to_image(source, np.array([d0, d1, d1, d0])).astype(np.float32)
        homography = cv2.getPerspectiveTransform((source - [x0, 0]).astype(np.float32), target)
        strip = np.ascontiguousarray(surface[:, x0:x1])
        warped = cv2.warpPerspective(strip, homography, SIZE, flags=cv2.INTER_LINEAR)
        covered = cv2.warpPerspective(np.ones(strip.shape[:2], np.float32), homography, SIZE) > 0.5
        # copied within the box of the pixels it covers (found in C): the same frame, a tenth of the work
        left, top, box_width, box_height = cv2.boundingRect(covered.view(np.uint8))
        box = np.s_[top:top + box_height, left:left + box_width]
        canvas[box][covered[box]] = warped[box][covered[box]]
        mask[box] |= covered[box]
    return to_image(np.float32([[0, 0], [width, 0], [width, height], [0, height]]), np.zeros(4))


def film(attack: Attack, photo_bgr: np.ndarray | None = None, video: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The attack's frames (BGR uint8, 640x480): ``photo_bgr`` for print and screen, ``video`` frames
    (shown at the attack's fps, looped) for replay."""
    rng = np.random.default_rng(attack.seed)
    # held where its face is big enough for the gate: a sheet from 3 m, a phone's small face much nearer
    distances = (REPLAY_DISTANCES if attack.kind == "replay" else DISTANCES)[
        "print" if attack.kind == "print" else attack.device]
    motion = HandMotion(rng, attack.seconds, distances)
    room = _room(rng)
    light = rng.uniform(0.75, 1.15) * rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    hand = (tuple(float(c) for c in rng.uniform([60, 90, 140], [110, 140, 200])), float(rng.uniform(-40, 40)))
    face_metres = rng.uniform(0.12, 0.17)  # a printed face near life size, or a phone's smaller one
    frames = []
    sheet = None  # a print is the same sheet in every frame, lit the same
    for index in range(int(attack.seconds * attack.fps)):
        t = index / attack.fps
        picture = photo_bgr if attack.kind != "replay" else video[index % len(video)]
        if attack.kind == "print":
            if sheet is None:
                sheet = _paper(picture.astype(np.float32), np.random.default_rng(attack.seed)) * light
            surface, area = sheet, None
        else:
            surface, area = _screen(picture, rng, attack.device)
            surface = _screen_look(surface, area, np.random.default_rng(attack.seed + index // 3), t)
        face_px = picture.shape[1] * (0.45 if attack.kind != "replay" else 0.25)
        metres_per_px = face_metres / face_px if attack.kind == "print" else \
            (0.065 if attack.device == "phone" else 0.15) / surface.shape[1]
        canvas, mask = room.copy(), np.zeros(SIZE[::-1], bool)
        rotation_, centre = motion.pose(t)
        corners = _project(surface, rotation_, centre, metres_per_px, attack.bend if attack.kind == "print" else 0.0,
                           canvas, mask)
        if attack.hand and attack.kind == "print":
            _hand(canvas, corners[3], float(np.linalg.norm(corners[2] - corners[3])) * 0.4, hand)
        frame = canvas + rng.normal(0, 2.5, canvas.shape).astype(np.float32)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write(frames: list[np.ndarray], path: str, fps: float = 15.0) -> None:
    """The frames as a video file the gate's camera source can play."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def attacks(count: int, kind: Kind, seed: int = 0) -> list[Attack]:
    """``count`` attacks of a kind with varied bends, hands and devices."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        if kind == "print":
            out.append(Attack("print", seed * 1000 + i, bend=float(rng.choice([0.0, 0.0, 0.01, 0.02])),
                              hand=bool(rng.random() < 0.5)))
        else:
            out.append(Attack(kind, seed * 1000 + i, device=str(rng.choice(["phone", "tablet"])),
                              seconds=4.0 if kind == "replay" else 3.0))
    return out
