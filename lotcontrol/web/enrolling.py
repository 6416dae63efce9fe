"""Enrollment from the web console: the command line's ``lotcontrol enroll``, run as a child process.

The console loads no face code (docs/web.md: its memory), so it enrolls exactly as staff do at the
terminal: ``python -m lotcontrol enroll NAME ...`` with ``--by USER`` (the events name the user),
on the same configuration and data directory. Its checks and messages are the command line's own:
one face per photo, not two people, copies and faces already on file, look-alikes.

- **Photos** (``enroll_photos``): the uploaded files are written, mode 600, into a folder of their own
  under ``DATA_DIR/web-uploads`` (mode 700) named as the browser sent them, so every message names
  the file staff chose; the folder is erased when the command ends, whatever happened.
- **The camera** (``CameraJobs``): ``enroll NAME --camera SRC --preview-fd N`` in the background; the
  console keeps what it says (the instructions, "turn a little left", and the outcome) and the newest
  frame of the live picture, in memory only, for the page's preview. One at a time: the camera is one.

The child runs with ``--codes``: each line it says is a JSON line with its code and values
(lotcontrol.phrases), which the page says in its language (web/said.py), the English as the fallback.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..phrases import Phrase

UPLOADS = "web-uploads"
MAX_PHOTOS = 5  # photos in one upload
PHOTO_TIMEOUT = 300.0  # s: the most an enrollment from photos may take (the face models load first)
CAMERA_GRACE = 120.0  # s: past the camera's seconds, for the models to load and the result to be written
MAX_FRAME = 4 << 20  # bytes: a preview frame larger than this is not a preview frame
KEPT_JOBS = 8  # finished camera jobs remembered (their outcome), oldest forgotten first
NAME_CHARS = 80  # of an uploaded file's name


@dataclass
class Outcome:
    """What the command line said, and whether it enrolled every face it was given. Each line is a
    phrase (lotcontrol.phrases: said by its code in the page's language), or plain text where the
    child printed something else (a usage error, a warning)."""

    ok: bool
    lines: list[str]  # its output, the upload folder's path taken out
    error: str | None  # its error line (``Error: ...`` without "Error: ")

    @property
    def enrolled(self) -> bool:
        """Some faces were enrolled (all of them when ``ok``)."""
        return any(line.startswith(("added resident ", "updated resident ")) for line in self.lines)


def command(config_path: str | None, data_dir: Path, user: str, fields: dict[str, str]) -> list[str]:
    """``lotcontrol enroll`` for this lot, as the console's user, with the resident's fields: its
    options only. The caller adds its own, then ``--`` and the name (``positional``): nothing staff type
    is ever read as an option."""
    args = [sys.executable, "-m", "lotcontrol", *([f"--config={config_path}"] if config_path else []),
            f"--data-dir={data_dir}", "enroll", "--codes", f"--by={user}"]
    for key, value in fields.items():
        if value:
            args.append(f"--{key.replace('_', '-')}={value}")
    return args


def positional(name: str, *paths: str) -> list[str]:
    return ["--", name, *paths]


def clear_uploads(data_dir: Path) -> None:
    """Erase what an enrollment from photos left behind when the console stopped in the middle."""
    root = Path(data_dir) / UPLOADS
    if root.is_dir():
        for folder in root.iterdir():
            shutil.rmtree(folder, ignore_errors=True)


def parse_line(line: str) -> tuple[str, bool]:
    """One line of ``enroll --codes``: (its phrase, whether it is the error); a line that is not one of
    its JSON lines as plain text (an ``Error: ...`` line is the error)."""
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        phrase = Phrase.parsed(data)
        if isinstance(phrase, Phrase):
            return phrase, bool(data.get("error"))
    if line.startswith("Error: "):
        return line.removeprefix("Error: "), True
    return line, False


def outcome(returncode: int, output: str | list[tuple[str, bool]], folder: str | None = None) -> Outcome:
    """What ``enroll`` said (its output, or its lines parsed already) and how it ended."""
    if isinstance(output, str):
        if folder:  # the upload folder is the console's business, not staff's
            output = output.replace(folder + os.sep, "")
        output = [parse_line(line.rstrip()) for line in output.splitlines() if line.strip()]
    errors = [line for line, is_error in output if is_error]
    return Outcome(returncode == 0, [line for line, is_error in output if not is_error],
                   errors[-1] if errors else (None if returncode == 0 else Phrase("web.enroll_exit", code=returncode)))


def safe_name(filename: str | None, index: int) -> str:
    """An uploaded file's name as the browser sent it, without any folder, never hidden, kept short."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    base = "".join(ch for ch in base if ch.isprintable() and ch not in "\0")[-NAME_CHARS:]
    return base or f"photo-{index + 1}"


def upload_folder(data_dir: Path) -> Path:
    """A new private folder for one upload, under DATA_DIR/web-uploads (mode 700)."""
    root = Path(data_dir) / UPLOADS
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    folder = root / secrets.token_hex(8)
    folder.mkdir(mode=0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(data)


def enroll_photos(args: list[str], name: str, photos: list[tuple[str, bytes]], data_dir: Path) -> Outcome:
    """Enroll the uploaded ``photos`` [(file name, bytes)] for resident ``name`` with the command line
    ``args`` (``command``): written privately, named as sent, erased after."""
    folder = upload_folder(data_dir)
    try:
        paths, used = [], set()
        for index, (filename, data) in enumerate(photos):
            shown = safe_name(filename, index)
            if shown in used:
                shown = f"{index + 1}-{shown}"
            used.add(shown)
            write_private(folder / shown, data)
            paths.append(str(folder / shown))
        try:
            done = subprocess.run([*args, *positional(name, *paths)], capture_output=True, text=True, timeout=PHOTO_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Outcome(False, [], Phrase("web.enroll_timeout", seconds=f"{PHOTO_TIMEOUT:g}"))
        return outcome(done.returncode, done.stdout + done.stderr, str(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class CameraJob:
    """One enrollment at the camera, running or done: what it said and its newest preview frame."""

    id: str
    user: str
    name: str
    source: str
    started: float = field(default_factory=time.monotonic)
    need: str | None = None  # the newest instruction (a phrase: need.*)
    said: list[tuple[str, bool]] = field(default_factory=list)  # everything else it said, in order (parse_line)
    frame: bytes | None = None  # the newest preview frame (JPEG), in memory only
    frames: int = 0
    result: Outcome | None = None  # None: still running
    version: int = 0  # bumped on every change the page shows

    @property
    def done(self) -> bool:
        return self.result is not None


class CameraBusy(Exception):
    """Another enrollment at the camera is under way."""


class CameraJobs:
    """The console's enrollments at the camera: one runs at a time; the last few are remembered."""

    def __init__(self, on_done=lambda job: None):
        self._jobs: dict[str, CameraJob] = {}
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.on_done = on_done

    def close(self) -> None:
        """The console stops: an enrollment under way is stopped (its transaction, if any, rolled back)."""
        with self._lock:
            running = list(self._processes.values())
        for process in running:
            process.kill()

    def get(self, job_id: str) -> CameraJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self) -> CameraJob | None:
        with self._lock:
            return next((job for job in self._jobs.values() if not job.done), None)

    def start(self, args: list[str], user: str, name: str, source: str, seconds: float) -> CameraJob:
        """Start ``args`` (``enroll NAME --camera SRC ...``) with a preview pipe; CameraBusy if one runs."""
        with self._lock:
            busy = next((job for job in self._jobs.values() if not job.done), None)
            if busy is not None:
                raise CameraBusy(Phrase("web.camera_busy", user=busy.user, name=busy.name))
            job = CameraJob(secrets.token_urlsafe(12), user, name, source)
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.done]
            for old in finished[:max(0, len(finished) - KEPT_JOBS)]:
                del self._jobs[old.id]
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen([*args, f"--camera={source}", f"--seconds={seconds:g}",
                                        f"--preview-fd={write_end}", *positional(name)],
                                       pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1)  # one stream: in order
        except OSError as exc:
            os.close(read_end)
            self._finish(job, Outcome(False, [], Phrase("web.enroll_start", error=exc)))
            return job
        finally:
            os.close(write_end)
        with self._lock:
            self._processes[job.id] = process
        readers = [threading.Thread(target=self._read_lines, args=(job, process.stdout), daemon=True),
                   threading.Thread(target=self._read_frames, args=(job, read_end), daemon=True)]
        for reader in readers:
            reader.start()
        threading.Thread(target=self._wait, args=(job, process, readers, seconds + CAMERA_GRACE),
                         name=f"web-enroll-{job.id}", daemon=True).start()
        return job

    def _changed(self, job: CameraJob) -> None:
        job.version += 1

    def _read_lines(self, job: CameraJob, stream) -> None:
        for line in stream:
            text = line.rstrip()
            if not text:
                continue
            said, is_error = parse_line(text)
            with self._lock:
                if getattr(said, "code", None) and said.code.startswith("need."):  # an instruction
                    job.need = said
                else:
                    job.said.append((said, is_error))
                self._changed(job)

    def _read_frames(self, job: CameraJob, fd: int) -> None:
        with open(fd, "rb") as pipe:
            while True:
                head = pipe.read(4)
                if len(head) < 4:
                    return
                (size,) = struct.unpack(">I", head)
                if size > MAX_FRAME:
                    return
                frame = pipe.read(size)
                if len(frame) < size:
                    return
                with self._lock:
                    job.frame, job.frames = frame, job.frames + 1

    def _wait(self, job: CameraJob, process: subprocess.Popen, readers: list[threading.Thread], limit: float) -> None:
        try:
            returncode = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
            with self._lock:
                job.said.append((Phrase("web.enroll_stopped", seconds=f"{limit:g}"), True))
        for reader in readers:
            reader.join(timeout=10)
        with self._lock:
            self._processes.pop(job.id, None)
            said = list(job.said)
        self._finish(job, outcome(returncode, said))

    def _finish(self, job: CameraJob, result: Outcome) -> None:
        with self._lock:
            job.result = result
            job.frame = None  # the picture is not kept past the enrollment
            self._changed(job)
        self.on_done(job)
