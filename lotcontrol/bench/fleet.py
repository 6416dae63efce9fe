"""How fast the hub's changes reach a lot's gallery, connected and after being offline.

    .venv/bin/python -m lotcontrol.bench.fleet [--residents 1400] [--trials 20] [--restarts 5] [--json]

A real Mosquitto on 127.0.0.1 (plain TCP with ``mqtt.allow_plaintext``, the exception made for a test
broker on this machine), the hub (``lotcontrol.hub.publisher.Hub`` on its own database, polling every
``hub.poll_seconds`` = 0.2 s) with ``--residents`` residents of three templates each, assigned in turn
to lots A-E, and lot A as ``lotcontrol run`` starts it (``lotcontrol.app.Lot``, simulated pins): its
link, its writer thread applying the hub's messages to its own database. Beside it, a thread reloads
the gallery the way the vision worker does (``Gallery.refreshed`` every 2 s, lotcontrol/vision/worker.py).

- **first sync**: a new lot's start until every resident assigned to it is in its database.
- **reconnect catch-up**: a lot's start, its residents on file, until it has gone through every
  retained message of the village (skipping those it has); the connected trials start after it.
- **remove, connected**: ``remove`` committed at the hub until the resident is gone from the lot's
  database and the controller's directory (refreshed in the same step: the gate refuses them from
  then on), and until the worker's gallery has reloaded without them (each change made at a random
  moment of the worker's 2 s cycle). Likewise **enroll**.
- **remove while offline**: the lot is stopped, a resident is removed at the hub (its tombstone is on
  the broker), the lot is started again: from its start, and from its link's connection, until the
  removal is applied (every retained message of the village comes again; the lot skips those it has),
  and from its start until the worker's gallery has reloaded without them.

Prints p50, p99 and max of each, and whether the 5 s target is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lotcontrol.app import Lot
from lotcontrol.config import Config, HubConfig, MqttConfig, prepare_data_dir
from lotcontrol.hub import store as hub_store
from lotcontrol.hub.publisher import Hub
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store, Template
from lotcontrol.vision.matcher import Gallery

from .mqtt import lot_config, mosquitto, probe_tree

LOTS = ["A", "B", "C", "D", "E"]
WORKER_REFRESH_SECONDS = 2.0  # how often the vision worker reloads its gallery (vision/worker.py)
TARGET_SECONDS = 5.0
DEADLINE = 60.0


def templates(seed: int, count: int = 3) -> list[Template]:
    rng = np.random.default_rng(seed)
    return [Template(rng.normal(0, 0.1, 128).astype(np.float32), f"{seed:032x}{n:032x}", 120, 40.0)
            for n in range(count)]


def enroll(hub: Store, name: str, seed: int, lots: list[str] | None) -> None:
    with hub.transaction():  # as `enroll --lot` does it: one transaction
        resident = hub.add_resident(name)
        hub.add_templates(resident.id, templates(seed))
        if lots is not None:
            hub_store.set_lots(hub, name, lots, LOTS)


class Watch:
    """What lot A applied (from its writer thread), and its gallery as the vision worker reloads it."""

    def __init__(self, data_dir: Path):
        self._cond = threading.Condition()
        self.applied: dict[tuple[str, str], float] = {}
        self.store = Store.in_dir(data_dir)  # the worker's own connection
        self.gallery = Gallery.from_store(self.store)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reload, name="bench-gallery", daemon=True)
        self._thread.start()

    def attach(self, lot: Lot) -> None:
        lot.residents.on_applied(self._applied)

    def _applied(self, uid: str, outcome) -> None:
        if outcome is None:
            return
        with self._cond:
            self.applied.setdefault((uid, outcome.change), time.monotonic())
            self._cond.notify_all()

    def _reload(self) -> None:
        while not self._stop.wait(WORKER_REFRESH_SECONDS):
            gallery = self.gallery.refreshed(self.store)
            with self._cond:
                self.gallery = gallery
                self._cond.notify_all()

    def wait_applied(self, uid: str, change: str) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: (uid, change) in self.applied, DEADLINE):
                raise RuntimeError(f"lot A never saw {change} for {uid}")
            return self.applied[(uid, change)]

    def wait_gallery(self, resident_id: int, present: bool) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: (resident_id in set(self.gallery.residents.tolist())) == present,
                                       DEADLINE):
                raise RuntimeError(f"resident #{resident_id} never {'came to' if present else 'left'} the gallery")
            return time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.store.close()


def figures(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50_ms": round(statistics.median(ms)), "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))]),
            "max_ms": round(ms[-1]), "n": len(ms), "target_met": ms[-1] <= TARGET_SECONDS * 1000}


@contextlib.contextmanager
def lot_a(tmp: Path, port: int, watch: Watch | None = None):
    config = lot_config(probe_tree(tmp), port, allow_plaintext=True)
    with Lot(config, prepare_data_dir(tmp / "lot-A"), pin_factory=simulated_factory()) as lot:
        if watch is not None:
            watch.attach(lot)
        yield lot


def local_id(data_dir: Path, name: str) -> int:
    with Store.in_dir(data_dir) as store:
        return store.resident(name).id


def poll(condition, what: str, every: float = 0.005) -> float:
    """Poll ``condition`` until true (a benchmark may poll; tests wait on events); returns when."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {DEADLINE} s")
        time.sleep(every)
    return time.monotonic()


