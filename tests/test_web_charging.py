"""The web console's charging page, entry snapshots and the controller's sentences in Chinese, without
a browser (Starlette's TestClient; the controller's sentences from the real controller)."""

import csv
import datetime as dt
import html
import io
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("starlette", reason="the web console's stack is not installed (pip install -e '.[web]')")

from lotcontrol.config import parse_config  # noqa: E402
from lotcontrol.phrases import Phrase, answer  # noqa: E402
from lotcontrol.store import Store, isotime  # noqa: E402
from lotcontrol.web import charging as energy  # noqa: E402
from lotcontrol.web import i18n, said  # noqa: E402
from lotcontrol.web.server import snapshot_file  # noqa: E402

from .test_web import STATUS, TestClient, build, client, controller, csrf, flush, log_in, lot_dir  # noqa: E402,F401

TZ = "Asia/Shanghai"
PORT = {"port": "A-01", "zone": "east", "bay": "a-1", "resident": "Li Wei", "state": "charging", "cut_by_fire": False,
        "watts": 231.5, "kwh": 0.75, "minutes": 42.0, "last_stop": "full", "fault": None, "metered": True,
        "celsius": None, "relay": True, "relay_fault": None, "switch": "GPIO24"}


def utc(local: str) -> str:
    """A time of the lot (Beijing) as the database keeps it."""
    return isotime(dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(TZ)))


def seed(lot_dir):
    """Sessions around the month's edges: Beijing's 1 December 00:30 is 30 November in UTC."""
    with Store.in_dir(lot_dir) as store:
        store.add_resident("Li Wei")
        store.add_resident("Wang Fang")
        rows = [("s1", "A-01", "Li Wei", "2026-12-01T00:30", "2026-12-01T03:00", 1.25),
                ("s2", "A-02", "Wang Fang", "2026-12-01T20:00", "2026-12-02T01:00", 2.0),  # counted on the 1st
                ("s3", "A-01", "Li Wei", "2026-12-03T08:00", "2026-12-03T09:00", 0.5),
                ("s4", "A-02", None, "2026-12-03T10:00", "2026-12-03T11:00", 0.25),
                ("s5", "A-01", "Li Wei", "2026-11-30T23:00", "2026-12-01T00:10", 9.0),  # November at the lot
                ("s6", "A-02", "Wang Fang", "2026-12-31T23:59", None, None)]  # still running
        for key, port, resident, start, end, kwh in rows:
            store.open_charging(key, port, resident, utc(start))
            if end is not None:
                store.close_charging(key, utc(end), "full", kwh, 300.0)


def config(**more):
    return parse_config({"charging": {"ports": [
        {"id": "A-01", "zone": "east", "bay": "a-1", "relay_pin": 24},
        {"id": "A-02", "zone": "east", "bay": "a-2", "relay_pin": 25},
        {"id": "A-03", "zone": "east", "bay": "a-3", "relay_pin": 26}]},
        "fire": {"zones": [{"name": "east", "sprinklers": [5]}]}, **more})


@pytest.fixture
def charging_client(lot_dir, controller):
    seed(lot_dir)
    controller.answers["status"] = {"ok": True, "status": {**STATUS, "charging": [PORT]}}
    with TestClient(build(config(), lot_dir, ask=controller), base_url="http://127.0.0.1") as c:
        yield c


def bars(page: str, chart: str) -> dict[tuple, float]:
    svg = re.search(rf'<svg id="{chart}".*?</svg>', page, re.S).group(0)
    return {tuple(b): float(kwh) for *b, kwh in re.findall(
        r'<rect class="bar"[^>]*?(?: data-day="(\d+)")? data-port="([^"]+)" data-kwh="([\d.]+)"', svg)}


def test_the_month_is_the_lots_and_a_session_counts_on_the_day_it_started(charging_client):
    log_in(charging_client, "vera")
    page = charging_client.get("/charging", params={"month": "2026-12"}).text
    assert bars(page, "kwh-per-day") == {("1", "A-01"): 1.25, ("1", "A-02"): 2.0, ("3", "A-01"): 0.5, ("3", "A-02"): 0.25}
    # every configured port has its bar, A-03 at 0 kWh; November's 9 kWh is not in December
    assert bars(page, "kwh-per-port") == {("", "A-01"): 1.75, ("", "A-02"): 2.25, ("", "A-03"): 0.0}
    assert "4.000 kWh in 5 session(s) in 2026-12" in page
    november = charging_client.get("/charging", params={"month": "2026-11"}).text
    assert bars(november, "kwh-per-day") == {("30", "A-01"): 9.0}


