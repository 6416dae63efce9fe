"""The web console in a real browser: Debian's Chromium driven by Selenium through its chromedriver,
against `lotcontrol run --simulate` and `lotcontrol web` on free ports.

Skips, saying why, where chromium, chromedriver or selenium is missing. Every failure leaves a
screenshot (tests/conftest.py, ``browser_failure_screenshot``). The pages' screenshots in docs/ are
taken here: run with LOTCONTROL_DOCS_SCREENSHOTS=1 to write them there (otherwise into tmp).
"""

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web console's stack is not installed (pip install -e '.[web]')")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
if not CHROMIUM or not CHROMEDRIVER:
    pytest.skip("Debian's chromium and chromium-driver are not installed: `make test-tools` as root installs them "
                "(sudo apt-get install -y chromium chromium-driver fonts-noto-cjk)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lotcontrol import control_socket  # noqa: E402
from lotcontrol.web.users import Users  # noqa: E402

from .waits import stale_when_replaced  # noqa: E402

# One worker runs this whole file (--dist loadfile, setup.cfg): its lot and its Chromium start once.
pytestmark = [pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PASSWORD = "correct horse battery"
WAIT = 90  # s: a failure guard only (the machine may be loaded); every wait ends on what it waits for
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lotcontrol(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "lotcontrol", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    """Read the process's output until a line holds ``text`` (then keep draining it on a thread)."""
    lines, found = [], threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if text in line:
                found.set()
        found.set()  # the process ended
    threading.Thread(target=read, daemon=True).start()
    assert found.wait(WAIT) and any(text in line for line in lines), "".join(lines)
    return lines


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def lot(tmp_path_factory):
    """A simulated controller with a fire zone, and the web console on it, with three users."""
    root = tmp_path_factory.mktemp("web-lot")
    data, port = root / "data", free_port()
    data.mkdir(mode=0o700)
    config = root / "lot.toml"
    config.write_text(f"""
[camera]
source = "/dev/video-none"

[[fire.zones]]
name = "east"
sprinklers = [5]
charger_pin = 6

[[bays.zones]]
name = "yard"
bays = [20, 21, 22]

[[charging.ports]]
id = "A-01"
zone = "east"
bay = "a-1"
relay_pin = 23
resident = "Li Wei"

[[charging.ports]]
id = "A-02"
zone = "east"
bay = "a-2"
relay_pin = 24

[web]
port = {port}
""")
    config.chmod(0o600)
    seed_sessions_and_a_snapshot(data)
    users = Users(data)
    for name, role in (("vera", "viewer"), ("stan", "staff"), ("sofia", "safety")):
        users.add(name, role, PASSWORD)
    controller = lotcontrol("--config", config, "--data-dir", data, "run", "--simulate")
    web = None
    try:
        wait_for_line(controller, "lotcontrol running")
        web = lotcontrol("--config", config, "--data-dir", data, "web")
        wait_for_line(web, "lotcontrol web:")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        while True:  # uvicorn says nothing when it listens (log level warning): ask its health check
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
                    assert answer.read() == b"ok"
                break
            except OSError:
                assert web.poll() is None and time.monotonic() < deadline, "the web console did not start"
                time.sleep(0.1)
        yield {"url": url, "data": data, "config": config}
    finally:
        if web is not None:
            stop(web)
        stop(controller)


SEEDED_DAYS = 5  # days of this month (the lot's) with sessions on both ports


def seed_sessions_and_a_snapshot(data: Path) -> None:
    """This month's charging sessions on both ports (as the controller's writer keeps them), and a
    passage with an entry snapshot (a drawn picture, no one's face)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from PIL import Image, ImageDraw

    from lotcontrol.store import Store, isotime

    first = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with Store.in_dir(data) as store:
        store.add_resident("Li Wei")
        store.add_resident("Wang Fang")
        for day in range(SEEDED_DAYS):
            for port, resident, hour, kwh in (("A-01", "Li Wei", 8, 0.4 + 0.2 * day), ("A-02", "Wang Fang", 19, 1.1)):
                start = first + dt.timedelta(days=day, hours=hour)
                key = f"{port}-{day}"
                store.open_charging(key, port, resident, isotime(start))
                store.close_charging(key, isotime(start + dt.timedelta(hours=3)), "full", kwh, 240.0)
        (data / "snapshots").mkdir(mode=0o700)
        picture = Image.new("RGB", (96, 96), (210, 220, 230))
        ImageDraw.Draw(picture).ellipse((24, 14, 72, 74), fill=(120, 140, 170))
        picture.save(data / "snapshots" / "20261205T010203Z-granted-1.jpg", quality=85)
        store.log_event("access.granted", store.resident("Li Wei").id,
                        {"distance": 0.31, "snapshot": "snapshots/20261205T010203Z-granted-1.jpg"})


def chrome(tmp_path) -> webdriver.Chrome:
    """Chromium in English at 1,100 × 900 px, with a fresh profile (``chromes`` sets each test's own)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    options.add_argument("--window-size=1100,900")
    options.add_argument("--lang=en-US")
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def chromes(tmp_path_factory):
    """The module's Chromium, started when first asked for (a start costs about 1.3 CPU-s) and handed
    to each test as a new browser would be: no cookie (so no session), a blank page, and the language
    and screen asked for, set through the DevTools protocol (the Accept-Language header and
    navigator.language; a phone's viewport, which a desktop window cannot be narrowed to)."""
    started = []

    def fresh(language="en-US", width=1100, height=900, phone=False):
        if started:
            try:
                started[0].title  # a browser that crashed or hangs in an earlier test is not handed on
            except WebDriverException:
                with contextlib.suppress(WebDriverException):
                    started.pop().quit()
        if not started:
            started.append(chrome(tmp_path_factory.mktemp("chromium")))
        driver = started[0]
        driver.get("about:blank")
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        user_agent = driver.execute_script("return navigator.userAgent")
        driver.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": user_agent, "acceptLanguage": language})
        if phone:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        else:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            driver.set_window_size(width, height)
        return driver
    yield fresh
    for driver in started:
        driver.quit()


@pytest.fixture
def browser(chromes):
    return chromes()


@pytest.fixture
def chinese_browser(chromes):
    return chromes("zh-CN")


@pytest.fixture
def phone(chromes):
    driver = chromes(width=412, height=915, phone=True)
    assert driver.execute_script("return window.innerWidth") == 412, "the phone's viewport was not set"
    return driver


def shot(driver, name: str, tmp_path) -> None:
    """A page's screenshot for docs/ (with LOTCONTROL_DOCS_SCREENSHOTS=1), else beside the test."""
    folder = DOCS if os.environ.get("LOTCONTROL_DOCS_SCREENSHOTS") == "1" else tmp_path
    driver.save_screenshot(str(folder / name))


def log_in(driver, lot, name, password=PASSWORD):
    """Log in from the login page, once it is there (under load a page left a moment before, a logout's
    redirect say, can still be loading: looked for at once, its form was not found)."""
    driver.get(lot["url"] + "/login")
    WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.ID, "login")))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def post(driver, path, with_csrf=True, **fields) -> int:
    """A POST made by the page's own script (as a forged or a hand-made request would be): its status."""
    return driver.execute_async_script("""
        const [path, withCsrf, fields, done] = arguments;
        const body = new URLSearchParams(fields);
        if (withCsrf) { body.set("csrf", document.querySelector("input[name=csrf]").value); }
        fetch(path, {method: "POST", body: body, redirect: "manual"}).then(r => done(r.status), e => done(String(e)));
    """, path, with_csrf, fields)


def shows(driver, element_id: str, *texts: str):
    """Wait until the element holds every one of ``texts`` (the live part is replaced on every update:
    an element read just as it is replaced is looked up again)."""
    def holds(d):
        element = d.find_element(By.ID, element_id)
        return element if element.is_displayed() and all(t in element.text for t in texts) else False
    return WebDriverWait(driver, WAIT, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(stale_when_replaced(holds))


def gate(lot) -> str:
    return control_socket.request(lot["data"], "status")["status"]["gate"]


def test_log_in_and_a_wrong_password(browser, lot, tmp_path):
    log_in(browser, lot, "vera", "not her password")
    error = WebDriverWait(browser, WAIT).until(EC.visibility_of_element_located((By.ID, "login-error")))
    assert "Wrong user name or password" in error.text
    shot(browser, "web-login.png", tmp_path)
    log_in(browser, lot, "vera")
    shows(browser, "bays", "Free bays", "yard")


def test_a_viewer_can_neither_open_the_gate_nor_reset_a_fire_even_by_a_direct_post(browser, lot):
    log_in(browser, lot, "vera")
    shows(browser, "gate", "Gate")
    assert not browser.find_elements(By.ID, "gate-open")
    assert post(browser, "/gate/open") == 403
    assert post(browser, "/fire/reset", confirm="RESET") == 403
    assert post(browser, "/fire/drill", zone="east", confirm="east") == 403
    assert gate(lot) == "shut"


def test_a_post_without_the_csrf_token_is_refused(browser, lot):
    log_in(browser, lot, "stan")
    WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.ID, "gate-open")))
    assert post(browser, "/gate/open", with_csrf=False) == 403
    assert gate(lot) == "shut"


