"""A port's logic runs only when it is due (``Port.due_at``; lotcontrol.charging.ports): driven by
the same random inputs, the due-only ports and the ports as they were run before (every port's
logic at every turn, their demands taken afresh each time) give the same changes, the same relay
demands and the same status at every turn, and the due-only ones skip most of the work."""

import dataclasses
import random

import pytest

from lotcontrol.charging.ports import ChargingPorts
from lotcontrol.charging.sessions import DUE_EARLY, REASONS
from lotcontrol.config import parse_config
from lotcontrol.messages import MeterReading, Reading
from lotcontrol.sim.pins import simulated_factory

PROBE_E, PROBE_W = "28-0000000000e1", "28-0000000000f1"
TURNS = 3000


class AlwaysRun(ChargingPorts):
    """The ports as the loop ran them before ``due_at``: every port's logic at every turn."""

    def update(self, now, zone_allows):
        changes = []
        for port in self.ports.values():
            changes += port.update(now, zone_allows.get(port.settings.zone, False))
        return changes

    def demands(self):
        return {port.id: (port.settings.zone, port.wants_power) for port in self.ports.values()}


def settings():
    """Eight ports of every kind, with limits short enough that a few thousand turns reach them all."""
    short = {"full_minutes": 1.0, "no_load_minutes": 0.5, "max_hours": 0.1, "max_watts": 600.0}
    ports = [
        {"id": "E1", "zone": "east", "relay_pin": 5, "meter": {"bus": "rs485", "unit": 1}, "probe": PROBE_E, **short},
        {"id": "E2", "zone": "east", "relay_pin": 6, "meter": {"bus": "rs485", "unit": 2}, "resident": "Anna Berg",
         **short},
        {"id": "E3", "zone": "east", "relay_pin": 12, "probe": PROBE_E, **short},  # no meter: timer and fire
        {"id": "E4", "zone": "east", "relay_pin": 13, "meter": {"bus": "rs485", "unit": 4}, "enabled": False, **short},
        {"id": "W1", "zone": "west", "relay_pin": 16, "meter": {"bus": "rs485", "unit": 5}, "probe": PROBE_W, **short},
        {"id": "W2", "zone": "west", "relay_pin": 19, "meter": {"bus": "rs485", "unit": 6}, "resident": "Omar Haddad",
         "max_hours": 0.2},
        {"id": "W3", "zone": "west", "relay_pin": 20, "max_hours": 0.1},
        {"id": "W4", "zone": "west", "relay_pin": 21, "meter": {"bus": "rs485", "unit": 8}, "probe": PROBE_W, **short},
    ]
    config = parse_config({
        "fire": {"siren_pin": 22, "zones": [
            {"name": "east", "sprinklers": [26], "probes": [PROBE_E], "charger_pin": 23},
            {"name": "west", "sprinklers": [27], "probes": [PROBE_W], "charger_pin": 25}]},
        "charging": {"poll_seconds": 2.0, "meter_lost_polls": 3, "buses": [{"name": "rs485", "port": "/dev/null"}],
                     "ports": [{"bay": p["id"].lower(), **p} for p in ports]}})
    return config.charging


def told(changes):
    """The changes as said: everything but the session's random key."""
    return [(c.type, c.details, None if c.session is None else {k: v for k, v in dataclasses.asdict(c.session).items()
                                                                   if k != "key"}) for c in changes]


@pytest.fixture
def both():
    factories = [simulated_factory(), simulated_factory()]
    old, new = AlwaysRun(settings(), 0.0, pin_factory=factories[0]), ChargingPorts(settings(), 0.0,
                                                                                   pin_factory=factories[1])
    yield old, new
    for ports, factory in ((old, factories[0]), (new, factories[1])):
        ports.close()
        factory.reset()


