"""The vision worker process: its main loop, camera health and the entry point.

Frames come from the camera source (camera.py), go through the pipeline (pipeline.py), and what it
decides goes to the controller over a pipe as messages (lotcontrol.messages), with a heartbeat every
second. A live camera that fails is reopened with back-off; a video file that ends ends the worker.
A camera whose reader is stuck in a read (camera.StuckRead) ends the worker process at once, with
exit code 3, so that the supervisor starts a fresh one.

On the rig's simulated clock the worker runs *stepped*, in lockstep with the rig: the supervisor
hands it a pipe of the times the rig allows, its source hands out frame i only once time i/fps is
allowed (camera.StepGate, camera.SteppedSource), and when it has handled every frame up to the time
allowed it says so (``FramesDone``). Its own time is then the frame time: the heartbeats, the
camera's health and its reconnect back-off, the tracks' timeouts.

A face space (``vision.encoder``) whose model is missing or damaged (faceres not installed, or not
the file measured) makes the worker refuse to decide: it says so once (a ``GalleryLoaded`` with
``refused``: the controller's ``vision.refused`` event), keeps reading the camera and sending
heartbeats, and no face opens the gate. Nothing else stops.
"""

from __future__ import annotations

import logging
import os
import time

from ..config import Config
from ..errors import ModelFileError
from ..messages import CameraStatus, FramesDone, GalleryLoaded, Heartbeat, SourceEnded
from ..store import Store
from .camera import FrameSource, SourceError, StepGate, StuckRead, is_file_source, open_source
from . import encoders
from .matcher import GateGallery
from .pipeline import Pipeline, warm_up
from .tap import FrameTap, tap_path

log = logging.getLogger(__name__)

#: the worker's exit code when its camera's reader is stuck in a read
STUCK_READ_EXIT = 3


class CameraHealth:
    """When to call a camera lost (only after ``lost_after`` seconds without frames: a hiccup is
    not news), when it is back, and how long to wait between attempts to reopen it (doubling)."""

    def __init__(self, lost_after: float, first_wait: float, longest_wait: float = 30.0):
        self.lost_after, self.first_wait, self.longest_wait = lost_after, first_wait, longest_wait
        self.failing_since: float | None = None
        self.reported = False
        self.wait = first_wait

    def failed(self, now: float, detail: str) -> CameraStatus | None:
        if self.failing_since is None:
            self.failing_since = now
        if not self.reported and now - self.failing_since >= self.lost_after:
            self.reported = True
            return CameraStatus(False, detail)
        return None

    def backoff(self) -> float:
        wait, self.wait = self.wait, min(self.wait * 2, self.longest_wait)
        return wait

    def delivered(self, source: str) -> CameraStatus | None:
        back = self.reported
        self.failing_since, self.reported, self.wait = None, False, self.first_wait
        return CameraStatus(True, f"camera {source!r} delivers frames again") if back else None


