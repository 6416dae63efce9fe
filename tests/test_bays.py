"""Bays, beams and door supervision: pure logic, then through the controller with mock pins."""


import pytest

from lotcontrol.config import parse_config
from lotcontrol.messages import Passage
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.site.bays import UNKNOWN, BayWatch
from lotcontrol.site.door import DoorWatch
from lotcontrol.store import Store

from .lots import pump, running_lot, sim_lot, written

BAY1, BAY2, OUTER, INNER, DOOR, EXIT, BUZZER = 12, 16, 20, 21, 26, 19, 13


def bays_config(**bays):
    return parse_config({"bays": {"zones": [{"name": "A", "bays": [BAY1, BAY2]},
                                            {"name": "yard", "capacity": 3}],
                                  "beams": {"zone": "yard", "outer_pin": OUTER, "inner_pin": INNER},
                                  **bays}}).bays


def watch(**bays):
    w = BayWatch(bays_config(**bays), 0.0)
    w.initial("A", "A-1(GPIO12)", False, 0.0)
    w.initial("A", "A-2(GPIO16)", True, 0.0)
    return w


def test_counts_after_the_hold_time():
    w = watch(hold_seconds=2)
    assert w.counts() == {"A": {"free": 1, "occupied": 1, "unknown": 0}, "yard": {"free": 3, "occupied": 0, "unknown": 0}}
    w.sensor("A", "A-1(GPIO12)", True, 10.0)
    w.update(11.9)
    assert w.counts()["A"]["free"] == 1
    w.update(12.0)
    assert w.counts()["A"] == {"free": 0, "occupied": 2, "unknown": 0}


def test_beam_order_gives_direction_and_counts_stay_within_capacity():
    w = watch()
    assert w.beam("outer", 1.0) is None
    entry = w.beam("inner", 1.4)
    assert (entry.type, entry.details) == ("bays.entry", {"zone": "yard", "occupied": 1})
    w.beam("inner", 5.0)
    assert w.beam("outer", 5.3).type == "bays.exit"
    w.beam("inner", 9.0)
    assert w.beam("outer", 9.3).details["occupied"] == 0  # never below 0
    for t in range(5):
        w.beam("outer", 20.0 + t)
        w.beam("inner", 20.2 + t)
    assert w.counts()["yard"] == {"free": 0, "occupied": 3, "unknown": 0}  # never above capacity
    w.beam("outer", 30.0)
    assert w.beam("inner", 36.0) is None  # too far apart: a new first break, not a passage


def test_staff_correct_a_count_within_bounds():
    w = watch()
    change = w.set_occupied("yard", 2)
    assert (change.type, change.details) == ("bays.count_set", {"zone": "yard", "occupied": 2, "was": 0})
    with pytest.raises(ValueError, match=r"zone 'yard' has 3 bays; occupied must be 0…3, not 4"):
        w.set_occupied("yard", 4)
    with pytest.raises(ValueError, match=r"zone 'A' is not counted by passages \(counted zones: yard\)"):
        w.set_occupied("A", 1)


def test_a_chattering_bay_is_unknown_and_reported_once_then_restored():
    w = watch(chatter_per_minute=5)
    events = []
    for i in range(8):
        w.sensor("A", "A-1(GPIO12)", i % 2 == 0, float(i))
        events += w.update(float(i))
    assert [(e.type, e.details["reason"]) for e in events] == [("bay.fault", "chattering (6 changes in a minute)")]
    assert w.bays["A"]["A-1(GPIO12)"].state == UNKNOWN
    assert w.counts()["A"] == {"free": 0, "occupied": 1, "unknown": 1}
    events = w.update(70.0)  # a quiet minute later
    assert [e.type for e in events] == ["bay.restored"]


def test_a_quiet_bay_is_suspect_and_still_counted_in_its_last_state():
    """A bike left for a long weekend is normal: the bay is reported, never made UNKNOWN (on
    today's code a quiet lot counted as full and locked every resident out)."""
    w = watch(stuck_hours=24)
    assert w.update(24 * 3600.0) == []
    events = w.update(24 * 3600.0 + 1)
    assert [(e.type, e.details) for e in events] == [
        ("bay.suspect", {"zone": "A", "bay": "A-1(GPIO12)", "state": "free", "reason": "no change for 24 h"}),
        ("bay.suspect", {"zone": "A", "bay": "A-2(GPIO16)", "state": "occupied", "reason": "no change for 24 h"})]
    assert w.counts()["A"] == {"free": 1, "occupied": 1, "unknown": 0}
    assert w.availability() == "free" and w.update(48 * 3600.0) == []  # reported once
    assert w.status(0.0)[0]["bays"][0]["suspect"] is True
    w.sensor("A", "A-1(GPIO12)", True, 50 * 3600.0)  # it moves again
    w.update(50 * 3600.0 + 3)
    assert not w.bays["A"]["A-1(GPIO12)"].suspect


def test_the_lot_is_full_only_when_every_bay_is_known_occupied():
    w = watch()
    w.set_occupied("yard", 3)
    assert w.availability() == "free"  # A-1 is free
    w.sensor("A", "A-1(GPIO12)", None, 1.0)  # unreadable: unknown, not free and not occupied
    events = w.update(1.0)
    assert [e.type for e in events] == ["bay.fault"]
    assert (w.availability(), w.lot_full) == ("unknown", False)
    w.sensor("A", "A-1(GPIO12)", True, 2.0)  # readable again, occupied
    events = w.update(4.0)
    assert [e.type for e in events] == ["bay.restored", "bays.full"]
    assert (w.availability(), w.lot_full) == ("full", True)


