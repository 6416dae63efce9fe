"""Schedules and anti-passback through the controller, on the simulated clock with the beams and the
exit button on mock pins: entry then exit, the state kept across a restart, staff resets, the fire
release, and the schedule's edge at midnight in Beijing time."""

import datetime as dt
import json

import pytest

from lotcontrol.config import parse_config
from lotcontrol.messages import Passage
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store

from .lots import STARTED, pump, sim_lot, written

OUTER, INNER, EXIT, RELAY, SPRINKLER = 20, 21, 19, 17, 5


@pytest.fixture
def factory():
    factory = simulated_factory()
    yield factory
    factory.reset()


def settings(beams=True, **access):
    return parse_config({
        "fire": {"zones": [{"name": "roof", "sprinklers": [SPRINKLER]}]},
        "bays": {"zones": [{"name": "yard", "capacity": 50}],
                 **({"beams": {"zone": "yard", "outer_pin": OUTER, "inner_pin": INNER}} if beams else {})},
        "gate": {"exit_pin": EXIT, "open_seconds": 5},
        "access": access,
    })


def lot(tmp_path, factory, *, clock=None, beams=True, **access):
    store = Store(tmp_path / "lot.db")
    factory.pin(EXIT).drive_high()  # the exit button is open at rest (pulled up)
    return sim_lot(settings(beams, **access), store, factory, data_dir=tmp_path, clock=clock).controller, store


def cross(c, factory, t, first, second):
    for pin, at in ((first, t), (second, t + 0.5)):
        pump(c, at)  # the beam's callback dates the break by the clock
        factory.pin(pin).drive_high()
        pump(c, at)
        factory.pin(pin).drive_low()
        pump(c, at + 0.1)


def walk_in(c, factory, t):
    cross(c, factory, t, OUTER, INNER)


def walk_out(c, factory, t):
    cross(c, factory, t, INNER, OUTER)


def press_exit(c, factory, t):
    pump(c, t)
    factory.pin(EXIT).drive_low()
    pump(c, t + 0.1)
    factory.pin(EXIT).drive_high()
    pump(c, t + 0.2)


def grant(resident_id, track=1):
    return Passage(track, "grant", resident_id, None, 0.3, 3, 0.0, 0.2)


def decisions(c):
    return [(e.type, e.details.get("reason"), e.details.get("antipassback"))
            for e in written(c) if e.type.startswith("access.")]


def ask(c, resident_id, t, track):
    """A face granted by the vision worker at ``t``: the policy decides."""
    pump(c, t)
    c.handle(grant(resident_id, track), t)
    pump(c, t)


def enter(c, factory, resident_id, t, track):
    ask(c, resident_id, t, track)
    walk_in(c, factory, t + 0.5)
    pump(c, t + 10)  # the gate shuts


def test_enforce_refuses_a_second_entry_until_the_beams_see_an_exit(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="enforce")
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    ask(c, anna.id, 20.0, 2)  # her card handed back over the fence, or her face again
    pump(c, 20.0)
    assert decisions(c)[-1] == ("access.denied", "antipassback", None)
    assert factory.pin(RELAY).state is False and c.status(20.0)["access"]["inside_residents"] == ["Anna"]
    walk_out(c, factory, 30.0)
    assert [e.type for e in written(c)][-2:] == ["bays.exit", "presence.exit"]
    assert written(c)[-1].resident == "Anna" and written(c)[-1].details == {"by": "beams"}
    ask(c, anna.id, 40.0, 3)
    assert decisions(c)[-1] == ("access.granted", None, None)
    store.close()


def test_the_same_passage_decided_again_while_the_gate_is_open_is_no_second_entry(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="enforce")
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    ask(c, anna.id, 1.0, 1)
    ask(c, anna.id, 1.5, 1)  # her face decided again while her grant holds the gate: nothing new
    assert decisions(c) == [("access.granted", None, None)] and factory.pin(RELAY).state is True
    store.close()


def test_with_beams_a_resident_granted_who_never_walks_in_is_not_counted_inside(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="enforce")
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    ask(c, anna.id, 1.0, 1)  # granted, and she turns away: the beams see nobody
    pump(c, 6.5)  # the gate shuts at 6 s
    ask(c, anna.id, 6.6, 2)  # her card passed back within the opening's grace: refused all the same
    assert decisions(c)[-1][:2] == ("access.denied", "antipassback")
    pump(c, 20.0)  # the opening is over without an entry
    assert c.status(20.0)["access"]["inside"] == 0
    ask(c, anna.id, 30.0, 3)
    assert decisions(c)[-1][:2] == ("access.granted", None)
    store.close()


def test_log_admits_the_second_entry_and_says_so(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="log")
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    enter(c, factory, anna.id, 20.0, 2)
    assert decisions(c) == [("access.granted", None, None), ("access.granted", None, True)]
    store.close()


