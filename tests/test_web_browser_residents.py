"""The residents pages in a real browser (Debian's Chromium through Selenium, as tests/test_web_browser.py):
enrolling at the camera from the page with its live picture and instructions, the resident then in
the list; a removal with the name typed; a viewer's direct POST refused by the server; a card, a PIN
and the access groups set from a resident's page; the pages in zh-CN. The camera is a recording of the
rig's scripted camera (web.enroll_camera), so the enrollment's outcome does not depend on the machine's
load. Screenshots for docs/ as test_web_browser.py takes them.

The page's enrollment at the gate camera, which the running controller's vision worker owns, is the
command line on camera.source: test_web_residents.py checks that the page starts it so, and
test_tap.py starts it as the console does beside a running controller (the worker's frames through
its tap, the live picture on the console's side). A browser test of the two together cost 10 CPU-s.
"""

import contextlib
import time
import urllib.parse
import urllib.request

import pytest

from .conftest import FACES, need, turning
from .test_web_browser import (PASSWORD, WAIT, By, EC, WebDriverWait, free_port, log_in, lotcontrol, post,  # noqa: F401
                               shot, shows, stop, wait_for_line)
from .test_web_browser import browser, chinese_browser, chromes, phone  # noqa: F401  (its fixtures, this module's own)

# One worker runs this whole file (--dist loadfile, setup.cfg): its lot and its Chromium start once.
pytestmark = [pytest.mark.slow]


@contextlib.contextmanager
def running_lot(root, camera: str, web: str = ""):
    """``lotcontrol run --simulate`` with ``camera`` as camera.source, a card reader, and ``lotcontrol web``
    on it; two residents flagged as look-alikes, two more, and a viewer and a staff user."""
    from lotcontrol.store import Store
    from lotcontrol.web.users import Users

    data, port = root / "data", free_port()
    data.mkdir(mode=0o700)
    config = root / "lot.toml"
    config.write_text(f"""
[camera]
source = "{camera}"

[[fire.zones]]
name = "east"
sprinklers = [5]
charger_pin = 6

[wiegand]  # a card reader at the gate: the resident's page offers "Read a card at the reader"
d0_pin = 20
d1_pin = 21

[access.groups.day]
windows = ["mon-fri 06:00-23:00"]

[access.groups.weekend]
windows = ["sat,sun 08:00-20:00"]

[web]
port = {port}
{web}
""")
    config.chmod(0o600)
    with Store.in_dir(data) as store:
        anna = store.add_resident("Anna Berg", unit="4B", phone="+86 138 0000 0000", valid_until="2027-06-30")
        eva = store.add_resident("Eva Berg", unit="4B")
        store.add_resident("王芳", unit="7A")
        store.add_resident("Li Na", unit="3D")
        store.flag_lookalike(anna.id, eva.id, 0.34)
    users = Users(data)
    for name, role in (("vera", "viewer"), ("stan", "staff")):
        users.add(name, role, PASSWORD)
    controller = lotcontrol("--config", config, "--data-dir", data, "run", "--simulate")
    web_process = None
    try:
        wait_for_line(controller, "lotcontrol running")
        web_process = lotcontrol("--config", config, "--data-dir", data, "web")
        wait_for_line(web_process, "lotcontrol web:")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        while True:  # uvicorn says nothing when it listens: ask its health check
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
                    assert answer.read() == b"ok"
                break
            except OSError:
                assert web_process.poll() is None and time.monotonic() < deadline, "the web console did not start"
                time.sleep(0.1)
        yield {"url": url, "data": data}
    finally:
        if web_process is not None:
            stop(web_process)
        stop(controller)


@pytest.fixture(scope="module")
def lot(tmp_path_factory):
    """The lot whose enrollment camera (web.enroll_camera) is a recording of the scripted camera
    filming Tony Blair turning: every frame is enrolled in order, whatever the machine's load."""
    from lotcontrol.sim.camera import film

    root = tmp_path_factory.mktemp("web-residents")
    clip = film([(None, 1.0)] + [(str(p), 1.0) for p in turning(root)], root / "camera.avi", fps=5)
    with running_lot(root, "/dev/video-none", web=f'enroll_camera = "{clip}"') as running:
        yield running


