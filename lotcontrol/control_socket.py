"""The control socket: how staff commands (`gate open`, `status`, `fire reset`, …) reach a running
controller.

A Unix socket in the data directory, mode 0600: only the service user (and root) can use it, and
nothing listens on the network. One JSON object per line each way. Every request is checked here,
where it enters, against the command's arguments (``REQUESTS``): an unknown command, a missing or
unknown argument, a wrong type or a value out of range gets an answer that says so, and never
reaches the controller's loop; nor does a malformed or overlong request, which gets an answer and one
line in the log, never a traceback. The socket has a thread of its own: HANDLERS connections are
served at once, each within DEADLINE seconds from accept to answer however slowly its client writes,
and the rest wait in the listen queue, so no flood of clients can exhaust the process or hold up the
loop. Only the controller that holds the data directory's lock
(lotcontrol.app) serves it, so a socket file found at start is stale and replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import LotControlError
from .messages import Command
from .phrases import Phrase, answer as answer_saying

SOCKET_NAME = "control.sock"
MAX_REQUEST = 65536  # bytes in one request line
DEADLINE = 10.0  # s: the most one connection may take at the server, from accept to the answer written
ANSWER_WITHIN = 5.0  # s: the most the server waits for the controller's answer (within DEADLINE)
GRACE = 1.0  # s: past the deadline, for a refused client to take its answer before it is cut off
HANDLERS = 16  # connections served at once; the rest wait in the listen queue
CONNECT_TIMEOUT = 5.0  # s: the client's wait for a place in a full listen queue
ANSWER_TIMEOUT = DEADLINE + 5.0  # s: the client's wait for its whole answer (the server's deadline, and then some)

log = logging.getLogger("lotcontrol")


class ControllerNotRunning(LotControlError, ConnectionError):
    """No controller answers on the data directory's control socket."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _NoArgs(_Args):
    pass


class _ByWhom(_Args):
    """A command staff give: ``by`` names who, for the event log (the web console's user)."""
    by: str | None = Field(None, min_length=1, max_length=80)


class _GateOpen(_ByWhom):
    seconds: float | None = Field(None, ge=0.5, le=600.0)


class _FireDrill(_ByWhom):
    zone: str = Field(min_length=1, max_length=64)


class _BaysSet(_Args):
    zone: str = Field(min_length=1, max_length=64)
    occupied: int = Field(ge=0, le=5000)


class _ChargingPort(_ByWhom):
    port: str = Field(min_length=1, max_length=40)


class _CardRead(_Args):
    seconds: float | None = Field(None, ge=1.0, le=300.0)  # given: start waiting this long; none: ask again


#: Every command the controller takes, with its arguments.
REQUESTS: dict[str, type[_Args]] = {
    "gate.open": _GateOpen, "status": _NoArgs, "bays.status": _NoArgs, "bays.set": _BaysSet,
    "fire.status": _NoArgs, "fire.reset": _ByWhom, "fire.drill": _FireDrill,
    "charging.status": _NoArgs, "charging.stop": _ChargingPort, "charging.enable": _ChargingPort,
    "charging.disable": _ChargingPort, "card.read": _CardRead,
}


class BadRequest(LotControlError, ValueError):
    """A control request that is not one of the commands with its arguments."""


class _TooLong(BadRequest):
    """A request line longer than MAX_REQUEST: the rest of it is still coming."""