def test_off_counts_nobody_and_a_residents_own_setting_overrides_the_site(tmp_path, factory):
    c, store = lot(tmp_path, factory)  # access.antipassback off
    anna, ben = store.add_resident("Anna"), store.add_resident("Ben")
    store.set_antipassback("Ben", "enforce")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    enter(c, factory, anna.id, 20.0, 2)
    enter(c, factory, ben.id, 40.0, 3)
    ask(c, ben.id, 60.0, 4)
    assert [d[:2] for d in decisions(c)] == [("access.granted", None)] * 3 + [("access.denied", "antipassback")]
    store.close()


def both_inside(tmp_path, factory):
    """Anna, then Ben, entered on an enforcing lot."""
    c, store = lot(tmp_path, factory, antipassback="enforce")
    anna, ben = store.add_resident("Anna"), store.add_resident("Ben")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    enter(c, factory, ben.id, 20.0, 2)
    return c, store, anna, ben


def test_exits_count_out_the_resident_inside_the_longest(tmp_path, factory):
    c, store, anna, ben = both_inside(tmp_path, factory)
    walk_out(c, factory, 40.0)
    assert c.status(41.0)["access"] == {"antipassback": "enforce", "inside": 1, "inside_residents": ["Ben"],
                                        "groups": {}}
    store.close()


def test_without_beams_the_exit_button_is_the_exit(tmp_path, factory):
    c, store = lot(tmp_path, factory, beams=False, antipassback="enforce")
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    ask(c, anna.id, 1.0, 1)
    pump(c, 10.0)
    press_exit(c, factory, 20.0)
    assert written(c)[-1].type == "presence.exit" and written(c)[-1].details == {"by": "exit_button"}
    ask(c, anna.id, 30.0, 2)
    assert decisions(c)[-1][0] == "access.granted"
    store.close()


def test_presence_survives_a_restart_and_staff_reset_it(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="enforce")
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    STARTED.pop().stop()  # the controller stops (its state files written)
    factory.reset()
    c, store = lot(tmp_path, factory, antipassback="enforce")
    pump(c, 0.5)
    ask(c, anna.id, 1.0, 2)
    assert decisions(c)[-1][:2] == ("access.denied", "antipassback")
    store.reset_presence("Anna")  # `lotcontrol edit Anna --reset-presence`, in the database
    pump(c, 5.0)  # the writer re-reads the residents (at most a second later)
    c.writer.refresh_directory()
    ask(c, anna.id, 6.0, 3)
    assert decisions(c)[-1][:2] == ("access.granted", None)
    store.close()


def test_a_damaged_presence_file_counts_nobody_inside_and_says_so(tmp_path, factory):
    (tmp_path / "presence.json").write_text("{not json")
    c, store = lot(tmp_path, factory, antipassback="enforce")
    cleared = [e.details for e in written(c) if e.type == "presence.cleared"]
    assert [d["by"] for d in cleared] == ["restart"] and "cannot be read" in cleared[0]["error"]
    assert c.status(1.0)["access"]["inside"] == 0
    store.close()


def test_presence_hours_count_a_resident_out_on_a_synchronised_clock(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="enforce", presence_hours=1)
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    ask(c, anna.id, 3500.0, 2)
    assert decisions(c)[-1][1] == "antipassback"
    ask(c, anna.id, 3602.0, 3)
    assert decisions(c)[-1][0] == "access.granted"
    store.close()


def test_a_fire_release_lets_everyone_out_and_counts_nobody_inside(tmp_path, factory):
    c, store = lot(tmp_path, factory, antipassback="enforce",
                   groups={"day": {"windows": ["mon-fri 09:00-17:00"]}})
    anna = store.add_resident("Anna")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    store.set_groups("Anna", ["day"])  # and it is Saturday: outside her windows
    factory.pin(SPRINKLER).drive_high()
    pump(c, 30.0)
    assert c.gate.held and factory.pin(RELAY).state is True  # released for egress whatever the schedule
    assert [e.details for e in written(c) if e.type == "presence.cleared"] == [{"by": "fire", "residents": 1}]
    assert c.status(31.0)["access"]["inside"] == 0
    store.close()


SATURDAY_EVE = dt.datetime(2026, 12, 5, 15, 59, 58, tzinfo=dt.timezone.utc)  # 23:59:58 in Beijing


