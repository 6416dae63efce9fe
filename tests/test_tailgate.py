"""One grant, one entry: the pure watch, then through the controller with the beams on mock pins."""

import pytest

from lotcontrol.config import parse_config
from lotcontrol.messages import Passage
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.site.tailgate import EntryWatch
from lotcontrol.store import Store

from .lots import pump, sim_lot, written

OUTER, INNER, EXIT, RELAY = 20, 21, 19, 17


def test_one_grant_allows_one_entry_and_the_second_is_a_tailgate():
    w = EntryWatch(grace_seconds=5)
    w.granted(0.0, 7)
    assert w.entry(1.0) is None
    details, picture = w.entry(2.0)
    assert details == {"entries": 2, "grants": 1, "residents": [7]} and picture is None


def test_two_grants_in_one_opening_allow_two_entries():
    w = EntryWatch(grace_seconds=5)
    w.granted(0.0, 7)
    w.granted(1.0, 8)
    assert w.entry(2.0) is None and w.entry(3.0) is None
    assert w.entry(3.5)[0]["entries"] == 3


def test_entries_count_until_the_grace_after_the_gate_shuts_and_not_after():
    w = EntryWatch(grace_seconds=5)
    w.granted(0.0, 7)
    w.shut(5.0)
    assert w.entry(6.0) is None
    assert w.entry(10.0) is not None  # still the same opening: 5 s after the gate shut
    w.granted(20.0, 8)
    w.shut(25.0)
    assert w.entry(26.0) is None
    assert w.entry(30.01) is None  # the opening is over: a door forced later is gate.forced, not this


def test_a_grant_during_the_grace_keeps_the_opening_and_adds_one():
    w = EntryWatch(grace_seconds=5)
    w.granted(0.0, 7)
    w.shut(5.0)
    w.granted(7.0, 8)
    assert w.entry(8.0) is None and w.entry(9.0) is None
    assert w.entry(9.5) is not None


def test_the_exit_button_allows_no_entry():
    w = EntryWatch(grace_seconds=5)
    w.opened(0.0, watched=True)
    details, _ = w.entry(1.0)
    assert details == {"entries": 1, "grants": 0, "residents": []}


def test_staff_and_fire_openings_are_not_watched_until_the_gate_shuts():
    w = EntryWatch(grace_seconds=5)
    w.opened(0.0, watched=False)
    w.granted(1.0, 7)  # a grant while staff hold it open changes nothing
    assert [w.entry(t) for t in (2.0, 3.0, 4.0)] == [None, None, None]
    w.shut(10.0)
    assert w.entry(12.0) is None
    w.granted(30.0, 7)  # a new opening after that one ended is watched again
    assert w.entry(31.0) is None and w.entry(32.0) is not None


def test_the_last_face_refused_in_the_opening_is_the_tailgates_picture():
    w = EntryWatch(grace_seconds=5)
    w.granted(0.0, 7)
    w.refused(1.0, ("denied.jpg", b"jpeg"))
    w.entry(2.0)
    _, picture = w.entry(3.0)
    assert picture == ("denied.jpg", b"jpeg")


@pytest.fixture
def factory():
    factory = simulated_factory()
    yield factory
    factory.reset()


SPRINKLER = 5


def lot(tmp_path, factory):
    config = parse_config({
        "fire": {"zones": [{"name": "roof", "sprinklers": [SPRINKLER]}]},
        "bays": {"zones": [{"name": "yard", "capacity": 50}],
                 "beams": {"zone": "yard", "outer_pin": OUTER, "inner_pin": INNER}},
        "gate": {"exit_pin": EXIT, "open_seconds": 5, "tailgate_grace_seconds": 5},
    })
    store = Store(tmp_path / "lot.db")
    factory.pin(EXIT).drive_high()  # the exit button is open at rest (pulled up)
    return sim_lot(config, store, factory).controller, store


def walk_in(c, factory, t):
    """One person through the outer, then the inner beam (broken = pin high)."""
    for pin, at in ((OUTER, t), (INNER, t + 0.5)):
        factory.pin(pin).drive_high()
        pump(c, at)
        factory.pin(pin).drive_low()
        pump(c, at + 0.1)


