"""The residents pages of the web console without a browser (Starlette's TestClient): the list and a
resident, roles refused by the server, CSRF, staff changes through the command line's own path with the
user's name in the events, the typed confirmation of a removal, look-alike review, and enrollment by
photo upload and at the camera (the command line's `enroll`, run as a child process)."""

import json
import re
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web console's stack is not installed (pip install -e '.[web]')")

from lotcontrol.store import Store  # noqa: E402
from lotcontrol.web import enrolling  # noqa: E402

from .conftest import FACES, need  # noqa: E402
from .test_web import PASSWORD, console, controller, csrf, events, flush, live_url, log_in, lot_dir, stream  # noqa: E402, F401

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def lot(lot_dir):
    with Store.in_dir(lot_dir) as store:
        anna = store.add_resident("Anna Berg", unit="4B", phone="+46 70 123 45 67")
        eva = store.add_resident("Eva Berg", unit="4C")
        store.add_resident("Li Wei", unit="7A")
        store.flag_lookalike(anna.id, eva.id, 0.31)
    return lot_dir


@pytest.fixture
def client(lot, controller, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the enrollments' child processes import this lotcontrol
    with console(lot, controller) as c:
        yield c


def resident(lot_dir, name):
    with Store.in_dir(lot_dir, read_only=True) as store:
        return next((r for r in store.residents() if r.name == name), None)


def resident_events(lot_dir):
    with Store.in_dir(lot_dir, read_only=True) as store:
        return [(e.type, e.details) for e in store.events(type="resident")]


def test_a_viewer_reads_the_list_and_a_resident_without_any_staff_form(client):
    log_in(client, "vera")
    page = client.get("/residents").text
    assert "Anna Berg" in page and "Li Wei" in page and "look-alike of Eva Berg" in page
    assert 'id="enroll"' not in page
    found = client.get("/residents", params={"q": "7a"}).text  # the unit, any case
    assert "Li Wei" in found and "Anna Berg" not in found
    one = client.get("/resident", params={"name": "anna berg"}).text
    assert "+46 70 123 45 67" in one and "4B" in one and "Cards: no" in one and "PIN set: no" in one
    assert 'id="suspend"' not in one and 'id="remove"' not in one and 'id="edit"' not in one
    missing = client.get("/resident", params={"name": "Nobody"})
    assert missing.status_code == 404 and "no resident named &#39;Nobody&#39;" in missing.text


@pytest.mark.parametrize("path, data", [
    ("/resident/suspend", {"name": "Anna Berg"}),
    ("/resident/edit", {"name": "Anna Berg", "unit": "9Z"}),
    ("/resident/remove", {"name": "Anna Berg", "confirm": "Anna Berg"}),
    ("/residents/lookalikes/clear", {"first": "Anna Berg", "second": "Eva Berg"}),
    ("/residents/enroll/camera", {"name": "Mallory"}),
])
def test_a_viewers_change_is_refused_by_the_server_and_changes_nothing(client, lot, path, data):
    log_in(client, "vera")
    response = client.post(path, data={**data, "csrf": csrf(client, "/residents")})
    assert response.status_code == 403 and 'id="refused"' in response.text
    anna = resident(lot, "Anna Berg")
    assert anna is not None and anna.status == "active" and anna.unit == "4B"
    assert client.app.state.console.jobs.running() is None
    flush(client)
    assert events(lot, "web.refused")[-1][1] == {"user": "vera", "request": f"POST {path}", "reason": "role viewer, needs staff"}
    assert resident_events(lot) == []


def test_a_viewers_upload_is_refused_before_it_is_read(client, lot):
    log_in(client, "vera")
    response = client.post("/residents/enroll/photos", data={"name": "Mallory", "csrf": csrf(client, "/residents")},
                           files={"photos": ("m.jpg", b"\xff\xd8" + b"0" * 1000, "image/jpeg")})
    assert response.status_code == 403 and resident(lot, "Mallory") is None
    assert not (lot / enrolling.UPLOADS).exists()


def test_a_change_without_the_csrf_token_is_refused(client, lot):
    log_in(client, "stan")
    for data in ({"name": "Anna Berg"}, {"name": "Anna Berg", "csrf": "forged"}):
        response = client.post("/resident/suspend", data=data)
        assert response.status_code == 403 and 'id="refused"' in response.text
    assert resident(lot, "Anna Berg").status == "active"
    flush(client)
    assert {d["reason"] for _, d in events(lot, "web.refused")} == {"csrf"}


def test_staff_suspend_and_resume_in_their_name(client, lot):
    log_in(client, "stan")
    suspended = client.post("/resident/suspend", data={"name": "Anna Berg", "csrf": csrf(client, "/residents")})
    assert suspended.status_code == 200 and "refused at the gate until resumed" in suspended.text
    assert resident(lot, "Anna Berg").status == "suspended"
    assert 'id="resume"' in suspended.text
    client.post("/resident/resume", data={"name": "Anna Berg", "csrf": csrf(client, "/residents")})
    assert resident(lot, "Anna Berg").status == "active"
    assert resident_events(lot) == [("resident.suspended", {"by": "stan"}), ("resident.resumed", {"by": "stan"})]


def test_an_edit_is_checked_as_the_command_line_checks_it_and_a_bad_value_changes_nothing(client, lot):
    log_in(client, "stan")
    form = {"name": "Anna Berg", "unit": "5C", "phone": "+46 70 123 45 67", "valid_from": "", "note": "",
            "valid_until": "2026-13-01", "csrf": csrf(client, "/residents")}
    refused = client.post("/resident/edit", data=form)
    assert refused.status_code == 409 and "Refused:" in refused.text and "valid until" in refused.text
    assert resident(lot, "Anna Berg").unit == "4B"
    done = client.post("/resident/edit", data={**form, "valid_until": "2027-06-30", "phone": ""})
    assert done.status_code == 200 and "Changed:" in done.text
    anna = resident(lot, "Anna Berg")
    assert (anna.unit, anna.phone, anna.valid_until) == ("5C", None, "2027-06-30")
    assert resident_events(lot) == [("resident.edited", {"fields": ["unit", "phone", "valid_until"], "by": "stan"})]
    flush(client)
    assert events(lot, "web.refused")[-1][1]["request"] == "resident.edit"


def test_a_removal_needs_the_name_typed_and_erases_the_resident(client, lot):
    log_in(client, "stan")
    for typed in ("", "anna berg", "Anna"):
        refused = client.post("/resident/remove", data={"name": "Anna Berg", "confirm": typed,
                                                         "csrf": csrf(client, "/residents")})
        assert refused.status_code == 409 and "type Anna Berg to confirm" in refused.text
        assert resident(lot, "Anna Berg") is not None
    done = client.post("/resident/remove", data={"name": "Anna Berg", "confirm": "Anna Berg",
                                                  "csrf": csrf(client, "/residents")})
    assert done.status_code == 200 and "Removed Anna Berg and 0 face template(s)" in done.text
    assert resident(lot, "Anna Berg") is None
    assert resident_events(lot) == [("resident.removed", {"templates_erased": 0, "by": "stan"})]


def test_look_alikes_are_reviewed_and_cleared_as_different_people(client, lot):
    log_in(client, "stan")
    page = client.get("/residents/lookalikes").text
    assert "the same person? Relatives?" in page and "Anna Berg" in page and "Eva Berg" in page and "0.31" in page
    done = client.post("/residents/lookalikes/clear", data={"first": "Eva Berg", "second": "Anna Berg",
                                                             "csrf": csrf(client, "/residents")})
    assert done.status_code == 200 and "Checked as different people" in done.text and 'id="no-pairs"' in done.text
    assert resident_events(lot) == [("resident.lookalike_cleared", {"first": "Eva Berg", "second": "Anna Berg", "by": "stan"})]
    again = client.post("/residents/lookalikes/clear", data={"first": "Eva Berg", "second": "Anna Berg",
                                                              "csrf": csrf(client, "/residents")})
    assert again.status_code == 409 and "are not flagged as look-alikes" in again.text


def upload(client, name, *files, headers=None):
    return client.post("/residents/enroll/photos", data={"name": name, "unit": "2A", "csrf": csrf(client, "/residents")},
                       files=[("photos", f) for f in files], headers=headers)


def test_an_upload_past_the_size_limit_is_refused_naming_the_file(lot, controller):
    from lotcontrol.config import parse_config
    from starlette.testclient import TestClient

    from lotcontrol.web.server import build

    config = parse_config({"enroll": {"max_file_mb": 0.01}})
    with TestClient(build(config, lot, ask=controller), base_url="http://127.0.0.1") as c:
        log_in(c, "stan")
        big = upload(c, "Mallory", ("holiday.jpg", b"\xff\xd8" + b"0" * 20_000, "image/jpeg"))
        assert big.status_code == 413
        assert "holiday.jpg: the file is 0.02 MB, more than enroll.max_file_mb = 0.01 allows" in big.text
        huge = upload(c, "Mallory", ("huge.jpg", b"0" * 1_200_000, "image/jpeg"))  # cut off as it comes
        assert huge.status_code == 413 and "nothing was enrolled" in huge.text
        many = upload(c, "Mallory", *[(f"{i}.jpg", b"0" * 2000, "image/jpeg") for i in range(6)])
        assert many.status_code == 400 and "Maximum number of files is 5" in many.text
        none = upload(c, "Mallory")
        assert none.status_code == 400 and "choose at least one photo" in none.text
    assert resident(lot, "Mallory") is None and not list((lot / enrolling.UPLOADS).glob("*/*"))


def test_an_upload_that_is_no_photo_gets_the_command_lines_message_naming_the_file(client, lot):
    log_in(client, "stan")
    response = upload(client, "Mallory", ("notes.txt", b"not a photo at all", "text/plain"))
    assert response.status_code == 422, response.text
    assert "notes.txt: not a JPEG or PNG image" in response.text and "Not enrolled" in response.text
    assert str(lot) not in response.text  # the private upload folder is not shown
    assert resident(lot, "Mallory") is None and not list((lot / enrolling.UPLOADS).iterdir())
    flush(client)
    refused = events(lot, "web.refused")[-1][1]
    assert refused["user"] == "stan" and refused["request"] == "enroll" and "notes.txt" in refused["reason"]


def test_an_enrollments_refusal_is_said_in_chinese_by_its_codes(client, lot):
    """The child's lines carry codes (enroll --codes): the photo's reason and the outcome, each part in
    Chinese, the file's name kept."""
    log_in(client, "stan")
    response = upload(client, "Mallory", ("notes.txt", b"not a photo at all", "text/plain"),
                      headers={"Accept-Language": "zh-CN"})
    assert response.status_code == 422, response.text
    assert "未采用 notes.txt：不是 JPEG 或 PNG 图片" in response.text
    assert "未添加“Mallory”：唯一的照片未被采用：notes.txt：不是 JPEG 或 PNG 图片" in response.text
    assert "not a JPEG" not in response.text and "was not added" not in response.text


def test_a_name_or_field_that_looks_like_an_option_is_never_read_as_one(client, lot):
    log_in(client, "stan")
    response = client.post("/residents/enroll/photos", data={"name": "--help", "unit": "--hub=/tmp",
                                                              "csrf": csrf(client, "/residents")},
                           files=[("photos", ("notes.txt", b"not a photo", "text/plain"))])
    assert response.status_code == 422 and "notes.txt: not a JPEG or PNG image" in response.text
    assert "Usage:" not in response.text


def test_photos_an_interrupted_console_left_are_erased_when_it_starts(lot, controller):
    left = lot / enrolling.UPLOADS / "0123456789abcdef"
    left.mkdir(parents=True)
    (left / "face.jpg").write_bytes(b"\xff\xd8")
    with console(lot, controller):
        assert not left.exists()


@pytest.mark.slow  # the command line's face work in a child process
def test_photos_uploaded_are_enrolled_in_the_users_name_and_not_kept(client, lot):
    photos = [need(FACES / "Tony_Blair" / f"Tony_Blair_{n:04d}.jpg") for n in (1, 2)]
    log_in(client, "stan")
    response = upload(client, "Tony Blair", *[(p.name, p.read_bytes(), "image/jpeg") for p in photos])
    assert response.status_code == 200, response.text
    assert "enrolled Tony_Blair_0001.jpg" in response.text
    assert "added resident &#39;Tony Blair&#39;: 2 photo(s) enrolled" in response.text
    tony = resident(lot, "Tony Blair")
    assert tony.templates == 2 and tony.unit == "2A"
    [enrolled] = [d for t, d in resident_events(lot) if t == "resident.enrolled"]
    assert enrolled["by"] == "stan"
    assert not list((lot / enrolling.UPLOADS).iterdir())  # the photos are erased
    again = upload(client, "Tony Blair", (photos[0].name, photos[0].read_bytes(), "image/jpeg"))
    assert again.status_code == 422 and "already enrolled for &#39;Tony Blair&#39;" in again.text


# --- at the camera: the job, its live instructions and picture -----------------------------------------

FAKE_ENROLL = r"""
import os, struct, sys
from lotcontrol.phrases import Phrase, json_line
open(sys.argv[1]).read()  # the test says when to go on
fd = int(next(a for a in sys.argv if a.startswith("--preview-fd=")).split("=", 1)[1])
assert sys.argv[-2:] == ["--", "Mallory"]  # the name last, after every option
with open(fd, "wb") as pipe:
    for frame in (b"\xff\xd8first\xff\xd9", b"\xff\xd8second\xff\xd9"):
        pipe.write(struct.pack(">I", len(frame)) + frame)
        pipe.flush()
# as `enroll --codes` says them (lotcontrol.phrases): one JSON line each
for phrase in (Phrase("camera.look", source="x", seconds="8"), Phrase("need.left"),
               Phrase("enroll.enrolled", path="camera frame at 0.4 s (turn +0.10)"),
               Phrase("enroll.added", name="Mallory", count=1, what=Phrase("what.frame"), templates=1)):
    print(json_line(phrase), flush=True)
"""


def test_a_camera_job_keeps_the_instructions_the_outcome_and_only_the_newest_frame(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the stand-in child imports this lotcontrol's phrases

    go = tmp_path / "go"
    os.mkfifo(go)
    ended = threading.Event()
    jobs = enrolling.CameraJobs(on_done=lambda job: ended.set())
    job = jobs.start([sys.executable, "-c", FAKE_ENROLL, str(go)], "stan", "Mallory", "script:x", 8.0)
    with pytest.raises(enrolling.CameraBusy, match="stan is enrolling 'Mallory'"):
        jobs.start([sys.executable, "-c", "pass"], "sofia", "Eve", "script:x", 8.0)  # one camera, one at a time
    go.write_text("go")  # opens the FIFO: the child goes on
    assert ended.wait(60)
    assert job.need == "turn a little left" and job.need.code == "need.left" and job.frames == 2
    assert job.frame is None  # the picture is dropped once it ends
    assert job.result.ok and job.result.enrolled and job.result.error is None
    assert job.result.lines == ["camera x: look at the camera (at most 8 s)",
                                "enrolled camera frame at 0.4 s (turn +0.10)",
                                "added resident 'Mallory': 1 camera frame(s) enrolled, 1 template(s) on file"]
    assert jobs.running() is None
    said = render_job(job, "zh_CN")  # the page says each line by its code, in Chinese
    for chinese in ("摄像头 x：请看摄像头（最多 8 秒）", "已录入 camera frame at 0.4 s", "已添加住户“Mallory”：录入摄像头画面 1 份"):
        assert chinese in said, said
    assert "look at the camera" not in said and "added resident" not in said
    job.result = None  # still running: the newest instruction, in Chinese
    assert "请稍向左转" in render_job(job, "zh_CN") and "turn a little left" in render_job(job, "en")


def render_job(job, lang):
    from lotcontrol.web.server import _environment

    return _environment(lang).get_template("_enroll_job.html").render(job=job)


def test_a_refused_camera_enrollment_is_shown_and_logged_with_the_user(client, lot, monkeypatch):
    """The gate camera while the controller runs: the command line's own refusal (a stand-in here)."""
    refusal = ("import sys; print('Error: the controller running on DATA owns camera \\'/dev/video0\\'; enroll from "
               "a refused passage instead', file=sys.stderr); sys.exit(1)")
    monkeypatch.setattr("lotcontrol.web.residents.command",
                        lambda config_path, data_dir, user, fields: [sys.executable, "-c", refusal])
    log_in(client, "stan")
    started = client.post("/residents/enroll/camera", data={"name": "Mallory", "csrf": csrf(client, "/residents")},
                          follow_redirects=False)
    assert started.status_code == 303
    job_path = started.headers["location"]
    job = client.app.state.console.jobs.get(job_path.rsplit("/", 1)[1])
    with client.stream("GET", job_path + "/live") as stream:  # ends once the job ends
        text = "".join(stream.iter_text())
    assert job.done and "owns camera" in text and "Not enrolled" in text and "event: end" in text
    page = client.get(job_path).text
    assert "owns camera &#39;/dev/video0&#39;" in page and 'id="preview"' not in page
    flush(client)
    refused = events(lot, "web.refused")[-1][1]
    assert refused["user"] == "stan" and refused["request"] == "enroll --camera" and "owns camera" in refused["reason"]


def test_the_enroll_page_names_the_camera_and_the_limits(client):
    log_in(client, "stan")
    page = client.get("/residents/enroll").text
    assert "/dev/video0" in page and 'enctype="multipart/form-data"' in page and "at most 5 photos" in page
    assert re.search(r'accept="image/jpeg,image/png"', page)


def test_an_enrollment_at_the_gate_camera_runs_the_command_line_on_camera_source(lot, controller, tmp_path, monkeypatch):
    """Without web.enroll_camera the page enrolls at camera.source, the gate camera, by the command line
    `enroll --camera` on this lot's configuration and data: the command that takes the running vision
    worker's frames through its tap (test_tap.py runs it, started as here, beside a controller), not a
    camera of the console's own."""
    from starlette.testclient import TestClient

    from lotcontrol.config import parse_config
    from lotcontrol.web.server import build

    config_path = tmp_path / "lot.toml"  # named to the command line only: it is not run here
    app = build(parse_config({"camera": {"source": "script:gate.json"}}), lot, ask=controller,
                config_path=str(config_path))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        jobs = client.app.state.console.jobs
        started, start = [], jobs.start
        monkeypatch.setattr(jobs, "start", lambda args, user, name, source, seconds: started.append(
            (args, user, name, source, seconds)) or start([sys.executable, "-c", "pass"], user, name, source, seconds))
        log_in(client, "stan")
        answer = client.post("/residents/enroll/camera", data={"name": "Tony Blair", "unit": "9C",
                                                              "csrf": csrf(client, "/residents")}, follow_redirects=False)
        assert answer.status_code == 303
        [(args, user, name, source, seconds)] = started
        assert (user, name, source) == ("stan", "Tony Blair", "script:gate.json")  # the lot's camera.source
        assert args[1:] == ["-m", "lotcontrol", f"--config={config_path}", f"--data-dir={lot}", "enroll", "--codes",
                            "--by=stan", "--unit=9C"]
        assert seconds == client.app.state.console.config.enroll.camera_seconds


def test_the_residents_pages_are_in_chinese(client):
    log_in(client, "stan")
    page = client.get("/residents", headers={"Accept-Language": "zh-CN"}).text
    assert "住户" in page and "相似" in page
    one = client.get("/resident", params={"name": "Anna Berg"}, headers={"Accept-Language": "zh-CN"}).text
    assert "暂停" in one and "删除" in one
    assert json.dumps("Anna Berg")[1:-1] in one


def test_a_long_list_shows_the_first_residents_and_says_a_search_narrows_them(client, lot):
    from lotcontrol.web.residents import SHOWN

    with Store.in_dir(lot) as store, store.transaction():
        for n in range(SHOWN):
            store.add_resident(f"Resident {n:04d}")
    log_in(client, "vera")
    page = client.get("/residents").text
    assert f"{SHOWN + 3} resident(s)" in page and f"the first {SHOWN} shown" in page
    assert page.count('href="/resident?name=') == SHOWN
    assert "Resident 0199" in client.get("/residents", params={"q": "0199"}).text


def test_a_console_that_stops_stops_the_enrollment_under_way(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the stand-in child imports this lotcontrol's phrases
    ended = threading.Event()
    jobs = enrolling.CameraJobs(on_done=lambda job: ended.set())
    go = tmp_path / "go"
    import os

    os.mkfifo(go)
    job = jobs.start([sys.executable, "-c", FAKE_ENROLL, str(go)], "stan", "Mallory", "script:x", 8.0)
    jobs.close()  # the child waits on the FIFO: only the kill ends it
    assert ended.wait(60)
    assert not job.result.ok and "exit code -9" in job.result.error


# --- cards, the PIN, the access mode, groups and anti-passback (issue 21) ---

GROUPS = {"day": {"windows": ["mon-fri 06:00-23:00"]}, "weekend": {"windows": ["sat,sun 08:00-20:00"]}}


@pytest.fixture
def grouped(lot, controller):
    from starlette.testclient import TestClient

    from lotcontrol.config import parse_config
    from lotcontrol.web.server import build

    with TestClient(build(parse_config({"access": {"groups": GROUPS}}), lot, ask=controller),
                    base_url="http://127.0.0.1") as c:
        yield c


def credentials_of(lot_dir, name):
    with Store.in_dir(lot_dir, read_only=True) as store:
        resident = store.resident(name)
        cards, pins = store.credentials()
        return sorted(d for d, rid in cards.items() if rid == resident.id), pins.get(resident.id)


def post(client, path, **data):
    return client.post(path, data={"name": "Anna Berg", **data, "csrf": csrf(client, "/residents")})


@pytest.mark.parametrize("path, data", [
    ("/resident/card/add", {"uid": "26:1234"}),
    ("/resident/card/remove", {"card": "00000000"}),
    ("/resident/card/read", {}),
    ("/resident/pin/set", {"pin": "4711", "pin_again": "4711"}),
    ("/resident/pin/clear", {}),
    ("/resident/access", {"access_mode": "card_and_pin"}),
])
def test_a_viewers_card_pin_or_access_change_is_refused_by_the_server(client, lot, path, data):
    log_in(client, "vera")
    assert post(client, path, **data).status_code == 403
    assert credentials_of(lot, "Anna Berg") == ([], None) and resident(lot, "Anna Berg").access_mode is None
    no_token = client.post(path, data={"name": "Anna Berg", **data})
    assert no_token.status_code == 403
    flush(client)
    assert [d["reason"] for _, d in events(lot, "web.refused")] == ["role viewer, needs staff", "csrf"]
    assert resident_events(lot) == []


@pytest.fixture
def reader_lot(lot, monkeypatch):
    """The lot running with a simulated Wiegand reader (tests/lots.py), and a console on it that asks it
    through the real control socket: (client, lot, factory, armed)."""
    from starlette.testclient import TestClient

    from lotcontrol.config import parse_config
    from lotcontrol.web.server import build

    from .lots import CARD_READER, card_reader_lot

    with card_reader_lot(lot, monkeypatch) as (running, factory, armed), \
            TestClient(build(parse_config(CARD_READER), lot), base_url="http://127.0.0.1") as client:
        yield client, running, factory, armed


def test_staff_add_a_card_read_at_the_reader_from_the_residents_page(reader_lot, lot, caplog):
    """As `lotcontrol card add NAME --read`: the page asks the controller, the card is played on the
    reader's pins, and its keyed digest goes on file; the number and the digest are in no page, event
    or log line, and the card was no entry."""
    import logging

    from lotcontrol.credentials import card_digest, parse_uid

    from .lots import show_card

    caplog.set_level(logging.DEBUG)  # every log line of the console and the controller
    client, running, factory, armed = reader_lot
    log_in(client, "stan")
    page = client.get("/resident", params={"name": "Anna Berg"}).text
    assert 'id="card-read"' in page and "Read a card at the reader" in page
    token = csrf(client, "/residents")
    answers = []
    asking = threading.Thread(target=lambda: answers.append(
        client.post("/resident/card/read", data={"name": "Anna Berg", "csrf": token})))
    asking.start()
    assert armed.wait(30), "the controller was never asked to read a card"  # a failure guard only
    show_card(running, factory, 1193046, asking)
    asking.join(60)
    [added] = answers
    assert added.status_code == 200 and "Card added: 1 on file" in added.text, added.text
    (digest,), _ = credentials_of(lot, "Anna Berg")
    with Store.in_dir(lot, read_only=True) as store:
        assert digest == card_digest(store.card_key(), parse_uid("26:1193046"))  # as `card add --read` keeps it
        every_event = [(e.type, e.details) for e in store.events()]
    assert f"Card {digest[:8]}…" in added.text and digest not in added.text and "1193046" not in added.text
    assert ("resident.card_added", {"cards": 1, "by": "stan"}) in every_event
    assert "access.granted" not in [t for t, _ in every_event]  # staff's card read is no entry
    flush(client)
    with Store.in_dir(lot, read_only=True) as store:
        said = json.dumps([(e.type, e.details) for e in store.events()]) + caplog.text
    assert digest not in said and digest[:8] not in said and "1193046" not in said


def test_a_card_not_shown_in_time_is_refused_naming_the_readers_pins_in_the_pages_language(reader_lot, lot, monkeypatch):
    monkeypatch.setattr("lotcontrol.web.residents.CARD_SECONDS", 1.0)  # the control socket's least
    client, _, _, _ = reader_lot
    log_in(client, "stan")
    token = csrf(client, "/residents")
    late = client.post("/resident/card/read", data={"name": "Anna Berg", "csrf": token})
    assert late.status_code == 409 and "no card was shown at the reader (D0 GPIO5, D1 GPIO6) within 1 s" in late.text
    zh = client.post("/resident/card/read", data={"name": "Anna Berg", "csrf": token}, headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 409 and "读卡器（D0 GPIO5，D1 GPIO6）在 1 秒内没有读到卡" in zh.text
    nobody = client.post("/resident/card/read", data={"name": "Nobody", "csrf": token})
    assert nobody.status_code == 404 and "no resident named &#39;Nobody&#39;" in nobody.text  # before any wait
    assert credentials_of(lot, "Anna Berg") == ([], None)
    flush(client)
    refused = [d for _, d in events(lot, "web.refused")]
    assert [d["request"] for d in refused] == ["card.read"] * 3 and "GPIO5" in refused[0]["reason"]


def test_staff_add_a_card_by_its_number_see_it_masked_and_remove_it(client, lot):
    from lotcontrol.credentials import card_digest, parse_uid

    log_in(client, "stan")
    added = post(client, "/resident/card/add", uid="26:7654321")
    assert added.status_code == 200 and "Card added: 1 on file" in added.text
    assert "7654321" not in added.text  # never shown back, not even in the field
    (digest,), _ = credentials_of(lot, "Anna Berg")
    with Store.in_dir(lot, read_only=True) as store:
        assert digest == card_digest(store.card_key(), parse_uid("26:7654321"))  # as `card add --uid` keeps it
    assert f"Card {digest[:8]}…" in added.text and digest not in added.text  # a tag, never the whole digest
    again = post(client, "/resident/card/add", uid="26:7654321")  # the same card twice: refused, named
    assert again.status_code == 409 and "this card is already on file for Anna Berg" in again.text
    other = client.post("/resident/card/add", data={"name": "Eva Berg", "uid": "26:7654321",
                                                    "csrf": csrf(client, "/residents")})
    assert other.status_code == 409 and "this card is already Anna Berg&#39;s" in other.text
    bad = post(client, "/resident/card/add", uid="7654321")
    assert bad.status_code == 409 and "FORMAT:NUMBER" in bad.text
    removed = post(client, "/resident/card/remove", card=digest[:8])
    assert removed.status_code == 200 and "Card removed." in removed.text and "No card on file" in removed.text
    assert credentials_of(lot, "Anna Berg") == ([], None)
    gone = post(client, "/resident/card/remove", card=digest[:8])
    assert gone.status_code == 409 and f"Anna Berg has no card {digest[:8]} on file" in gone.text
    assert resident_events(lot) == [("resident.card_added", {"cards": 1, "by": "stan"}),
                                     ("resident.card_removed", {"removed": 1, "by": "stan"})]
    flush(client)
    reasons = [d["reason"] for _, d in events(lot, "web.refused")]
    assert len(reasons) == 4 and not any("7654321" in r for r in reasons)  # the number is in no log


def test_staff_set_a_pin_typed_twice_hashed_as_pin_set_hashes_it_and_clear_it(client, lot):
    from lotcontrol.credentials import verify_pin

    log_in(client, "stan")
    differ = post(client, "/resident/pin/set", pin="4711", pin_again="4712")
    assert differ.status_code == 409 and "the PIN and the PIN typed again differ" in differ.text
    short = post(client, "/resident/pin/set", pin="47", pin_again="47")
    assert short.status_code == 409 and "a PIN is 4 to 12 digits" in short.text
    assert credentials_of(lot, "Anna Berg") == ([], None)
    done = post(client, "/resident/pin/set", pin="4711", pin_again="4711")
    assert done.status_code == 200 and "PIN set." in done.text and "4711" not in done.text
    assert 'type="password"' in done.text and 'id="pin-clear"' in done.text
    _, hashed = credentials_of(lot, "Anna Berg")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # lotcontrol pin set's settings
    assert verify_pin(hashed, "4711") and not verify_pin(hashed, "4712")
    cleared = post(client, "/resident/pin/clear")
    assert cleared.status_code == 200 and "PIN cleared" in cleared.text and 'id="pin-clear"' not in cleared.text
    assert credentials_of(lot, "Anna Berg") == ([], None)
    assert post(client, "/resident/pin/clear").status_code == 409
    assert resident_events(lot) == [("resident.pin_set", {"by": "stan"}), ("resident.pin_cleared", {"by": "stan"})]
    flush(client)
    assert not any("4711" in json.dumps(d) or "4712" in json.dumps(d) for _, d in events(lot, "web"))


def test_staff_edit_the_access_mode_groups_and_anti_passback_as_edit_does(grouped, lot):
    client = grouped
    log_in(client, "stan")
    page = client.get("/resident", params={"name": "Anna Berg"}).text
    assert 'id="group-day"' in page and 'id="group-weekend"' in page
    done = client.post("/resident/access", data={"name": "Anna Berg", "access_mode": "face_and_pin",
                                                  "groups": ["weekend", "day"], "antipassback": "enforce",
                                                  "csrf": csrf(client, "/residents")})
    assert done.status_code == 200 and "access mode, access groups, anti-passback" in done.text
    anna = resident(lot, "Anna Berg")
    assert (anna.access_mode, anna.groups, anna.antipassback) == ("face_and_pin", ("day", "weekend"), "enforce")
    unknown = client.post("/resident/access", data={"name": "Anna Berg", "groups": ["night"], "access_mode": "site",
                                                     "antipassback": "site", "csrf": csrf(client, "/residents")})
    assert unknown.status_code == 409 and "no access group &#39;night&#39; in the configuration (groups: day, weekend)" \
        in unknown.text
    assert resident(lot, "Anna Berg").groups == ("day", "weekend")  # nothing changed
    back = client.post("/resident/access", data={"name": "Anna Berg", "access_mode": "site", "antipassback": "site",
                                                  "reset_presence": "1", "csrf": csrf(client, "/residents")})
    assert back.status_code == 200
    anna = resident(lot, "Anna Berg")
    assert (anna.access_mode, anna.groups, anna.antipassback) == (None, (), None) and anna.presence_reset
    assert resident_events(lot) == [
        ("resident.edited", {"fields": ["access_mode", "access_groups", "antipassback"], "by": "stan"}),
        ("resident.edited", {"fields": ["access_mode", "access_groups", "antipassback", "presence_reset"],
                             "by": "stan"})]


def test_the_stores_errors_are_said_in_chinese_by_their_code(client, lot):
    zh = {"Accept-Language": "zh-CN"}
    log_in(client, "stan")
    token = csrf(client, "/residents")
    date = client.post("/resident/edit", headers=zh, data={"name": "Anna Berg", "valid_until": "2026-13-01",
                                                           "csrf": token})
    assert date.status_code == 409 and "截止日期“2026-13-01”不是日期" in date.text and "is not a date" not in date.text
    missing = client.get("/resident", params={"name": "Nobody"}, headers=zh)
    assert missing.status_code == 404 and "没有名为“Nobody”的住户" in missing.text
    card = client.post("/resident/card/add", headers=zh, data={"name": "Anna Berg", "uid": "99:1", "csrf": token})
    assert "卡号格式为" in card.text
    pin = client.post("/resident/pin/set", headers=zh, data={"name": "Anna Berg", "pin": "1", "pin_again": "1",
                                                             "csrf": token})
    assert "密码为 4 到 12 位数字" in pin.text
    english = client.get("/resident", params={"name": "Nobody"})
    assert "no resident named &#39;Nobody&#39;" in english.text


def test_every_error_code_raised_in_the_package_has_a_chinese_message():
    from babel.messages.pofile import read_po

    from lotcontrol.phrases import PHRASES
    from lotcontrol.web import i18n

    raised = set()
    for path in (REPO / "lotcontrol").rglob("*.py"):
        raised |= set(re.findall(r'\bcode="([a-z_]+\.[a-z_]+)"', path.read_text()))
    assert {"resident.not_found", "card.taken", "pin.digits", "value.date"} <= raised  # the scan sees them
    assert not raised - set(PHRASES), f"add these codes to lotcontrol/phrases.py's PHRASES: {raised - set(PHRASES)}"
    with i18n.catalogue_path("zh_CN").open("rb") as po:
        catalogue = read_po(po)
    for code, message in PHRASES.items():
        assert catalogue.get(message) is not None and catalogue.get(message).string, code
        names = set(re.findall(r"%\((\w+)\)s", message))  # every value the English names, the Chinese too
        assert set(re.findall(r"%\((\w+)\)s", catalogue.get(message).string)) == names, code


def test_the_residents_list_shows_a_change_without_a_reload(client, lot):
    """The list is the page's live part (/residents/live): sent when it opens, and again when the
    residents' mark the feed reads in its poll moves (here: a suspension from the command line)."""
    log_in(client, "vera")
    page = client.get("/residents?q=li").text
    url = live_url(page)
    assert url.startswith("/residents/live?q=li&mark="), url
    with Store.in_dir(lot) as store:
        store.set_status("Li Wei", "suspended")
    got = stream(client, url, "suspended")
    assert "Li Wei" in got and "Anna Berg" not in got  # its search
    opened = stream(client, "/residents/live?q=li", "Li Wei")  # no mark: the list when it opens
    assert "suspended" in opened


def test_a_residents_own_page_shows_a_change_and_a_removal_without_a_reload(client, lot):
    """A resident's details, cards and PIN are the page's live part (/resident/live): read again when the
    residents' mark the feed reads in its poll moves from the one the page was rendered at, and sent
    when they changed; a removal is said, and its stream ends."""
    from lotcontrol import residents as changes

    log_in(client, "stan")
    page = client.get("/resident", params={"name": "Li Wei"}).text
    url = live_url(page)
    assert url.startswith("/resident/live?name=Li%20Wei&mark="), url
    assert 'id="suspend"' in page and "No card on file" in page
    with Store.in_dir(lot) as store:
        changes.set_status(store, "Li Wei", "suspended", by="li")
        changes.edit(store, "Li Wei", phone="138 0000 0000", valid_until="2031-01-31", by="li")
        changes.add_card(store, "Li Wei", uid="26:4242", by="li")
    got = stream(client, url, "Card ")
    assert "suspended" in got and 'id="resume"' in got and "138 0000 0000" in got and "2031" in got
    assert "No card on file" not in got and 'name="csrf"' in got  # staff's buttons, with their token
    with Store.in_dir(lot) as store:
        changes.remove(store, "Li Wei", by="li")
    gone = stream(client, url, "event: end")
    assert "Li Wei is no longer on file" in gone and 'id="details"' not in gone


def form_as_shown(page: str, form_id: str) -> dict:
    """What a browser sends from the page's form ``form_id`` as it was shown: its inputs' values, the
    selected options and the ticked boxes."""
    import html

    form = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S).group(1)
    sent: dict = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and ("checkbox" not in tag or "checked" in tag):
            sent.setdefault(name.group(1), []).append(html.unescape(value.group(1) if value else ""))
    for name, options in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        sent[name] = [re.search(r'<option value="([^"]*)"[^>]*selected', options).group(1)]
    return {k: v if k == "groups" else v[0] for k, v in sent.items()}


def test_a_form_sends_only_what_its_user_changed_not_the_values_another_changed_since(grouped, lot):
    """The resident's page shows another user's change live, but its forms keep what they first showed:
    saving one field must not put the other user's change back."""
    from lotcontrol import residents as changes

    client = grouped
    log_in(client, "stan")
    page = client.get("/resident", params={"name": "Anna Berg"}).text
    edit, access = form_as_shown(page, "edit-form"), form_as_shown(page, "access-form")
    with Store.in_dir(lot) as store:  # meanwhile, from another browser or the command line
        changes.edit(store, "Anna Berg", phone="+46 70 999 99 99", antipassback="enforce", groups=["day"], by="vera")
    assert client.post("/resident/edit", data={**edit, "unit": "5C"}).status_code == 200
    assert client.post("/resident/access", data={**access, "access_mode": "face_and_pin"}).status_code == 200
    anna = resident(lot, "Anna Berg")
    assert (anna.unit, anna.phone) == ("5C", "+46 70 999 99 99")
    assert (anna.access_mode, anna.antipassback, anna.groups) == ("face_and_pin", "enforce", ("day",))