def test_the_report_per_resident_and_its_csv(charging_client, lot_dir):
    log_in(charging_client, "vera")
    page = charging_client.get("/charging", params={"month": "2026-12"}).text
    report = re.search(r'id="report".*?</table>', page, re.S).group(0)
    assert re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>([\d.]+)</td>", report) == [
        ("(no resident)", "1", "0.250"), ("Li Wei", "2", "1.750"), ("Wang Fang", "2", "2.000")]
    answer = charging_client.get("/charging.csv", params={"month": "2026-12"})
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="charging-report-2026-12.csv"' in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text.lstrip("\ufeff"))))
    assert rows == [["month", "resident", "sessions", "kwh", "open"], ["2026-12", "(no resident)", "1", "0.250", "0"],
                    ["2026-12", "Li Wei", "2", "1.750", "0"], ["2026-12", "Wang Fang", "2", "2.000", "1"]]
    sessions = charging_client.get("/charging/sessions.csv", params={"month": "2026-12"}).text.lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(sessions)))
    assert rows[0] == ["port", "resident", "start", "end", "kwh", "peak_watts", "reason"] and len(rows) == 6
    assert rows[1] == ["A-01", "Li Wei", utc("2026-12-01T00:30"), utc("2026-12-01T03:00"), "1.250", "300.0", "full"]
    assert rows[-1][:2] == ["A-02", "Wang Fang"] and rows[-1][3:] == ["", "", "", ""]  # still running
    flush(charging_client)
    with Store.in_dir(lot_dir, read_only=True) as store:
        assert [e.details["what"] for e in store.events(type="web.export")] == [
            "charging report 2026-12", "charging sessions 2026-12"]


def test_the_ports_now_and_the_sessions_are_shown(charging_client):
    log_in(charging_client, "vera")
    page = charging_client.get("/charging", params={"month": "2026-12"}).text
    ports = re.search(r'id="ports-now".*?</table>', page, re.S).group(0)
    assert "A-01" in ports and "231.5 W" in ports and "0.750 kWh" in ports and "Li Wei" in ports
    assert 'data-src="/charging/live"' in page  # updated live like the overview
    sessions = re.search(r'id="sessions".*?</table>', page, re.S).group(0)
    assert sessions.count("<tr>") == 6 and "running" in sessions  # the header and five sessions


def test_a_month_that_is_not_one_is_refused_naming_it(charging_client):
    log_in(charging_client, "vera")
    for bad in ("2026-13", "december", "2026-1"):
        for path in ("/charging", "/charging.csv"):
            answer = charging_client.get(path, params={"month": bad})
            assert answer.status_code == 400 and repr(bad) in answer.text, (path, bad)


def test_the_charging_page_needs_a_login(charging_client):
    for path in ("/charging", "/charging.csv", "/charging/live", "/snapshots/x.jpg"):
        assert charging_client.get(path, follow_redirects=False).status_code in (303, 401), path


def test_the_charts_are_drawn_on_the_server_with_no_script_and_in_chinese(charging_client):
    charging_client.headers["accept-language"] = "zh-CN"
    log_in(charging_client, "vera")
    page = charging_client.get("/charging", params={"month": "2026-12"}).text
    assert 'aria-label="每日各充电口用电量（千瓦时）"' in page and "充电口现状" in page and "按住户统计" in page
    assert "（无住户）" in page and "充电中" in page
    assert len(re.findall(r"<script", page)) == 1 and 'src="/static/live.js"' in page
    assert " style=" not in page  # the Content-Security-Policy allows no inline style


def test_an_empty_month_says_so():
    data = energy.energy([], energy.Month(2026, 2), TZ, ["A-01"])
    chart = energy.daily_chart(data, "kWh", "nothing")
    assert "nothing" in chart and 'class="bar"' not in chart and data.total == 0
    assert energy.Month(2026, 12).next() == energy.Month(2027, 1) and energy.Month(2027, 1).previous() == energy.Month(2026, 12)
    assert energy.nice_top(3.7) == (4.0, 1.0) and energy.nice_top(0.0) == (1.0, 0.25)


# --- entry snapshots ---

