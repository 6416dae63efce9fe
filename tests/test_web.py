"""The web console without a browser: logins, roles, CSRF, the rate limit, the headers, languages,
the event log's page, and one status request per poll for every browser (Starlette's TestClient)."""

import asyncio
import re
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web console's stack is not installed (pip install -e '.[web]')")

from starlette.testclient import TestClient  # noqa: E402

from lotcontrol.config import parse_config  # noqa: E402
from lotcontrol.phrases import Phrase, answer  # noqa: E402
from lotcontrol.store import Store  # noqa: E402
from lotcontrol.web import i18n  # noqa: E402
from lotcontrol.web.feed import StatusFeed  # noqa: E402
from lotcontrol.web.server import build  # noqa: E402
from lotcontrol.web.users import Users  # noqa: E402

PASSWORD = "correct horse battery"
STATUS = {
    "gate": "shut", "fire_hold": False, "door": "shut", "door_held_open": False,
    "bays": {"yard": {"free": 3, "occupied": 1, "unknown": 0}}, "lot_full": False, "bays_unknown": False,
    "fire": [{"zone": "east", "state": "normal", "faults": {}, "drill": False, "charging": True,
              "contacts": {"sprinkler-1(GPIO5)": "closed"}, "probes": {"28-000000000001": 23.5}}],
    "vision": None, "camera": None, "gallery": None, "events_waiting": 0, "store_degraded": False,
    "safety_state_error": None, "errors": 0, "mqtt": None,
    "charging": [{"port": "p1", "state": "charging", "watts": 180.5, "kwh": 0.4, "fault": None}],
}


class Controller:
    """Stands in for the control socket: records every command and answers as told."""

    def __init__(self):
        self.asked: list[tuple[str, dict]] = []
        self.answers = {"status": {"ok": True, "status": STATUS},
                        "fire.reset": answer(False, Phrase("fire.reset_refused", inputs="east: sprinkler-1"))}

    def __call__(self, command, **args):
        self.asked.append((command, args))
        return self.answers.get(command, {"ok": True, "message": f"{command} done"})

    def actions(self):
        return [(c, a) for c, a in self.asked if c != "status"]


@pytest.fixture
def lot_dir(data_dir):
    data_dir.mkdir(mode=0o700)
    Store.in_dir(data_dir).close()  # the database as the controller makes it
    users = Users(data_dir)
    for name, role in (("vera", "viewer"), ("stan", "staff"), ("sofia", "safety")):
        users.add(name, role, PASSWORD)
    return data_dir


@pytest.fixture
def controller():
    return Controller()


def console(lot_dir, controller, **web):
    config = parse_config({"web": web}) if web else parse_config({})
    scheme = "https" if web.get("tls") else "http"
    return TestClient(build(config, lot_dir, ask=controller), base_url=f"{scheme}://127.0.0.1")


@pytest.fixture
def client(lot_dir, controller):
    with console(lot_dir, controller) as c:
        yield c


def csrf(client, path="/"):
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def log_in(client, name, password=PASSWORD, **headers):
    token = csrf(client, "/login")
    return client.post("/login", data={"name": name, "password": password, "csrf": token},
                       follow_redirects=False, headers=headers)


def events(lot_dir, type_prefix="web"):
    with Store.in_dir(lot_dir, read_only=True) as store:
        return [(e.type, e.details) for e in store.events(type=type_prefix)]


def flush(client):
    assert client.app.state.console.audit.flush(30)


def live_url(page: str) -> str:
    """The URL of the page's live part (``id="live"``, its ``data-src``): fails if the page has none."""
    found = re.search(r'id="live"[^>]*? data-src="([^"]+)"', page)
    assert found, "the page has no live part"
    return found.group(1).replace("&amp;", "&")


