"""The fire watch in the controller: mock pins wired as normally closed loops, a fake 1-Wire tree,
and a clock the test moves."""

import json
import sys
import threading

import pytest

from lotcontrol.config import parse_config
from lotcontrol.messages import Command, Passage, WorkerGone
from lotcontrol.safety.probes import read_probe
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store

from .lots import pump, sim_lot, written

PROBE = "28-00000a1b2c3d"
SPRINKLER, CHARGER, SIREN, RELAY = 5, 23, 22, 17


@pytest.fixture
def factory():
    factory = simulated_factory()  # inputs read as closed loops until a test opens them
    yield factory
    factory.reset()


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "w1" / PROBE).mkdir(parents=True)
    (tmp_path / "w1" / PROBE / "temperature").write_text("22000")
    return tmp_path / "w1"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        yield store


def config(tree, notify=None, **fire):
    zone = {"name": "east", "sprinklers": [SPRINKLER], "probes": [PROBE], "charger_pin": CHARGER}
    return parse_config({"fire": {"zones": [zone], "siren_pin": SIREN, "w1_path": str(tree),
                                  "poll_seconds": 10, "stale_seconds": 60, **fire}, "notify": notify or {}})


def make(store, factory, tree, notify=None, **fire):
    c = sim_lot(config(tree, notify, **fire), store, factory).controller
    pump(c, 0.0)
    return c


def level(factory, pin):
    return factory.pin(pin).state


def outputs(factory):
    return {"charger": level(factory, CHARGER), "siren": level(factory, SIREN), "gate": level(factory, RELAY)}


def types(c):
    return [e.type for e in written(c)]


def probe(c, tree, celsius, now):
    (tree / PROBE / "temperature").write_text(str(int(celsius * 1000)))
    c.handle(read_probe(tree, PROBE, now), now)


def test_power_on_charging_only_once_the_zone_reads_normal(store, factory, tree):
    c = make(store, factory, tree)
    assert [s.state for s in factory.pin(CHARGER).states] == [False, True]  # off first, then on
    assert outputs(factory) == {"charger": True, "siren": False, "gate": False}
    assert types(c) == []
    c.close()
    assert outputs(factory) == {"charger": False, "siren": False, "gate": False}


def test_a_burst_cuts_charging_sounds_the_siren_and_holds_the_gate_open(store, factory, tree):
    c = make(store, factory, tree)
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.01)
    assert outputs(factory)["charger"] is True  # debounce: 20 ms
    pump(c, 0.03)
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    [alarm] = written(c)
    assert (alarm.type, alarm.details) == ("fire.alarm", {"zone": "east", "sensor": "sprinkler-1(GPIO5)",
                                                          "reading": "open"})
    c.tick(3600.0)
    assert outputs(factory)["gate"] is True  # held open, not a 5 s pulse


def test_a_bounce_shorter_than_the_debounce_is_ignored(store, factory, tree):
    c = make(store, factory, tree)
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.005)
    factory.pin(SPRINKLER).drive_low()
    pump(c, 0.010)
    pump(c, 0.1)
    assert types(c) == [] and outputs(factory)["charger"] is True


def test_faces_are_refused_during_an_alarm(store, factory, tree):
    anna = store.add_resident("Anna")
    c = make(store, factory, tree)
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    c.handle(Passage(1, "grant", anna.id, None, 0.3, 3, 0.0, 0.2), 1.0)
    denied = written(c)[-1]
    assert (denied.type, denied.resident, denied.details["reason"]) == ("access.denied", "Anna", "fire_alarm")


def test_reset_is_refused_while_the_loop_is_open_then_restores_everything(store, factory, tree):
    c = make(store, factory, tree)
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    answers = []
    c.handle(Command("fire.reset", {}, answers.append), 1.0)
    assert answers == [{"ok": False, "message": "reset refused, inputs still in alarm: east: sprinkler-1(GPIO5) (open)",
                        "code": "fire.reset_refused", "params": {"inputs": "east: sprinkler-1(GPIO5) (open)"}}]
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    factory.pin(SPRINKLER).drive_low()  # the unit replaced, the loop closed
    pump(c, 2.0)
    assert outputs(factory)["siren"] is True  # still latched
    c.handle(Command("fire.reset", {}, answers.append), 3.0)
    assert answers[-1] == {"ok": True, "message": "reset 1 zone(s)", "code": "fire.reset", "params": {"n": 1}}
    assert outputs(factory) == {"charger": True, "siren": False, "gate": False}
    assert types(c) == ["fire.alarm", "fire.reset"]


def test_a_probe_over_60_is_an_alarm_within_one_poll(store, factory, tree):
    c = make(store, factory, tree)
    probe(c, tree, 55.0, 1.0)
    assert outputs(factory) == {"charger": False, "siren": False, "gate": False}  # pre-alarm: this zone's power
    probe(c, tree, 61.5, 2.0)
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    assert [(e.type, e.details.get("reading")) for e in written(c)] == [("fire.prealarm", 55.0), ("fire.alarm", 61.5)]


