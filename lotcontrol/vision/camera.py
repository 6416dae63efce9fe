"""Frame sources: a V4L2 camera, a network stream, a video file, the Pi Camera Module, or the rig's
scripted camera (``script:FILE``, in lotcontrol.sim.camera).

Every source hands out only the newest frame: a reader thread keeps one slot, so processing never
falls behind the live scene (frames it had no time for are dropped and counted). A file is played at
its own frame rate the same way, unless ``as_fast_as_possible``, which hands out every frame in
order without pacing (tests, benchmarks). ``read()`` returns None when a file has ended.

On the rig's simulated clock a source is *stepped* (``SteppedSource``, paced by a ``StepGate``):
frame i (time i/fps) is handed out only once the rig has allowed time >= i/fps, every frame in
order, none dropped, so what the worker sees does not depend on how fast the machine is.

A reader thread that is inside one grab longer than ``READ_DEADLINE`` (a stream that stopped
answering) is stuck in C code that Python cannot interrupt: ``read()`` then raises SourceError, and
``close()`` raises StuckRead rather than release the capture under the thread (which can crash the
process or corrupt memory). Only ending the process frees such a thread; the vision worker does that.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: seconds one grab may take before the reader counts as stuck (``read()`` reports it, ``close()``
#: waits this long for the reader to come back before it gives up with StuckRead)
READ_DEADLINE = 5.0


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR, as OpenCV gives it
    time: float  # seconds: clip time for files, time.monotonic() for live sources
    index: int


class SourceError(RuntimeError):
    """The camera cannot be opened or stopped delivering frames."""


class StuckRead(SourceError):
    """The camera's reader is stuck in a read; the process must exit to free it."""


class FrameSource:
    """The interface: ``read(timeout)`` the newest frame, None at the end of a file; ``close()``."""

    live = True
    dropped = 0
    #: time.monotonic() at frame time 0 (a paced file); 0.0 where frame times are monotonic already
    time_base = 0.0

    def read(self, timeout: float = 1.0) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Capture:
    """cv2.VideoCapture with errors that say what failed."""

    def __init__(self, spec: str):
        target: str | int = int(spec) if spec.isdigit() else spec
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"camera {spec!r} cannot be opened")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0

    def grab(self) -> np.ndarray | None:
        ok, image = self.cap.read()
        return image if ok else None

    def close(self) -> None:
        self.cap.release()


