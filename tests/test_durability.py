"""A power cut at any moment: kill an enrollment with SIGKILL at random points, again and again, and
check the database after each: intact, no half-resident, every enrollment's event with it."""

import random
import shutil
import signal
import subprocess
import sys
import time

from lotcontrol.store import Store

from .conftest import FACES, need

PEOPLE = ["Andre_Agassi", "Bill_Clinton", "Halle_Berry", "Kofi_Annan", "Laura_Bush", "Meryl_Streep"]


def check(data_dir) -> int:
    with Store.in_dir(data_dir) as store:
        store.check()
        db = store.db
        assert db.execute("SELECT count(*) FROM residents r WHERE NOT EXISTS "
                          "(SELECT 1 FROM templates t WHERE t.resident_id = r.id)").fetchone()[0] == 0
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        residents = db.execute("SELECT count(*) FROM residents").fetchone()[0]
        enrolled_events = db.execute("SELECT count(*) FROM events WHERE type = 'resident.enrolled'").fetchone()[0]
        assert enrolled_events >= residents  # each resident came with its event, in one transaction
        assert store.verify_events()[1] is None
        return db.execute("SELECT count(*) FROM templates").fetchone()[0]


def test_sigkill_at_random_points_loses_nothing_committed(tmp_path):
    need(FACES)
    folder = tmp_path / "import"
    for person in PEOPLE:
        (folder / person).mkdir(parents=True)
        for photo in sorted((FACES / person).glob("*.jpg"))[:2]:
            shutil.copy(photo, folder / person)
    data = tmp_path / "data"
    command = [sys.executable, "-m", "lotcontrol", "--data-dir", str(data), "enroll-folder", str(folder)]
    rng = random.Random(7)
    templates_seen = 0
    for _ in range(6):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(rng.uniform(0.5, 3.0))  # the moment of the power cut, not a wait for a thread
        process.send_signal(signal.SIGKILL)
        process.wait()
        if data.exists():
            templates = check(data)
            assert templates >= templates_seen  # nothing committed is ever lost
            templates_seen = templates
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert check(data) == 12


def test_two_terminals_enrolling_at_once_lose_nothing_and_make_no_duplicate(tmp_path):
    need(FACES)
    data = tmp_path / "data"
    photos = sorted((FACES / "Kofi_Annan").glob("*.jpg"))[:4]
    others = sorted((FACES / "Laura_Bush").glob("*.jpg"))[:2]
    base = [sys.executable, "-m", "lotcontrol", "--data-dir", str(data), "enroll"]
    runs = [subprocess.Popen(base + ["Kofi Annan", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for p in photos] + [subprocess.Popen(base + ["Laura Bush", str(p)], stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE) for p in others]
    outputs = [r.communicate(timeout=120) for r in runs]
    said = [(r.returncode, out.decode(), err.decode()) for r, (out, err) in zip(runs, outputs)]
    assert [code for code, _, _ in said] == [0] * 6, said
    with Store.in_dir(data) as store:  # every assertion shows what the six commands said, should one fail
        assert [(r.name, r.templates) for r in store.residents()] == [("Kofi Annan", 4), ("Laura Bush", 2)], said
        created = [e.details["new_resident"] for e in store.events()]
        assert created.count(True) == 2, (created, said)
        assert store.verify_events()[1] is None, said
