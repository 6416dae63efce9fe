"""How fast a fire reaches the outputs, while faces are being encoded flat out.

    .venv/bin/python -m lotcontrol.bench.fire [--trials 200]

The real controller loop runs in its own thread with simulated pins (closed loops). For each trial a
sprinkler contact opens (drive_high, as gpiozero's callback thread would deliver it) and the time until
the charger contactor is off and the gate relay on is taken from the mock pins' own timestamps; then
the loop is closed and the alarm reset. It includes the 20 ms contact debounce. Four loads:

- idle;
- the database locked by another process for the whole run (a backup, a long CLI session): every
  event waits in the writer's queue, the outputs must not;
- the vision worker's work in its own processes: two processes encoding a face continuously (both
  cores busy), as lotcontrol runs it;
- the same face work in-process on a thread of the controller (what the process split avoids: dlib
  holds the GIL for each encoding).

Then the probe path: a probe file set to 61 °C, to the alarm outputs (poll every 1 s).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lotcontrol.app import Lot
from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.messages import Command
from lotcontrol.sim.faults import lock_database
from lotcontrol.sim.pins import simulated_factory

PROBE = "28-00000a1b2c3d"
SPRINKLER, CHARGER, SIREN = 5, 23, 22


def _face():
    from PIL import Image

    from lotcontrol.demo import portrait

    return np.asarray(Image.open(portrait()).convert("RGB"))[:320]


def encode_forever(stop, niced: bool = False) -> None:
    """Face work without pause: detect + encode the demo portrait (``niced``: at the priority the vision
    worker gives itself, lotcontrol.vision.worker.yield_cores)."""
    from lotcontrol.vision.faces import detect, encode

    if niced:
        from lotcontrol.vision.worker import yield_cores

        yield_cores()

    rgb = _face()
    boxes = detect(rgb, 1)[:1]
    while not stop.is_set():
        encode(rgb, boxes)


@contextlib.contextmanager
def running(tmp: Path, poll_seconds: float = 1.0):
    """The lot as `lotcontrol run` starts it (through lotcontrol.app: writer thread, probe poller),
    its loop on a thread, with one fire zone; yields (lot, factory, probe tree)."""
    tree = tmp / "w1"
    (tree / PROBE).mkdir(parents=True, exist_ok=True)
    (tree / PROBE / "temperature").write_text("22000")
    config = parse_config({"fire": {
        "siren_pin": SIREN, "w1_path": str(tree), "poll_seconds": poll_seconds,
        "zones": [{"name": "east", "sprinklers": [SPRINKLER], "probes": [PROBE], "charger_pin": CHARGER}]}})
    factory = simulated_factory()
    data_dir = prepare_data_dir(tmp / f"lot-{time.monotonic_ns()}")
    with Lot(config, data_dir, pin_factory=factory) as lot:
        thread = threading.Thread(target=lot.run, name="controller", daemon=True)
        thread.start()
        try:
            yield lot, factory, tree
        finally:
            lot.controller.stop("benchmark over")
            thread.join()


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"the outputs did not switch within {timeout} s")
        time.sleep(0.0005)


def reset(lot) -> None:
    """Reset the alarm, again until accepted (the loop must read closed after its debounce first)."""
    while True:
        answers: list = []
        answered = threading.Event()
        lot.controller.inbox.put(Command("fire.reset", {}, lambda answer: (answers.append(answer), answered.set())))
        answered.wait(10)
        if answers and answers[0]["ok"]:
            return
        time.sleep(0.05)


def last_change(pin) -> float:
    """The monotonic time of the pin's last change (the simulated pins keep their history)."""
    return pin.history[-1][0]


def bursts(lot, factory, trials: int) -> list[float]:
    """Seconds from a sprinkler burst to charging off and the gate released, ``trials`` times."""
    latencies = []
    sprinkler, charger, relay = factory.pin(SPRINKLER), factory.pin(CHARGER), factory.pin(17)
    for _ in range(trials):
        wait_for(lambda: charger.state and not relay.state)
        start = time.monotonic()
        sprinkler.drive_high()
        wait_for(lambda: not charger.state and relay.state)
        latencies.append(max(last_change(charger), last_change(relay)) - start)
        sprinkler.drive_low()
        reset(lot)
    return latencies


def burst_trials(trials: int, tmp: Path, *, database_locked: bool = False) -> list[float]:
    with running(tmp) as (lot, factory, _):
        lot.controller.writer.flush(30)  # the writer thread has opened the database
        locker = lock_database(lot.controller.writer.store.path, 3600) if database_locked else None
        try:
            latencies = bursts(lot, factory, trials)
            if locker is not None:
                assert lot.controller.writer.waiting > 0, "the database was not locked after all"
        finally:
            if locker is not None:
                locker.kill()
                locker.wait()
    return latencies


def probe_trials(trials: int, tmp: Path) -> list[float]:
    latencies = []
    with running(tmp) as (lot, factory, tree):
        charger, relay = factory.pin(CHARGER), factory.pin(17)
        for _ in range(trials):
            wait_for(lambda: charger.state and not relay.state)
            start = time.monotonic()
            (tree / PROBE / "temperature").write_text("61000")
            wait_for(lambda: not charger.state and relay.state)
            latencies.append(max(last_change(charger), last_change(relay)) - start)
            (tree / PROBE / "temperature").write_text("22000")
            reset(lot)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    return {"trials": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1), "max_ms": round(ms[-1], 1)}


@contextlib.contextmanager
def face_work_in_processes(count: int = 2, niced: bool = False):
    """Face work flat out in ``count`` processes, as the vision worker does it (both cores busy);
    ``niced``: at the worker's own priority (nice +5), else at the controller's."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers = [context.Process(target=encode_forever, args=(stop, niced), daemon=True) for _ in range(count)]
    for worker in workers:
        worker.start()
    time.sleep(3)  # let them load the models and start encoding
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join()


@contextlib.contextmanager
def face_work_in_thread():
    """The same face work on a thread of the controller's process (what the process split avoids)."""
    stop = threading.Event()
    thread = threading.Thread(target=encode_forever, args=(stop,), daemon=True)
    thread.start()
    time.sleep(2)
    try:
        yield
    finally:
        stop.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--probe-trials", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["idle"] = summary(burst_trials(args.trials, tmp))
        results["database locked by another process"] = summary(burst_trials(args.trials, tmp, database_locked=True))
        with face_work_in_processes():
            results["face work in 2 processes"] = summary(burst_trials(args.trials, tmp))
            results["probe at 61 C, face work in 2 processes"] = summary(probe_trials(args.probe_trials, tmp))
        with face_work_in_thread():
            results["face work on a thread of the controller"] = summary(burst_trials(args.trials, tmp))
    print("burst contact edge -> charger off and gate open (includes the 20 ms debounce)")
    for label, figures in results.items():
        print(f"  {label:<42} p50 {figures['p50_ms']:>7.1f} ms   p99 {figures['p99_ms']:>7.1f} ms   "
              f"max {figures['max_ms']:>7.1f} ms   ({figures['trials']} trials)")


if __name__ == "__main__":
    main()
