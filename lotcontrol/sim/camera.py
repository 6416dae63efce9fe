"""The rig's scripted camera: still photos and empty frames on a timeline, filmed like a camera.

It runs in the real vision worker (``camera.source = "script:FILE"``) through the same
``FrameSource`` interface as a V4L2 camera, so the rig exercises the worker's real paths: a camera
that is unplugged and comes back, frames in real time or, on the rig's simulated clock, stepped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..vision.camera import Frame, FrameSource, SourceError, StepGate, SteppedSource, ThreadedSource


class Script:
    """A camera script, parsed: still photos and empty frames, each for so many seconds.

    ``script:FILE`` names a JSON file (the rig writes it)::

        {"fps": 15, "size": [640, 480], "shots": [{"photo": null, "seconds": 2},
         {"photo": "/path/a.jpg", "seconds": 3}], "unplugged": "/path/flag", "started": "/path/started"}

    Frame i is the shot at i/fps with a little sensor noise. While the ``unplugged`` file exists the
    camera cannot be opened and stops delivering, as a V4L2 device does when its cable is pulled.
    """

    def __init__(self, spec: str):
        path = spec.removeprefix("script:")
        try:
            script = json.loads(Path(path).read_text(encoding="utf-8"))
            self.fps = float(script["fps"])
            width, height = script["size"]
            shots = [(shot["photo"], float(shot["seconds"])) for shot in script["shots"]]
            self.unplugged = Path(script["unplugged"])
            self.started = Path(script["started"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"camera script {path}: {exc}") from None
        if self.unplugged.exists():
            raise SourceError(f"camera {spec!r} cannot be opened (unplugged)")
        self._frames = [staged_frame(photo, width, height).astype(np.int16) for photo, _ in shots]
        self._ends = np.cumsum([seconds for _, seconds in shots])
        self._rng = np.random.default_rng(0)

    def image(self, index: int) -> np.ndarray | None:
        """Frame ``index`` (None: the script is over)."""
        shot = int(np.searchsorted(self._ends, index / self.fps, side="right"))
        if shot >= len(self._frames):
            return None
        return _with_noise(self._frames[shot], self._rng)

    def stepped_image(self, index: int) -> np.ndarray | None:
        """Frame ``index`` on the rig's simulated clock: the flag is looked at for each frame."""
        if self.unplugged.exists():
            raise SourceError("no frame from the camera (unplugged)")
        return self.image(index)


def open_script(spec: str, gate: StepGate | None = None) -> FrameSource:
    """The scripted camera: filmed live (``ScriptedSource``), or stepped on the rig's simulated clock
    (frame i at i/fps once the rig allows it; a camera opened later starts at the scene's time then)."""
    script = Script(spec)
    if gate is None:
        return ScriptedSource(script)
    return SteppedSource(script.stepped_image, script.fps, gate, live=True)


class ScriptedSource(ThreadedSource):
    """A script filmed live like a camera: frames come at ``fps`` in real time, the scene goes on
    while nobody reads it. Script time 0 is the first opening by any process (kept in the
    ``started`` file), so a restarted worker or a replugged camera sees the scene where it is now.
    At the end of the script ``read()`` returns None, like a video file.
    """

    def __init__(self, script: Script):
        self._script = script
        self.fps = script.fps
        self._next = 0
        self.finished = False
        self._start = _first_opening(script.started)
        super().__init__(self._film, name="script")
        self.time_base = self._start

    def _film(self) -> np.ndarray | None:
        """The next frame at its time (frames this reader was too late for are skipped)."""
        now = time.monotonic()
        index = max(self._next, int((now - self._start) * self.fps))
        due = self._start + index / self.fps
        if due > now:
            time.sleep(due - now)
        self._next = index + 1
        if self._script.unplugged.exists():
            return None
        image = self._script.image(index)
        if image is None:
            self.finished = True
        return image

    def read(self, timeout: float = 1.0) -> Frame | None:
        frame = self._slot.take(timeout)
        if frame is None and self.finished:
            return None
        if frame is None:
            raise SourceError("no frame from the camera" + (" (it stopped)" if self._slot.ended else ""))
        return frame


def _first_opening(started: Path) -> float:
    """time.monotonic() (one clock for every process on the machine) when the script first ran."""
    try:
        with open(started, "x", encoding="ascii") as out:
            out.write(repr(time.monotonic()))
    except FileExistsError:
        pass
    return float(started.read_text(encoding="ascii"))


def film(shots: list[tuple[str | None, float]], path: Path, *, fps: float = 15, size: tuple[int, int] = (640, 480)
         ) -> Path:
    """Record ``shots`` [(photo or None, seconds)] as the scripted camera films them, with its sensor
    noise, to a video file (Motion-JPEG in AVI). A recording plays every frame in order on its own
    clock whatever the machine's load: what tests of camera enrollment film."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise SourceError(f"cannot write video {path}")
    rng = np.random.default_rng(0)
    try:
        for photo, seconds in shots:
            frame = staged_frame(photo, width, height).astype(np.int16)
            for _ in range(round(seconds * fps)):
                writer.write(_with_noise(frame, rng))
    finally:
        writer.release()
    return path


def _with_noise(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera's frame of the scene ``frame`` (int16): a little sensor noise, so that no two are equal."""
    noise = rng.integers(-3, 4, size=frame.shape, dtype=np.int16)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def staged_frame(photo: str | None, width: int, height: int) -> np.ndarray:
    """A BGR frame of a plain grey wall, with the photo fitted to nine tenths of the height if there
    is one (what the scripted camera films; the empty scene of the benchmarks)."""
    ramp = np.linspace(70, 180, width, dtype=np.uint8)[None, :]
    frame = np.dstack([np.repeat(ramp, height, axis=0)] * 3)
    if photo is None:
        return frame
    from ..errors import PhotoError
    from ..vision.faces import read_photo

    try:
        rgb = read_photo(photo).rgb
    except PhotoError as exc:
        raise SourceError(f"camera script: {exc}") from None
    scale = min(0.9 * height / rgb.shape[0], 0.9 * width / rgb.shape[1])
    image = cv2.resize(rgb, (int(rgb.shape[1] * scale), int(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
    frame[top:top + image.shape[0], left:left + image.shape[1]] = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return frame
