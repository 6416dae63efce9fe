"""The safety core keeps its promises whatever else fails: one fault injected per test.

Each of these failed on the code before the safety-core change (commit 2639546): the loop ended on a
bad request or a failing handler, events were written on the loop, a restart forgot a latched alarm,
a missed edge stayed missed, and a second controller took over the first one's socket and pins.
"""

import contextlib
import json
import socket

import pytest

from lotcontrol.app import AlreadyRunning, Lot
from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.messages import BeamBroken, Command, ContactChange, Passage
from lotcontrol.safety import latch
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.faults import lock_database
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store

from .lots import pump, running_lot, sim_lot, written

SPRINKLER, CHARGER, SIREN, RELAY = 5, 23, 22, 17


def fire_config(**extra):
    return parse_config({"fire": {"siren_pin": SIREN, "zones": [
        {"name": "east", "sprinklers": [SPRINKLER], "charger_pin": CHARGER}]}, **extra})


@pytest.fixture
def factory():
    factory = simulated_factory()
    yield factory
    factory.reset()


def outputs(factory):
    return {"charger": factory.pin(CHARGER).state, "siren": factory.pin(SIREN).state, "gate": factory.pin(RELAY).state}


ALARM = {"charger": False, "siren": True, "gate": True}
NORMAL = {"charger": True, "siren": False, "gate": False}


def burst(c, factory, now=1.0):
    factory.pin(SPRINKLER).drive_high()
    pump(c, now)
    pump(c, now + 0.05)  # past the 20 ms debounce
    assert outputs(factory) == ALARM


def ask(data_dir, request: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(data_dir / "control.sock"))
        sock.sendall(request + b"\n")
        return json.loads(sock.makefile("rb").readline())


# 1. the loop survives any one message


@pytest.mark.parametrize("request_line, message", [
    (b'{"command": "gate.open", "args": {"seconds": "abc"}}', "gate.open: seconds: Input should be a valid number"),
    (b'{"command": "gate.open", "args": {"seconds": 9999}}', "gate.open: seconds: Input should be less than or equal to 600"),
    (b'{"command": "gate.open", "args": {"secs": 5}}', "gate.open: secs: Extra inputs are not permitted"),
    (b'{"command": "bays.set", "args": {"zone": "yard"}}', "bays.set: occupied: Field required"),
    (b'{"command": "fire.drill", "args": ["east"]}', "fire.drill: 'args' must be an object"),
    (b'{"command": "reboot"}', "unknown command 'reboot' (commands: bays.set, bays.status, card.read, charging.disable"),
    (b'[1, 2]', "a request is a JSON object with a 'command'"),
    (b'not json', "a request is one JSON object per line"),
])
def test_a_bad_control_request_gets_a_clear_answer_and_the_controller_goes_on(tmp_path, factory, request_line, message):
    data_dir = prepare_data_dir(tmp_path / "data")
    with running_lot(fire_config(), data_dir, factory) as lot:
        answer = ask(data_dir, request_line)
        assert answer["ok"] is False and answer["message"].startswith(message), answer
        assert ask(data_dir, b'{"command": "status"}')["ok"] is True  # the loop still answers
        assert not lot.controller.finished.is_set() and outputs(factory) == NORMAL