def stream(client, url, wanted, then=None, guard=20.0):
    """The server-sent events of ``url`` (the client's cookies sent) until ``wanted`` is in them; ``then()``
    runs (in a thread) once the first message came. Run on the client's own event loop, the app's
    feed with it; fails past ``guard`` seconds if the stream never delivers."""
    path, _, query = url.partition("?")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())

    async def read():
        received, first, found, gone = [], asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def receive():
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.body" and message.get("body"):
                received.append(message["body"].decode())
                first.set()
                if wanted in "".join(received):
                    found.set()
        scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
        task = asyncio.ensure_future(client.app(scope, receive, send))
        try:
            if then is not None:
                await asyncio.wait_for(first.wait(), guard)
                await asyncio.to_thread(then)
            await asyncio.wait_for(found.wait(), guard)
        finally:
            gone.set()
            await asyncio.wait_for(task, guard)
        return "".join(received)
    return client.portal.call(read)


PAGES = ["/", "/live", "/events", "/events/verify", "/events.csv", "/fire", "/fire/live"]
ACTIONS = ["/gate/open", "/fire/drill", "/fire/reset", "/logout", "/language"]


def test_nothing_but_the_health_check_answers_without_a_login(client, controller):
    assert client.get("/healthz").text == "ok"
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code in (303, 401), path
        if response.status_code == 303:
            assert response.headers["location"] == "/login"
    for path in ACTIONS:
        assert client.post(path, data={"csrf": "x"}, follow_redirects=False).status_code == 401, path
    assert controller.actions() == []


def test_every_response_has_the_strict_content_security_policy(client):
    for path in ("/healthz", "/login", "/static/console.css", "/nowhere"):
        policy = client.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    log_in(client, "vera")
    page = client.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script"
    assert not re.search(r"\son[a-z]+=", page), "inline event handler"


def test_a_login_sets_a_strict_httponly_cookie_and_a_wrong_password_is_refused(client, lot_dir):
    wrong = log_in(client, "vera", "not her password")
    assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
    assert client.get("/", follow_redirects=False).status_code == 303
    right = log_in(client, "vera")
    assert right.status_code == 303 and right.headers["location"] == "/"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain HTTP on 127.0.0.1: a Secure cookie would never come back
    assert client.get("/").status_code == 200
    flush(client)
    assert events(lot_dir) == [
        ("web.login_failed", {"user": "vera", "address": "testclient", "reason": "password"}),
        ("web.login", {"user": "vera", "address": "testclient"})]


def test_under_tls_the_cookie_is_secure(lot_dir, controller, tmp_path):
    with console(lot_dir, controller, host="0.0.0.0", tls={"cert_file": "c.pem", "key_file": "k.pem"}) as c:
        cookie = log_in(c, "vera").headers["set-cookie"]
        assert "Secure" in cookie
        assert "max-age" in c.get("/").headers["strict-transport-security"]


def test_serving_the_lan_without_tls_is_refused_by_the_configuration():
    with pytest.raises(Exception, match=r"web: host '192.168.1.5' serves the network: set \[web.tls\]"):
        parse_config({"web": {"host": "192.168.1.5"}})


def test_a_logout_ends_the_session_on_the_server(client):
    log_in(client, "vera")
    old = client.cookies.get("lotcontrol_session")
    assert client.post("/logout", data={"csrf": csrf(client)}, follow_redirects=False).status_code == 303
    client.cookies.set("lotcontrol_session", old)  # a copied cookie is worth nothing after the logout
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_removed_user_is_logged_out_at_once(client, lot_dir):
    log_in(client, "stan")
    Users(lot_dir).remove("stan")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


@pytest.mark.parametrize("name, path, data", [
    ("vera", "/gate/open", {}),
    ("vera", "/fire/reset", {"confirm": "RESET"}),
    ("vera", "/fire/drill", {"zone": "east", "confirm": "east"}),
    ("stan", "/fire/reset", {"confirm": "RESET"}),
    ("stan", "/fire/drill", {"zone": "east", "confirm": "east"}),
])
def test_roles_are_checked_on_the_server_not_by_hiding_buttons(client, controller, lot_dir, name, path, data):
    log_in(client, name)
    response = client.post(path, data={**data, "csrf": csrf(client)})
    assert response.status_code == 403 and 'id="refused"' in response.text
    assert controller.actions() == []
    flush(client)
    assert events(lot_dir, "web.refused")[-1][1]["user"] == name