class _NewestSlot:
    """One frame, replaced by each newer one; readers wait for a frame they have not had."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken = -1
        self.ended = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None and self._frame.index != self._taken:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            fresh = lambda: self._frame is not None and self._frame.index != self._taken  # noqa: E731
            self._cond.wait_for(lambda: fresh() or self.ended, timeout)
            if not fresh():
                return None
            self._taken = self._frame.index
            return self._frame


class ThreadedSource(FrameSource):
    """A reader thread that grabs frames as they come and keeps the newest.

    ``read_deadline`` (default READ_DEADLINE) is how long one grab may take before the reader
    counts as stuck."""

    def __init__(self, grab, *, paced_fps: float | None = None, live: bool = True, name: str = "camera",
                 read_deadline: float | None = None):
        self._grab = grab
        self._slot = _NewestSlot()
        self._stop = threading.Event()
        self._paced_fps = paced_fps
        self.time_base = 0.0
        self.live = live
        self.read_deadline = READ_DEADLINE if read_deadline is None else read_deadline
        self._grab_started: float | None = None  # time.monotonic() when the grab in progress began
        self._thread = threading.Thread(target=self._run, name=f"{name}-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = 0.0
        if self._paced_fps:
            start = self.time_base = time.monotonic()
        index = 0
        while not self._stop.is_set():
            self._grab_started = time.monotonic()
            try:
                image = self._grab()
            finally:
                self._grab_started = None
            if image is None:
                break
            if self._paced_fps:
                clip_time = index / self._paced_fps
                delay = start + clip_time - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            else:
                clip_time = time.monotonic()
            self._slot.put(Frame(image, clip_time, index))
            index += 1
        self._slot.end()

    @property
    def stuck_for(self) -> float:
        """Seconds the reader has been inside the grab in progress (0.0 between grabs)."""
        started = self._grab_started
        return 0.0 if started is None else max(0.0, time.monotonic() - started)

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self._slot.dropped

    @property
    def ended(self) -> bool:
        return self._slot.ended

    def read(self, timeout: float = 1.0) -> Frame | None:
        frame = self._slot.take(timeout)
        if frame is None and self._slot.ended and not self.live:
            return None
        if frame is None:
            stuck = self.stuck_for
            if stuck > self.read_deadline:
                raise SourceError(f"no frame from the camera: read stuck for {stuck:.0f} s")
            raise SourceError("no frame from the camera" + (" (it stopped)" if self._slot.ended else ""))
        return frame

    def close(self) -> None:
        """Stop the reader and wait for it to end (at most ``read_deadline`` seconds).

        Raises StuckRead if it is still running then (inside a grab that does not return): the
        caller must then NOT release what the grab reads from, and the process must exit."""
        self._stop.set()
        self._thread.join(timeout=self.read_deadline)
        if self._thread.is_alive():
            raise StuckRead(f"the camera's reader is stuck in a read ({self.stuck_for:.0f} s); "
                            "the process must exit to free it")


class StepGate:
    """The worker's side of the rig's lockstep: the times the rig allows arrive on ``allowance`` (a
    pipe end), one at a time. ``advance(to)`` waits (blocking on the pipe) until time ``to`` is
    allowed, and each time it has to wait says first, through ``report(allowed, to)``, that
    everything up to the time allowed so far is done. ``now`` is the worker's time: the last time
    it advanced to (its start: where the scene is when the worker starts)."""

    def __init__(self, allowance, report: Callable[[float, float], None], start: float):
        self._allowance = allowance
        self._report = report
        self.now = start
        self.allowed = self._reported = -math.inf  # nothing allowed yet, not even the start

    def advance(self, to: float) -> None:
        while self.allowed < to:
            if self._reported != self.allowed:
                self._report(self.allowed, to)
                self._reported = self.allowed
            self.allowed = max(self.allowed, float(self._allowance.recv()))  # EOFError: the rig went away
        self.now = max(self.now, to)


class SteppedSource(FrameSource):
    """Every frame in order at its clip time ``index / fps``, handed out once the gate allows that
    time. ``grab(index)`` makes frame ``index`` (None: the end; SourceError: the camera failed on
    it); the first frame is the one at the gate's time when the source opens (the scene has moved
    on meanwhile), earlier ones are skipped through ``grab``."""

    def __init__(self, grab: Callable[[int], np.ndarray | None], fps: float, gate: StepGate, *, live: bool):
        self._grab, self.fps, self._gate, self.live = grab, fps, gate, live
        self._index = math.ceil(round(gate.now * fps, 6))

    def read(self, timeout: float = 1.0) -> Frame | None:
        t = self._index / self.fps
        self._gate.advance(t)
        image = self._grab(self._index)
        if image is None:
            return None
        frame = Frame(image, t, self._index)
        self._index += 1
        return frame


class FileSource(FrameSource):
    """A video file: paced at its own frame rate like a camera, or every frame as fast as possible."""

    live = False

    def __init__(self, path: str, *, as_fast_as_possible: bool = False, gate: StepGate | None = None):
        if not Path(path).is_file():
            raise SourceError(f"video file {path} does not exist")
        self._capture = _Capture(path)
        self.fps = self._capture.fps or 25.0
        self._fast = as_fast_as_possible or gate is not None
        self._index = 0
        self._paced = None if self._fast else ThreadedSource(
            self._capture.grab, paced_fps=self.fps, live=False, name="file")
        self._stepped = None if gate is None else SteppedSource(self._grab_stepped, self.fps, gate, live=False)

    def _grab_stepped(self, index: int) -> np.ndarray | None:
        while self._index < index:  # frames before the worker started: the clip has moved on
            self._capture.grab()
            self._index += 1
        self._index += 1
        return self._capture.grab()

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self._paced.dropped if self._paced else 0

    @property
    def time_base(self) -> float:  # type: ignore[override]
        return self._paced.time_base if self._paced else 0.0

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._stepped is not None:
            return self._stepped.read(timeout)
        if self._paced is not None:
            while True:
                frame = self._paced.read(timeout)
                if frame is not None or self._paced.ended:
                    return frame
        image = self._capture.grab()
        if image is None:
            return None
        frame = Frame(image, self._index / self.fps, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._paced is not None:
            self._paced.close()  # StuckRead: the capture is not released under the reader
        self._capture.close()


class PiCameraSource(ThreadedSource):
    """The Raspberry Pi Camera Module through picamera2 (imported only when this source is used)."""

    def __init__(self, size: tuple[int, int] = (640, 480)):
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise SourceError("camera 'picamera2' needs the picamera2 package (apt install python3-picamera2)") from None
        self._camera = Picamera2()
        self._camera.configure(self._camera.create_video_configuration(main={"size": size, "format": "RGB888"}))
        self._camera.start()
        super().__init__(lambda: self._camera.capture_array(), name="picamera2")

    def close(self) -> None:
        super().close()  # joins the reader first; StuckRead: the camera is not stopped under it
        self._camera.stop()
        self._camera.close()


class LiveSource(ThreadedSource):
    """A V4L2 device or a stream URL through OpenCV."""

    def __init__(self, spec: str):
        self._capture = _Capture(spec)
        super().__init__(self._capture.grab, name="v4l2" if spec.startswith("/dev") or spec.isdigit() else "stream")

    def close(self) -> None:
        super().close()  # joins the reader first; StuckRead: the capture is not released under it
        self._capture.close()


def is_file_source(spec: str) -> bool:
    return not (spec.isdigit() or spec.startswith(("/dev/", "script:")) or "://" in spec or spec == "picamera2")


def open_source(spec: str, *, as_fast_as_possible: bool = False, gate: StepGate | None = None) -> FrameSource:
    """The source a ``camera.source`` setting names; with ``gate`` (the rig's simulated clock), stepped."""
    if spec.startswith("script:"):
        from ..sim.camera import open_script  # the rig's camera, filmed in the worker like a real one

        return open_script(spec, gate)
    if is_file_source(spec):
        return FileSource(spec, as_fast_as_possible=as_fast_as_possible, gate=gate)
    if gate is not None:
        raise SourceError(f"camera {spec!r} is live: only a video file or a script can run on the simulated clock")
    if spec == "picamera2":
        return PiCameraSource()
    return LiveSource(spec)