def test_a_failing_handler_is_an_event_and_the_alarm_outputs_stay(tmp_path, factory, monkeypatch):
    store = Store(tmp_path / "lot.db")
    config = parse_config({"fire": {"siren_pin": SIREN, "zones": [{"name": "east", "sprinklers": [SPRINKLER],
                                                                  "charger_pin": CHARGER}]},
                           "bays": {"zones": [{"name": "yard", "capacity": 3}],
                                    "beams": {"zone": "yard", "outer_pin": 20, "inner_pin": 21}}})
    c = sim_lot(config, store, factory).controller
    burst(c, factory)

    def broken(*args):
        raise RuntimeError("a bug in the bay logic")
    monkeypatch.setattr(c.bays, "beam", broken)
    c.handle(BeamBroken("outer", 2.0), 2.0)
    c.handle(object(), 2.0)  # a message nobody knows
    answers = []
    monkeypatch.setitem(c.COMMANDS, "status", lambda self, args, now: 1 / 0)
    c.handle(Command("status", {}, answers.append), 2.0)
    pump(c, 3.0)
    assert outputs(factory) == ALARM  # the siren sounds on, the gate stays released
    errors = [e.details for e in written(c) if e.type == "controller.error"]
    assert errors == [{"message": "BeamBroken", "error": "RuntimeError: a bug in the bay logic"},
                      {"message": "object", "error": "KeyError: <class 'object'>"},
                      {"message": "Command", "error": "ZeroDivisionError: division by zero"}]
    assert answers == [{"ok": False, "message": "the controller could not do 'status': division by zero",
                        "code": "controller.failed", "params": {"command": "status", "error": "division by zero"}}]
    assert c.status(3.0)["errors"] == 3


# 2. no disk or database I/O on the loop


def test_a_database_locked_by_another_process_never_stalls_the_loop(tmp_path, factory):
    data_dir = prepare_data_dir(tmp_path / "data")
    with Lot(fire_config(), data_dir, pin_factory=factory) as lot:  # the writer thread, as `run` has it
        c = lot.controller
        assert c.writer.flush(5)  # the writer thread has opened the database
        locker = lock_database(c.writer.store.path, 60)  # far past the store's 30 s busy timeout
        try:
            c.handle(ContactChange("east", f"sprinkler-1(GPIO{SPRINKLER})", False, 0.0), 0.0)
            c.tick(0.05)  # returns at once: the outputs switched, the event waits for the writer
            assert outputs(factory) == ALARM
            assert c.writer.waiting >= 1  # handed over, not written: the lock holds it back
        finally:
            locker.kill()
            locker.wait()
        assert c.writer.flush(timeout=40)
        assert [e.type for e in c.writer.store.events()] == ["fire.alarm"]


def test_a_snapshot_that_cannot_be_written_costs_the_snapshot_not_the_event(tmp_path, factory):
    store = Store(tmp_path / "lot.db")
    anna = store.add_resident("Anna")
    (tmp_path / "snapshots").write_text("a file where the folder should be")  # as good as a full disk
    c = sim_lot(parse_config({"events": {"snapshots": True}}), store, factory, data_dir=None).controller
    c.writer.snapshots = tmp_path / "snapshots"
    c.handle(Passage(1, "grant", anna.id, None, 0.3, 3, 0.0, 0.2, snapshot=b"\xff\xd8anna"), 1.0)
    pump(c, 1.0)
    [granted] = written(c)
    assert granted.type == "access.granted" and "snapshot" not in granted.details
    assert factory.pin(RELAY).state is True


# 3. safety state that survives restarts


def test_a_restart_keeps_a_latched_alarm_until_staff_reset(tmp_path, factory):
    data_dir = prepare_data_dir(tmp_path / "data")
    clock = SimClock()
    lot = Lot(fire_config(), data_dir, pin_factory=factory, clock=clock).start()
    pump(lot.controller, 0.0)
    burst(lot.controller, factory)
    factory.pin(SPRINKLER).drive_low()  # the contact reads normal again; the alarm stays latched
    pump(lot.controller, 2.0)
    assert outputs(factory) == ALARM
    lot.stop()  # a restart (the same happens after a crash: the file was written when it latched)
    assert json.loads((data_dir / latch.FILE_NAME).read_text()) == {"latched": {"east": {"drill": False}}}
    lot = Lot(fire_config(), data_dir, pin_factory=factory, clock=clock).start()
    c = lot.controller
    pump(c, 3.0)
    assert outputs(factory) == ALARM
    assert [e.details for e in written(c) if e.type == "fire.alarm.restored"] == [{"zone": "east"}]
    answers = []
    c.handle(Command("fire.reset", {}, answers.append), 4.0)
    pump(c, 4.0)
    assert answers[0]["ok"] and outputs(factory) == NORMAL
    assert json.loads((data_dir / latch.FILE_NAME).read_text()) == {"latched": {}}
    lot.stop()


