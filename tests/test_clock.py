"""The clock jumps: a Pi without a real-time clock boots in 1970 or in the past, then NTP steps the
wall clock. Timers run on monotonic time, events say whether their time was synchronised, and a
resident is never refused for a date while the date is not known."""

import ctypes
import json
import datetime as dt
import sqlite3

import pytest
from click.testing import CliRunner

import lotcontrol.clock
from lotcontrol import policy
from lotcontrol.clock import STA_UNSYNC, TIME_ERROR, Clock, kernel_synchronized
from lotcontrol.config import Config, parse_config
from lotcontrol.controller import Controller
from lotcontrol.messages import Command
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store

from .lots import pump, sim_lot
from .test_controller import factory, grant, relay_history as relay, store  # noqa: F401  (fixtures)

BOOT_1970 = dt.datetime(1970, 1, 1, 0, 0, 30, tzinfo=dt.timezone.utc)
TO_2026 = dt.timedelta(days=20785)  # 1970-01-01 -> 2026-11-28


def written(c):
    assert c.writer.flush()
    return c.writer.store.events()


# --- the kernel's word ---

def fake_adjtimex(returns, status):
    def adjtimex(pointer):
        pointer._obj.status = status
        return returns
    return adjtimex


@pytest.mark.parametrize("returns, status, synced", [
    (0, 0, True),                      # TIME_OK: NTP keeps the clock
    (1, 0, True),                      # TIME_INS (a leap second due): still synchronised
    (TIME_ERROR, STA_UNSYNC, False),   # boot without NTP: the kernel's default
    (0, STA_UNSYNC, False),            # the status bit alone
    (TIME_ERROR, 0, False),            # the return value alone
    (-1, 0, None),                     # the call failed: not known
])
def test_the_kernel_status_is_read_from_adjtimex(monkeypatch, returns, status, synced):
    monkeypatch.setattr(lotcontrol.clock, "_ADJTIMEX", fake_adjtimex(returns, status))
    assert kernel_synchronized() is synced


def test_the_real_adjtimex_answers_on_linux():
    adjtimex = lotcontrol.clock._adjtimex()  # the conftest hides it from the rest of the suite
    if adjtimex is None:
        pytest.skip("no adjtimex here (not Linux)")
    timex = lotcontrol.clock._Timex()
    assert adjtimex(ctypes.byref(timex)) >= 0  # read-only (modes 0): allowed without privileges


def test_the_clock_reads_the_kernel_at_most_every_few_seconds(monkeypatch):
    calls = []

    def adjtimex(pointer):
        calls.append(1)
        return TIME_ERROR

    monkeypatch.setattr(lotcontrol.clock, "_ADJTIMEX", adjtimex)
    now = [1000.0]
    monkeypatch.setattr(lotcontrol.clock.time, "monotonic", lambda: now[0])
    clock = Clock()
    assert [clock.synchronized() for _ in range(100)] == [False] * 100 and len(calls) == 1
    monkeypatch.setattr(lotcontrol.clock, "_ADJTIMEX", fake_adjtimex(0, 0))
    now[0] += lotcontrol.clock.SYNC_REFRESH_SECONDS
    assert clock.synchronized() is True


def test_the_sim_clock_steps_its_wall_time_alone():
    clock = SimClock(wall_start=BOOT_1970, synced=False)
    clock.advance_to(10.0)
    clock.step_wall(TO_2026)
    clock.sync()
    assert clock.now() == 10.0 and clock.synchronized()
    assert clock.wall() == BOOT_1970 + TO_2026 + dt.timedelta(seconds=10)
    clock.step_wall(-dt.timedelta(hours=5))
    clock.advance_to(11.0)
    assert clock.now() == 11.0 and clock.today() == dt.date(2026, 11, 27)


# --- validity dates ---