def test_the_viewer_sees_no_action_buttons(client):
    log_in(client, "vera")
    assert 'id="gate-open"' not in client.get("/").text
    assert 'id="reset"' not in client.get("/fire").text


def test_staff_open_the_gate_in_their_name(client, controller):
    log_in(client, "stan")
    response = client.post("/gate/open", data={"csrf": csrf(client)})
    assert response.status_code == 200 and "gate.open done" in response.text
    assert controller.actions() == [("gate.open", {"by": "stan"})]


def test_a_post_without_the_csrf_token_is_refused(client, controller, lot_dir):
    log_in(client, "sofia")
    for data in ({}, {"csrf": "forged"}):
        response = client.post("/gate/open", data=data)
        assert response.status_code == 403 and 'id="refused"' in response.text
    assert client.post("/login", data={"name": "vera", "password": PASSWORD}).status_code == 403
    assert controller.actions() == []
    flush(client)
    assert {d["reason"] for t, d in events(lot_dir, "web.refused")} == {"csrf"}


def test_a_reset_needs_the_typed_word_and_shows_the_controllers_refusal(client, controller):
    log_in(client, "sofia")
    untyped = client.post("/fire/reset", data={"csrf": csrf(client, "/fire"), "confirm": "reset please"})
    assert untyped.status_code == 409 and controller.actions() == []
    refused = client.post("/fire/reset", data={"csrf": csrf(client, "/fire"), "confirm": "RESET"})
    assert refused.status_code == 409
    assert "reset refused, inputs still in alarm: east: sprinkler-1" in refused.text
    assert controller.actions() == [("fire.reset", {"by": "sofia"})]
    drill = client.post("/fire/drill", data={"csrf": csrf(client, "/fire"), "zone": "east", "confirm": "east"})
    assert drill.status_code == 200 and controller.actions()[-1] == ("fire.drill", {"zone": "east", "by": "sofia"})


def test_logins_are_rate_limited_per_user_and_per_address(client, lot_dir):
    for _ in range(5):
        assert log_in(client, "stan", "guess").status_code == 401
    assert log_in(client, "stan").status_code == 429  # even the right password, for now
    assert log_in(client, "vera").status_code == 303  # another user from the same address still may
    client.post("/logout", data={"csrf": csrf(client)})
    for n in range(15):  # 20 failures from one address in all: the address is blocked
        log_in(client, f"nobody{n}", "guess")
    assert log_in(client, "sofia").status_code == 429
    flush(client)
    assert ("web.login_failed", {"user": "stan", "address": "testclient", "reason": "rate limit"}) in events(lot_dir)


def test_the_pages_are_in_chinese_for_a_chinese_browser_and_as_the_user_chose(client):
    assert "登录" in client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert "Log in" in client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"}).text
    log_in(client, "vera")
    overview = client.get("/", headers={"Accept-Language": "zh-CN"}).text
    assert "空闲车位" in overview and "消防分区" in overview and 'lang="zh-CN"' in overview
    client.post("/language", data={"csrf": csrf(client), "language": "en", "back": "/events"})
    assert "Free bays" in client.get("/", headers={"Accept-Language": "zh-CN"}).text


