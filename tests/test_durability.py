"""A crash at any moment: kill an enrollment with SIGKILL again and again, at points chosen by
watching its progress, and check after each kill that everything committed before it is still
there, whole, with its events; and that the kill took the command's worker processes with it.
(SIGKILL leaves the kernel's page cache to reach the disk: a power cut it does not simulate.)"""

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lotcontrol.store import DB_NAME, Store

from .conftest import FACES, need

pytestmark = pytest.mark.slow  # real processes, real kills: about 20 s together

PEOPLE = ["Andre_Agassi", "Bill_Clinton", "Halle_Berry", "Kofi_Annan", "Laura_Bush", "Meryl_Streep"]
#: Where each run of the import is killed: while the pool's workers encode (nothing of this run is
#: committed yet), or as soon as this run's next resident is committed (the next one is under way).
KILL_POINTS = ["encoding", "commit", "encoding", "commit"]
PR_SET_CHILD_SUBREAPER = 36


def wait_until(condition, seconds: float, what: str, every: float = 0.0005):
    """Poll ``condition`` until it returns something true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up after {seconds} s waiting for {what}"
        time.sleep(every)
    return result


@contextlib.contextmanager
def adopting_orphans():
    """While inside, processes orphaned by a killed command become this process's children, not
    init's: the test reaps them at once and sees how each one ended."""
    libc = ctypes.CDLL(None, use_errno=True)

    def subreaper(on: bool) -> int:
        return libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(on), *[ctypes.c_ulong(0)] * 3)

    if subreaper(True) != 0:
        pytest.skip(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        subreaper(False)


def group_states(pgid: int) -> dict[int, str]:
    """The processes in process group ``pgid`` (zombies included), each with its state letter."""
    states = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            state, _ppid, group = stat[stat.rindex(")") + 2:].split()[:3]
            if int(group) == pgid:
                states[int(entry.name)] = state
    return states


def reap_group(pgid: int) -> dict[int, int]:
    """Reap what is left of a command's process group once its leader is reaped (its orphans are
    this process's children now); how each ended, by pid. Afterwards nothing of the group is left."""
    codes = {}
    deadline = time.monotonic() + 10
    while True:
        try:
            pid, status = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:  # none left
            break
        if pid:
            codes[pid] = os.waitstatus_to_exitcode(status)  # as Popen.returncode: -9 for SIGKILL
        else:
            assert time.monotonic() < deadline, f"process group {pgid} still runs 10 s after its leader ended"
            time.sleep(0.002)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    return codes


def run_to_end(command: list[str]) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert reap_group(process.pid) == {}  # the command ended its workers itself


def kill_at(point: str, command: list[str], database: Path, before: int) -> bool:
    """Run ``command`` in a process group of its own and SIGKILL the whole group at ``point``;
    False if the command ended on its own first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    pgid = process.pid
    try:
        if point == "encoding":  # the pool's workers are up: the leader and at least one more, alive
            wait_until(lambda: process.poll() is not None or sum(s != "Z" for s in group_states(pgid).values()) > 1,
                       60, "the pool's workers", every=0.01)
        else:
            with watching(database) as residents:
                wait_until(lambda: process.poll() is not None or residents() > before, 60,
                           "a resident to be committed")
    finally:
        # The group frozen first, so that none of it can end on its own between the look and the kill:
        # a process that had already ended (a zombie, such as a short helper a library ran) ended by
        # itself, not by the kill (on a loaded machine one did, and read as a survivor).
        with contextlib.suppress(ProcessLookupError):  # an empty group: ended, workers and all
            os.killpg(pgid, signal.SIGSTOP)
        ended = {pid for pid, state in group_states(pgid).items() if state == "Z"}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait()
    others = reap_group(pgid)
    killed = process.returncode == -signal.SIGKILL  # else it had ended on its own first
    if killed:  # every process of the group alive at the kill died of it: none lived on to end by itself
        assert {pid: code for pid, code in others.items() if pid not in ended} == {
            pid: -signal.SIGKILL for pid in others if pid not in ended}, (others, ended)
        assert all(others[pid] == 0 for pid in ended & others.keys()), f"one of the group failed: {others}"
        assert set(others) - ended or point != "encoding", "the pool's workers were not in the group killed"
    else:
        assert process.returncode == 0 and others == {}, f"{command} failed on its own"
    return killed


@contextlib.contextmanager
def watching(database: Path):
    """A function that counts the committed residents, read-only: the test must not create or
    change the file. 0 while the command has not made its tables yet."""
    connection = None

    def residents() -> int:
        nonlocal connection
        try:
            if connection is None:
                connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
            return connection.execute("SELECT count(*) FROM residents").fetchone()[0]
        except sqlite3.Error:
            if connection is not None:
                connection.close()
                connection = None
            return 0

    try:
        yield residents
    finally:
        if connection is not None:
            connection.close()


def committed(data_dir: Path) -> dict[str, frozenset[str]]:
    """What the database holds, as {resident: sha256 of each photo on file for them}, after checking
    that it is intact and that every resident came with the events that wrote them."""
    if not (data_dir / DB_NAME).exists():
        return {}
    with Store.in_dir(data_dir) as store:
        db = store.db
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert store.verify_events()[1] is None
        photos: dict[str, set[str]] = {}
        for name, sha in db.execute(
                "SELECT r.name, t.photo_sha256 FROM residents r LEFT JOIN templates t ON t.resident_id = r.id"):
            photos.setdefault(name, set()).add(sha)  # None: a resident without a template
        # enroll writes a resident, their templates and a resident.enrolled event in one transaction
        logged = dict(db.execute(
            "SELECT r.name, sum(json_extract(e.details, '$.templates_added')) FROM events e "
            "JOIN residents r ON r.id = e.resident_id WHERE e.type = 'resident.enrolled' GROUP BY r.name"))
        assert logged == {name: len(shas - {None}) for name, shas in photos.items()}
        return {name: frozenset(shas) for name, shas in photos.items()}


def test_sigkill_at_chosen_points_loses_nothing_committed(tmp_path):
    need(FACES)
    if not Path("/proc/self/stat").exists():
        pytest.skip("the test watches the command's processes in /proc (Linux)")
    folder = tmp_path / "import"
    for person in PEOPLE:
        (folder / person).mkdir(parents=True)
        for photo in sorted((FACES / person).glob("*.jpg"))[:2]:
            shutil.copy(photo, folder / person)

    def command(data: Path) -> list[str]:
        return [sys.executable, "-m", "lotcontrol", "--data-dir", str(data), "enroll-folder", str(folder)]

    # What a whole import holds: every person with the sha256 of each of their photos (a clean run
    # of the import, made here before for the reference, cost a whole import of CPU to say the same)
    reference = {person: frozenset(hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / person).iterdir())
                 for person in PEOPLE}
    assert all(len(shas) == 2 for shas in reference.values())
    with adopting_orphans():

        kills: list[tuple[str, int, int]] = []  # (point, residents committed before the kill, after it)
        for attempt in range(3):  # another only if a busy machine let an import run to its end at once
            data = tmp_path / f"data{attempt}"
            state: dict[str, frozenset[str]] = {}
            for point in KILL_POINTS:
                killed = kill_at(point, command(data), data / DB_NAME, len(state))
                now = committed(data)
                assert state.items() <= now.items(), "a kill lost something committed before it"
                for name, shas in now.items():  # no half-resident: all of their photos or none
                    assert shas == reference[name], (name, sorted(shas), sorted(reference[name]))
                if killed:
                    kills.append((point, len(state), len(now)))
                state = now
                if len(state) == len(reference):
                    break
            if any(0 < after < len(reference) for _, _, after in kills):
                break
        # not vacuous: a kill landed with residents committed and others still to come, and one
        # while the pool's workers ran
        assert any(0 < after < len(reference) for _, _, after in kills), kills
        assert any(point == "encoding" for point, _, _ in kills), kills

        run_to_end(command(data))
        assert committed(data) == reference  # the interrupted import ends as a clean one does


def test_two_terminals_enrolling_at_once_lose_nothing_and_make_no_duplicate(tmp_path):
    need(FACES)
    data = tmp_path / "data"
    # four terminals (each command loads the face models, about 2.5 CPU-s): three race to create one
    # resident, a fourth creates another at the same time
    photos = sorted((FACES / "Kofi_Annan").glob("*.jpg"))[:3]
    others = sorted((FACES / "Laura_Bush").glob("*.jpg"))[:1]
    base = [sys.executable, "-m", "lotcontrol", "--data-dir", str(data), "enroll"]
    runs = [subprocess.Popen(base + ["Kofi Annan", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for p in photos] + [subprocess.Popen(base + ["Laura Bush", str(p)], stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE) for p in others]
    outputs = [r.communicate(timeout=120) for r in runs]
    said = [(r.returncode, out.decode(), err.decode()) for r, (out, err) in zip(runs, outputs)]
    assert [code for code, _, _ in said] == [0] * 4, said
    with Store.in_dir(data) as store:  # every assertion shows what the four commands said, should one fail
        assert [(r.name, r.templates) for r in store.residents()] == [("Kofi Annan", 3), ("Laura Bush", 1)], said
        created = [e.details["new_resident"] for e in store.events()]
        assert created.count(True) == 2, (created, said)
        assert store.verify_events()[1] is None, said