def test_a_resident_is_not_refused_for_a_date_while_the_clock_is_not_synchronised(store, factory):
    anna = store.add_resident("Anna", valid_from="2026-01-01", valid_until="2027-12-31")
    omar = store.add_resident("Omar", valid_until="2025-12-31")
    sam = store.add_resident("Sam", valid_from="2026-01-01")
    store.set_status("Sam", "suspended")
    clock = SimClock(wall_start=BOOT_1970, synced=False)
    c = Controller(Config(), store, pin_factory=factory, clock=clock)
    c.handle(grant(anna.id, 1), now=1.0)  # 1970 is before her valid_from: the old code refused her
    c.handle(grant(sam.id, 2), now=2.0)
    c.handle(grant(omar.id, 3), now=3.0)
    clock.advance_to(10.0)
    clock.step_wall(TO_2026)  # NTP sets the date
    clock.sync()
    c.handle(grant(anna.id, 4), now=10.0)
    c.handle(grant(omar.id, 5), now=11.0)
    seen = [(e.type, e.resident, e.details.get("reason"), e.details.get("validity_not_judged"), e.synced)
            for e in written(c) if e.type.startswith("access")]
    assert seen == [("access.granted", "Anna", None, True, False),
                    ("access.denied", "Sam", "suspended", None, False),  # suspended: refused whatever the clock
                    ("access.granted", "Omar", None, True, False),
                    ("access.granted", "Anna", None, None, True),
                    ("access.denied", "Omar", "expired", None, True)]  # judged once the date is known


def test_admission_without_a_date_judges_everything_but_the_dates():
    from lotcontrol.store import Resident

    def resident(status="active", **dates):
        return Resident(1, "Anna", None, None, None, status, dates.get("valid_from"), dates.get("valid_until"), "", "")

    def admit(r, today):
        return policy.admission("grant", None, fire_alarm=False, bays=policy.FREE, lot_full="refuse",
                                resident=r, today=today)

    assert admit(resident(valid_until="1999-01-01"), None) == policy.Admission(True, None, {"validity_not_judged": True})
    assert admit(resident(), None) == policy.Admission(True, None, {})  # no dates: nothing left unjudged
    assert admit(resident("suspended"), None).reason == "suspended"
    assert admit(resident(valid_until="1999-01-01"), dt.date(2026, 11, 28)).reason == "expired"
    assert policy.admission("grant", None, fire_alarm=True, bays=policy.FREE, lot_full="refuse",
                            resident=resident(), today=None).reason == "fire_alarm"


# --- timers do not move with the wall clock ---

@pytest.mark.parametrize("step", [dt.timedelta(days=3), -dt.timedelta(hours=5), dt.timedelta(days=20785)])
def test_the_gate_pulse_keeps_its_length_whatever_the_wall_clock_does(store, factory, step):
    anna = store.add_resident("Anna")
    clock = SimClock()
    c = Controller(Config(), store, pin_factory=factory, clock=clock)
    c.handle(grant(anna.id), now=100.0)
    clock.advance_to(101.0)
    clock.step_wall(step)
    c.tick(104.9)
    assert relay(factory) == [False, True]
    c.tick(105.0)
    assert relay(factory) == [False, True, False]


DOOR = {"gate": {"door_pin": 26, "buzzer_pin": 13, "held_open_seconds": 60.0, "debounce_seconds": 0.05}}


@pytest.mark.parametrize("step", [dt.timedelta(days=3), -dt.timedelta(hours=5)])
def test_debounce_and_door_held_open_keep_their_time_whatever_the_wall_clock_does(store, step):
    clock = SimClock()
    factory = simulated_factory(clock=clock.now)
    c = sim_lot(parse_config(DOOR), store, factory, clock=clock).controller
    c.inbox.put(Command("gate.open", {}))  # staff open the gate: the door may open
    pump(c, 10.0)
    factory.pin(26).drive_high()  # the door opens (the rig's "open")
    pump(c, 10.02)
    clock.step_wall(step)
    pump(c, 10.04)
    assert not c.door.is_open  # still within its 0.05 s debounce
    pump(c, 10.07)
    assert c.door.is_open
    clock.step_wall(-2 * step)
    pump(c, 69.9)
    assert not factory.pin(13).state  # the buzzer: not a minute yet since it opened
    pump(c, 70.2)
    assert factory.pin(13).state
    factory.reset()


