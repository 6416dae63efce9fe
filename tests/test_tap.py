"""The vision worker's camera tap: enrollment at the gate camera while the lot runs gets the worker's
frames through DATA_DIR/camera.sock, and the worker's loop never waits on it."""

import threading

import numpy as np
import pytest

from lotcontrol.vision import tap as tap_module
from lotcontrol.vision.camera import Frame, SourceError
from lotcontrol.vision.tap import FrameTap, TapSource, tap_path


def frame(value: int, index: int = 0) -> Frame:
    return Frame(np.full((4, 6, 3), value, np.uint8), 10.0 + index, index)


def read_while_offering(tap: FrameTap, source: TapSource, offered: Frame):
    """``source.read()`` on a thread while this one, as the worker's loop, offers ``offered`` until it returns."""
    got = []
    reader = threading.Thread(target=lambda: got.append(source.read()))
    reader.start()
    while reader.is_alive():
        tap.offer(offered)
        reader.join(0.01)
    return got[0]


def test_the_tap_is_private_and_keeps_no_frame_while_nobody_asks(tmp_path):
    tap = FrameTap(tap_path(tmp_path))
    try:
        assert (tmp_path / "camera.sock").stat().st_mode & 0o777 == 0o600
        tap.offer(frame(7))
        assert tap._frame is None and not tap.wanted
    finally:
        tap.close()
    assert not (tmp_path / "camera.sock").exists()


def test_a_client_gets_the_frames_the_worker_reads_after_it_asked(tmp_path):
    tap = FrameTap(tap_path(tmp_path))
    try:
        with TapSource(tap_path(tmp_path)) as source:
            first = read_while_offering(tap, source, frame(1, 1))
            second = read_while_offering(tap, source, frame(2, 2))
            assert first.image.shape == (4, 6, 3) and int(first.image[0, 0, 0]) == 1 and first.time == 11.0
            assert int(second.image[0, 0, 0]) == 2 and second.index == 2
        assert tap._thread.is_alive()  # it serves the next client
    finally:
        tap.close()


def test_no_frame_from_the_worker_and_a_closed_tap_are_errors_that_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(tap_module, "WAIT", 0.05)
    tap = FrameTap(tap_path(tmp_path))
    source = TapSource(tap_path(tmp_path))
    with pytest.raises(SourceError, match="no frame within"):
        source.read()
    tap.close()
    with pytest.raises(SourceError, match="vision worker"):
        source.read()
    source.close()
    with pytest.raises(SourceError, match="cannot be reached"):
        TapSource(tap_path(tmp_path))


def test_a_stale_socket_left_by_a_dead_worker_is_replaced(tmp_path):
    (tmp_path / "camera.sock").write_text("left over")
    tap = FrameTap(tap_path(tmp_path))
    try:
        with TapSource(tap_path(tmp_path)) as source:
            assert int(read_while_offering(tap, source, frame(5)).image[0, 0, 0]) == 5
    finally:
        tap.close()
