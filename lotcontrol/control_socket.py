"""The control socket: how staff commands (`gate open`, `status`, `fire reset`, …) reach a running
controller.

A Unix socket in the data directory, mode 0600: only the service user (and root) can use it, and
nothing listens on the network. One JSON object per line each way. Every request is checked here,
where it enters, against the command's arguments (``REQUESTS``): an unknown command, a missing or
unknown argument, a wrong type or a value out of range gets an answer that says so, and never
reaches the controller's loop. Only the controller that holds the data directory's lock
(lotcontrol.app) serves it, so a socket file found at start is stale and replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import LotControlError
from .messages import Command

SOCKET_NAME = "control.sock"


class ControllerNotRunning(LotControlError, ConnectionError):
    """No controller answers on the data directory's control socket."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _NoArgs(_Args):
    pass


class _GateOpen(_Args):
    seconds: float | None = Field(None, ge=0.5, le=600.0)


class _FireDrill(_Args):
    zone: str = Field(min_length=1, max_length=64)


class _BaysSet(_Args):
    zone: str = Field(min_length=1, max_length=64)
    occupied: int = Field(ge=0, le=5000)


class _ChargingPort(_Args):
    port: str = Field(min_length=1, max_length=40)


#: Every command the controller takes, with its arguments.
REQUESTS: dict[str, type[_Args]] = {
    "gate.open": _GateOpen, "status": _NoArgs, "bays.status": _NoArgs, "bays.set": _BaysSet,
    "fire.status": _NoArgs, "fire.reset": _NoArgs, "fire.drill": _FireDrill,
    "charging.status": _NoArgs, "charging.stop": _ChargingPort, "charging.enable": _ChargingPort,
    "charging.disable": _ChargingPort,
}


class BadRequest(LotControlError, ValueError):
    """A control request that is not one of the commands with its arguments."""


def parse_request(line: bytes) -> Command:
    """The command a request line asks for, its arguments checked; or BadRequest saying what is wrong."""
    try:
        request = json.loads(line)
    except ValueError:
        raise BadRequest("a request is one JSON object per line") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise BadRequest("a request is a JSON object with a 'command' (text) and optional 'args' (an object)")
    name, args = request["command"], request.get("args") or {}
    if name not in REQUESTS:
        raise BadRequest(f"unknown command {name!r} (commands: {', '.join(sorted(REQUESTS))})")
    if not isinstance(args, dict):
        raise BadRequest(f"{name}: 'args' must be an object")
    try:
        model = REQUESTS[name].model_validate({k: v for k, v in args.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"{name}: {problems}") from None
    return Command(name, model.model_dump(exclude_none=True))


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.connection.settimeout(10)  # a client that connects and says nothing holds no thread for long
        try:
            line = self.rfile.readline(65536)
        except OSError:
            return
        try:
            parsed = parse_request(line)
        except BadRequest as exc:
            self._send({"ok": False, "message": str(exc)})
            return
        answers: queue.Queue = queue.Queue(maxsize=1)

        def reply(answer: dict[str, Any]) -> None:  # never blocks the controller's loop
            with contextlib.suppress(queue.Full):
                answers.put_nowait(answer)
        self.server.inbox.put(Command(parsed.name, parsed.args, reply))
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
            self.path.unlink()  # left by a controller that died: the data directory's lock is ours
        old = os.umask(0o177)
        try:
            self.server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old)
        self.server.inbox = inbox
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="control-socket",
                                       daemon=True)  # polls for shutdown every 50 ms
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