def test_the_charging_limit_keeps_its_8_hours_whatever_the_wall_clock_does(store):
    config = parse_config({"fire": {"zones": [{"name": "east", "sprinklers": [5]}]},
                           "charging": {"ports": [{"id": "E1", "zone": "east", "bay": "east-1", "relay_pin": 24}]}})
    clock = SimClock()
    factory = simulated_factory(clock=clock.now)
    c = sim_lot(config, store, factory, clock=clock).controller
    pump(c, 1.0)
    assert factory.pin(24).state
    clock.step_wall(dt.timedelta(hours=36))
    pump(c, 3600.0)
    clock.step_wall(-dt.timedelta(days=3))
    pump(c, 28799.9)
    assert factory.pin(24).state
    pump(c, 28800.0)
    assert not factory.pin(24).state
    factory.reset()


# --- events: the marker, the chain, pruning ---

def test_events_say_whether_their_time_was_synchronised_and_the_chain_covers_it(store, factory):
    clock = SimClock(wall_start=BOOT_1970, synced=False)
    c = Controller(Config(), store, pin_factory=factory, clock=clock)
    c.event("gate.manual_open")
    clock.step_wall(TO_2026)
    clock.sync()
    c.event("gate.manual_open")
    first, second = written(c)[-2:]
    assert (first.synced, first.time[:4], first.shown_time[:5]) == (False, "1970", "~1970")
    assert (second.synced, second.time[:4], second.shown_time[:4]) == (True, "2026", "2026")
    assert store.verify_events()[1] is None
    store.db.execute("UPDATE events SET clock_synced = 1 WHERE id = ?", [first.id])  # passed off as synchronised
    assert f"event {first.id} " in store.verify_events()[1]


def test_an_older_database_is_migrated_and_its_events_read_as_synchronised(tmp_path):
    from lotcontrol import store as store_module

    path = tmp_path / "lot.db"
    with Store(path) as store:
        store.log_event("gate.manual_open", None, {"n": 1})
    db = sqlite3.connect(path)  # as the version before the marker left it: no marker, its hash without one
    db.execute("ALTER TABLE events DROP COLUMN clock_synced")
    for table in ("passes", "pass_uses", "pass_states"):  # what the migrations after it made
        db.execute(f"DROP TABLE {table}")
    for column in ("access_groups", "antipassback", "presence_reset"):
        db.execute(f"ALTER TABLE residents DROP COLUMN {column}")
    db.execute(f"PRAGMA user_version = {store_module.MIGRATIONS.index(store_module._migrate_clock_synced)}")
    db.commit()
    db.close()
    with Store(path) as store:
        [old] = store.events()
        assert old.synced is None and not old.unsynced and old.as_json()["clock_synced"] is True
        store.log_event("gate.manual_open", None, {"n": 2}, synced=False)
        assert store.verify_events() == (2, None)


def test_events_of_an_unsynchronised_clock_do_not_decide_what_is_pruned(tmp_path):
    """After a boot in 1970 the events of the first minutes carry 1970 times; once NTP has set the
    clock, pruning must not take them (and every event before them) for 56 years old."""
    times = iter([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc),
                  BOOT_1970, dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)])
    with Store(tmp_path / "lot.db", clock=lambda: next(times)) as store:
        store.log_event("gate.manual_open", None, {"n": 0})
        store.log_event("gate.manual_open", None, {"n": 1})
        store.log_event("gate.manual_open", None, {"n": 2}, synced=False)  # a boot without a real-time clock
        store.log_event("gate.manual_open", None, {"n": 3})
        assert store.prune_events("2026-03-01T00:00:00.000+00:00") == 1
        assert sorted(e.details["n"] for e in store.events()) == [1, 2, 3]  # the old code kept only 3
        assert store.verify_events()[1] is None