def test_the_consoles_plain_answers_are_in_the_requests_language(client):
    """Answers no page renders (a login missing, a query or form that cannot be read, something gone)
    are said by their code (lotcontrol.phrases) in the request's language."""
    zh = {"Accept-Language": "zh-CN"}
    assert client.post("/gate/open", data={"csrf": "x"}, headers=zh).text == "请先登录"
    assert client.post("/gate/open", data={"csrf": "x"}).text == "log in first"
    log_in(client, "stan")
    answers = {
        "/events.csv?since=2026-13-01": "从：“2026-13-01”不是日期（如 2026-12-04）",
        "/events.csv?severity=loud": "级别：“loud”不是 info, warning, critical 之一",
        "/charging?month=2026-13": "月份：“2026-13”不是月份（YYYY-MM，如 2026-12）",
        "/snapshots/20261205T010203Z-granted-1.jpg": "没有这张抓拍（已在 events.retention_days 后删除，或随住户一起删除）",
        "/residents/enroll/camera/nothing": "没有这次录入（控制台只保留最近几次）",
    }
    for path, chinese in answers.items():
        assert client.get(path, headers=zh).text == chinese, path
    assert client.get("/events.csv?since=2026-13-01").text == "From: '2026-13-01' is not a date (2026-12-04)"
    token = csrf(client, "/charging")
    bad = client.post("/charging/port", data={"csrf": token, "port": "A-01", "action": "explode"}, headers=zh)
    assert bad.status_code == 400 and bad.text == "操作：“explode”不是 stop, enable, disable 之一"
    language = client.post("/language", data={"csrf": token, "language": "fr"}, headers=zh)
    assert language.status_code == 400 and language.text == "语言“fr”：应为 auto, en, zh_CN 之一"
    form = client.post("/gate/open", data={"csrf": token}, files=[("photo", ("a.jpg", b"x", "image/jpeg"))], headers=zh)
    assert form.status_code == 400 and form.text.startswith("无法读取表单：") and form.text.endswith("；未做任何更改")


def test_the_fire_page_shows_its_zones_in_a_part_updated_live_as_the_overview_is(client):
    """The fire page's zones are its live part (/fire/live, server-sent events): rendered for each answer
    of the controller, as the overview's and the charging page's are."""
    from lotcontrol.web.feed import Snapshot

    log_in(client, "vera")
    page = client.get("/fire").text
    assert 'data-src="/fire/live"' in page and page.index('id="live"') < page.index('data-zone="east"')
    assert '<script src="/static/live.js" defer></script>' in page  # which follows it
    console = client.app.state.console
    alarm = {**STATUS, "fire": [{**STATUS["fire"][0], "state": "alarm", "drill": True}]}
    part = client.portal.call(console.live_html, Snapshot(10_000, alarm, None, 0.0), "zh_CN", "fire")
    assert 'class="card alarm" data-zone="east"' in part and "警报 (演习)" in part
    down = client.portal.call(console.live_html, Snapshot(10_001, None, OSError("gone"), 0.0), "en", "fire")
    assert "The controller does not answer" in down and 'data-zone="east"' not in down


def test_accept_language_picks_simplified_chinese_or_english():
    assert i18n.from_header("zh-CN,zh;q=0.9") == "zh_CN"
    assert i18n.from_header("en;q=0.5, zh-Hans;q=0.8") == "zh_CN"
    assert i18n.from_header("de-DE, en;q=0.4") == "en"
    assert i18n.from_header(None) == "en"


def test_dates_are_shown_in_the_lots_time_zone():
    assert i18n.when("2026-12-04T16:30:00Z", "en", "Asia/Shanghai") == "Dec 5, 2026, 12:30:00\u202fAM"
    assert i18n.when("2026-12-04T16:30:00Z", "zh_CN", "Asia/Shanghai") == "2026年12月5日 00:30:00"


def test_every_string_of_the_templates_is_in_the_chinese_catalogue_and_translated():
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    with i18n.catalogue_path("zh_CN").open("rb") as po:
        catalogue = read_po(po)
    method_map = [("**.html", "jinja2")]
    found = {message for _, _, message, _, _ in extract_from_dir(
        str(i18n.LOCALE_DIR.parent / "templates"), method_map, options_map={"**.html": {"extensions": "jinja2.ext.i18n"}})}
    assert found, "no string found in the templates"
    missing = sorted(m for m in found if catalogue.get(m) is None or not catalogue.get(m).string or catalogue.get(m).fuzzy)
    assert not missing, f"not translated in {i18n.catalogue_path('zh_CN')}: {missing}"


def test_the_overview_shows_the_lot_and_alarms_on_top_with_their_start(client, controller, lot_dir):
    with Store.in_dir(lot_dir) as store:
        store.log_event("fire.drill", None, {"zone": "east", "by": "sofia"})
    controller.answers["status"] = {"ok": True, "status": {**STATUS, "fire": [
        {**STATUS["fire"][0], "state": "alarm", "drill": True}]}}
    log_in(client, "vera")
    page = client.get("/").text
    assert page.index('id="alarms"') < page.index('id="gate"')
    assert "ALARM" in page and "since" in page and "23.5 °C" in page and "180.5 W" in page
    assert "3 free, 1 occupied" in page


