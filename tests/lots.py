"""Lots for tests: started through the composition root (lotcontrol.app) on a simulated clock."""

import contextlib
import threading

from lotcontrol.app import Lot
from lotcontrol.sim.clock import SimClock


STARTED: list[Lot] = []  # stopped after each test (conftest.py), so no test leaves threads behind


def sim_lot(config, store, factory, data_dir=None, clock=None) -> Lot:
    """A started lot on a simulated clock at 0 s; stopped when the test ends."""
    lot = Lot(config, data_dir, pin_factory=factory, clock=clock or SimClock(), store=store).start()
    STARTED.append(lot)
    return lot


def pump(c, now):
    """Move the clock to ``now`` (never back), handle what the inputs posted, tick, and write what
    the controller handed to its writer and to the safety state file."""
    if now > c.clock.now():
        c.clock.advance_to(now)
    c.step(now)
    c.charging.flush()
    c.writer.flush()
    if c.faces_held:  # the writer has read the residents again for them: the loop's next turn decides them
        c.step(now)
        c.writer.flush()
    c.latch.flush()
    c.port_holds.flush()
    c.presence_file.flush()


def written(c):
    """The events in the database once the writer has written everything handed to it."""
    c.writer.flush()
    return c.writer.store.events()


@contextlib.contextmanager
def running_lot(config, data_dir, factory):
    """A lot as `lotcontrol run` has it (real clock, writer thread, control socket), its loop on a
    thread; stopped, and its thread joined, at the end."""
    lot = Lot(config, data_dir, pin_factory=factory, control_socket=True).start()
    thread = threading.Thread(target=lot.run, name="test-controller")
    thread.start()
    try:
        yield lot
    finally:
        lot.controller.stop("test over")
        thread.join()
        lot.stop()


class RecordingLink:
    """Takes what a lot's publisher (lotcontrol.fleet.publish.LotPublisher) hands to the MQTT link:
    ``heard`` holds each (topic, payload), for tests that check what would leave the lot."""

    dropped = 0

    def __init__(self):
        self.connected = threading.Event()
        self.heard: list[tuple[str, object]] = []

    def on_connect(self, callback):
        pass

    def topic(self, *parts):
        return "/".join(("lotcontrol", "lot", *parts))

    def publish(self, topic, payload, retain=False, qos=1):
        self.heard.append((topic, payload))


#: A lot with a Wiegand reader on GPIO5 (D0) and GPIO6 (D1), where residents may enter by card.
CARD_READER = {"access": {"mode": "face_or_card"}, "wiegand": {"d0_pin": 5, "d1_pin": 6}}


@contextlib.contextmanager
def card_reader_lot(data_dir, monkeypatch):
    """A running lot (``running_lot``) with the simulated reader of CARD_READER, its pins idle high;
    yields (lot, factory, armed): ``armed`` is set once the controller is asked to read a card
    (``card.read`` with seconds: `card add --read`, or the web page's button)."""
    from lotcontrol.config import parse_config
    from lotcontrol.controller import Controller
    from lotcontrol.sim.pins import simulated_factory

    armed = threading.Event()
    arm = Controller.COMMANDS["card.read"]

    def arming(self, args, now):
        answer = arm(self, args, now)
        if args.get("seconds") is not None:
            armed.set()
        return answer

    monkeypatch.setitem(Controller.COMMANDS, "card.read", arming)
    factory = simulated_factory()
    for pin in (5, 6):
        factory.pin(pin).drive_high()
    with running_lot(parse_config(CARD_READER), data_dir, factory) as lot:
        yield lot, factory, armed


def show_card(lot, factory, number: int, waiter: threading.Thread) -> None:
    """Show card ``number`` at the reader of ``card_reader_lot`` until the controller has taken it for the
    read under way, as staff would, ``waiter`` (the thread waiting for it) joined a second between shows.

    Each show is played whole under the reader's lock, before the reader's thread may look at it (this
    thread, preempted on a loaded machine between two pulses, would split the frame: a reader's hardware
    never pauses); even so a loaded machine can split one, which the reader rightly refuses: hence again."""
    from lotcontrol.sim.pins import pulse_train
    from lotcontrol.site.wiegand import card_frame

    for _ in range(60):
        waiting = lot.controller._card_read
        if waiting is None or waiting["digest"] is not None:
            break  # taken: a card shown now would be an entry
        with lot.controller.reader._cond:  # its edge callbacks take it (re-entrantly, on this thread)
            for _, pin, high in pulse_train(5, 6, card_frame(number), 0.0):
                factory.pin(pin).drive_high() if high else factory.pin(pin).drive_low()
        waiter.join(1.0)
