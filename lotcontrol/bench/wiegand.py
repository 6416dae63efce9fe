"""The Wiegand reader on real threads: a card's frame decoded after its last pulse, and the gate relay
after it (issue 20's targets: a frame decoded within 30 ms of its last bit, a credential at the relay in
100 ms p99).

The lot runs as `lotcontrol run` starts it (lotcontrol.app: the controller's loop on its thread, the
reader's own thread, the writer thread), on simulated pins on the real clock. Each trial plays a
resident's 26-bit card as a reader sends it (50 µs low pulses, 2 ms apart) from this thread, then
reads the times the pins and the reader kept: the last pulse's edge (the pin factory's ticks), the
frame's decoding (the reader's thread), the relay's change. ``--face-load`` runs face work flat out
in two processes meanwhile (as the vision worker would: both cores busy), at the priority the worker
gives itself (nice +5), or with ``--not-niced`` at the controller's. ``--vision`` starts the lot
with its real vision worker process on the rig's scripted camera (lotcontrol.sim.camera), which shows
faces that are on file nowhere, one after another (each 2 s, then 1.5 s of empty gate, longer than
vision.track_timeout_seconds: each a new track,
detected, encoded, refused), so the worker decides faces while the cards are played; the worker's
CPU share and its decisions are reported. Without ../shared the faces are the demo's portrait.

Neither the playing thread nor this thread takes the GIL while the reader waits for a frame's quiet
gap: between pulses the player sleeps (a reader's pulses are 2 ms apart nominally; only a pause of
``VOID_GAP`` splits a frame), and the relay is waited for on an event its pin sets, not by polling.

    python -m lotcontrol.bench.wiegand [--trials 200] [--face-load [--not-niced]] [--vision] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from lotcontrol.app import Lot
from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.credentials import card_digest
from lotcontrol.messages import Heartbeat, Passage
from lotcontrol.sim.pins import pulse_train, simulated_factory
from lotcontrol.site.wiegand import Card, card_frame
from lotcontrol.store import Store

from .fire import face_work_in_processes, summary, wait_for

D0, D1, RELAY = 5, 6, 17
CARD = Card(26, 0x123456)  # made up


VOID_GAP = 0.015  # s: a pause this long inside a played frame (this thread preempted) voids the trial
SPIN = 0.0003  # s: the player sleeps until this long before a change, then waits for it exactly
SETTLE = 0.2  # s: after a void trial, for what it may still open (gate.open_seconds is 0.05 here)


def play(factory, bits: list[int]) -> float:
    """The pulse train on the pins, in real time (each change at its time or as soon after as the
    machine lets this thread run: only the quiet gap after the last pulse matters to the decoder).
    Returns the longest pause between two changes: a reader's hardware never pauses, this thread can."""
    start = last = time.monotonic()
    longest = 0.0
    for at, pin, high in pulse_train(D0, D1, bits, start):
        ahead = at - time.monotonic() - SPIN
        if ahead > 0:
            time.sleep(ahead)  # the GIL is free for the lot's threads meanwhile
        while time.monotonic() < at:
            pass
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        factory.pin(pin).drive_high() if high else factory.pin(pin).drive_low()
    return max(longest, time.monotonic() - last)  # a pause before the last edge: a line held low meanwhile


def faces_script(tmp: Path, shared: Path | None) -> str:
    """The scripted camera's script: faces on file nowhere, one after another, 2 s each with 1.5 s of
    empty gate between (about ten minutes, repeated), as ``script:FILE``."""
    folder = None if shared is None else shared / "faces"
    photos = [] if folder is None or not folder.is_dir() else \
        [str(min(d.glob("*.jpg"))) for d in sorted(folder.iterdir()) if d.is_dir() and any(d.glob("*.jpg"))]
    if not photos:
        from lotcontrol.demo import portrait

        photos = [str(portrait())]
    shots = []
    while sum(shot["seconds"] for shot in shots) < 600:
        for photo in photos:
            shots += [{"photo": photo, "seconds": 2.0}, {"photo": None, "seconds": 1.5}]
    script = tmp / "camera.json"
    script.write_text(json.dumps({"fps": 15, "size": [640, 480], "shots": shots,
                                  "unplugged": str(tmp / "camera-unplugged"), "started": str(tmp / "camera-started")}))
    return f"script:{script}"


def cpu_seconds(pid: int) -> float | None:
    from .gate import cpu_seconds as cpu

    return cpu(pid)