def test_a_damaged_safety_state_file_latches_every_zone(tmp_path, factory):
    data_dir = prepare_data_dir(tmp_path / "data")
    (data_dir / latch.FILE_NAME).write_text("{not json")
    with Lot(fire_config(), data_dir, pin_factory=factory, clock=SimClock()) as lot:
        pump(lot.controller, 0.1)
        assert outputs(factory) == ALARM
        [restored] = [e.details for e in written(lot.controller) if e.type == "fire.alarm.restored"]
        assert restored["zone"] == "east" and "cannot be read" in restored["error"]


# 5. a missed edge is caught by the once-a-second re-read


def test_an_edge_no_callback_reported_is_found_within_a_second(tmp_path, factory):
    c = sim_lot(fire_config(), Store(tmp_path / "lot.db"), factory).controller
    pump(c, 0.0)
    line = next(line for line in c.inputs if line.name.startswith("sprinkler-1"))
    line.device.when_activated = line.device.when_deactivated = None  # the interrupt is lost
    factory.pin(SPRINKLER).drive_high()
    pump(c, 0.5)
    assert outputs(factory) == NORMAL  # nobody told the loop yet
    pump(c, 1.0)  # the re-read
    pump(c, 1.05)  # and the debounce
    assert outputs(factory) == ALARM
    assert [(e.type, e.details) for e in written(c)][:2] == [
        ("input.missed_edge", {"input": "sprinkler-1(GPIO5)", "state": False}),
        ("fire.alarm", {"zone": "east", "sensor": "sprinkler-1(GPIO5)", "reading": "open"})]


# 9. one controller per data directory


def test_a_second_controller_on_the_same_data_directory_is_refused_and_touches_nothing(tmp_path, factory, run):
    data_dir = prepare_data_dir(tmp_path / "data")
    with running_lot(fire_config(), data_dir, factory):
        other = simulated_factory()
        with pytest.raises(AlreadyRunning, match=rf"another controller \(PID \d+\) is running on {data_dir}"):
            Lot(fire_config(), data_dir, pin_factory=other).start()
        assert other.pins == {}  # refused before it touched a pin
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"")
        result = run("--data-dir", str(data_dir), "run", "--simulate", "--camera", str(clip), data_dir=False)
        assert result.exit_code == 1 and result.output.startswith("Error: another controller (PID ")
        assert (data_dir / "control.sock").exists()  # the first one's socket is still there
        assert ask(data_dir, b'{"command": "status"}')["ok"] is True  # and it still answers


class EmptyStore:
    """A store with nobody on file, for the writer's tests: what its thread reads at start, and a
    transaction that is only a context."""

    def residents(self):
        return []

    def credentials(self):
        return {}, {}

    def card_keys(self):
        return ()

    def lookalike_ids(self):
        return []

    def pass_keys(self):
        return ()

    def pass_directory(self):
        return {}, {}, {}

    def transaction(self):
        return contextlib.nullcontext()


def test_the_store_is_never_closed_under_a_writer_still_inside_it():
    """Found by the benchmark: a writer slowed past its close timeout (face work holding the GIL)
    had its SQLite connection closed under it, and the process died of SIGSEGV."""
    import datetime as dt
    import threading

    from lotcontrol.writer import EventJob, Writer

    inside, release = threading.Event(), threading.Event()

    class SlowStore(EmptyStore):
        closed = False

        def log_event(self, *args, **kwargs):
            inside.set()
            release.wait(10)

        def close(self):
            self.closed = True

    store = SlowStore()
    writer = Writer(store)
    writer.start()
    writer.put(EventJob("fire.alarm", None, {}, dt.datetime.now(dt.timezone.utc)))
    assert inside.wait(5)
    assert writer.close(timeout=0.05) is False and not writer.stopped
    release.set()
    writer._thread.join(5)
    assert writer.stopped and writer.close() is True