def test_enroll_at_the_camera_from_the_page_then_the_resident_is_in_the_list(browser, lot, tmp_path):
    log_in(browser, lot, "stan")
    shows(browser, "gate", "Gate")
    browser.get(lot["url"] + "/residents/enroll")
    browser.find_element(By.ID, "camera-name").send_keys("Tony Blair")
    browser.find_element(By.ID, "camera-unit").send_keys("9C")
    browser.find_element(By.ID, "camera-start").click()
    WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.ID, "preview")))

    def face_in_view(driver):  # the resident in the picture and told what to do next, or already done
        said = driver.execute_script("const n = document.getElementById('need'); return n ? n.textContent : null")
        return said is None or ("camera" not in said.lower() and "models" not in said)
    WebDriverWait(browser, WAIT).until(face_in_view)
    shot(browser, "web-enroll-camera.png", tmp_path)  # the live picture and what to do (as far as it got)
    outcome = shows(browser, "outcome", "Enrolled", "added resident 'Tony Blair'")
    assert "camera frame(s) enrolled" in outcome.text
    shown = browser.execute_script("return document.getElementById('preview').naturalWidth")
    assert shown > 0, "the live picture never showed a frame"
    kept = [p for p in lot["data"].rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".avi", ".mjpg")]
    assert kept == [], "a picture of the enrollment was written"
    browser.find_element(By.ID, "to-residents").click()
    table = shows(browser, "residents", "Tony Blair", "9C")
    assert "Anna Berg" in table.text
    shot(browser, "web-residents.png", tmp_path)
    browser.find_element(By.LINK_TEXT, "Tony Blair").click()
    details = shows(browser, "credentials", "Face templates")
    assert "dlib" in details.text
    shot(browser, "web-resident.png", tmp_path)


def test_enroll_from_photos_uploaded_in_the_page_and_an_upload_that_is_no_photo(browser, lot, tmp_path):
    photo = need(FACES / "Angelina_Jolie" / "Angelina_Jolie_0001.jpg")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    log_in(browser, lot, "stan")
    shows(browser, "gate", "Gate")
    for name, chosen in (("Angelina Jolie", notes), ("Angelina Jolie", photo)):
        browser.get(lot["url"] + "/residents/enroll")
        browser.find_element(By.ID, "photo-name").send_keys(name)
        browser.find_element(By.ID, "photo-unit").send_keys("12F")
        browser.find_element(By.ID, "photo-files").send_keys(str(chosen))
        browser.find_element(By.ID, "photo-upload").click()
        outcome = WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.ID, "outcome")))
        if chosen is notes:
            assert "Not enrolled" in outcome.text and "notes.txt: not a JPEG or PNG image" in outcome.text
    assert "Enrolled" in outcome.text and "enrolled Angelina_Jolie_0001.jpg" in outcome.text
    shot(browser, "web-enroll-photos.png", tmp_path)
    browser.get(lot["url"] + "/residents?q=12F")
    shows(browser, "residents", "Angelina Jolie")
    assert not list((lot["data"] / "web-uploads").glob("*/*"))  # the uploaded files are erased


def test_the_residents_pages_fit_a_phone_screen(phone, lot):
    log_in(phone, lot, "stan")
    shows(phone, "gate")
    for path in ("/residents", "/resident?name=Anna%20Berg", "/residents/lookalikes", "/residents/enroll"):
        phone.get(lot["url"] + path)
        width = phone.execute_script("return document.documentElement.scrollWidth")
        inner = phone.execute_script("return window.innerWidth")
        assert inner == 412 and width <= inner, f"{path} is {width} px wide on a {inner} px screen"


def viewer_refused_then_staff(browser, lot, name, buttons, path, **fields):
    """A viewer sees none of ``buttons`` on ``name``'s page and their hand-made POST to ``path`` is
    refused by the server (403); then staff are logged in, on that page."""
    log_in(browser, lot, "vera")
    shows(browser, "gate", "Gate")
    page = lot["url"] + "/resident?" + urllib.parse.urlencode({"name": name})
    browser.get(page)
    assert not any(browser.find_elements(By.ID, button) for button in buttons)
    assert post(browser, path, name=name, **fields) == 403
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, WAIT).until(EC.url_contains("/login"))  # the logout is through before the next login
    log_in(browser, lot, "stan")
    shows(browser, "gate", "Gate")
    browser.get(page)


def test_a_removal_needs_the_name_typed_and_a_viewer_is_refused_by_the_server(browser, lot, tmp_path):
    viewer_refused_then_staff(browser, lot, "Li Na", ("remove",), "/resident/remove", confirm="Li Na")
    browser.find_element(By.ID, "remove-confirm").send_keys("Li")
    browser.find_element(By.ID, "remove").click()
    assert "type Li Na to confirm" in shows(browser, "result", "Li Na").text
    browser.find_element(By.ID, "remove-confirm").send_keys("Li Na")
    browser.find_element(By.ID, "remove").click()
    shows(browser, "result", "Removed Li Na")
    assert "Li Na" not in browser.find_element(By.ID, "residents").text
    browser.get(lot["url"] + "/residents/lookalikes")
    pair = shows(browser, "pairs", "the same person? Relatives?", "Anna Berg", "Eva Berg")
    assert pair.find_elements(By.CLASS_NAME, "clear-lookalike")
    shot(browser, "web-lookalikes.png", tmp_path)


