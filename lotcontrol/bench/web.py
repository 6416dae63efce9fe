"""What the web console costs: the overview's ready time and the web process's memory.

    .venv/bin/python -m lotcontrol.bench.web [--pages 30] [--browsers 20] [--json]

A controller (``app.Lot`` with simulated pins, a fire zone, a bay zone, 16 charging ports on an
MCP23017 and its control socket, its loop on a thread of this process) and ``lotcontrol web`` in a
process of its own on a free port, one user logged in over HTTP (httpx); the database holds last
month's sessions (``SESSIONS_A_DAY`` a port a day: about 1,000):

- **overview ready**: ``GET /`` (the status asked of the controller when the last answer is older
  than ``web.poll_seconds``, the page rendered) plus the first server-sent event of ``/live``; median
  and p95 over ``--pages`` loads, each after the last answer went stale (the worst case);
- **charging page ready**: the same for ``GET /charging?month=`` last month (its sessions read, the
  two charts drawn) plus the first event of ``/charging/live``;
- **RSS**: the web process's resident memory (VmRSS) after those pages, after a staff user (a second
  login) added a card and set a PIN on a resident's page (the PIN's argon2id hash, 19 MiB, is made in
  a child process: none of it is the console's), and its peak (VmHWM) with ``--browsers`` live
  connections open, each having had its first event;
- **status requests**: how many times the web process asked the controller during
  ``--seconds`` seconds with those browsers open (one per poll for all of them), and the CPU time
  the web process and the browsers' process spent meanwhile (ms a second, from /proc); the HTTP
  browsers are on the overview, the charging page and the residents list in turn (``LIVE``);
- **burst → outputs**: ``bench.fire``'s sprinkler bursts (``--bursts`` trials: charging off and the
  gate released, from the pins' own timestamps) with no page open, then with the browsers open.

The browsers are HTTP clients reading the server-sent events (httpx), or with ``--chromium`` real
pages in Debian's headless Chromium (Selenium, ``/usr/bin/chromedriver``): the pages with their
script, five tabs a Chromium (a browser opens at most six connections to one server over HTTP/1.1),
each having shown a live update (``data-updated``) before the count starts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PASSWORD = "bench password 1"
PORTS = 16  # charging ports, GPA0-GPB7 of one MCP23017
SESSIONS_A_DAY = 2  # a port, in the month the charging page shows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: round(int(fields[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM")}


def _cpu(pid: int) -> float:
    """The process's CPU time so far (user + system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def logged_in(web: subprocess.Popen, url: str, user: str, password: str, timeout: float = 30):
    """An httpx client logged in to the console ``web`` serves on ``url``, once its health check answers."""
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/healthz", timeout=2)
            break
        except httpx.TransportError:
            if web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lotcontrol web did not start") from None
            time.sleep(0.05)
    client = httpx.Client(base_url=url, timeout=timeout)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"name": user, "password": password, "csrf": token})
    return client