def test_a_drill_from_the_command_line_appears_on_the_open_overview_and_the_safety_officer_resets_it(
        browser, lot, tmp_path):
    log_in(browser, lot, "sofia")
    shows(browser, "gate", "Gate")
    assert not browser.find_elements(By.ID, "alarms")
    def fire_command(*args):
        done = subprocess.run([sys.executable, "-m", "lotcontrol", "--config", str(lot["config"]), "--data-dir",
                               str(lot["data"]), "fire", *args], env={**os.environ, "PYTHONPATH": str(REPO)},
                              capture_output=True, text=True, timeout=WAIT)
        assert done.returncode == 0, done.stdout + done.stderr
    fire_command("drill", "--zone", "east")
    shows(browser, "alarms", "east", "ALARM", "since")  # pushed to the open page, no reload
    red = browser.execute_script("return getComputedStyle(document.getElementById('alarms')).color")
    assert red == "rgb(176, 0, 32)"
    shot(browser, "web-overview.png", tmp_path)
    browser.get(lot["url"] + "/fire")
    browser.find_element(By.ID, "reset-confirm").send_keys("RESET")
    browser.find_element(By.ID, "reset").click()
    result = WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.ID, "result")))
    assert "reset 1 zone(s)" in result.text
    shot(browser, "web-fire.png", tmp_path)
    shows(browser, "live", "east: normal")
    fire_command("drill", "--zone", "east")  # the open fire page follows too
    shows(browser, "live", "east: ALARM (drill)")
    fire_command("reset")
    browser.get(lot["url"] + "/events?type=fire")
    table = browser.find_element(By.ID, "events").text
    assert "fire.reset" in table and "by=sofia" in table and "fire.drill" in table
    shot(browser, "web-events.png", tmp_path)
    top = int(browser.find_element(By.CSS_SELECTOR, "#live tr td").text)
    fire_command("drill", "--zone", "east")  # the open events page gets it on top, no reload
    def new_rows(d):
        rows = [row.text for row in d.find_elements(By.CSS_SELECTOR, "#live tr")]
        fresh = [text for text in rows if int(text.split()[0]) > top]
        return fresh if any("fire.drill" in text for text in fresh) else False
    fresh = WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        stale_when_replaced(new_rows))
    assert all(" fire." in text for text in fresh)  # on top, newest first, and only what ?type=fire lets through
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#live tr")]
    assert rows[:len(fresh)] == fresh and int(rows[len(fresh)].split()[0]) == top
    fire_command("reset")