def test_events_are_not_pruned_while_the_clock_is_not_synchronised(store, factory):
    clock = SimClock(wall_start=dt.datetime(2040, 1, 1, tzinfo=dt.timezone.utc), synced=False)  # far ahead
    store.log_event("gate.manual_open", None, {"n": 1})
    c = Controller(Config(), store, pin_factory=factory, clock=clock)
    c._prune_old_events(store)
    assert [e.type for e in store.events()] == ["gate.manual_open"]
    clock.sync()
    c._prune_old_events(store)
    assert [e.type for e in store.events()] == ["events.pruned"]


def test_the_events_command_marks_unsynchronised_times(tmp_path):
    from lotcontrol.cli import cli

    with Store(tmp_path / "lotcontrol.db") as store:
        store.log_event("gate.manual_open", None, {}, time=BOOT_1970, synced=False)
        store.log_event("gate.manual_open", None, {}, time=BOOT_1970 + TO_2026, synced=True)
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "events"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "~1970-01-01T00:00:30.000+00:00" in lines[0] and "~" not in lines[1]
    assert lines[2].startswith("~ the clock was not synchronised")
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "events", "--json"])
    assert '"clock_synced": false' in result.output and '"clock_synced": true' in result.output


def test_the_hub_marks_a_lots_unsynchronised_event_times(run, tmp_path):
    from lotcontrol.hub.store import open_hub

    (tmp_path / "hub").mkdir(mode=0o700)
    with open_hub(tmp_path / "hub") as hub:
        for time, details in [("1970-01-01T00:00:30.000+00:00", {"clock_synced": False}), ("2026-11-28T09:00:00.000+00:00", {})]:
            hub.db.execute("INSERT INTO hub_lot_events (lot, time, type, resident, details) VALUES (?, ?, ?, ?, ?)",
                           ["A", time, "gate.manual_open", None, json.dumps(details)])
        hub.db.execute("INSERT INTO hub_lot_state (lot, key, payload, received) VALUES ('A', 'status', 'online', ?)",
                       ["2026-11-28T09:00:00.000+00:00"])
        hub.db.commit()
    lines = run("--hub", tmp_path / "hub", "events", "--lot", "all", data_dir=False).output.splitlines()
    assert lines[0].startswith("~1970-01-01T00:00:30.000+00:00  A ") and lines[1].startswith("2026-11-28T09")


def test_snapshots_are_not_cleaned_up_while_the_clock_is_not_synchronised(store, factory, tmp_path):
    import os
    import time

    folder = tmp_path / "snapshots"
    folder.mkdir()
    old = folder / "x.jpg"
    old.write_bytes(b"\xff\xd8")
    then = time.time() - 400 * 86400  # older than events.retention_days by the machine's clock
    os.utime(old, (then, then))
    clock = SimClock(synced=False)
    c = Controller(Config(), store, pin_factory=factory, clock=clock, snapshots=folder)
    c._delete_old_snapshots(store)
    assert old.exists()
    clock.sync()
    c._delete_old_snapshots(store)
    assert not old.exists()


def test_asking_the_kernel_starts_no_process():
    """The clock's libc comes from the process's own symbols: ctypes.util.find_library("c") ran
    `ldconfig -p` in a child at the import of every command and of the controller (and a test that
    kills a command's process group took it for one of its workers)."""
    import subprocess
    import sys

    code = ("import subprocess\n"
            "def refuse(*a, **k): raise AssertionError(f'a process was started: {a}')\n"
            "subprocess.Popen = refuse\n"
            "import lotcontrol.clock as c\n"
            "assert c._ADJTIMEX is not None and c.kernel_synchronized() in (True, False)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
