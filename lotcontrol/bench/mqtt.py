"""What MQTT costs a lot, and what it does not hold back.

    .venv/bin/python -m lotcontrol.bench.mqtt [--turns 20000] [--events 20000] [--trials 50] [--json]

- **loop turn**: the controller's turn (``Controller.step``: inbox, deadlines, outputs, observers) on a
  simulated clock with two fire zones, a probe, a door and a bay zone; microseconds per turn, mean and
  p99, with MQTT off, on with the broker down (everything goes to the bounded queue, which drops the
  oldest) and on with a broker. Every 20th turn a staff command opens the gate (an event and a state
  change to publish).
- **events/s**: one lot's link publishing JSON events of about 200 bytes (QoS 1) to a local Mosquitto,
  until a subscriber has them all.
- **memory**: the controller process's peak RSS after the same turns, MQTT off and on with a broker
  (each in a fresh process: ``python -m lotcontrol.bench.mqtt --memory-child``).
- **burst → outputs**: a sprinkler bursts; the time until the charger contactor is off and the gate
  released (the pins' own timestamps), the real loop on its thread, with the broker down, and with
  the broker flooding the lot (a client sends Home Assistant's ``online`` as fast as it can: the lot's
  network thread takes every one, and re-announces the lot at most once a second).

A Mosquitto on 127.0.0.1 is started on a free port where the binary is found; without it the
figures that need a broker are left out, saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from lotcontrol.app import Lot
from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.messages import Command
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.pins import simulated_factory

from .fire import CHARGER, PROBE, SIREN, SPRINKLER, bursts, summary

DOOR, BAY, PANEL = 6, 12, 13


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mosquitto(folder: Path):
    """A throwaway Mosquitto on 127.0.0.1; yields its port, or None where the binary is missing."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if binary is None:
        yield None
        return
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.01)
        yield port
    finally:
        process.terminate()
        process.wait()


def lot_config(tree: Path, port: int | None, **mqtt):
    zones = [{"name": "east", "sprinklers": [SPRINKLER], "probes": [PROBE], "charger_pin": CHARGER},
             {"name": "west", "panel_pin": PANEL}]
    raw = {"fire": {"zones": zones, "siren_pin": SIREN, "w1_path": str(tree), "poll_seconds": 1.0},
           "gate": {"door_pin": DOOR}, "bays": {"zones": [{"name": "A", "bays": [BAY]}]}}
    if port is not None:
        raw["mqtt"] = {"enabled": True, "host": "127.0.0.1", "port": port, "lot": "A",
                       "reconnect_min_seconds": 0.2, "reconnect_max_seconds": 1.0, **mqtt}
    return parse_config(raw)


def probe_tree(tmp: Path) -> Path:
    tree = tmp / "w1"
    (tree / PROBE).mkdir(parents=True, exist_ok=True)
    (tree / PROBE / "temperature").write_text("22000")
    return tree


def loop_turns(tmp: Path, port: int | None, turns: int, *, up: bool = False) -> dict:
    """Microseconds per turn of the loop on a simulated clock (see the module's docstring)."""
    clock = SimClock()
    lot = Lot(lot_config(probe_tree(tmp), port), None, pin_factory=simulated_factory(), clock=clock).start()
    try:
        controller = lot.controller
        if up and not lot.link.connected.wait(10):
            raise RuntimeError(f"the lot did not connect to the broker on port {port}")
        took = []
        now = 0.0
        for turn in range(turns):
            now += 0.05
            clock.advance_to(now)
            if turn % 20 == 0:
                controller.inbox.put(Command("gate.open", {"seconds": 0.5}))
            start = time.perf_counter()
            controller.step(now)
            took.append(time.perf_counter() - start)
        result = {"mean_us": round(statistics.fmean(took) * 1e6, 1),
                  "p99_us": round(sorted(took)[int(len(took) * 0.99)] * 1e6, 1)}
        if lot.link is not None:
            result.update(queued=lot.link.queued, dropped=lot.link.dropped, sent=lot.link.sent)
        return result
    finally:
        lot.stop()


def events_per_second(port: int, count: int) -> float:
    """A lot's link publishing ``count`` events to the broker until a subscriber has them all."""
    import paho.mqtt.client as paho

    from lotcontrol.fleet.mqtt import MqttLink

    got = threading.Event()
    received = [0]

    def on_message(client, userdata, message):
        received[0] += 1
        if received[0] == count:
            got.set()
    subscribed = threading.Event()
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-watcher")
    watcher.on_message = on_message
    watcher.on_subscribe = lambda *args: subscribed.set()
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe("lotcontrol/A/events/#", 1)
    watcher.connect("127.0.0.1", port)
    watcher.loop_start()
    subscribed.wait(10)
    config = lot_config(Path("/nonexistent"), port, queue_size=max(1000, count)).mqtt
    link = MqttLink(config).start()
    try:
        link.connected.wait(10)
        event = {"type": "access.denied", "time": "2026-11-30T06:00:00.000+00:00", "reason": "no_match",
                 "distance": 0.71, "frames": 12, "duration": 1.0, "track": 7}
        start = time.perf_counter()
        for n in range(count):
            link.publish(link.topic("events", "access.denied"), {**event, "track": n})
        if not got.wait(120):
            raise RuntimeError(f"only {received[0]} of {count} events arrived")
        return count / (time.perf_counter() - start)
    finally:
        link.stop()
        watcher.disconnect()
        watcher.loop_stop()