def test_the_pages_in_chinese(chinese_browser, lot, tmp_path):
    chinese_browser.get(lot["url"] + "/login")
    assert chinese_browser.find_element(By.ID, "login").text == "登录"
    log_in(chinese_browser, lot, "vera")
    shows(chinese_browser, "bays", "空闲车位")
    shows(chinese_browser, "fire-zones", "消防分区")
    shot(chinese_browser, "web-overview-zh.png", tmp_path)
    chinese_browser.get(lot["url"] + "/events")
    assert "校验哈希链" in chinese_browser.find_element(By.ID, "verify").text


def test_chinese_is_drawn_with_a_cjk_font_not_as_boxes(chinese_browser, lot):
    """停车场 must not come out as the boxes of a missing glyph: its picture differs from three U+FFFF."""
    from PIL import Image, ImageChops

    chinese_browser.get(lot["url"] + "/login")
    chinese_browser.execute_script("""
        for (const [id, text] of [["cjk", "\\u505c\\u8f66\\u573a"], ["boxes", "\\uffff\\uffff\\uffff"]]) {
            const span = document.createElement("span");
            span.id = id; span.textContent = text; span.style.fontSize = "40px";
            document.body.appendChild(span);
        }""")
    pictures = [Image.open(io.BytesIO(chinese_browser.find_element(By.ID, i).screenshot_as_png)).convert("L")
                for i in ("cjk", "boxes")]
    cjk, boxes = pictures
    assert cjk.getextrema()[0] < 128, "停车场 drew nothing"
    if cjk.size == boxes.size:
        assert ImageChops.difference(cjk, boxes).getbbox() is not None, (
            "停车场 is drawn as empty boxes: install a CJK font (sudo apt-get install -y fonts-noto-cjk)")


