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