def test_snapshots_are_shown_on_the_events_page_to_logged_in_users_only(client, lot_dir):
    (lot_dir / "snapshots").mkdir(mode=0o700)
    (lot_dir / "snapshots" / "20261205T010203Z-granted-1.jpg").write_bytes(b"\xff\xd8 a face\xff\xd9")
    with Store.in_dir(lot_dir) as store:
        store.log_event("access.granted", None, {"snapshot": "snapshots/20261205T010203Z-granted-1.jpg"})
        store.log_event("access.denied", None, {"snapshot": "snapshots/20261101T000000Z-denied-2.jpg"})  # cleaned up
    assert client.get("/snapshots/20261205T010203Z-granted-1.jpg", follow_redirects=False).status_code == 303
    log_in(client, "vera")
    page = client.get("/events").text
    assert '<img class="snapshot" src="/snapshots/20261205T010203Z-granted-1.jpg"' in page
    assert "(snapshot deleted)" in page and "snapshot=" not in page
    picture = client.get("/snapshots/20261205T010203Z-granted-1.jpg")
    assert picture.status_code == 200 and picture.content == b"\xff\xd8 a face\xff\xd9"
    assert picture.headers["content-type"] == "image/jpeg" and picture.headers["cache-control"] == "no-store"
    assert client.get("/snapshots/20261101T000000Z-denied-2.jpg").status_code == 404


def test_a_snapshot_path_cannot_leave_the_snapshots_folder(client, lot_dir, tmp_path):
    folder = lot_dir / "snapshots"
    folder.mkdir(mode=0o700)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    (folder / "link.jpg").symlink_to(secret)
    (folder / "ok.jpg").write_bytes(b"jpeg")
    (lot_dir / "lot.jpg").write_bytes(b"beside the database")
    assert snapshot_file(lot_dir, "ok.jpg") == folder / "ok.jpg"
    for name in ("link.jpg", "../lot.jpg", "..", ".hidden.jpg", "ok.png", "a/b.jpg", "..%2Flot.jpg", "ok.jpg\x00"):
        assert snapshot_file(lot_dir, name) is None, name
    log_in(client, "vera")
    for path in ("/snapshots/link.jpg", "/snapshots/..%2Flot.jpg", "/snapshots/%2E%2E%2Flot.jpg"):
        answer = client.get(path)
        assert answer.status_code == 404 and b"not yours" not in answer.content and b"beside" not in answer.content, path


# --- the controller's sentences, in Chinese ---

def real_answers(tmp_path):
    """What the real controller answers to every command the page gives, and to a few mistakes."""
    from lotcontrol.messages import Command
    from lotcontrol.sim.pins import simulated_factory

    from .lots import pump, sim_lot

    factory = simulated_factory()
    lot = sim_lot(config(), Store(tmp_path / "lot.db"), factory)
    c, answers = lot.controller, []

    def ask(name, **args):
        c.handle(Command(name, args, reply=answers.append), c.clock.now())
        pump(c, c.clock.now() + 0.1)
    try:
        ask("gate.open", by="stan")
        ask("fire.reset", by="sofia")  # nothing in alarm
        ask("fire.drill", zone="north", by="sofia")
        ask("fire.drill", zone="east", by="sofia")
        ask("fire.reset", by="sofia")
        ask("charging.stop", port="A-01")
        ask("charging.enable", port="A-01")
        ask("charging.enable", port="A-01")
        ask("charging.disable", port="A-02")
        ask("charging.stop", port="Z-9")
        factory.pin(5).drive_high()
        pump(c, c.clock.now() + 1.0)
        ask("fire.reset", by="sofia")  # the contact still open
    finally:
        factory.reset()
    return [a for a in answers if "message" in a]


def test_every_answer_of_the_controller_the_page_shows_carries_a_code_said_in_chinese(tmp_path):
    """The controller's answers carry their phrase's code and values (lotcontrol.phrases), sent as JSON
    on the control socket: the page says each by its code, never by parsing the English."""
    from lotcontrol.phrases import PHRASES, of_answer

    answers = json.loads(json.dumps(real_answers(tmp_path)))  # as the control socket carries them
    assert len(answers) >= 10 and any(a["message"].startswith("reset refused") for a in answers), answers
    uncoded = [a["message"] for a in answers if a.get("code") not in PHRASES]
    assert not uncoded, f"give these answers a phrase (lotcontrol/phrases.py, phrases.answer): {uncoded}"
    zh = i18n.translations("zh_CN").gettext
    for answer in answers:
        phrase = of_answer(answer)
        assert phrase == answer["message"]  # the English the command line prints, from the same table
        shown = said.error(phrase, zh)
        assert shown != phrase and re.search(r"[\u4e00-\u9fff]", shown), (phrase, shown)
    shown = {a["message"]: said.error(of_answer(a), zh) for a in answers}
    assert shown["gate open for 5 s"] == "闸门已打开 5 秒"
    assert shown["port 'A-01' stopped (its session ended)"] == "充电口“A-01”已停止（本次充电已结束）"
    assert shown["no charging port 'Z-9' (ports: A-01, A-02, A-03)"] == "没有充电口“Z-9”（现有充电口：A-01, A-02, A-03）"
    assert said.error(of_answer({"ok": False, "message": "something new"}), zh) == "something new"  # as said


