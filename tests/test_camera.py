"""The camera stops safely: its reader is joined before the capture is released, a reader stuck in a
read is reported (read() raises, close() raises StuckRead and leaves the capture alone), and the
vision worker exits when its camera cannot be closed.

Fake captures only (no camera). Deadlines are a few hundredths of a second, and threads are waited
for with Events and joins, never with sleeps.

On the old code (close() joined with timeout=5 and then released the capture whatever happened, and
read() knew nothing of a stuck grab), ``StuckRead`` does not exist, so this module fails to import;
without that import, the assertions named in each test fail.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import lotcontrol.vision.camera as camera
from lotcontrol.vision.camera import Frame, FrameSource, LiveSource, SourceError, StuckRead, ThreadedSource

DEADLINE = 0.05  # seconds: the read deadline in these tests
GUARD = 30.0  # seconds: a failure guard for what a loaded machine runs late; each wait ends when it happens
IMAGE = np.zeros((4, 4, 3), np.uint8)


class FakeCapture:
    """Stands in for camera._Capture: grab() blocks until ``go`` is set; close() (the release)
    records whether the thread that grabs was still alive at that moment."""

    def __init__(self, spec: str = "rtsp://fake", *, prompt: bool = False):
        self.fps = 0.0
        self.go = threading.Event()
        if prompt:
            self.go.set()
        self.grabbing = threading.Event()  # set once the reader is inside grab()
        self.reader: threading.Thread | None = None
        self.released = False
        self.reader_alive_at_release: bool | None = None

    def grab(self):
        self.reader = threading.current_thread()
        self.grabbing.set()
        self.go.wait()
        return IMAGE

    def close(self) -> None:
        self.released = True
        self.reader_alive_at_release = self.reader.is_alive()


@pytest.fixture
def live_source(monkeypatch):
    """A LiveSource on a FakeCapture (made by the returned function), with the test's read deadline."""
    monkeypatch.setattr(camera, "READ_DEADLINE", DEADLINE)
    started: list[tuple[LiveSource, FakeCapture]] = []

    def make(*, prompt: bool, deadline: float = DEADLINE) -> tuple[LiveSource, FakeCapture]:
        monkeypatch.setattr(camera, "READ_DEADLINE", deadline)
        capture = FakeCapture(prompt=prompt)
        monkeypatch.setattr(camera, "_Capture", lambda spec: capture)
        source = LiveSource("rtsp://fake")
        started.append((source, capture))
        assert capture.grabbing.wait(GUARD), "the reader never called grab()"
        return source, capture

    yield make
    for source, capture in started:  # leave nothing running, whatever the test did
        capture.go.set()
        source._thread.join(GUARD)
        assert not source._thread.is_alive()


def test_close_joins_the_reader_before_it_releases_the_capture(live_source):
    # A regression guard: the old close() also joined first when the grab returned promptly, so this
    # passes on the old code; the stuck case below is the one the old code got wrong.
    # close() waits up to the deadline for the reader: a loaded machine may not run it within the
    # tests' 50 ms (StuckRead, seen under load), and the join returns as soon as it ends
    source, capture = live_source(prompt=True, deadline=30.0)
    source.close()
    assert capture.released
    assert capture.reader_alive_at_release is False
    assert not source._thread.is_alive()


def test_close_with_a_read_stuck_past_the_deadline_raises_stuck_read_and_does_not_release(live_source):
    source, capture = live_source(prompt=False)  # the reader is now inside a grab that does not return
    # Old code: pytest.raises(StuckRead) fails (DID NOT RAISE): close() waited 5 s, then released the
    # capture under the stuck reader (`assert not capture.released` would fail next).
    with pytest.raises(StuckRead, match="stuck in a read"):
        source.close()
    assert not capture.released
    assert source._thread.is_alive()
    with pytest.raises(StuckRead):  # closing again still does not release it
        source.close()
    assert not capture.released

    capture.go.set()  # the stream answers at last: the reader sees the stop and ends
    source._thread.join(GUARD)
    assert not source._thread.is_alive()
    source.close()  # now it closes, and releases
    assert capture.released and capture.reader_alive_at_release is False


def held_grab():
    """A grab that blocks until ``go`` is set (a stream that stopped answering); ``grabbing`` says it began."""
    go, grabbing = threading.Event(), threading.Event()

    def grab():
        grabbing.set()
        go.wait()
        return IMAGE
    return go, grabbing, grab


def test_read_reports_a_grab_stuck_past_the_deadline():
    go, grabbing, grab = held_grab()
    source = ThreadedSource(grab, read_deadline=DEADLINE)
    try:
        assert grabbing.wait(GUARD)
        # read() waits 2 deadlines for a frame, so the grab is past its deadline when read() gives up.
        # Old code: it says only "no frame from the camera", and the match on "stuck" fails.
        with pytest.raises(SourceError, match=r"read stuck for \d+ s"):
            source.read(timeout=2 * DEADLINE)
    finally:
        go.set()
        # close() stops the reader and waits for it: it ends once the grab returns, whenever a loaded
        # machine runs it (a join(30) before close() waited all 30 s, for a reader that grabs until stopped)
        source.read_deadline = GUARD
        source.close()
    assert not source._thread.is_alive()


def test_read_does_not_call_a_slow_grab_within_the_deadline_stuck():
    go, grabbing, grab = held_grab()
    source = ThreadedSource(grab, read_deadline=60.0)
    try:
        assert grabbing.wait(GUARD)
        with pytest.raises(SourceError) as raised:
            source.read(timeout=DEADLINE)
        assert "stuck" not in str(raised.value)
        go.set()
        assert isinstance(source.read(timeout=GUARD), Frame)
    finally:
        go.set()
        source.close()