@contextlib.contextmanager
def running(tmp: Path, port: int | None):
    """The lot as `lotcontrol run` starts it, its loop on a thread; yields (lot, factory)."""
    factory = simulated_factory()
    with Lot(lot_config(probe_tree(tmp), port), prepare_data_dir(tmp / f"lot-{time.monotonic_ns()}"),
             pin_factory=factory) as lot:
        thread = threading.Thread(target=lot.run, name="controller", daemon=True)
        thread.start()
        try:
            yield lot, factory
        finally:
            lot.controller.stop("benchmark over")
            thread.join()


@contextlib.contextmanager
def flooding(port: int):
    """A client sending Home Assistant's `online` as fast as the broker takes it."""
    import paho.mqtt.client as paho

    stop = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-flood")
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = [0]

    def flood():
        while not stop.is_set():
            client.publish("homeassistant/status", "online", qos=0).wait_for_publish(1)
            sent[0] += 1
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join()
        client.disconnect()
        client.loop_stop()


def burst_latencies(tmp: Path, port: int | None, trials: int) -> dict:
    with running(tmp, port) as (lot, factory):
        lot.controller.writer.flush(30)
        latencies = bursts(lot, factory, trials)
        link = lot.link
        extra = {} if link is None else {"dropped": link.dropped, "sent": link.sent,
                                         "connected": link.connected.is_set()}
    return {**summary(latencies), **extra}


def memory_child(port: int | None, turns: int) -> None:
    """In a fresh process: the turns, then print the peak RSS in MB. VmHWM, not getrusage's ru_maxrss:
    Linux carries ru_maxrss across exec, so a child of the bench suite (300 MB with dlib loaded)
    reported the suite's peak instead of its own."""
    with tempfile.TemporaryDirectory() as folder:
        loop_turns(Path(folder), port, turns, up=port is not None)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(round(int(hwm.split()[1]) / 1024, 1))


def peak_memory(port: int | None, turns: int) -> float:
    import sys

    args = [sys.executable, "-m", "lotcontrol.bench.mqtt", "--memory-child", "--turns", str(turns)]
    if port is not None:
        args += ["--port", str(port)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def run(turns: int = 20000, events: int = 20000, trials: int = 50, folder: Path | None = None) -> dict:
    """Every figure (see the module's docstring); in ``folder``, or a temporary directory."""
    with contextlib.ExitStack() as stack:
        tmp = Path(folder) if folder is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        return measure(tmp, turns, events, trials)


def measure(tmp: Path, turns: int, events: int, trials: int) -> dict:
    results: dict = {}
    down = free_port()  # nothing listens there
    results["loop_turn"] = {"mqtt off": loop_turns(tmp / "off", None, turns),
                            "mqtt on, broker down": loop_turns(tmp / "down", down, turns)}
    results["burst_to_outputs"] = {"mqtt off": burst_latencies(tmp / "b-off", None, trials),
                                   "mqtt on, broker down": burst_latencies(tmp / "b-down", down, trials)}
    with mosquitto(tmp) as port:
        if port is None:
            results["note"] = "mosquitto is missing: no figures with a broker"
            return results
        results["loop_turn"]["mqtt on, broker up"] = loop_turns(tmp / "up", port, turns, up=True)
        results["peak_rss_mb"] = {"mqtt off": peak_memory(None, turns), "mqtt on, broker up": peak_memory(port, turns)}
        results["events_per_second"] = round(events_per_second(port, events))
        with flooding(port) as sent:
            results["burst_to_outputs"]["mqtt on, broker flooding"] = burst_latencies(tmp / "b-flood", port, trials)
            results["burst_to_outputs"]["mqtt on, broker flooding"]["flood_messages"] = sent[0]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.port, args.turns)
        return
    results = run(args.turns, args.events, args.trials)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results["loop_turn"].items():
        print(f"loop turn, {name}: {figures}")
    if "peak_rss_mb" in results:
        print(f"controller process peak RSS: {results['peak_rss_mb']}")
    if "events_per_second" in results:
        print(f"events/s one lot publishes (QoS 1, to a local Mosquitto): {results['events_per_second']}")
    for name, figures in results["burst_to_outputs"].items():
        print(f"sprinkler burst -> outputs, {name}: {figures}")
    if "note" in results:
        print(results["note"])


if __name__ == "__main__":
    main()