def run(pages: int = 30, browsers: int = 20, seconds: float = 5.0, bursts: int = 100, ports: int = PORTS,
        chromium: bool = False) -> dict:
    from ..app import Lot
    from ..config import parse_config
    from ..messages import Command
    from ..sim.pins import simulated_factory
    from ..web.users import Users
    from . import fire

    with tempfile.TemporaryDirectory(prefix="lotcontrol-bench-web-") as tmp:
        data, port = Path(tmp) / "data", _free_port()
        data.mkdir(mode=0o700)
        text = (f'[fire]\nsiren_pin = {fire.SIREN}\n\n[[fire.zones]]\nname = "east"\nsprinklers = [{fire.SPRINKLER}]\n'
                f'charger_pin = {fire.CHARGER}\n\n'
                f'[[bays.zones]]\nname = "yard"\nbays = [24, 25, 26]\n\n[web]\nport = {port}\n'
                + "".join(f'\n[[charging.ports]]\nid = "P-{i + 1:02d}"\nzone = "east"\nbay = "b-{i + 1:02d}"\n'
                          f'expander = {{ bus = 1, address = 0x20, pin = {i} }}\n' for i in range(ports)))
        config_path = Path(tmp) / "lot.toml"
        config_path.write_text(text)
        config_path.chmod(0o600)
        import tomllib

        month = _seed_last_month(data, ports)
        factory = simulated_factory()
        lot = Lot(parse_config(tomllib.loads(text)), data, pin_factory=factory, control_socket=True).start()
        asked = [0]  # status commands the controller's loop handled

        def count(message) -> None:
            if isinstance(message, Command) and message.name == "status":
                asked[0] += 1
        lot.observe(count)
        loop = threading.Thread(target=lot.run, name="bench-controller")
        loop.start()
        Users(data).add("bench", "viewer", PASSWORD)
        Users(data).add("bench-staff", "staff", PASSWORD)
        web = subprocess.Popen([sys.executable, "-m", "lotcontrol", "--config", str(config_path), "--data-dir",
                                str(data), "web"], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        browsers_process = None
        try:
            client = logged_in(web, url, "bench", PASSWORD)
            at_start = _memory(web.pid)
            poll = 1.0
            render, first_event, ready = [], [], []
            for _ in range(pages):
                time.sleep(poll)  # the last answer is stale: the page asks the controller (the worst case)
                start = time.perf_counter()
                assert client.get("/").status_code == 200
                rendered = time.perf_counter()
                with client.stream("GET", "/live") as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data:"):
                            break
                done = time.perf_counter()
                render.append((rendered - start) * 1000)
                first_event.append((done - rendered) * 1000)
                ready.append((done - start) * 1000)
            after_overview = _memory(web.pid)
            charging_ready = []
            for _ in range(pages):
                time.sleep(poll)
                start = time.perf_counter()
                page = client.get("/charging", params={"month": month})
                assert page.status_code == 200 and ('class="bar"' in page.text or not ports)
                with client.stream("GET", "/charging/live") as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data:"):
                            break
                charging_ready.append((time.perf_counter() - start) * 1000)
            after_pages = _memory(web.pid)
            pin_ms = _credentials(web, url)
            after_credentials = _memory(web.pid)
            alone = fire.bursts(lot, factory, bursts)
            # many browsers on live updates at once, in a process of their own (not this one's GIL,
            # which the controller's loop holds)
            browsers_process = subprocess.Popen(
                [sys.executable, "-m", "lotcontrol.bench.web", "--chromium-child" if chromium else "--browsers-child",
                 url, str(browsers)],
                env={**os.environ, "LOTCONTROL_BENCH_COOKIE": client.cookies.get("lotcontrol_session") or ""},
                stdout=subprocess.PIPE, text=True)
            said = browsers_process.stdout.readline().strip()
            assert said == "ready", f"the browsers did not all get an event: {said!r}"
            browsers_open = _memory(web.pid)
            requests_before = asked[0]
            cpu_before = (_cpu(web.pid), _cpu(browsers_process.pid), time.monotonic())
            time.sleep(seconds)
            requests = asked[0] - requests_before
            spent = time.monotonic() - cpu_before[2]
            web_cpu = (_cpu(web.pid) - cpu_before[0]) / spent * 1000  # ms of CPU a second
            browsers_cpu = (_cpu(browsers_process.pid) - cpu_before[1]) / spent * 1000
            before_bursts = _memory(web.pid)
            beside = fire.bursts(lot, factory, bursts)
            with_browsers = _memory(web.pid)
        finally:
            if browsers_process is not None:
                browsers_process.terminate()
                browsers_process.wait(30)
            web.terminate()
            web.wait(30)
            lot.controller.stop("bench over")
            loop.join()
            lot.stop()

    def summary(values):
        ordered = sorted(values)
        return {"median_ms": round(statistics.median(ordered), 1),
                "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}
    return {"pages": pages, "render": summary(render), "first_event": summary(first_event),
            "overview_ready": summary(ready), "charging_ready": summary(charging_ready), "charging_month": month, "ports": ports,
            "rss_mb_at_start": at_start["VmRSS"], "peak_rss_mb_at_start": at_start["VmHWM"], "rss_mb_after_overview": after_overview["VmRSS"],
            "rss_mb_after_pages": after_pages["VmRSS"], "rss_mb_after_credentials": after_credentials["VmRSS"],
            "peak_rss_mb_after_credentials": after_credentials["VmHWM"], "pin_set_ms": round(pin_ms, 1),
            "browsers": browsers, "chromium": chromium, "rss_mb_with_browsers": with_browsers["VmRSS"],
            "peak_rss_mb": with_browsers["VmHWM"],
            "rss_mb_browsers_open": browsers_open["VmRSS"], "rss_mb_before_bursts": before_bursts["VmRSS"], "seconds": seconds,
            "status_requests_with_browsers": requests, "web_cpu_ms_per_s": round(web_cpu, 1),
            "browsers_cpu_ms_per_s": round(browsers_cpu, 1),
            "burst_no_browser": fire.summary(alone), "burst_with_browsers": fire.summary(beside)}


def _credentials(web: subprocess.Popen, url: str) -> float:
    """A staff user logs in, adds a card to a resident and sets their PIN from the resident's page (as
    staff would); the PIN's round trip in ms (its hash made in a child process)."""
    staff = logged_in(web, url, "bench-staff", PASSWORD)
    try:
        token = re.search(r'name="csrf" value="([^"]+)"', staff.get("/resident", params={"name": "Resident 01"}).text)[1]
        added = staff.post("/resident/card/add", data={"name": "Resident 01", "uid": "26:4242", "csrf": token})
        assert added.status_code == 200, added.text[-500:]
        start = time.perf_counter()
        done = staff.post("/resident/pin/set", data={"name": "Resident 01", "pin": "4711", "pin_again": "4711",
                                                     "csrf": token})
        took = (time.perf_counter() - start) * 1000
        assert done.status_code == 200, done.text[-500:]
    finally:
        staff.close()
    return took


def _seed_last_month(data: Path, ports: int = PORTS) -> str:
    """Last month's sessions (the lot's month): SESSIONS_A_DAY a port a day, each its resident's."""
    import datetime as dt
    import random
    from zoneinfo import ZoneInfo

    from ..store import Store, isotime

    zone = ZoneInfo("Asia/Shanghai")
    first = (dt.datetime.now(zone).replace(day=1) - dt.timedelta(days=1)).replace(day=1, hour=0, minute=0,
                                                                                  second=0, microsecond=0)
    chance = random.Random(21)
    with Store.in_dir(data) as store:
        ids = [store.add_resident(f"Resident {i + 1:02d}").id for i in range(ports)]
        with store.transaction() as db:
            day = first
            while day.month == first.month:
                for port in range(ports):
                    for n in range(SESSIONS_A_DAY):
                        start = day + dt.timedelta(hours=8 + 10 * n + chance.random() * 4)
                        end = start + dt.timedelta(hours=1 + chance.random() * 5)
                        db.execute("INSERT INTO charging_sessions (key, port, resident_id, start, end, kwh, "
                                   "peak_watts, reason) VALUES (?, ?, ?, ?, ?, ?, ?, 'full')",
                                   [f"{day:%Y%m%d}-{port}-{n}", f"P-{port + 1:02d}", ids[port], isotime(start),
                                    isotime(end), round(chance.uniform(0.2, 1.5), 3), 250.0])
                day += dt.timedelta(days=1)
    return f"{first:%Y-%m}"


def _browsers_child(url: str, count: int) -> None:
    """``count`` pages on live updates (``LIVE``'s, in turn), each its own
    connection; says ``ready`` once each had an event, then reads on until it is ended."""
    import httpx

    cookies = {"lotcontrol_session": os.environ["LOTCONTROL_BENCH_COOKIE"]}
    opened = threading.Barrier(count, action=lambda: print("ready", flush=True))

    def browser(path: str):
        with httpx.Client(base_url=url, timeout=None, cookies=cookies) as own, own.stream("GET", path) as stream:
            first = True
            for line in stream.iter_lines():
                if line.startswith("data:") and first:
                    first = False
                    opened.wait()
    threads = [threading.Thread(target=browser, args=(LIVE[i % len(LIVE)],), daemon=True)
               for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


#: The live streams the HTTP browsers read, in turn: the overview's, the charging page's and the residents list's
#: (each sends its part when it opens; an events page's stream sends only new events).
LIVE = ("/live", "/charging/live", "/residents/live")
TABS = 5  # a Chromium's tabs on one server: its HTTP/1.1 limit is six connections a host


def _chromium_child(url: str, count: int) -> None:
    """``count`` pages on live updates in headless Chromiums (TABS tabs each), logged in with the
    bench's session; says ``ready`` once every page showed a live update, then waits to be ended
    (SIGTERM), and quits its browsers."""
    import signal

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ended = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: ended.set())
    drivers = []
    try:
        for first in range(0, count, TABS):
            options = webdriver.ChromeOptions()
            for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                         f"--user-data-dir={tempfile.mkdtemp(prefix='lotcontrol-bench-chromium-')}"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            drivers.append(driver)
            driver.get(url + "/healthz")
            driver.add_cookie({"name": "lotcontrol_session", "value": os.environ["LOTCONTROL_BENCH_COOKIE"], "path": "/"})
            for n in range(first, min(count, first + TABS)):
                if n != first:
                    driver.switch_to.new_window("tab")
                driver.get(url + ("/", "/charging")[n % 2])
        deadline = time.monotonic() + 120
        for driver in drivers:
            for handle in driver.window_handles:
                driver.switch_to.window(handle)
                while not driver.execute_script("return document.getElementById('live') && "
                                                "document.getElementById('live').getAttribute('data-updated')"):
                    if time.monotonic() > deadline:
                        print(f"no live update in {driver.current_url}", flush=True)
                        return
                    time.sleep(0.1)
        print("ready", flush=True)
        while not ended.wait(0.5):
            pass
    finally:
        for driver in drivers:
            driver.quit()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--browsers-child":
        _browsers_child(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--chromium-child":
        _chromium_child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--bursts", type=int, default=100)
    parser.add_argument("--ports", type=int, default=PORTS, choices=range(0, 17), metavar="0-16",
                        help="charging ports (on one MCP23017), each with last month's sessions")
    parser.add_argument("--chromium", action="store_true", help="the live browsers are real pages in headless "
                        "Chromium (Selenium), five tabs a browser, instead of HTTP clients")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.pages, args.browsers, args.seconds, args.bursts, args.ports, args.chromium)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"overview ready (GET / + first event, {result['pages']} loads, status stale): "
          f"median {result['overview_ready']['median_ms']} ms, p95 {result['overview_ready']['p95_ms']} ms "
          f"(render {result['render']['median_ms']} ms, first event {result['first_event']['median_ms']} ms)")
    print(f"charging page ready (GET /charging?month={result['charging_month']}, about "
          f"{result['ports'] * SESSIONS_A_DAY * 30} sessions, + first event): median {result['charging_ready']['median_ms']} ms, "
          f"p95 {result['charging_ready']['p95_ms']} ms")
    print(f"web process RSS: {result['rss_mb_at_start']} MB logged in (peak {result['peak_rss_mb_at_start']} MB), {result['rss_mb_after_overview']} MB after "
          f"the overviews, {result['rss_mb_after_pages']} MB after the charging pages, {result['rss_mb_after_credentials']} MB "
          f"after a staff login, a card and a PIN (peak {result['peak_rss_mb_after_credentials']} MB; the PIN took "
          f"{result['pin_set_ms']} ms), {result['rss_mb_with_browsers']} MB "
          f"with {result['browsers']} live browsers (peak {result['peak_rss_mb']} MB)")
    print(f"status requests to the controller in {result['seconds']:g} s with {result['browsers']} live browsers: "
          f"{result['status_requests_with_browsers']}; CPU meanwhile: the web process {result['web_cpu_ms_per_s']} ms a "
          f"second, the browsers' process {result['browsers_cpu_ms_per_s']} ms a second (not its Chromiums)")
    kind = "Chromium pages" if result["chromium"] else "live browsers (HTTP clients)"
    for key, label in (("burst_no_browser", "no page open"), ("burst_with_browsers", f"{result['browsers']} {kind}")):
        b = result[key]
        print(f"sprinkler burst -> outputs, {label}: p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, max {b['max_ms']} ms "
              f"({b['trials']} trials)")


if __name__ == "__main__":
    main()