def test_the_schedule_edge_at_midnight_beijing_time(tmp_path, factory):
    """Saturday 08:00-24:00 and nothing on Sunday, in site.timezone: a card at 23:59:59 opens, one at
    00:00:01 is refused as schedule; the lot's clock runs in UTC."""
    c, store = lot(tmp_path, factory, clock=SimClock(wall_start=SATURDAY_EVE),
                   groups={"weekend": {"windows": ["sat 08:00-24:00"]}})
    anna = store.add_resident("Anna")
    store.set_groups("Anna", ["weekend"])
    pump(c, 0.5)
    ask(c, anna.id, 1.0, 1)  # 23:59:59
    pump(c, 1.0)
    assert factory.pin(RELAY).state is True
    assert c.status(1.0)["access"]["groups"] == {"weekend": True}
    pump(c, 3.0)  # 00:00:01 on Sunday
    assert c.status(3.0)["access"]["groups"] == {"weekend": False}
    ask(c, anna.id, 3.0, 2)
    assert decisions(c) == [("access.granted", None, None), ("access.denied", "schedule", None)]
    store.close()


def test_before_ntp_a_resident_in_groups_is_refused_and_one_without_is_not(tmp_path, factory):
    clock = SimClock(wall_start=dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), synced=False)
    c, store = lot(tmp_path, factory, clock=clock, groups={"day": {"windows": ["daily 00:00-24:00"]}})
    anna, ben = store.add_resident("Anna"), store.add_resident("Ben")
    store.set_groups("Anna", ["day"])
    pump(c, 0.5)
    ask(c, anna.id, 1.0, 1)
    ask(c, ben.id, 2.0, 2)
    denied = [e for e in written(c) if e.type == "access.denied"][0]
    assert (denied.details["reason"], denied.details["clock_unsynced"]) == ("schedule", True)
    assert decisions(c)[-1][0] == "access.granted"
    assert c.status(3.0)["access"]["groups"] == {"day": None}
    clock.sync()
    ask(c, anna.id, 10.0, 3)
    assert decisions(c)[-1][0] == "access.granted"
    store.close()


def test_status_says_the_groups_and_who_is_counted_inside_and_nothing_where_neither_is_used():
    from lotcontrol.cli.status import access_lines

    assert access_lines({"antipassback": "off", "inside": 0, "inside_residents": [], "groups": {}}) == []
    assert access_lines({"antipassback": "enforce", "inside": 2, "inside_residents": ["Anna", "Ben"],
                         "groups": {"day": True, "night": False}}) == [
        "groups day open, night shut", "anti-passback enforce, 2 counted inside: Anna, Ben"]
    assert access_lines({"antipassback": "off", "inside": 0, "inside_residents": [], "groups": {"day": None}}) == [
        "groups day UNKNOWN (clock not synchronised: its residents are refused)"]


def test_a_removed_residents_record_is_dropped_and_takes_no_exit(tmp_path, factory):
    c, store, anna, ben = both_inside(tmp_path, factory)
    store.remove("Anna")  # erased everywhere: her presence record too
    c.writer.refresh_directory()
    walk_out(c, factory, 40.0)
    assert [(e.type, e.resident) for e in written(c)][-1] == ("presence.exit", "Ben")
    assert json.loads((tmp_path / "presence.json").read_text()) == {"latched": {}}  # nobody, no id left
    store.close()


def test_a_card_at_the_exit_reader_opens_the_gate_and_counts_its_resident_out_by_name(tmp_path, factory):
    from lotcontrol.messages import Credential

    store = Store(tmp_path / "lot.db")
    factory.pin(EXIT).drive_high()
    config = settings(antipassback="enforce").model_dump(exclude_none=True)
    config["wiegand"] = {"exit_d0_pin": 22, "exit_d1_pin": 23}
    c = sim_lot(parse_config(config), store, factory, data_dir=tmp_path).controller
    assert c.exit_reader is not None and c.reader is None
    anna, ben = store.add_resident("Anna"), store.add_resident("Ben")
    pump(c, 0.5)
    enter(c, factory, anna.id, 1.0, 1)
    enter(c, factory, ben.id, 20.0, 2)
    c.handle(Credential("exit", "known", ben.id, None, 40.0), 40.0)  # Ben leaves, though Anna came first
    pump(c, 40.0)
    assert factory.pin(RELAY).state is True
    assert [(e.type, e.resident, e.details) for e in written(c)][-2:] == [
        ("gate.exit", "Ben", {"by": "exit_reader"}), ("presence.exit", "Ben", {"by": "exit_reader"})]
    assert c.status(41.0)["access"]["inside_residents"] == ["Anna"]
    c.handle(Credential("exit", "unknown", None, None, 50.0), 50.0)  # leaving is never refused
    assert [(e.type, e.resident) for e in written(c)][-1] == ("gate.exit", None)
    store.close()


def test_an_exit_reader_needs_both_lines():
    from lotcontrol.errors import ConfigError

    with pytest.raises(ConfigError, match="exit_d0_pin and exit_d1_pin go together"):
        parse_config({"wiegand": {"exit_d0_pin": 22}})
    with pytest.raises(ConfigError, match="GPIO22 is used twice"):
        parse_config({"wiegand": {"exit_d0_pin": 22, "exit_d1_pin": 23}, "gate": {"exit_pin": 22}})