def parse_request(line: bytes) -> Command:
    """The command a request line asks for, its arguments checked; or BadRequest saying what is wrong."""
    try:
        request = json.loads(line)
    except ValueError:
        raise BadRequest("a request is one JSON object per line") from None
    except RecursionError:
        raise BadRequest("a request is one JSON object per line, not nested too deeply") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise BadRequest("a request is a JSON object with a 'command' (text) and optional 'args' (an object)")
    name, args = request["command"], request.get("args") or {}
    if name not in REQUESTS:
        raise BadRequest(f"unknown command {_shown(name.encode())} (commands: {', '.join(sorted(REQUESTS))})")
    if not isinstance(args, dict):
        raise BadRequest(f"{name}: 'args' must be an object")
    try:
        model = REQUESTS[name].model_validate({k: v for k, v in args.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"{name}: {problems}") from None
    return Command(name, model.model_dump(exclude_none=True))


class _Handler(socketserver.BaseRequestHandler):
    """One connection: one request line in, one answer line out, all within the server's deadline."""

    def handle(self) -> None:
        deadline = time.monotonic() + self.server.deadline
        try:
            line = _read_line(self.request, deadline, MAX_REQUEST)
        except TimeoutError:
            log.info("control socket: a request did not arrive whole within %g s; hung up", self.server.deadline)
            answer_by = time.monotonic() + GRACE
            self._send({"ok": False, "message": f"the request did not arrive whole within {self.server.deadline:g} s"},
                       answer_by)
            self._drain(answer_by)  # so that the client reads its answer, not a reset
            return
        except BadRequest as exc:
            self._refuse(exc, deadline)
            if isinstance(exc, _TooLong):
                self._drain(deadline)
            return
        except OSError as exc:
            log.debug("control socket: a client went away mid-request (%s)", exc)
            return
        if not line.strip():
            log.debug("control socket: a client hung up without a request")
            return
        try:
            parsed = parse_request(line)
        except BadRequest as exc:
            self._refuse(exc, deadline)
            return
        answers: queue.Queue = queue.Queue(maxsize=1)

        def reply(answer: dict[str, Any]) -> None:  # never blocks the controller's loop
            with contextlib.suppress(queue.Full):
                answers.put_nowait(answer)
        if _hung_up(self.request):  # it waited in the queue and gave up: its command is not carried out
            log.info("control socket: %s: the client had gone before it was served; not carried out", parsed.name)
            return
        wait = min(ANSWER_WITHIN, self.server.deadline)
        given_up = time.monotonic() + max(0.0, min(wait, deadline - time.monotonic()))
        self.server.inbox.put(Command(parsed.name, parsed.args, reply, expires=given_up))
        try:
            answer = answers.get(timeout=max(0.0, given_up - time.monotonic()))
        except queue.Empty:
            answer = answer_saying(False, Phrase("controller.late", seconds=f"{wait:g}"))
            log.warning("control socket: %s: %s", parsed.name, answer["message"])
        self._send(answer, deadline)

    def _refuse(self, exc: BadRequest, deadline: float) -> None:
        log.warning("control socket: refused a request: %s", exc)
        self._send({"ok": False, "message": str(exc)}, deadline)

    def _drain(self, deadline: float) -> None:
        """Read and drop the rest of an overlong request until the client hangs up (or the deadline):
        closing with unread input would reset the connection, and the client lose its answer."""
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_WR)  # the answer is all: the client sees its end
            while True:  # until the client hangs up; _until ends it at the deadline
                _until(self.request, deadline)
                if not self.request.recv(65536):
                    break

    def _send(self, answer: dict[str, Any], deadline: float) -> None:
        """The answer line; a client that has gone, or takes no more in time, gets nothing."""
        try:
            self.request.settimeout(max(0.0, deadline - time.monotonic()))
            self.request.sendall(json.dumps(answer).encode() + b"\n")
        except OSError as exc:
            log.debug("control socket: a client went away before its answer (%s)", exc)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """At most ``handlers`` connections are served at once: the next ones wait in the listen queue
    (``request_queue_size``), and past that in their own ``connect``, so a flood holds no more
    threads and descriptors than that. Every connection ends within ``deadline`` seconds."""

    daemon_threads = True
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: str, inbox: queue.Queue, deadline: float, handlers: int):
        self.inbox, self.deadline = inbox, deadline
        self.slots = threading.BoundedSemaphore(handlers)
        self.closing = threading.Event()
        super().__init__(path, _Handler)

    def process_request(self, request, client_address) -> None:
        while not self.slots.acquire(timeout=0.05):  # every handler busy: wait, still heeding close()
            if self.closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)  # a thread of its own
        except BaseException:
            self.slots.release()  # no thread was started to release it
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        """A handler's bug: one line in the log (the traceback at debug level), and the socket serves on."""
        exc = sys.exc_info()[1]
        log.error("control socket: a request failed: %s: %s", type(exc).__name__, exc)
        log.debug("control socket: the failure in full", exc_info=True)


class ControlServer:
    """Serves the control socket in a thread, putting each command into ``inbox``. ``deadline``: the
    seconds one connection may take, from accepting it to its answer written; ``handlers``: how many
    connections are served at once."""

    def __init__(self, data_dir: Path, inbox: queue.Queue, deadline: float = DEADLINE, handlers: int = HANDLERS):
        self.path = Path(data_dir) / SOCKET_NAME
        if self.path.exists():
            self.path.unlink()  # left by a controller that died: the data directory's lock is ours
        old = os.umask(0o177)
        try:
            self.server = _Server(str(self.path), inbox, deadline, handlers)
        finally:
            os.umask(old)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="control-socket",
                                       daemon=True)  # polls for shutdown every 50 ms
        self.thread.start()

    def close(self) -> None:
        self.server.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


class ControlError(LotControlError, ConnectionError):
    """The controller's socket is there but gave no usable answer (busy, silent, or garbled)."""