def test_door_forced_and_held_open():
    door = DoorWatch(held_open_seconds=15)
    assert door.door(True, 1.0, released=False) == [("gate.forced", {})]
    assert door.door(False, 2.0, released=False) == []
    assert door.door(None, 3.0, released=False) == [("gate.forced", {})]  # unreadable counts as open
    assert door.update(100.0, fire_hold=False) == []  # forced, not "held open after a release"
    door.door(False, 101.0, released=False)
    assert door.door(True, 200.0, released=True) == []
    assert door.update(214.9, fire_hold=False) == []
    assert door.update(215.0, fire_hold=False) == [("gate.held_open", {"open_seconds": 15.0})]
    assert door.held
    assert door.door(False, 230.0, released=False) == [("gate.closed", {"open_seconds": 30.0})]
    assert not door.held
    door.door(True, 300.0, released=True)
    assert door.update(400.0, fire_hold=True) == []  # held open by a fire release on purpose
    assert door.door(None, 401.0, released=False) == []  # still open: unreadable counts as open
    assert door.is_open


# --- through the controller ---


@pytest.fixture
def factory():
    factory = simulated_factory()
    yield factory
    factory.reset()


def controller(tmp_path, factory, **bays):
    config = parse_config({
        "bays": {"zones": [{"name": "A", "bays": [BAY1]}], "hold_seconds": 0, **bays},
        "gate": {"door_pin": DOOR, "exit_pin": EXIT, "buzzer_pin": BUZZER},
    })
    store = Store(tmp_path / "lot.db")
    factory.pin(BAY1)  # the bay sensor idles low: free
    factory.pin(EXIT).drive_high()  # the exit button is open at rest (pulled up)
    c = sim_lot(config, store, factory).controller
    return c, store


def grant(resident_id):
    return Passage(1, "grant", resident_id, None, 0.3, 3, 0.0, 0.2)


def test_lot_full_refuses_a_resident_who_would_be_admitted(tmp_path, factory):
    c, store = controller(tmp_path, factory)
    anna = store.add_resident("Anna")
    factory.pin(BAY1).drive_high()  # the only bay becomes occupied
    pump(c, 1.0)
    c.handle(grant(anna.id), 2.0)
    event = written(c)[-1]
    assert (event.type, event.resident, event.details["reason"]) == ("access.denied", "Anna", "lot_full")
    assert factory.pin(17).state is False
    factory.pin(BAY1).drive_low()
    pump(c, 3.0)
    c.handle(grant(anna.id), 4.0)
    assert written(c)[-1].type == "access.granted"
    store.close()


def test_lot_full_warn_admits_and_says_so(tmp_path, factory):
    c, store = controller(tmp_path, factory, lot_full="warn")
    anna = store.add_resident("Anna")
    factory.pin(BAY1).drive_high()
    pump(c, 1.0)
    c.handle(grant(anna.id), 2.0)
    event = written(c)[-1]
    assert (event.type, event.details["lot_full"]) == ("access.granted", True)
    store.close()


def test_the_exit_button_opens_the_gate_with_the_vision_worker_dead(tmp_path, factory):
    from tests.test_controller import FakeWorker
    from lotcontrol.vision.supervisor import WorkerGone

    c, store = controller(tmp_path, factory)
    c.worker = FakeWorker()
    c.handle(WorkerGone(1, -9), 0.5)
    factory.pin(EXIT).drive_high()  # pressed: the button's contact...
    factory.pin(EXIT).drive_low()   # ...closes to ground (pulled up, active low)
    pump(c, 1.0)
    assert factory.pin(17).state is True
    assert "gate.exit" in [e.type for e in written(c)]
    factory.pin(DOOR).drive_high()  # the door opens on the release: not forced
    pump(c, 2.0)
    assert "gate.forced" not in [e.type for e in written(c)]
    pump(c, 17.0)
    assert "gate.held_open" in [e.type for e in written(c)]
    assert factory.pin(BUZZER).state is True
    factory.pin(DOOR).drive_low()
    pump(c, 20.0)
    assert factory.pin(BUZZER).state is False
    door_events = [e.type for e in written(c) if e.type.startswith("gate.")]
    assert door_events == ["gate.exit", "gate.held_open", "gate.closed"]
    store.close()


def test_a_door_opened_without_a_release_is_forced(tmp_path, factory):
    c, store = controller(tmp_path, factory)
    factory.pin(DOOR).drive_high()
    pump(c, 1.0)
    assert [e.type for e in written(c)] == ["gate.forced"]
    store.close()


def test_status_and_bays_from_the_command_line(run, data_dir, factory):
    from lotcontrol.config import prepare_data_dir

    config = parse_config({"bays": {"zones": [{"name": "A", "bays": [BAY1]}, {"name": "yard", "capacity": 3}],
                                    "beams": {"zone": "yard", "outer_pin": OUTER, "inner_pin": INNER}}})
    with running_lot(config, prepare_data_dir(data_dir), factory) as lot:
        assert run("bays", "set", "--zone", "yard", "--occupied", "2").output == "zone 'yard': 2 occupied\n"
        result = run("bays", "set", "--zone", "yard", "--occupied", "9")
        assert (result.exit_code, result.output) == (1, "Error: zone 'yard' has 3 bays; occupied must be 0…3, not 9\n")
        output = run("bays").output
        assert output.startswith("A: 1 free, 0 occupied, 0 unknown\n  A-1(GPIO12): free for 0 min")
        assert "yard: 1 free, 2 occupied, 0 unknown\n" in output
        lot.controller.writer.flush()  # events are written by the writer thread
        status = run("status").output
        assert status.startswith("gate   SHUT\nbays   A: 1 free, 0 occupied\nbays   yard: 1 free, 2 occupied\n")
        assert "vision not running\n" in status and "bays.count_set" in status