def enroll(c, store, *names):
    """Residents on file, and in the controller's directory (the writer reloads it)."""
    people = [store.add_resident(name) for name in names]
    pump(c, 0.1)
    return people


def grant(resident_id, track=1):
    return Passage(track, "grant", resident_id, None, 0.3, 3, 0.0, 0.2)


def types(c):
    return [e.type for e in written(c) if e.type.startswith(("access", "gate", "bays.entry"))]


def test_two_people_in_on_one_grant_is_a_tailgate_alarm(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    (anna,) = enroll(c, store, "Anna")
    c.handle(grant(anna.id), 1.0)
    walk_in(c, factory, 2.0)
    walk_in(c, factory, 3.0)
    assert types(c) == ["access.granted", "bays.entry", "bays.entry", "gate.tailgate"]
    assert written(c)[-1].details == {"entries": 2, "grants": 1, "residents": [anna.id]}
    store.close()


def test_two_residents_granted_then_two_entries_raise_nothing(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    anna, ben = enroll(c, store, "Anna", "Ben")
    c.handle(grant(anna.id, 1), 1.0)
    c.handle(grant(ben.id, 2), 1.5)
    walk_in(c, factory, 2.0)
    walk_in(c, factory, 3.0)
    assert "gate.tailgate" not in types(c)
    store.close()


def test_a_resident_held_by_their_own_passage_allows_one_entry_not_two(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    (anna,) = enroll(c, store, "Anna")
    c.handle(grant(anna.id), 1.0)
    c.handle(grant(anna.id), 1.4)  # the same passage decided again: the gate stays open, no new grant
    walk_in(c, factory, 2.0)
    walk_in(c, factory, 3.0)
    assert types(c)[-1] == "gate.tailgate"
    store.close()


def test_someone_slipping_in_while_the_exit_button_holds_the_gate_is_a_tailgate(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    factory.pin(EXIT).drive_low()  # pressed
    pump(c, 1.0)
    factory.pin(EXIT).drive_high()
    pump(c, 1.2)
    walk_in(c, factory, 2.0)
    assert types(c) == ["gate.exit", "bays.entry", "gate.tailgate"]
    store.close()


def test_a_staff_opening_counts_nobody(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    c.handle(grant(enroll(c, store, "Anna")[0].id), 0.5)
    c._cmd_gate_open({"seconds": 20}, 1.0)  # staff let a group through
    for t in (2.0, 3.0, 4.0):
        walk_in(c, factory, t)
    assert "gate.tailgate" not in types(c)
    store.close()


def test_entries_after_the_opening_and_its_grace_are_not_tailgates(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    c.handle(grant(enroll(c, store, "Anna")[0].id), 1.0)
    walk_in(c, factory, 2.0)
    pump(c, 6.0)  # the gate shuts at 6 s
    assert factory.pin(RELAY).state is False
    walk_in(c, factory, 20.0)  # long after: not this opening's
    assert "gate.tailgate" not in types(c)
    store.close()


def test_a_fire_release_counts_nobody(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    c.handle(grant(enroll(c, store, "Anna")[0].id), 0.5)
    factory.pin(SPRINKLER).drive_high()  # a bulb bursts: the gate is released and held
    pump(c, 1.0)
    assert c.gate.held
    for t in (2.0, 3.0, 4.0):
        walk_in(c, factory, t)
    assert "gate.tailgate" not in types(c) and types(c).count("bays.entry") == 3
    store.close()


def test_a_grant_at_the_card_reader_allows_one_entry_too(tmp_path, factory):
    c, store = lot(tmp_path, factory)
    (anna,) = enroll(c, store, "Anna")
    c._decided(True, anna.id, None, {"by": "card", "reader": "gate"}, 1.0)
    walk_in(c, factory, 2.0)
    walk_in(c, factory, 3.0)
    assert types(c) == ["access.granted", "bays.entry", "bays.entry", "gate.tailgate"]
    store.close()