def test_the_poller_reads_the_tree(store, factory, tree):
    c = make(store, factory, tree)
    (tree / PROBE / "temperature").write_text("85000")
    c.poller.poll()
    pump(c, 1.0)
    [fault] = written(c)
    assert (fault.type, fault.details["reading"]) == ("fire.fault", "85.000 °C power-on reset value")
    assert outputs(factory)["charger"] is False and outputs(factory)["siren"] is False


def test_a_fault_clears_itself_after_the_hold(store, factory, tree):
    c = make(store, factory, tree, hold_seconds=30)
    (tree / PROBE / "temperature").unlink()
    c.handle(read_probe(tree, PROBE, 1.0), 1.0)
    assert outputs(factory)["charger"] is False
    probe(c, tree, 22.0, 2.0)
    probe(c, tree, 22.0, 31.0)
    pump(c, 32.0)
    assert types(c) == ["fire.fault", "fire.cleared"]
    assert outputs(factory)["charger"] is True


def test_the_worker_dying_during_an_alarm_changes_no_output(store, factory, tree):
    from tests.test_controller import FakeWorker

    c = make(store, factory, tree)
    c.worker = worker = FakeWorker()
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    before = outputs(factory)
    c.handle(WorkerGone(1, -9), 1.0)
    pump(c, 1.0)
    assert worker.starts == 1
    assert outputs(factory) == before == {"charger": False, "siren": True, "gate": True}


def test_outputs_switch_while_the_database_is_read_only_and_events_arrive_later(store, factory, tree):
    c = make(store, factory, tree)
    store.db.execute("PRAGMA query_only = ON")
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    assert types(c) == []
    assert c.status(0.5)["events_waiting"] == 2  # the alarm, and that the store is degraded
    store.db.execute("PRAGMA query_only = OFF")
    pump(c, 1.0)
    assert types(c) == ["store.degraded", "fire.alarm", "store.restored"]
    assert written(c)[0].details["error"] == "attempt to write a readonly database"


def test_a_drill_runs_the_alarm_actions_and_is_logged_as_a_drill(store, factory, tree):
    c = make(store, factory, tree)
    answers = []
    c.handle(Command("fire.drill", {"zone": "west"}, answers.append), 1.0)
    assert answers == [{"ok": False, "message": "no fire zone 'west' (zones: east)", "code": "fire.no_zone",
                        "params": {"zone": "west", "known": "east"}}]
    c.handle(Command("fire.drill", {"zone": "east"}, answers.append), 1.0)
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    assert [(e.type, e.details) for e in written(c)] == [
        ("fire.drill", {"zone": "east"}),
        ("fire.alarm", {"zone": "east", "sensor": "drill", "reading": "drill", "drill": True})]
    c.handle(Command("fire.reset", {}, answers.append), 2.0)
    assert outputs(factory) == {"charger": True, "siren": False, "gate": False}


def test_fire_status(store, factory, tree):
    c = make(store, factory, tree)
    probe(c, tree, 23.5, 1.0)
    answers = []
    c.handle(Command("fire.status", {}, answers.append), 1.0)
    assert answers == [{"ok": True, "zones": [{
        "zone": "east", "state": "normal", "faults": {}, "charging": True, "drill": False,
        "contacts": {"sprinkler-1(GPIO5)": "closed"}, "probes": {PROBE: 23.5}}]}]


def test_staff_are_notified_by_command_with_retries(store, factory, tree, tmp_path):
    log = tmp_path / "notified.jsonl"
    tries = tmp_path / "tries"
    script = (f"import sys, pathlib; t = pathlib.Path({str(tries)!r}); n = int(t.read_text()) if t.exists() else 0; "
              f"t.write_text(str(n + 1)); sys.exit(1) if n == 0 else "
              f"open({str(log)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')")
    c = make(store, factory, tree, notify={"command": [sys.executable, "-c", script], "retries": 2})
    c.notifier.backoff = 0.0
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    c.notifier.drain()
    [sent] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (sent["type"], sent["zone"], sent["sensor"]) == ("fire.alarm", "east", "sprinkler-1(GPIO5)")
    assert tries.read_text() == "2"  # failed once, then delivered
    c.close()


def test_a_hanging_notify_command_never_delays_the_outputs(store, factory, tree):
    c = make(store, factory, tree, notify={"command": [sys.executable, "-c", "import time; time.sleep(30)"],
                                           "timeout_seconds": 0.5, "retries": 0})
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    c.notifier.drain()
    assert c.notifier.failed[0][1] == "no answer within 0.5 s"
    c.close()


def test_staff_are_reminded_while_the_alarm_stands(store, factory, tree, tmp_path):
    log = tmp_path / "notified.jsonl"
    script = f"import sys; open({str(log)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    c = make(store, factory, tree, notify={"command": [sys.executable, "-c", script]}, renotify_seconds=300)
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.05)
    pump(c, 299.0)
    pump(c, 300.1)
    pump(c, 450.0)
    pump(c, 600.2)
    c.notifier.drain()
    sent = [s for line in log.read_text().splitlines() if (s := json.loads(line))["type"].startswith("fire.alarm")]
    assert [s["type"] for s in sent] == ["fire.alarm", "fire.alarm.standing", "fire.alarm.standing"]
    assert sent[1]["zones"] == ["east"]
    c.close()


