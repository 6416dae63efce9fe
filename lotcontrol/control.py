"""The control socket: how `lotcontrol gate open` (and later `status`) reach a running controller.

A Unix socket in the data directory, mode 0600: only the service user (and root) can use it, and
nothing listens on the network. One JSON object per line each way.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from .controller import Command
from .errors import LotControlError

SOCKET_NAME = "control.sock"


class ControllerNotRunning(LotControlError, ConnectionError):
    """No controller answers on the data directory's control socket."""


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(65536)
        try:
            request = json.loads(line)
            name, args = str(request["command"]), dict(request.get("args") or {})
        except (ValueError, KeyError, TypeError):
            self._send({"ok": False, "message": "a request is one JSON object with a 'command'"})
            return
        answers: queue.Queue = queue.Queue(maxsize=1)
        self.server.inbox.put(Command(name, args, answers.put))
        try:
            self._send(answers.get(timeout=5))
        except queue.Empty:
            self._send({"ok": False, "message": "the controller did not answer within 5 s"})

    def _send(self, answer: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    """Serves the control socket in a thread, putting each command into ``inbox``."""

    def __init__(self, data_dir: Path, inbox: queue.Queue):
        self.path = Path(data_dir) / SOCKET_NAME
        if self.path.exists():
            self.path.unlink()  # left by a controller that did not stop cleanly
        old = os.umask(0o177)
        try:
            self.server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old)
        self.server.inbox = inbox
        self.thread = threading.Thread(target=self.server.serve_forever, name="control-socket", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


def request(data_dir: Path, command: str, **args: Any) -> dict[str, Any]:
    """Send one command to the controller running on ``data_dir`` and return its answer."""
    path = Path(data_dir) / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
            answer = sock.makefile("rb").readline()
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControllerNotRunning(
            f"the controller is not running on {data_dir} (no answer on {path}); start it with `lotcontrol run`"
        ) from None
    except OSError as exc:
        raise ControllerNotRunning(f"the controller on {data_dir} cannot be reached: {exc}") from None
    return json.loads(answer)