def run_worker(conn, config: Config, data_dir: str, source_spec: str, as_fast_as_possible: bool,
               steps: tuple | None = None) -> None:
    """The worker process's main loop: frames from the source, messages to the controller.
    ``steps``: (the pipe of allowed times, the simulated time now) to run stepped, on the rig's clock."""
    warm_up()  # load the face models (1-2 s) before the first frame, not when the first face comes
    space = config.vision.encoder
    try:
        encoders.require(space)
    except ModelFileError as exc:
        refused = f"faces are not matched, the gate stays shut for them: {exc}"
    else:
        refused = None
    store = Store.in_dir(data_dir)
    pipeline: Pipeline | None = None
    if refused is None:
        gallery = GateGallery.from_store(store, config.match, space)
        pipeline = Pipeline(config, gallery)
        conn.send(GalleryLoaded(pipeline.summary()))
    else:
        conn.send(GalleryLoaded({"space": space, "refused": refused}))
    frames = 0
    gate = None if steps is None else StepGate(steps[0], lambda done, next: conn.send(FramesDone(done, next)), steps[1])
    clock = time.monotonic if gate is None else (lambda: gate.now)
    source: FrameSource | None = None
    tap = _open_tap(data_dir) if gate is None else None  # enrollment at this camera while the lot runs
    health = CameraHealth(config.camera.lost_after_seconds, config.camera.reconnect_seconds)
    next_try = last_beat = last_refresh = -float("inf")
    try:
        while True:
            now = clock()
            if now - last_beat >= 1.0:
                conn.send(Heartbeat(now, pipeline.frames if pipeline else frames, source.dropped if source else 0,
                                    source.time_base if source else 0.0))
                last_beat = now
            if pipeline is not None and now - last_refresh >= 2.0:
                refreshed = pipeline.gallery.refreshed(store)
                if refreshed is not pipeline.gallery:
                    pipeline.gallery = refreshed
                    conn.send(GalleryLoaded(pipeline.summary()))
                last_refresh = now
            try:
                if source is None:
                    if now < next_try:
                        if gate is not None:
                            gate.advance(next_try)
                        else:
                            time.sleep(min(0.2, next_try - now))  # heartbeats go on while we wait
                        continue
                    source = (open_source(source_spec, as_fast_as_possible=as_fast_as_possible) if gate is None
                              else open_source(source_spec, gate=gate))
                frame = source.read(timeout=1.0)
            except SourceError as exc:
                if not _is_live(source_spec):
                    raise  # a video file that cannot be read will not get better
                if source is not None:
                    closing, source = source, None
                    _close(closing)
                status = health.failed(clock(), str(exc))
                if status is not None:
                    conn.send(status)
                    if tap is not None:
                        tap.camera_lost(True)  # a client asking for frames is told at once
                next_try = clock() + health.backoff()
                continue
            if frame is None:
                for passage in pipeline.finish() if pipeline else []:
                    conn.send(passage)
                for logged in pipeline.take_logged() if pipeline else []:
                    conn.send(logged)
                conn.send(SourceEnded(pipeline.frames if pipeline else frames))
                return
            status = health.delivered(source_spec)
            if status is not None:
                conn.send(status)
                if tap is not None:
                    tap.camera_lost(False)
            frames += 1
            if tap is not None:
                tap.offer(frame)
            for passage in pipeline.process(frame.image, frame.time) if pipeline else []:
                conn.send(passage)
            for logged in pipeline.take_logged() if pipeline else []:
                conn.send(logged)  # vision.liveness = "log": what liveness said once it could
    finally:
        if tap is not None:
            tap.close()
        if source is not None:
            _close(source)
        store.close()


def _open_tap(data_dir: str) -> FrameTap | None:
    """The camera's frames for `enroll --camera` while the lot runs (vision/tap.py); a tap that cannot
    be opened is logged, and the gate goes on without it."""
    try:
        return FrameTap(tap_path(data_dir))
    except OSError as exc:
        log.warning("camera tap %s cannot be opened (%s): enrollment at this camera needs the lot stopped",
                    tap_path(data_dir), exc)
        return None


def _close(source: FrameSource) -> None:
    """Close the camera, or end the process at once if its reader is stuck in a read."""
    try:
        source.close()
    except StuckRead as exc:
        log.error("%s: the vision worker exits (code %d) to be restarted", exc, STUCK_READ_EXIT)
        # os._exit, not an exception or sys.exit: the reader thread is blocked inside C code
        # (VideoCapture.read on a stream that stopped answering, or picamera2) and Python can neither
        # interrupt nor kill a thread. Releasing the capture under it can crash the process or
        # corrupt memory, so close() left the capture open, and an ordinary exit would run
        # interpreter shutdown (finalizers, atexit, module teardown) that can free the capture
        # under the thread all the same, or hang on it. os._exit ends the process without running
        # any of that; the OS then frees the device or socket. Nothing more is sent on the pipe:
        # the supervisor sees the pipe close and the non-zero exit code, and restarts the worker
        # (the store is only read here, and SQLite survives a process that ends mid-way).
        os._exit(STUCK_READ_EXIT)


def _is_live(spec: str) -> bool:
    return not is_file_source(spec)


#: The worker's nice value above the controller's: face work yields the cores to the controller's
#: threads (the safety loop, the card reader waiting out a frame's quiet gap, the writer), which wake
#: for a moment and then sleep. Raising one's own nice value needs no privilege.
NICE = 5


_yielded = False  # inherited by the workers forked from the fork server, which yielded before loading


def yield_cores() -> None:
    """Lower this process's priority by ``NICE``, once (never fatal: a kernel that refuses leaves it as
    it was)."""
    global _yielded
    if _yielded:
        return
    _yielded = True
    try:
        os.nice(NICE)
    except OSError:
        pass


def worker_entry(conn, config: Config, data_dir: str, source_spec: str, as_fast_as_possible: bool,
                 steps: tuple | None = None) -> None:
    """Process entry point (BLAS and OpenMP are pinned to one thread by the environment the
    supervisor starts it with: they read it when numpy loads, before this runs)."""
    logging.basicConfig(level=logging.WARNING, format="vision: %(message)s")
    yield_cores()
    try:
        run_worker(conn, config, data_dir, source_spec, as_fast_as_possible, steps)
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        pass  # the controller went away or is stopping us
    finally:
        conn.close()
        if steps is not None:
            steps[0].close()