def test_a_cut_wire_or_an_unreadable_input_is_an_alarm_not_a_quiet_sensor(store, factory, tree):
    """The contacts are pulled up, so a wire that no longer holds the pin low reads high (alarm);
    and an input that cannot be read at all counts as open, never as closed."""
    c = make(store, factory, tree)
    pin = factory.pin(SPRINKLER)
    assert pin.pull == "up"
    line = next(line for line in c.inputs if line.name.startswith("sprinkler-1"))
    broken = type("Broken", (), {"is_active": property(lambda self: (_ for _ in ()).throw(OSError("gone"))),
                                 "closed": False, "close": lambda self: None})()
    line.device = broken  # the input stops answering (an expander off the bus, a driver error)
    pump(c, 1.1)  # the once-a-second re-read finds it
    pump(c, 1.2)  # and its debounce has passed
    assert [(e.type, e.details.get("sensor"), e.details.get("reading")) for e in written(c)] == [
        ("input.missed_edge", None, None), ("fire.alarm", "sprinkler-1(GPIO5)", "unreadable")]
    assert outputs(factory) == {"charger": False, "siren": True, "gate": True}
    assert not c.healthy()  # and the watchdog is no longer petted


def test_fire_commands_from_the_command_line(run, data_dir, tree):
    from lotcontrol.config import prepare_data_dir

    from .lots import running_lot

    factory = simulated_factory()
    with running_lot(config(tree), prepare_data_dir(data_dir), factory) as lot:
        assert run("fire", "status").output == (
            "east: NORMAL, charging on\n  sprinkler-1(GPIO5): closed\n  28-00000a1b2c3d: 22.0 °C\n")
        assert run("fire", "drill", "--zone", "east").output == (
            "drill in zone 'east': alarm actions on; end it with `lotcontrol fire reset`\n")
        assert run("fire", "reset").output == "reset 1 zone(s)\n"
        alarm = threading.Event()
        lot.observe(lambda message: lot.controller.fire.alarm and alarm.set())
        factory.pin(SPRINKLER).drive_high()
        assert alarm.wait(5)  # set by the loop once the contact's 20 ms debounce has passed
        result = run("fire", "reset")
        assert (result.exit_code, result.output) == (
            1, "Error: reset refused, inputs still in alarm: east: sprinkler-1(GPIO5) (open)\n")
        closed = threading.Event()
        lot.observe(lambda message: lot.controller.fire.zones["east"].contacts["sprinkler-1(GPIO5)"] and closed.set())
        factory.pin(SPRINKLER).drive_low()
        assert closed.wait(5)
        result = run("fire", "reset")
        assert (result.exit_code, result.output) == (0, "reset 1 zone(s)\n")


def test_start_up_order_outputs_first_charging_only_after_the_inputs(store, factory, tree, monkeypatch):
    """Each step of the root, in order: after the outputs (driven as outputs, off), before the
    inputs, nothing comes on and no input device exists; charging comes on only at the first
    evaluation, after the inputs; the store comes after the fire watch is up."""
    from lotcontrol.app import Lot
    from lotcontrol.sim.clock import SimClock

    seen = []
    lot = Lot(config(tree), None, pin_factory=factory, clock=SimClock(), store=store)
    for step in ("init_lock", "init_outputs", "init_inputs", "init_store", "start_vision", "start_control"):
        original = getattr(lot, step)

        def recorded(original=original, step=step):
            original()
            c = lot.controller
            seen.append((step, outputs(factory)["charger"], None if c is None else bool(c.inputs),
                         factory.pin(CHARGER).function if c is not None else None))
        monkeypatch.setattr(lot, step, recorded)
    lot.start()
    assert seen == [("init_lock", False, None, None), ("init_outputs", False, False, "output"),
                    ("init_inputs", True, True, "output"), ("init_store", True, True, "output"),
                    ("start_vision", True, True, "output"), ("start_control", True, True, "output")]
    assert [state for _, state in factory.pin(CHARGER).history] == [False, True]
    lot.stop()
    assert outputs(factory) == {"charger": False, "siren": False, "gate": False}


def test_staff_commands_name_who_gave_them_in_their_events(store, factory, tree):
    """The web console sends its user as ``by``: the drill, the reset and the gate's opening name them."""
    c = make(store, factory, tree)
    answers = []
    c.handle(Command("fire.drill", {"zone": "east", "by": "li"}, answers.append), 1.0)
    c.handle(Command("fire.reset", {"by": "wang"}, answers.append), 2.0)
    c.handle(Command("gate.open", {"by": "zhao"}, answers.append), 3.0)
    assert all(a["ok"] for a in answers), answers
    by = {e.type: e.details.get("by") for e in written(c)}
    assert (by["fire.drill"], by["fire.reset"], by["gate.manual_open"]) == ("li", "wang", "zhao")
    assert "by" not in [e for e in written(c) if e.type == "fire.alarm"][0].details
