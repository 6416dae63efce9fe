"""The gate camera's frames for enrollment while the lot runs: the vision worker owns the camera.

A running vision worker opens ``DATA_DIR/camera.sock`` (mode 600, as the control socket), a
``FrameTap``. One client at a time (``enroll NAME --camera`` at ``camera.source``, from the command
line or the web console) asks for a frame with one byte and gets the next frame the worker reads, raw
(height, width, channels, time, then the BGR bytes): ``TapSource`` is that client, a ``FrameSource``
like any camera, so ``capture()`` enrolls from it exactly as from a camera it opened itself.

When the worker calls its camera lost (``camera_lost``: camera.lost_after_seconds without frames), a
client asking is told so at once; otherwise it waits for the next frame, however busy the worker is.

The worker's loop only hands each frame over (``offer``: a flag read while nobody asks; a reference
kept under a lock while someone does) and never waits on the client: a thread of the tap sends it. A
client that is slow gets fewer frames; one that goes away is dropped. Nothing is written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np

from .camera import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)

TAP_NAME = "camera.sock"
HEADER = struct.Struct(">IIId")  # height, width, channels, frame time; height 0: no frame (channels: why)
ASK = b"F"
LOST, STALLED = 1, 2  # why no frame came (the header's channels when its height is 0)
# s: the most the tap waits for the worker's next frame while the worker does not call its camera lost.
# A busy worker (face work on a loaded machine, nice +5) takes seconds over a frame and is not a lost
# camera. A stalled one is killed by its supervisor after vision.heartbeat_timeout_seconds (at most
# 300), which closes the tap and sends the client to its successor: this is only a backstop above that.
STALL = 310.0
RECONNECT = 30.0  # s: the most a client waits for a restarted worker's tap (it loads its models first)
CLIENT_TIMEOUT = 120.0  # s: a client that neither asks nor takes a frame for this long is dropped


def tap_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / TAP_NAME


class FrameTap:
    """The worker's side: a Unix socket in the data directory; ``offer(frame)`` from the worker's loop."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # bound and listening under a name of its own, then renamed into place: a client that finds the
        # path can always connect (between bind and listen it would be refused: under load, a client
        # waiting for the path did connect there)
        pending = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._server.bind(str(pending))
        finally:
            os.umask(old)
        os.chmod(pending, 0o600)
        self._server.listen(1)
        os.replace(pending, self.path)
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._seq = 0
        self._closed = False
        self._lost = False  # the worker calls its camera lost
        self._conn: socket.socket | None = None  # the client being served
        self.wanted = False  # a client is connected: only then are frames kept
        self._thread = threading.Thread(target=self._serve, name="camera-tap", daemon=True)
        self._thread.start()

    def offer(self, frame: Frame) -> None:
        """The worker read ``frame``: kept for the client, if one is connected. Never waits on it."""
        if not self.wanted:
            return
        with self._cond:
            self._frame, self._seq = frame, self._seq + 1
            self._cond.notify_all()

    def camera_lost(self, lost: bool) -> None:
        """The worker called its camera lost (True) or delivering again (False): a client asking
        meanwhile is told at once that no frame comes."""
        with self._cond:
            self._lost = lost
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for sock in (self._server, self._conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self._conn = conn
            try:
                self._client(conn)
            except OSError as exc:
                log.info("camera tap: a client went away (%s)", exc)
            finally:
                with self._cond:
                    self.wanted, self._frame, self._conn = False, None, None
                conn.close()

    def _client(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT)
        with self._cond:
            self.wanted, last = True, self._seq
        while not self._closed:
            if conn.recv(1) != ASK:
                return
            with self._cond:
                self._cond.wait_for(lambda: self._seq != last or self._closed or self._lost, timeout=STALL)
                if self._closed:
                    return  # no answer: the client sees the tap close and goes to the restarted worker's
                frame, last = (self._frame, self._seq) if self._seq != last else (None, last)
                why = LOST if self._lost else STALLED
            if frame is None:
                conn.sendall(HEADER.pack(0, 0, why, 0.0))
                continue
            image = np.ascontiguousarray(frame.image)
            height, width = image.shape[:2]
            channels = image.shape[2] if image.ndim == 3 else 1
            conn.sendall(HEADER.pack(height, width, channels, frame.time))
            conn.sendall(memoryview(image).cast("B"))  # no copy: the send releases the worker's GIL


class _Gone(SourceError):
    """The worker's end of the tap closed: the worker ended (or was restarted)."""


class TapSource(FrameSource):
    """The client: the running vision worker's frames, as a live camera."""

    live = True

    def __init__(self, path: Path):
        self.path = Path(path)
        self._index = 0
        try:
            self._connect()
        except ConnectionRefusedError:
            # the path is there and nobody listens: a worker killed (by its supervisor, stalled) left it, and
            # its successor replaces it once its models are loaded
            self._reconnect(RECONNECT)

    def _connect(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(self.path))
        except ConnectionRefusedError:
            self._sock.close()
            raise
        except OSError as exc:
            self._sock.close()
            raise SourceError(f"the vision worker's camera ({self.path}) cannot be reached: {exc.strerror or exc}") from None

    def _reconnect(self, seconds: float) -> None:
        """The worker was restarted (its supervisor does that to a stalled worker): its successor's tap,
        once it has loaded its models and opened it, within ``seconds``."""
        self._sock.close()
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self._connect()
            except (SourceError, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    raise SourceError(f"the vision worker stopped sending frames and no new one came within "
                                      f"{seconds:g} s (restarted or stopped)") from None
                time.sleep(0.2)

    def _exactly(self, size: int, deadline: float) -> bytes:
        chunks, left = [], size
        while left:
            self._sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self._sock.recv(min(left, 1 << 20))
            if not chunk:
                raise _Gone("the vision worker stopped sending frames (restarted or stopped)")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def read(self, timeout: float = 1.0) -> Frame | None:
        try:
            return self._read(timeout)
        except _Gone:
            self._reconnect(RECONNECT)
            return self._read(timeout)

    def _read(self, timeout: float) -> Frame:
        deadline = time.monotonic() + max(timeout, STALL) + 5.0
        try:
            self._sock.sendall(ASK)
            height, width, channels, when = HEADER.unpack(self._exactly(HEADER.size, deadline))
            if height == 0 and channels == LOST:
                raise SourceError("the vision worker gets no frames from the gate camera (camera lost)")
            if height == 0:
                raise SourceError(f"the vision worker took no frame from the gate camera within {STALL:g} s "
                                  "(it may be stalled)")
            data = self._exactly(height * width * channels, deadline)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Gone(str(exc)) from None
        except OSError as exc:
            raise SourceError(f"the vision worker's camera: {exc}") from None
        shape = (height, width, channels) if channels > 1 else (height, width)
        self._index += 1
        return Frame(np.frombuffer(data, np.uint8).reshape(shape), when, self._index)

    def close(self) -> None:
        self._sock.close()