class Exited(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


@pytest.mark.parametrize("how", ["read fails", "camera ends"])
def test_the_worker_exits_when_its_camera_cannot_be_closed(tmp_path, monkeypatch, how):
    """Where the worker closes a camera (after a failed read, and when it ends), StuckRead makes the
    process exit at once with a non-zero code and nothing more is sent."""
    import lotcontrol.vision.worker as vision
    from lotcontrol.config import parse_config, prepare_data_dir
    from lotcontrol.messages import GalleryLoaded, Heartbeat, SourceEnded

    class StuckCamera(FrameSource):
        closes = 0

        def read(self, timeout=1.0):
            if how == "read fails":
                raise SourceError("no frame from the camera: read stuck for 5 s")
            return None  # the end: the worker returns, and closes the camera in its finally

        def close(self):
            StuckCamera.closes += 1
            raise StuckRead("the camera's reader is stuck in a read (5 s); the process must exit to free it")

    def fake_exit(code):
        raise Exited(code)

    monkeypatch.setattr(vision, "open_source", lambda spec, as_fast_as_possible=False: StuckCamera())
    monkeypatch.setattr(vision, "warm_up", lambda: None)  # no face models needed: no frame arrives
    monkeypatch.setattr(vision.os, "_exit", fake_exit)
    sent = []

    class Pipe:
        def send(self, message):
            sent.append(message)

    config = parse_config({"camera": {"lost_after_seconds": 0, "reconnect_seconds": 0.01}})
    # Old code: run_worker lets StuckRead out (or would release under the stuck reader), never calls
    # os._exit, so pytest.raises(Exited) fails.
    with pytest.raises(Exited) as exited:
        vision.run_worker(Pipe(), config, str(prepare_data_dir(tmp_path / "data")), "/dev/video9", False)
    assert exited.value.code != 0
    assert StuckCamera.closes == 1  # closed once, then out: not closed again on the way out
    expected = [GalleryLoaded, Heartbeat] if how == "read fails" else [GalleryLoaded, Heartbeat, SourceEnded]
    assert [type(m) for m in sent] == expected  # nothing sent after the failed close


def test_the_worker_tells_its_tap_when_it_calls_the_camera_lost_and_when_it_is_back(tmp_path, monkeypatch):
    """An enrollment at the gate camera (the tap's client) is told "camera lost" on the worker's own
    verdict, not after a fixed wait for a frame that a busy worker may take longer over."""
    import lotcontrol.vision.worker as vision
    from lotcontrol.config import parse_config, prepare_data_dir

    opened = []

    class Camera(FrameSource):
        def __init__(self):
            opened.append(self)
            self.reads = 0

        def read(self, timeout=1.0):
            self.reads += 1
            if len(opened) == 1:
                raise SourceError("camera '/dev/video9' cannot be opened")
            if self.reads == 1:
                return Frame(np.zeros((48, 64, 3), np.uint8), 0.0, 0)
            return None  # the end: the worker returns

        def close(self):
            pass

    class Tap:
        def __init__(self):
            self.said = []

        def offer(self, frame):
            self.said.append("frame")

        def camera_lost(self, lost):
            self.said.append("lost" if lost else "back")

        def close(self):
            self.said.append("closed")

    tap = Tap()
    monkeypatch.setattr(vision, "open_source", lambda spec, as_fast_as_possible=False: Camera())
    monkeypatch.setattr(vision, "_open_tap", lambda data_dir: tap)
    monkeypatch.setattr(vision, "warm_up", lambda: None)

    class Pipe:
        def send(self, message):
            pass

    config = parse_config({"camera": {"lost_after_seconds": 0, "reconnect_seconds": 0.01}})
    vision.run_worker(Pipe(), config, str(prepare_data_dir(tmp_path / "data")), "/dev/video9", False)
    assert tap.said == ["lost", "back", "frame", "closed"]


def test_the_worker_yields_the_cores_to_the_controllers_threads(monkeypatch):
    """The worker lowers its own priority before any face work, so the controller's threads (the safety
    loop, the card reader waiting out a frame's quiet gap) are not queued behind it; a kernel that
    refuses changes nothing."""
    import subprocess
    import sys

    import lotcontrol.vision.worker as vision

    calls = []
    monkeypatch.setattr(vision.os, "nice", lambda n: calls.append(("nice", n)))
    monkeypatch.setattr(vision, "run_worker", lambda *args: calls.append(("run",)))

    class Pipe:
        def close(self):
            calls.append(("closed",))

    vision.worker_entry(Pipe(), None, "", "", False)
    assert calls == [("nice", vision.NICE), ("run",), ("closed",)] and vision.NICE > 0

    def refused(n):
        raise PermissionError("not allowed")

    monkeypatch.setattr(vision.os, "nice", refused)
    vision.yield_cores()  # no error
    # and for real, in a process of its own: the nice value rises by NICE (up to the kernel's 19)
    said = subprocess.run([sys.executable, "-c", "import os\nfrom lotcontrol.vision.worker import yield_cores\n"
                           "before = os.getpriority(os.PRIO_PROCESS, 0)\nyield_cores()\n"
                           "print(before, os.getpriority(os.PRIO_PROCESS, 0))"],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    before, after = map(int, said.stdout.split())
    assert after == min(19, before + vision.NICE)