def trials(count: int, tmp: Path, camera: str | None = None) -> tuple[list[float], list[float], int, dict]:
    """(decode latencies, relay latencies), seconds from the last pulse's edge, ``count`` cards; how
    many trials were void (the playing thread paused inside a frame, splitting it); and with a
    ``camera`` (the vision worker's source), what the worker did meanwhile."""
    config = parse_config({"gate": {"open_seconds": 0.05}, "access": {"mode": "face_or_card"},
                           "wiegand": {"d0_pin": D0, "d1_pin": D1}})
    data_dir = prepare_data_dir(tmp / f"lot-{time.monotonic_ns()}")
    with Store.in_dir(data_dir) as store:
        store.add_resident("Bench Resident")
        store.add_card("Bench Resident", card_digest(store.card_key(), CARD))
    relay_changed = threading.Event()
    factory = simulated_factory(on_change=lambda name, state: relay_changed.set() if name == f"GPIO{RELAY}" else None)
    for pin in (D0, D1):
        factory.pin(pin).drive_high()
    decoded, relayed, void = [], [], 0
    seen = {"beats": 0, "decisions": 0}
    ready = threading.Event()

    def wrap(deliver):
        def counted(message):
            if isinstance(message, Heartbeat):
                seen["beats"] += 1
                if seen["beats"] >= 2:
                    ready.set()  # models loaded, frames flowing
            elif isinstance(message, Passage):
                seen["decisions"] += 1
            deliver(message)
        return counted

    vision: dict = {}
    with Lot(config, data_dir, pin_factory=factory, camera=camera, deliver_wrapper=wrap) as lot:
        thread = threading.Thread(target=lot.run, name="controller", daemon=True)
        thread.start()
        try:
            lot.controller.writer.flush(30)
            wait_for(lambda: lot.controller.writer.directory.cards, 30)  # the card is known to the reader
            if camera is not None and not ready.wait(300):
                raise TimeoutError("the vision worker sent no heartbeat within 300 s")
            relay, reader = factory.pin(RELAY), lot.controller.reader
            pid = lot.controller.worker.pid if camera is not None else None
            cpu0, wall0, decisions0 = (cpu_seconds(pid) if pid else None), time.monotonic(), seen["decisions"]
            while len(decoded) < count:
                while relay.history[-1][1]:  # the last pulse's end filed (a pin's state changes before its history)
                    relay_changed.clear()
                    if relay.history[-1][1]:
                        relay_changed.wait(5)
                relay_changed.clear()
                before = len(relay.history)
                if play(factory, card_frame(CARD.number)) >= VOID_GAP:
                    void += 1
                    wait_for(lambda: reader.frames.last is None and not reader.frames.closed)  # its pieces decoded (bad frames)
                    time.sleep(SETTLE)  # a whole card after all: its grant and relay pulse come and go first
                    continue
                last_edge = max(factory.pin(D0).history[-1][0], factory.pin(D1).history[-1][0])
                end = time.monotonic() + 30
                while not any(on for _, on in relay.history[before:]):
                    if not relay_changed.wait(max(0.0, end - time.monotonic())):
                        raise TimeoutError("the relay did not switch within 30 s")
                    relay_changed.clear()
                first, done = reader.decoded[-1]
                if abs(first - last_edge) > 1e-6:  # the relay was an earlier frame's: not this trial's figure
                    void += 1
                    time.sleep(SETTLE)
                    continue
                decoded.append(done - first)
                relayed.append(next(t for t, on in relay.history[before:] if on) - last_edge)
            if pid is not None:
                wall = time.monotonic() - wall0
                vision = {"worker_cpu_share": round(((cpu_seconds(pid) or cpu0) - cpu0) / wall, 2),
                          "decisions": seen["decisions"] - decisions0, "seconds": round(wall, 1)}
        finally:
            lot.controller.stop("benchmark over")
            thread.join()
    return decoded, relayed, void, vision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--face-load", action="store_true", help="face work flat out in two processes meanwhile")
    parser.add_argument("--not-niced", action="store_true",
                        help="--face-load at the controller's priority, not the vision worker's own (nice +5)")
    parser.add_argument("--vision", action="store_true",
                        help="the lot's own vision worker deciding faces on the scripted camera meanwhile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = face_work_in_processes(niced=not args.not_niced) if args.face_load else contextlib.nullcontext()
    from lotcontrol.sim.rig import shared_folder

    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, load:
        camera = faces_script(Path(tmp), shared_folder()) if args.vision else None
        decoded, relayed, void, vision = trials(args.trials, Path(tmp), camera)
    after = os.getloadavg()
    what = [w for w, on in ((f"face work in 2 processes{' at nice 0' if args.not_niced else ', niced as the worker'}",
                             args.face_load),
                            ("the vision worker deciding faces", args.vision)) if on] or ["no face load"]
    result = {"load": " + ".join(what), "decoded": summary(decoded), "relay": summary(relayed), "void": void,
              "vision": vision, "loadavg_1min": [round(before[0], 1), round(after[0], 1)]}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"Wiegand 26-bit card, last pulse -> ({result['load']}; load average {before[0]:.1f} before, "
          f"{after[0]:.1f} after)")
    for label, figures in (("frame decoded (25 ms quiet gap + decode)", result["decoded"]),
                           ("gate relay on", result["relay"])):
        print(f"  {label:<42} p50 {figures['p50_ms']:>7.1f} ms   p99 {figures['p99_ms']:>7.1f} ms   "
              f"max {figures['max_ms']:>7.1f} ms   ({figures['trials']} trials)")
    if vision:
        print(f"  vision worker: {vision['decisions']} faces decided in {vision['seconds']} s, "
              f"{100 * vision['worker_cpu_share']:.0f} % of a core")
    if void:
        print(f"  ({void} trial(s) void: this process paused {VOID_GAP * 1000:g} ms or more inside a frame it played)")


if __name__ == "__main__":
    main()