def test_the_overview_says_when_the_controller_does_not_answer(client, controller):
    from lotcontrol.control_socket import request

    client.app.state.console.feed.ask = lambda: request(Path("DATA"), "status")  # nothing listens there
    log_in(client, "vera")
    assert "the controller is not running on DATA (no answer on DATA/control.sock)" in client.get("/").text


def test_events_filter_export_and_verify(client, lot_dir):
    with Store.in_dir(lot_dir) as store:
        store.log_event("fire.alarm", None, {"zone": "east"})
        store.log_event("gate.manual_open", None, {"seconds": 5.0})
    log_in(client, "vera")
    page = client.get("/events", params={"severity": "critical"}).text
    assert "<td>fire.alarm</td>" in page and "<td>gate.manual_open</td>" not in page
    assert client.get("/events", params={"since": "yesterday"}).status_code == 400
    table = client.get("/events.csv", params={"type": "gate"})
    assert table.headers["content-type"].startswith("text/csv")
    rows = table.text.lstrip("\ufeff").splitlines()
    assert rows[0] == "id,time,type,severity,resident,details" and len(rows) == 2 and "gate.manual_open" in rows[1]
    assert "hash chain intact" in client.get("/events/verify").text


def test_twenty_browsers_cost_the_controller_one_request_per_poll():
    """The feed asks once per poll whoever listens: 20 listeners, two answers each, two requests."""
    allowed = threading.Semaphore(0)
    asked = []

    def ask():
        assert allowed.acquire(timeout=30)  # a failure guard only
        asked.append(1)
        return {"n": len(asked)}

    async def main():
        feed = StatusFeed(ask, poll_seconds=0.001)
        seen = [[] for _ in range(20)]

        async def browser(i):
            async for snapshot in feed.listen():
                seen[i].append(snapshot.status["n"])
                if len(seen[i]) == 2:
                    return
        browsers = [asyncio.create_task(browser(i)) for i in range(20)]
        for _ in range(2):
            await asyncio.sleep(0)
            allowed.release()
            while not all(len(s) == len(asked) for s in seen):  # every browser has the answer
                await asyncio.sleep(0.001)
        await asyncio.gather(*browsers)
        allowed.release()  # the poll under way, if any, ends; then nobody listens and it stops
        await feed.close()
        return seen, feed
    seen, feed = asyncio.run(main())
    assert seen == [[1, 2]] * 20
    assert len(asked) <= 3 and feed.listeners == 0