def test_a_failing_step_of_the_tick_stops_no_other_step_nor_the_gate_timer_and_stops_the_watchdog(
        tmp_path, factory, monkeypatch):
    """Found in review: one try around the whole tick let a step that always failed (the bay logic)
    keep the gate open for good, while the watchdog was still petted."""
    c = sim_lot(fire_config(), Store(tmp_path / "lot.db"), factory).controller
    pets = []
    monkeypatch.setattr("lotcontrol.controller.notify", lambda message: pets.append(message))
    c._watchdog = 1.0
    c.handle(Command("gate.open", {"seconds": 5}), 0.0)
    pump(c, 0.5)
    assert pets == ["WATCHDOG=1"]

    def broken(now):
        raise RuntimeError("bay logic bug")
    monkeypatch.setattr(c.bays, "update", broken)
    pump(c, 5.0)
    pump(c, 6.0)
    assert factory.pin(RELAY).state is False  # the gate's timer still ran
    burst(c, factory, 7.0)  # and the fire still switches the outputs
    assert pets == ["WATCHDOG=1"]  # no pet after a turn with a failed step: systemd will restart
    assert {e.details["message"] for e in written(c) if e.type == "controller.error"} == {"tick:bays"}


def test_a_job_that_cannot_be_done_is_dropped_not_retried_forever():
    """Found in review: an OSError from the hourly snapshot clean-up was retried at once, forever,
    and every event behind it waited."""
    import datetime as dt

    from lotcontrol.writer import CallJob, EventJob, Writer

    written_types = []

    class FakeStore(EmptyStore):
        def log_event(self, type, *args, **kwargs):
            written_types.append(type)

    def clean_up(store):
        raise FileNotFoundError("snapshots/x.jpg")
    writer = Writer(FakeStore())
    writer.put(CallJob("snapshot clean-up", clean_up))
    writer.put(EventJob("fire.alarm", None, {}, dt.datetime.now(dt.timezone.utc)))
    assert writer.flush()
    assert written_types == ["fire.alarm"] and writer.dropped == 1


def test_a_restored_alarm_notifies_staff_and_reminds_them(tmp_path, factory):
    import sys

    data_dir = prepare_data_dir(tmp_path / "data")
    (data_dir / latch.FILE_NAME).write_text('{"latched": {"east": {"drill": false}}}')
    out = tmp_path / "sent.jsonl"
    command = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')"]
    config = parse_config({"notify": {"command": command}, "fire": {"siren_pin": SIREN, "renotify_seconds": 10,
                                    "zones": [{"name": "east", "sprinklers": [SPRINKLER], "charger_pin": CHARGER}]}})
    with Lot(config, data_dir, pin_factory=factory, clock=SimClock()) as lot:
        c = lot.controller
        pump(c, 5.0)
        pump(c, 10.0)
        c.notifier.drain()
    sent = [json.loads(line)["type"] for line in out.read_text().splitlines()]
    assert sent == ["fire.alarm.restored", "fire.alarm.standing"]


def test_no_charging_until_every_probe_has_been_read(tmp_path, factory):
    """Found in review: the first evaluation ran before the first probe poll, so a zone whose probe
    read 75 °C had its charger switched on until the loop handled the reading."""
    tree = tmp_path / "w1"
    (tree / "28-00000a1b2c3d").mkdir(parents=True)
    (tree / "28-00000a1b2c3d" / "temperature").write_text("75000")
    config = parse_config({"fire": {"siren_pin": SIREN, "w1_path": str(tree), "zones": [
        {"name": "east", "probes": ["28-00000a1b2c3d"], "charger_pin": CHARGER}]}})
    lot = sim_lot(config, Store(tmp_path / "lot.db"), factory)
    assert [state for _, state in factory.pin(CHARGER).history] == [False]  # never on
    assert factory.pin(SIREN).state is True  # the first evaluation already saw 75 °C
    assert lot.controller.fire.zones["east"].level == "alarm"