def test_the_due_only_ports_do_exactly_what_running_every_port_every_turn_did(both):
    old, new = both
    rng = random.Random(19)
    runs = []  # the due-only ports' logic runs, against the always-run ones' len(ports) a turn
    for port in new.ports.values():
        port.update = (lambda run: lambda now, allows: (runs.append(1), run(now, allows))[1])(port.update)
    allows = {"east": True, "west": True}
    kwh = {port_id: 10.0 for port_id in new.ports}
    load = {port_id: 0.0 for port_id in new.ports}
    next_poll = {port_id: 0.0 for port_id in new.ports}
    reasons, now = set(), 0.0

    def same(changes_old, changes_new, what):
        assert told(changes_old) == told(changes_new), f"turn {turn} at {now}: {what}"
        reasons.update(c.details.get("reason") for c in changes_new)

    for turn in range(TURNS):
        pick = rng.random()
        if pick < 0.4:
            now += 0.05  # the loop's idle ticks
        elif pick < 0.85:
            now += rng.uniform(0.5, 3.0)
        elif pick < 0.94:
            now += rng.uniform(3.0, 12.0)
        elif pick < 0.95:
            now += rng.uniform(12.0, 300.0)
        else:  # a due time to the instant, or just before or after it: the limits compared exactly
            dues = [p.due_at + DUE_EARLY for p in new.ports.values() if now < p.due_at + DUE_EARLY < float("inf")]
            if dues:
                now = min(dues) + rng.choice([0.0, 0.0, -1e-9, 1e-9, -DUE_EARLY / 2])
        # the messages of the turn, as the controller hands them on before its tick: each meter read
        # every poll (now and then silent, or answering nonsense), its load holding for a while (a
        # bike charging, tapering, full, nothing plugged in)
        for port_id in new.ports:
            if rng.random() < 0.01:
                tapers = load[port_id] > 10.0 and rng.random() < 0.5  # a battery nearly full
                load[port_id] = 5.0 if tapers else rng.choice([0.0, 1.0, 3.0, 5.0, 20.0, 150.0, 300.0, 700.0, 1300.0])
            if now < next_poll[port_id]:
                continue
            next_poll[port_id] = now + 2.0
            if rng.random() < 0.95:
                watts = load[port_id]
                kwh[port_id] += watts * rng.uniform(0.0, 3.0) / 3.6e6
                reading = MeterReading(port_id, watts, kwh[port_id], 230.0, watts / 230, None, now)
            elif rng.random() < 0.7:
                reading = MeterReading(port_id, None, None, None, None, "no answer", now)
            else:
                continue  # the poller's reading never came
            same(old.meter(reading, now), new.meter(reading, now), f"meter {port_id}")
        if rng.random() < 0.03:
            celsius = rng.choice([22.0, 40.0, 46.0, None])
            probe = Reading(rng.choice([PROBE_E, PROBE_W]), celsius, None if celsius else "no answer", now)
            same(old.probe(probe, now), new.probe(probe, now), "probe")
        if rng.random() < 0.006:
            zone = rng.choice(["east", "west"])
            allows[zone] = not allows[zone]
        if rng.random() < 0.08:  # staff, and residents enabling their port for the next bike
            port_id, action = rng.choice(list(new.ports)), rng.choice(["stop", "disable", "enable", "enable", "enable"])
            if action == "enable":
                results = [ports.enable(port_id, now, lambda zone: allows[zone]) for ports in (old, new)]
                assert results[0][:2] == results[1][:2]
                same(results[0][2], results[1][2], f"enable {port_id}")
            else:
                results = [ports.stop(port_id, now, disable=action == "disable") for ports in (old, new)]
                assert results[0][0] == results[1][0]
                same(results[0][1], results[1][1], f"{action} {port_id}")
        if rng.random() < 0.005:
            sessions = [(f"k{turn}", port_id, rng.uniform(0.0, 12.0), 0.1, 100.0)
                        for port_id in rng.sample(list(new.ports), 2)]
            same(old.resume(sessions, now), new.resume(sessions, now), "resume")
        if rng.random() < 0.003:
            same(old.interrupt(now), new.interrupt(now), "interrupt")
        # the tick: the fire watch's verdict and the clock
        same(old.update(now, dict(allows)), new.update(now, dict(allows)), "update")
        assert old.demands() == new.demands(), f"turn {turn}: the relays' demands"
        assert old.status(now) == new.status(now), f"turn {turn}: the status"
    # every way a session ends was reached (seed 19: each 1 to 25 times); the ports' logic ran about
    # 40 % as often as always-run did, though every meter here is read every 2 s (in the soak's lot,
    # an idle meter every 5 minutes)
    assert set(REASONS) <= reasons | {None}
    assert len(runs) < 0.6 * TURNS * len(new.ports)


def test_a_port_is_due_at_its_timer_and_its_silent_meters_limit_and_at_once_after_an_input(both):
    _, ports = both
    e1, e3 = ports.ports["E1"], ports.ports["E3"]
    ports.update(0.0, {"east": True, "west": True})
    assert e3.session is not None and e3.due_at == pytest.approx(0.1 * 3600 - DUE_EARLY)  # on its timer
    assert e1.due_at == pytest.approx((3 + 1) * 2.0 - DUE_EARLY)  # a meter never read: lost after 4 polls' time
    ports.meter(MeterReading("E1", 0.0, 1.0, 230.0, 0.0, None, 1.0), 1.0)
    assert e1.due_at == float("-inf")  # an input: its logic runs at the next turn
    ports.update(1.0, {"east": True, "west": True})
    assert e1.due_at == pytest.approx(1.0 + 8.0 - DUE_EARLY)
    assert ports.update(2.0, {"east": True, "west": True}) == []  # nothing due
    assert [c.details["reason"] for c in ports.update(2.0, {"east": False, "west": True})] == ["fire"]  # E3 cut