def test_web_users_are_added_listed_and_removed_from_the_command_line(run, data_dir):
    added = run("web", "user", "add", "wang", "--role", "staff", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0 and added.output.endswith("web user wang added (staff)\n"), added.output
    assert PASSWORD not in added.output  # prompted hidden
    assert (data_dir / "web-users.json").stat().st_mode & 0o777 == 0o600
    assert "$argon2id$" in (data_dir / "web-users.json").read_text()
    assert run("web", "user", "list").output == "wang                 staff    auto\n"
    assert run("web", "user", "remove", "wang").output == "web user wang removed\n"
    assert [t for t, _ in events(data_dir)] == ["web.user_added", "web.user_removed"]
    assert events(data_dir)[0][1] == {"user": "wang", "role": "staff"}


@pytest.mark.parametrize("args, says", [
    (["add", "wang", "--role", "staff"], "Error: the password for 'wang' is too short: at least 10 characters\n"),
    (["add", "wang li", "--role", "staff"], "Error: user name 'wang li': 1 to 40 letters, digits, '_', '.', '@' or '-'\n"),
    (["remove", "nobody"], "Error: no web user 'nobody' (`lotcontrol web user list` shows them)\n"),
])
def test_a_bad_web_user_command_says_what_is_wrong_and_changes_nothing(run, data_dir, args, says):
    result = run("web", "user", *args, input="short\nshort\n")
    assert (result.exit_code, result.output.splitlines()[-1] + "\n") == (1, says)
    assert not (data_dir / "web-users.json").exists()


def test_the_console_does_not_start_without_a_user(run, data_dir):
    data_dir.mkdir(mode=0o700)
    result = run("web")
    assert (result.exit_code, result.output) == (
        1, "Error: no web user yet: add one first with `lotcontrol web user add NAME --role safety`\n")


def test_the_console_process_loads_neither_opencv_nor_the_command_line():
    """`lotcontrol web` replaces itself with python -m lotcontrol.web to stay small (docs/web.md: RSS)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, lotcontrol.web.__main__, lotcontrol.web.server, uvicorn; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


#: What the console process never loads: the command line, the controller, the face code and numpy
#: (17 MB resident alone; sqlite-utils would import it, store.py hides it from it).
HEAVY = ('cv2', 'lotcontrol.cli', 'lotcontrol.controller', 'onnxruntime', 'dlib', 'face_recognition', 'numpy',
         'pandas', 'lotcontrol.fleet.residents')

PAGES_WITHOUT_NUMPY = """
import sys
from lotcontrol.config import parse_config
from lotcontrol.store import Store
from lotcontrol import residents as changes
from lotcontrol.web import residents as pages
config = parse_config({})  # the default face space is read from encoders.json
with Store.in_dir(sys.argv[1]) as store:
    store.add_resident("Wang Fang")
    changes.set_status(store, "Wang Fang", "suspended", by="li")
    changes.add_card(store, "Wang Fang", uid="26:4242", by="li")
    changes.edit(store, "Wang Fang", phone="138 0000 0000", by="li")
    assert pages._one(store, "Wang Fang", config.site.timezone)["r"].status == "suspended"
    pages._listing(store, "")
print(sorted(m for m in HEAVY if m in sys.modules))
"""


def test_the_consoles_pages_and_staff_changes_load_no_numpy(tmp_path):
    """The resident page counts encoders by SQL, a staff change asks the store whether the hub holds the
    resident, and the configuration reads the default face space without the projection matrix: none
    of them imports numpy into the console (bench.web: 17 MB of its 80)."""
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + PAGES_WITHOUT_NUMPY, str(data)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_two_logins_at_once_make_one_argon2_check_at_a_time(lot_dir, monkeypatch):
    """Each check takes 7 MiB while it runs: the console makes them one after the other, so two logins
    at once do not take 14 MiB (web/users.py, ONE_HASH)."""
    import threading

    from lotcontrol.web import users as accounts

    running, most, both_in = [0], [0], threading.Barrier(2)
    tally = threading.Lock()

    class Counted:
        """The console's hasher, counting the checks under way at once."""

        def __getattr__(self, name):
            return getattr(hasher, name)

        def verify(self, hash_, password):
            with tally:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                return hasher.verify(hash_, password)
            finally:
                with tally:
                    running[0] -= 1
    hasher = accounts.HASHER
    monkeypatch.setattr(accounts, "HASHER", Counted())
    users = Users(lot_dir)
    found = []

    def login():
        both_in.wait(30)  # both threads are asking at once
        found.append(users.check("stan", PASSWORD))
    threads = [threading.Thread(target=login) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [u.name for u in found] == ["stan", "stan"]
    assert most[0] == 1


def test_a_password_check_holds_no_thread_of_the_pool_the_pages_share(client, monkeypatch):
    """Checks take turns (ONE_HASH) on a thread of their own: waiting on the shared pool's threads, 40
    logins at once would hold every thread the pages' reads and the live streams need."""
    import anyio.from_thread
    import anyio.to_thread

    console = client.app.state.console
    check, borrowed = console.users.check, []

    def counted(name, password):
        borrowed.append(anyio.from_thread.run_sync(lambda: anyio.to_thread.current_default_thread_limiter().borrowed_tokens))
        return check(name, password)
    monkeypatch.setattr(console.users, "check", counted)
    assert log_in(client, "stan").status_code == 303
    assert borrowed == [0]


def test_lotcontrol_web_checks_then_becomes_the_lean_console_process(run, data_dir, monkeypatch):
    import os
    import sys

    data_dir.mkdir(mode=0o700)
    Users(data_dir).add("li", "safety", PASSWORD)
    import uvicorn

    became = []
    monkeypatch.setattr(os, "execv", lambda path, argv: became.append(argv))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: became.append("served in the CLI's process"))
    result = run("web")
    assert result.output == f"lotcontrol web: http://127.0.0.1:8080/ (data {data_dir})\n"
    assert became == [[sys.executable, "-m", "lotcontrol.web", "--data-dir", str(data_dir)]]


LOGINS = """
import sys
from pathlib import Path
from lotcontrol.web.__main__ import fixed_mmap_threshold
from lotcontrol.web.users import HASHER
if sys.argv[1] == "fixed":
    assert fixed_mmap_threshold()
def rss():
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS")).split()[1])
made = HASHER.hash("a password of the console")  # mapped and returned; glibc raises its threshold to its size
before = rss()
for _ in range(3):
    HASHER.verify(made, "a password of the console")
print(rss() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_logins_after_the_first_leave_no_argon2_memory_resident_in_the_console():
    """The console fixes glibc's mmap threshold (web/__main__.py): each login's 7 MiB argon2id check
    is returned when it ends, instead of staying on the heap from the second login on."""
    import ctypes.util
    import subprocess
    import sys

    if "libc.so.6" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("glibc's malloc is what the fix is for")
    kept = {how: int(subprocess.run([sys.executable, "-c", LOGINS, how], capture_output=True, text=True,
                                    check=True, cwd=Path(__file__).resolve().parents[1]).stdout)
            for how in ("fixed", "default")}
    assert kept["default"] > 5000, kept  # kB: the test sees the memory glibc keeps
    assert kept["fixed"] < 2000, kept


def test_the_events_page_gets_new_events_that_pass_its_filters_on_top_without_a_reload(client, lot_dir):
    """The events page's table streams (/events/live) the events logged after the newest it showed:
    read once when the feed's newest event id moves, each page's filters applied to them."""
    log_in(client, "vera")
    page = client.get("/events?type=fire").text
    assert 'id="live" data-add="top"' in page  # new rows go on top
    url = live_url(page)
    with Store.in_dir(lot_dir) as store:
        store.log_event("access.granted", details={"gate": "main"})
        store.log_event("fire.drill", details={"zone": "east"})
    assert "&total=0&" in url and 'id="live-count">0 event(s)' in page.replace("\n", "")
    got = stream(client, url, "event: count")
    assert "zone=east" in got and "access.granted" not in got  # the page's filter: type fire
    assert got.startswith("data: ") and "<tr" in got
    assert "event: count\ndata: 1 event(s), newest first" in got  # the page's count follows its rows


def test_the_events_stream_reads_the_new_rows_once_for_every_page(client, lot_dir):
    """Two pages with other filters: the new rows are read from the database once, not per page."""
    log_in(client, "vera")
    console = client.app.state.console
    reads = []
    read = console._read_new_events
    console._read_new_events = lambda after, newest: reads.append((after, newest)) or read(after, newest)
    with Store.in_dir(lot_dir) as store:
        newest = store.newest_event_id()
        store.log_event("fire.drill", details={"zone": "east"})
        store.log_event("access.granted", details={"gate": "main"})
    assert "fire.drill" in stream(client, f"/events/live?after={newest}&type=fire", "fire.drill")
    assert "access.granted" in stream(client, f"/events/live?after={newest}&type=access", "access.granted")
    assert len(reads) == 1


def test_an_event_logged_while_the_events_page_is_read_is_not_streamed_to_it_again(client, lot_dir, monkeypatch):
    """The page reads the newest event id, then its rows: an event committed between the two is listed,
    and the page's stream starts after it (it was shown twice)."""
    log_in(client, "vera")
    with Store.in_dir(lot_dir) as store:
        store.log_event("fire.drill", details={"zone": "east"})
        newest = store.newest_event_id()
    # as if the drill was committed just after the page took the newest id, before it listed the rows
    monkeypatch.setattr(Store, "newest_event_id", lambda self: newest - 1)
    page = client.get("/events?type=fire").text
    assert f"after={newest}" in live_url(page)
