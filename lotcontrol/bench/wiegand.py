"""The Wiegand reader on real threads: a card's frame decoded after its last pulse, and the gate relay
after it (issue 20's targets: a frame decoded within 30 ms of its last bit, a credential at the relay in
100 ms p99).

The lot runs as `lotcontrol run` starts it (lotcontrol.app: the controller's loop on its thread, the
reader's own thread, the writer thread), on simulated pins on the real clock. Each trial plays a
resident's 26-bit card as a reader sends it (50 µs low pulses, 2 ms apart) from this thread, then
reads the times the pins and the reader kept: the last pulse's edge (the pin factory's ticks), the
frame's decoding (the reader's thread), the relay's change. ``--face-load`` runs face work flat out
in two processes meanwhile (as the vision worker would: both cores busy).

    python -m lotcontrol.bench.wiegand [--trials 200] [--face-load]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from pathlib import Path

from lotcontrol.app import Lot
from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.credentials import card_digest
from lotcontrol.sim.pins import pulse_train, simulated_factory
from lotcontrol.site.wiegand import Card, card_frame
from lotcontrol.store import Store

from .fire import face_work_in_processes, summary, wait_for

D0, D1, RELAY = 5, 6, 17
CARD = Card(26, 0x123456)  # made up


VOID_GAP = 0.015  # s: a pause this long inside a played frame (this thread preempted) voids the trial


def play(factory, bits: list[int]) -> float:
    """The pulse train on the pins, in real time (each change at its time or as soon after as the
    machine lets this thread run: only the quiet gap after the last pulse matters to the decoder).
    Returns the longest pause between two changes: a reader's hardware never pauses, this thread can."""
    start = last = time.monotonic()
    longest = 0.0
    for at, pin, high in pulse_train(D0, D1, bits, start):
        while time.monotonic() < at:
            pass
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        factory.pin(pin).drive_high() if high else factory.pin(pin).drive_low()
    return max(longest, time.monotonic() - last)  # a pause before the last edge: a line held low meanwhile


def trials(count: int, tmp: Path) -> tuple[list[float], list[float], int]:
    """(decode latencies, relay latencies), seconds from the last pulse's edge, ``count`` cards; and
    how many trials were void (the playing thread paused inside a frame, splitting it)."""
    config = parse_config({"gate": {"open_seconds": 0.05}, "access": {"mode": "face_or_card"},
                           "wiegand": {"d0_pin": D0, "d1_pin": D1}})
    data_dir = prepare_data_dir(tmp / f"lot-{time.monotonic_ns()}")
    with Store.in_dir(data_dir) as store:
        store.add_resident("Bench Resident")
        store.add_card("Bench Resident", card_digest(store.card_key(), CARD))
    factory = simulated_factory()
    for pin in (D0, D1):
        factory.pin(pin).drive_high()
    decoded, relayed, void = [], [], 0
    with Lot(config, data_dir, pin_factory=factory) as lot:
        thread = threading.Thread(target=lot.run, name="controller", daemon=True)
        thread.start()
        try:
            lot.controller.writer.flush(30)
            wait_for(lambda: lot.controller.writer.directory.cards, 30)  # the card is known to the reader
            relay, reader = factory.pin(RELAY), lot.controller.reader
            while len(decoded) < count:
                wait_for(lambda: not relay.state)
                before = len(relay.history)
                if play(factory, card_frame(CARD.number)) >= VOID_GAP:
                    void += 1
                    wait_for(lambda: reader.frames.last is None)  # its pieces decoded (bad frames)
                    continue
                last_edge = max(factory.pin(D0).history[-1][0], factory.pin(D1).history[-1][0])
                wait_for(lambda: len(relay.history) > before and relay.state)
                first, done = reader.decoded[-1]
                decoded.append(done - first)
                relayed.append(relay.history[before][0] - last_edge)
        finally:
            lot.controller.stop("benchmark over")
            thread.join()
    return decoded, relayed, void


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--face-load", action="store_true", help="face work flat out in two processes meanwhile")
    args = parser.parse_args()
    load = face_work_in_processes() if args.face_load else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, load:
        decoded, relayed, void = trials(args.trials, Path(tmp))
    print("Wiegand 26-bit card, last pulse -> " + ("(face work in 2 processes)" if args.face_load else "(no face load)"))
    for label, figures in (("frame decoded (25 ms quiet gap + decode)", summary(decoded)),
                           ("gate relay on", summary(relayed))):
        print(f"  {label:<42} p50 {figures['p50_ms']:>7.1f} ms   p99 {figures['p99_ms']:>7.1f} ms   "
              f"max {figures['max_ms']:>7.1f} ms   ({figures['trials']} trials)")
    if void:
        print(f"  ({void} trial(s) void: this process paused {VOID_GAP * 1000:g} ms or more inside a frame it played)")


if __name__ == "__main__":
    main()