def test_every_string_of_the_web_code_is_in_the_chinese_catalogue_and_translated():
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    with i18n.catalogue_path("zh_CN").open("rb") as po:
        catalogue = read_po(po)
    found = {message for _, _, message, _, _ in extract_from_dir(str(i18n.LOCALE_DIR.parent), [("**.py", "python")])}
    missing = sorted(m for m in found if catalogue.get(m) is None or not catalogue.get(m).string)
    assert not missing, f"not translated in {i18n.catalogue_path('zh_CN')}: {missing}"


def test_a_refusal_of_the_controller_is_shown_in_chinese(client, controller):
    client.headers["accept-language"] = "zh-CN"
    log_in(client, "sofia")
    refused = client.post("/fire/reset", data={"csrf": csrf(client, "/fire"), "confirm": "RESET"})
    assert refused.status_code == 409 and "拒绝复位，以下输入仍在报警：east: sprinkler-1" in refused.text
    controller.answers["gate.open"] = answer(True, Phrase("gate.opened", seconds="5"))
    opened = client.post("/gate/open", data={"csrf": csrf(client)})
    assert "闸门已打开 5 秒" in opened.text


# --- the console's memory: passwords hashed with OWASP's 7 MiB setting ---

def test_a_password_hashed_with_the_old_settings_still_logs_in_and_is_rehashed(lot_dir):
    import json

    from argon2 import PasswordHasher

    from lotcontrol.web.users import HASHER, Users

    users = Users(lot_dir)
    path = lot_dir / "web-users.json"
    table = json.loads(path.read_text())
    table["users"]["vera"]["hash"] = PasswordHasher(time_cost=3, memory_cost=12 * 1024, parallelism=1).hash(
        "correct horse battery")
    path.write_text(json.dumps(table))
    assert users.check("vera", "wrong password!") is None
    assert "m=12288,t=3" in json.loads(path.read_text())["users"]["vera"]["hash"]  # a wrong password changes nothing
    assert users.check("vera", "correct horse battery").role == "viewer"
    rehashed = json.loads(path.read_text())["users"]["vera"]["hash"]
    assert "m=7168,t=5,p=1" in rehashed and not HASHER.check_needs_rehash(rehashed)
    assert users.check("vera", "correct horse battery") is not None


# --- a failing browser test leaves a screenshot (tests/conftest.py) ---