def request(data_dir: Path, command: str, **args: Any) -> dict[str, Any]:
    """Send one command to the controller running on ``data_dir`` and return its answer.

    ControllerNotRunning when nothing listens on its socket; ControlError, naming the socket, when the
    controller takes no connection within CONNECT_TIMEOUT, gives no answer within ANSWER_TIMEOUT, or
    an answer that is not a JSON object."""
    path = Path(data_dir) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            _connect(sock, path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControllerNotRunning(
                f"the controller is not running on {data_dir} (no answer on {path}); start it with `lotcontrol run`",
                code="controller.not_running", dir=str(data_dir), path=str(path)) from None
        except BlockingIOError:
            raise ControlError(f"the controller on {data_dir} is busy: {path} took no connection within "
                               f"{CONNECT_TIMEOUT:g} s; try again", code="controller.busy", dir=str(data_dir),
                               path=str(path), seconds=f"{CONNECT_TIMEOUT:g}") from None
        except OSError as exc:
            raise ControlError(f"the controller on {data_dir} cannot be reached on {path}: {exc}",
                               code="controller.unreachable", dir=str(data_dir), path=str(path), error=str(exc)) from None
        deadline = time.monotonic() + ANSWER_TIMEOUT  # one deadline for sending and the whole answer
        try:
            _until(sock, deadline)
            sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
            answer = _read_line(sock, deadline)
        except TimeoutError:
            raise ControlError(f"the controller on {data_dir} did not answer on {path} within "
                               f"{ANSWER_TIMEOUT:g} s", code="controller.silent", dir=str(data_dir), path=str(path),
                               seconds=f"{ANSWER_TIMEOUT:g}") from None
        except OSError as exc:
            raise ControlError(f"the controller on {data_dir} hung up on {path}: {exc}", code="controller.hung_up",
                               dir=str(data_dir), path=str(path), error=str(exc)) from None
    if not answer.strip():
        raise ControlError(f"the controller on {data_dir} hung up on {path} without an answer",
                           code="controller.no_answer", dir=str(data_dir), path=str(path))
    try:
        parsed = json.loads(answer)
    except (ValueError, RecursionError):
        raise ControlError(f"the controller on {data_dir} gave an answer that is not JSON: "
                           f"{_shown(answer)} (on {path})", code="controller.garbled", dir=str(data_dir),
                           path=str(path), answer=_shown(answer)) from None
    if not isinstance(parsed, dict):
        raise ControlError(f"the controller on {data_dir} gave an answer that is not a JSON object: "
                           f"{_shown(answer)} (on {path})", code="controller.garbled", dir=str(data_dir),
                           path=str(path), answer=_shown(answer))
    return parsed


def _connect(sock: socket.socket, path: Path) -> None:
    """Connect in blocking mode, so a full listen queue is waited on (up to CONNECT_TIMEOUT, the
    kernel's send timeout) instead of failing at once with EAGAIN as a socket with a Python timeout
    does. A signal that interrupts the wait (a profiler, a job-control stop) makes CPython report the
    connect as done though a Unix socket is not connected yet: the wait goes on for what is left of
    the time, then BlockingIOError as a full queue gives."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        _send_timeout(sock, deadline - time.monotonic())
        sock.connect(str(path))
        try:
            sock.getpeername()
            return
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
        if time.monotonic() >= deadline:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _timeval(seconds: float) -> tuple[int, int]:
    """(seconds, microseconds) of a struct timeval for the kernel: at least 1 ms (0 is no limit)."""
    return divmod(max(int(seconds * 1e6), 1000), 1_000_000)


def _send_timeout(sock: socket.socket, seconds: float) -> None:
    """The kernel's send timeout, which a blocking connect waits for a place in the queue."""
    whole, micro = _timeval(seconds)
    try:  # struct timeval of C longs: every 64-bit ABI, and 32-bit ones with a 32-bit time_t
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, micro))
    except OSError:  # 32-bit with a 64-bit time_t: SO_SNDTIMEO takes two 64-bit fields
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("qq", whole, micro))


def _read_line(sock: socket.socket, deadline: float, limit: int | None = None) -> bytes:
    """One line from ``sock`` without its newline (or what came before the peer stopped sending),
    all of it by ``deadline`` (time.monotonic()) or TimeoutError: one deadline for the whole line,
    however slowly it comes. _TooLong past ``limit`` bytes."""
    data = bytearray()
    while True:
        _until(sock, deadline)
        chunk = sock.recv(65536)
        end = chunk.find(b"\n")
        data += chunk if end < 0 else chunk[:end]
        if limit is not None and len(data) > limit:
            raise _TooLong(f"a request is one line of at most {limit} bytes; this one was longer")
        if end >= 0 or not chunk:
            return bytes(data)


def _until(sock: socket.socket, deadline: float) -> None:
    """Give ``sock`` what is left of the time until ``deadline``, or TimeoutError when nothing is."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(remaining)


def _hung_up(sock: socket.socket) -> bool:
    """The client has closed its end (its request may still be buffered: it gave up waiting)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return any(events & (select.POLLRDHUP | select.POLLHUP) for _, events in poller.poll(0))


def _shown(answer: bytes) -> str:
    text = answer.decode(errors="replace").strip()
    return repr(text if len(text) <= 60 else text[:60] + "…")