def test_the_residents_pages_in_chinese(chinese_browser, lot, tmp_path):
    log_in(chinese_browser, lot, "stan")
    shows(chinese_browser, "gate")
    chinese_browser.get(lot["url"] + "/residents")
    assert chinese_browser.find_element(By.TAG_NAME, "h1").text == "住户"
    shows(chinese_browser, "residents", "王芳", "7A")
    shot(chinese_browser, "web-residents-zh.png", tmp_path)
    chinese_browser.get(lot["url"] + "/residents/lookalikes")
    assert "是同一个人吗" in chinese_browser.find_element(By.ID, "pairs").text
    chinese_browser.get(lot["url"] + "/residents/enroll")
    assert chinese_browser.find_element(By.ID, "camera-start").text == "开始摄像头登记"


def test_a_card_a_pin_and_the_access_groups_set_from_a_residents_page(browser, lot, tmp_path):
    from lotcontrol.store import Store

    viewer_refused_then_staff(browser, lot, "Eva Berg", ("card-add", "pin-set"), "/resident/pin/set", pin="4711",
                              pin_again="4711")
    browser.find_element(By.ID, "card-uid").send_keys("26:7654321")
    browser.find_element(By.ID, "card-add").click()
    shows(browser, "result", "Card added: 1 on file")
    assert "7654321" not in browser.page_source
    assert "Card " in shows(browser, "card-list", "…").text
    browser.find_element(By.ID, "pin").send_keys("4711")
    browser.find_element(By.ID, "pin-again").send_keys("4712")
    browser.find_element(By.ID, "pin-set").click()
    shows(browser, "result", "the PIN and the PIN typed again differ")
    assert browser.find_element(By.ID, "pin").get_attribute("value") == ""  # never sent back
    browser.find_element(By.ID, "pin").send_keys("4711")
    browser.find_element(By.ID, "pin-again").send_keys("4711")
    browser.find_element(By.ID, "pin-set").click()
    shows(browser, "result", "PIN set.")
    assert "4711" not in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "#edit-access-mode option[value=face_and_pin]").click()
    browser.find_element(By.ID, "group-day").click()
    browser.find_element(By.CSS_SELECTOR, "#edit-antipassback option[value=enforce]").click()
    browser.find_element(By.ID, "access-save").click()
    shows(browser, "result", "Changed: access mode, access groups, anti-passback")
    assert browser.find_element(By.ID, "access-groups").text == "day"
    assert browser.find_element(By.ID, "card-read").is_displayed()  # the lot has a reader (wiegand.d0_pin)
    browser.set_window_size(1100, 1450)  # the cards, the PIN and the access form in one picture
    shot(browser, "web-resident-credentials.png", tmp_path)
    with Store.in_dir(lot["data"], read_only=True) as store:
        eva = store.resident("Eva Berg")
        assert store.credential_counts(eva.id) == (1, True)
        assert (eva.access_mode, eva.groups, eva.antipassback) == ("face_and_pin", ("day",), "enforce")
        assert [(e.type, e.details.get("by")) for e in store.events(type="resident") if e.resident == "Eva Berg"] == [
            ("resident.card_added", "stan"), ("resident.pin_set", "stan"), ("resident.edited", "stan")]


def test_a_refusal_on_a_residents_page_is_said_in_chinese(chinese_browser, lot, tmp_path):
    log_in(chinese_browser, lot, "stan")
    shows(chinese_browser, "gate")
    chinese_browser.get(lot["url"] + "/resident?name=%E7%8E%8B%E8%8A%B3")  # 王芳
    assert chinese_browser.find_element(By.CSS_SELECTOR, "#card-forms h2").text == "卡和密码"
    chinese_browser.find_element(By.ID, "card-uid").send_keys("1234")
    chinese_browser.find_element(By.ID, "card-add").click()
    assert "FORMAT" not in shows(chinese_browser, "result", "卡号格式为").text
    chinese_browser.find_element(By.ID, "pin").send_keys("12")
    chinese_browser.find_element(By.ID, "pin-again").send_keys("12")
    chinese_browser.find_element(By.ID, "pin-set").click()
    shows(chinese_browser, "result", "密码为 4 到 12 位数字")
    shot(chinese_browser, "web-resident-credentials-zh.png", tmp_path)