def test_a_failing_browser_test_leaves_a_screenshot_named_in_its_report(tmp_path):
    """The hook in tests/conftest.py, on a test that fails with a driver among its fixtures (a stand-in
    for Chromium's: the hook needs only its save_screenshot)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "test_shot.py").write_text(
        "import pytest\n\n"
        "class Driver:\n"
        "    def save_screenshot(self, path):\n"
        "        open(path, 'wb').write(b'PNG of the page')\n\n"
        "@pytest.fixture\n"
        "def browser():\n"
        "    return Driver()\n\n"
        "def test_page_fails(browser):\n"
        "    assert False, 'the page did not show it'\n\n"
        "def test_page_passes(browser):\n"
        "    pass\n")
    shots = tmp_path / "shots"
    shots.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", "-rA",
         str(tmp_path / "test_shot.py")], cwd=repo, capture_output=True, text=True, timeout=120,
        env={**os.environ, "LOTCONTROL_FAILURE_SHOTS": str(shots), "PYTHONPATH": str(repo)})
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert sorted(p.name for p in shots.iterdir()) == ["test_page_fails.png"]  # only the failure's
    assert (shots / "test_page_fails.png").read_bytes() == b"PNG of the page"
    assert str(shots / "test_page_fails.png") in result.stdout  # the report names it


def test_twenty_live_pages_during_an_alarm_cost_one_read_of_the_database_per_answer(lot_dir, controller):
    """While a zone is in alarm the overview's live part says since when, from the event log: the
    browsers waiting for the same answer share one rendering, and its one read."""
    import asyncio

    from lotcontrol.web.feed import Snapshot

    app = build(config(), lot_dir, ask=controller)
    console = app.state.console
    reads, release = [], None

    def alarm_times():
        reads.append(1)
        assert release.wait(30)
        return {"east": "2026-12-05T01:00:00.000+00:00"}, None
    console.alarm_times = alarm_times
    alarm = {**STATUS, "fire": [{**STATUS["fire"][0], "state": "alarm"}]}

    async def twenty(seq):
        parts = [asyncio.ensure_future(console.live_html(Snapshot(seq, alarm, None, 0.0), "en")) for _ in range(20)]
        await asyncio.sleep(0)  # all twenty ask before the one read ends
        release.set()
        return await asyncio.gather(*parts)
    import threading
    for seq in (1, 2):
        release = threading.Event()
        pages = asyncio.run(twenty(seq))
        assert len(set(pages)) == 1 and "since" in pages[0]
    assert len(reads) == 2  # one per answer of the controller, not one per browser


def test_the_charging_page_shows_its_month_when_the_controller_does_not_answer(charging_client):
    from lotcontrol.control_socket import request

    charging_client.app.state.console.feed.ask = lambda: request(Path("DATA"), "status")  # nothing listens there
    charging_client.headers["accept-language"] = "zh-CN"
    log_in(charging_client, "vera")
    page = charging_client.get("/charging", params={"month": "2026-12"})
    assert page.status_code == 200 and 'id="controller-down"' in page.text
    assert "控制器未在 DATA 上运行" in page.text  # the reason, in the page's language
    assert bars(page.text, "kwh-per-day")[("1", "A-01")] == 1.25  # the month is the database's


def test_staff_stop_enable_and_disable_a_port_in_their_name_and_a_viewer_is_refused(charging_client, controller, lot_dir):
    log_in(charging_client, "vera")
    page = charging_client.get("/charging").text
    assert 'id="port-actions"' not in page  # not shown to a viewer, and refused by the server:
    refused = charging_client.post("/charging/port", data={"csrf": csrf(charging_client, "/charging"), "port": "A-01",
                                                           "action": "stop"})
    assert refused.status_code == 403 and controller.actions() == []
    charging_client.post("/logout", data={"csrf": csrf(charging_client, "/charging")})
    charging_client.headers["accept-language"] = "zh-CN"
    log_in(charging_client, "stan")
    token = csrf(charging_client, "/charging")
    controller.answers["charging.stop"] = answer(True, Phrase("port.stopped_session", port="A-01"))
    done = charging_client.post("/charging/port", params={"month": "2026-12"},
                                data={"csrf": token, "port": "A-01", "action": "stop"})
    assert done.status_code == 200 and "充电口“A-01”已停止（本次充电已结束）" in html.unescape(done.text)
    assert bars(done.text, "kwh-per-day")[("1", "A-01")] == 1.25  # the month it was on
    controller.answers["charging.enable"] = answer(False, Phrase("port.faulty", port="A-02", fault="no answer from its meter"))
    faulty = charging_client.post("/charging/port", data={"csrf": token, "port": "A-02", "action": "enable"})
    assert faulty.status_code == 409 and "电表恢复应答后才能启用" in faulty.text
    assert charging_client.post("/charging/port", data={"csrf": token, "port": "A-02", "action": "explode"}).status_code == 400
    assert charging_client.post("/charging/port", data={"port": "A-02", "action": "disable"}).status_code == 403  # no CSRF
    assert controller.actions() == [("charging.stop", {"by": "stan", "port": "A-01"}),
                                    ("charging.enable", {"by": "stan", "port": "A-02"})]
    flush(charging_client)
    with Store.in_dir(lot_dir, read_only=True) as store:
        assert [e.details["request"] for e in store.events(type="web.refused")] == [
            "POST /charging/port", "charging.enable", "POST /charging/port"]


def test_the_controller_logs_a_port_action_with_who_gave_it(tmp_path):
    from lotcontrol.messages import Command
    from lotcontrol.sim.pins import simulated_factory

    from .lots import pump, sim_lot, written

    factory = simulated_factory()
    try:
        c = sim_lot(config(), Store(tmp_path / "lot.db"), factory).controller
        c.handle(Command("charging.disable", {"port": "A-02", "by": "stan"}), 0.1)
        c.handle(Command("charging.enable", {"port": "A-02"}), 0.2)  # from the command line: no name
        pump(c, 0.3)
        assert [e.details for e in written(c) if e.type == "charging.staff"] == [
            {"port": "A-02", "action": "disable", "by": "stan"}, {"port": "A-02", "action": "enable"}]
    finally:
        factory.reset()