def names_in(data_dir: Path) -> set[str]:
    with Store.in_dir(data_dir) as store:
        return {r.name for r in store.residents()}


def tombstone_on_broker(port: int, uid: str) -> None:
    """Wait until the broker holds the tombstone of ``uid`` (a subscriber gets the retained message)."""
    import paho.mqtt.client as paho

    got = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{uid[:8]}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"lotcontrol/residents/{uid}", 1)
    client.on_message = lambda c, u, m: got.set() if b'"removed":true' in m.payload else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not got.wait(DEADLINE):
            raise RuntimeError(f"the tombstone of {uid} never reached the broker")
    finally:
        client.disconnect()
        client.loop_stop()


def run(residents: int = 1400, trials: int = 20, restarts: int = 5) -> dict:
    mine = [f"Resident {n:04d}" for n in range(0, residents, len(LOTS))]  # assigned to lot A
    if len(mine) < trials + restarts:
        raise SystemExit(f"--residents {residents} gives lot A {len(mine)} residents; trials need {trials + restarts}")
    results: dict = {"residents_at_hub": residents, "assigned_to_lot_A": len(mine)}
    with tempfile.TemporaryDirectory() as folder, mosquitto(Path(folder)) as port:
        tmp = Path(folder)
        if port is None:
            return {"note": "mosquitto is missing: nothing measured"}
        hub = hub_store.open_hub(prepare_data_dir(tmp / "hub"))
        with hub.transaction():  # the village on file before the hub starts: one write, not 1,400
            for n in range(residents):
                enroll(hub, f"Resident {n:04d}", n, [LOTS[n % len(LOTS)]])
        uids = {name: hub_store.uid_of(hub, hub.resident(name).id) for name in mine}
        mqtt = MqttConfig(enabled=True, port=port, lot="hub", allow_plaintext=True)
        publisher = Hub(hub, Config(mqtt=mqtt, hub=HubConfig(lots=LOTS))).start()
        data_dir = tmp / "lot-A"
        watch = None
        try:
            start = time.monotonic()
            with lot_a(tmp, port):
                done = poll(lambda: len(names_in(data_dir)) == len(mine), "the first sync", every=0.05)
            results["first_sync_seconds"] = round(done - start, 2)

            watch = Watch(data_dir)
            phase = random.Random(14)
            removal_db, removal_gallery, enroll_db, enroll_gallery = [], [], [], []
            start = time.monotonic()
            with lot_a(tmp, port, watch) as lot:
                # a lot that comes back goes through every retained message of the village once
                done = poll(lambda: lot.residents.applied + lot.residents.rejected >= residents,
                            "the catch-up on reconnect", every=0.01)
                results["reconnect_catch_up_seconds"] = round(done - start, 2)
                for trial in range(trials):
                    name = f"Newcomer {trial:03d}"
                    time.sleep(phase.uniform(0, WORKER_REFRESH_SECONDS))  # any moment of the worker's cycle
                    start = time.monotonic()
                    enroll(hub, name, residents + trial, ["A"])
                    uid = hub_store.uid_of(hub, hub.resident(name).id)
                    enroll_db.append(watch.wait_applied(uid, "added") - start)
                    enroll_gallery.append(watch.wait_gallery(local_id(data_dir, name), True) - start)
                    here = local_id(data_dir, mine[trial])
                    time.sleep(phase.uniform(0, WORKER_REFRESH_SECONDS))
                    start = time.monotonic()
                    hub.remove(mine[trial])
                    watch.wait_applied(uids[mine[trial]], "removed")
                    refused = poll(lambda: lot.controller.writer.directory.get(here) is None,  # refreshed next
                                   "the controller's directory letting go of a removed resident", every=0.001)
                    removal_db.append(refused - start)
                    removal_gallery.append(watch.wait_gallery(here, False) - start)
            results["enroll_connected_to_lot_db"] = figures(enroll_db)
            results["enroll_connected_to_gallery"] = figures(enroll_gallery)
            results["remove_connected_to_lot_db"] = figures(removal_db)
            results["remove_connected_to_gallery"] = figures(removal_gallery)

            from_start, from_connect, to_gallery = [], [], []
            for name in mine[trials:trials + restarts]:
                here = local_id(data_dir, name)
                hub.remove(name)  # while lot A is stopped
                tombstone_on_broker(port, uids[name])
                time.sleep(phase.uniform(0, WORKER_REFRESH_SECONDS))
                start = time.monotonic()
                with lot_a(tmp, port) as lot:
                    connected = []
                    if not lot.link.connected.is_set():
                        lot.link.on_connect(lambda: connected.append(time.monotonic()))
                    applied = poll(lambda: name not in names_in(data_dir), f"the removal of {name}")
                    to_gallery.append(watch.wait_gallery(here, False) - start)
                from_start.append(applied - start)
                if connected:
                    from_connect.append(applied - connected[0])
            results["remove_offline_from_lot_start_to_lot_db"] = figures(from_start)
            if from_connect:
                results["remove_offline_from_connection_to_lot_db"] = figures(from_connect)
            results["remove_offline_from_lot_start_to_gallery"] = figures(to_gallery)
        finally:
            if watch is not None:
                watch.close()
            publisher.stop()
            hub.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=1400)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.residents, args.trials, args.restarts)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