def test_the_safety_state_thread_writes_the_latch_by_itself_before_any_stop(tmp_path, factory, monkeypatch):
    """Real clock, the thread as `run` has it: the latch reaches the disk with no flush or stop from
    anyone, so a death right after it (nothing flushed) restarts into the alarm."""
    import threading

    saved_by = []
    written = threading.Event()
    real_save = latch.save

    def save(path, latched):
        real_save(path, latched)
        saved_by.append(threading.current_thread().name)
        if latched:
            written.set()
    monkeypatch.setattr(latch, "save", save)
    data_dir = prepare_data_dir(tmp_path / "data")
    lot = Lot(fire_config(), data_dir, pin_factory=factory).start()
    alarm = threading.Event()
    lot.observe(lambda message: lot.controller.fire.alarm and alarm.set())
    thread = threading.Thread(target=lot.run)
    thread.start()
    try:
        factory.pin(SPRINKLER).drive_high()
        assert alarm.wait(5)
        assert written.wait(5) and saved_by == ["safety-state"]  # its own thread, unasked
        assert json.loads((data_dir / latch.FILE_NAME).read_text()) == {"latched": {"east": {"drill": False}}}
    finally:
        lot.controller.stop("the process dies")
        thread.join()
    old = lot.controller
    old._release_devices()  # the kernel releases the pins; nothing of the orderly stop runs
    lot.lock.close()
    old.latch.close()
    old.writer.close()
    factory.pin(SPRINKLER).drive_low()
    with Lot(fire_config(), data_dir, pin_factory=factory, clock=SimClock()) as again:
        pump(again.controller, 0.1)
        assert outputs(factory) == ALARM


def test_a_database_that_cannot_be_opened_at_start_never_holds_back_the_fire_watch(tmp_path, factory):
    """Found in review: the store was opened (30 s busy timeout, or a refusal to start on a damaged
    file) before the inputs, so a locked or damaged database left a latched alarm without siren or
    egress release, and a restart loop."""
    data_dir = prepare_data_dir(tmp_path / "data")
    (data_dir / "lotcontrol.db").write_bytes(b"this is not a database" * 100)
    (data_dir / "lotcontrol.db").chmod(0o600)
    (data_dir / latch.FILE_NAME).write_text('{"latched": {"east": {"drill": false}}}')
    with Lot(fire_config(), data_dir, pin_factory=factory) as lot:  # as `run` has it: no refusal
        assert outputs(factory) == ALARM  # the restored alarm is applied before the store is tried
        assert not lot.controller.writer.flush(5)  # cannot be written: kept in memory
        status = lot.controller.status(0.0)
        assert status["store_degraded"] and status["events_waiting"] >= 2
        assert lot.controller.writer.jobs[0].type == "store.degraded"
        assert "cannot be opened" in lot.controller.writer.jobs[0].details["error"]


def test_a_door_forced_just_before_a_grant_is_still_forced(tmp_path, factory):
    """Found in review: a door that began to open with the gate shut, and a grant arriving inside
    the door's 50 ms debounce, hid the forced door."""
    config = parse_config({"gate": {"door_pin": 26}})
    c = sim_lot(config, Store(tmp_path / "lot.db"), factory).controller
    pump(c, 1.0)
    factory.pin(26).drive_high()  # the door opens (forced) at 1.0
    pump(c, 1.01)
    c.handle(Command("gate.open", {"seconds": 5}), 1.02)  # staff open the gate a moment later
    pump(c, 1.1)  # the door's change settles now
    assert [e.type for e in written(c)] == ["gate.manual_open", "gate.forced"]