def test_the_overview_fits_a_phone_screen(phone, lot, tmp_path):
    log_in(phone, lot, "stan")
    shows(phone, "gate", "Gate")
    width = phone.execute_script("return document.documentElement.scrollWidth")
    inner = phone.execute_script("return window.innerWidth")
    assert inner == 412 and width <= inner, f"the page is {width} px wide on a {inner} px screen"
    shot(phone, "web-overview-phone.png", tmp_path)


def test_the_charging_chart_renders_with_data_and_the_ports_update_live(browser, lot, tmp_path):
    log_in(browser, lot, "stan")
    shows(browser, "gate", "Gate")
    browser.get(lot["url"] + "/charging")
    shows(browser, "ports-now", "A-01", "A-02", "Li Wei")
    heights = browser.execute_script(
        "return Array.from(document.querySelectorAll('#kwh-per-day rect.bar')).map(r => r.getBoundingClientRect().height)")
    assert len(heights) == 2 * SEEDED_DAYS and all(h > 1 for h in heights), heights  # drawn, not only in the markup
    per_port = browser.find_elements(By.CSS_SELECTOR, "#kwh-per-port rect.bar")
    assert [b.get_attribute("data-kwh") for b in per_port] == ["4.000", "5.500"]
    assert "Li Wei" in browser.find_element(By.ID, "report").text
    disable = subprocess.run([sys.executable, "-m", "lotcontrol", "--config", str(lot["config"]), "--data-dir",
                              str(lot["data"]), "charging", "disable", "A-02"], env={**os.environ, "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, timeout=WAIT)
    assert disable.returncode == 0, disable.stdout + disable.stderr
    shows(browser, "ports-now", "disabled")  # pushed to the open page, no reload
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "action-port")).select_by_visible_text("A-02")
    browser.find_element(By.ID, "port-enable").click()  # staff enable it again from the page
    shows(browser, "result", "port 'A-02' enabled")
    browser.set_window_size(1100, 1700)
    shot(browser, "web-charging.png", tmp_path)


def test_the_charging_page_in_chinese(chinese_browser, lot, tmp_path):
    log_in(chinese_browser, lot, "vera")
    shows(chinese_browser, "gate", "闸门")
    chinese_browser.get(lot["url"] + "/charging")
    shows(chinese_browser, "ports-now", "充电口现状", "A-01")
    chart = chinese_browser.find_element(By.ID, "kwh-per-day")
    assert chart.get_attribute("aria-label") == "每日各充电口用电量（千瓦时）"
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == 2 * SEEDED_DAYS
    assert "按住户统计" in chinese_browser.find_element(By.ID, "report").text
    chinese_browser.set_window_size(1100, 1700)
    shot(chinese_browser, "web-charging-zh.png", tmp_path)


def test_an_entry_snapshot_is_shown_with_its_event(browser, lot, tmp_path):
    log_in(browser, lot, "vera")
    shows(browser, "gate", "Gate")
    browser.get(lot["url"] + "/events?type=access")
    picture = browser.find_element(By.CSS_SELECTOR, "#events img.snapshot")
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return arguments[0].complete", picture))
    assert browser.execute_script("return arguments[0].naturalWidth", picture) == 96  # served, and a JPEG
    shot(browser, "web-events-snapshot.png", tmp_path)


def test_the_charging_page_fits_a_phone_screen(phone, lot):
    log_in(phone, lot, "vera")
    shows(phone, "gate", "Gate")
    phone.get(lot["url"] + "/charging")
    shows(phone, "ports-now", "A-01")
    width = phone.execute_script("return document.documentElement.scrollWidth")
    inner = phone.execute_script("return window.innerWidth")
    assert inner == 412 and width <= inner, f"the page is {width} px wide on a {inner} px screen"
    chart = phone.find_element(By.ID, "kwh-per-day").rect
    assert 0 < chart["width"] <= inner and chart["height"] > 100  # the chart shrinks to the screen, readable
