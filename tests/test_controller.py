"""The controller's reactions, message by message, with mock pins and a clock the test moves."""

import datetime as dt
import json

import pytest
from gpiozero.pins.mock import MockFactory

from lotcontrol.config import Config, parse_config
from lotcontrol.controller import Controller
from lotcontrol.messages import CameraStatus, Command, GalleryLoaded, Heartbeat, Passage, WorkerGone
from lotcontrol.sim.clock import SimClock
from lotcontrol.store import Store
from lotcontrol.vision.supervisor import VisionWorker


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        yield store


def controller(store, factory, config=None, **kwargs):
    return Controller(config or Config(), store, pin_factory=factory, clock=SimClock(), **kwargs)


def grant(resident_id, track=1):
    return Passage(track, "grant", resident_id, None, 0.31, 3, 10.0, 10.4)


def relay_history(factory, pin=17):
    return [state.state for state in factory.pin(pin).states]


def events(c):
    """The events the controller handed to its writer, once written (no writer thread here)."""
    assert c.writer.flush()
    return [(e.type, e.resident, e.details) for e in c.writer.store.events()]


def test_the_relay_is_off_from_the_start(store, factory):
    c = controller(store, factory)
    assert relay_history(factory) == [False]
    assert factory.pin(17).function == "output" and not c.gate.is_open


def test_a_grant_opens_the_gate_for_open_seconds(store, factory):
    anna = store.add_resident("Anna")
    c = controller(store, factory)
    c.handle(grant(anna.id), now=100.0)
    assert relay_history(factory) == [False, True]
    c.tick(104.9)
    assert relay_history(factory) == [False, True]
    c.tick(105.0)
    assert relay_history(factory) == [False, True, False]
    [(type, name, details)] = events(c)
    assert (type, name) == ("access.granted", "Anna")
    assert details == {"distance": 0.31, "frames": 3, "duration": 0.4, "track": 1}


def test_a_second_grant_of_the_same_passage_extends_without_a_second_event(store, factory):
    anna = store.add_resident("Anna")
    c = controller(store, factory)
    c.handle(grant(anna.id, track=1), now=100.0)
    c.handle(grant(anna.id, track=2), now=103.0)
    c.tick(105.5)
    assert relay_history(factory) == [False, True]
    c.tick(108.0)
    assert relay_history(factory) == [False, True, False]
    assert [e[0] for e in events(c)] == ["access.granted"]
    c.handle(grant(anna.id, track=3), now=200.0)  # a new passage later
    assert [e[0] for e in events(c)] == ["access.granted", "access.granted"]


def test_another_resident_while_open_is_a_passage_of_their_own(store, factory):
    anna, ben = store.add_resident("Anna"), store.add_resident("Ben")
    c = controller(store, factory)
    c.handle(grant(anna.id), now=100.0)
    c.handle(grant(ben.id, track=2), now=101.0)
    assert [(e[0], e[1]) for e in events(c)] == [("access.granted", "Anna"), ("access.granted", "Ben")]
    c.tick(105.5)
    assert relay_history(factory) == [False, True]  # extended for Ben
    c.tick(106.0)
    assert relay_history(factory) == [False, True, False]


@pytest.mark.parametrize("fields, reason", [
    ({"status": "suspended"}, "suspended"),
    ({"valid_until": "2026-11-01"}, "expired"),
])
def test_a_resident_who_may_not_enter_is_denied_with_the_reason(store, factory, fields, reason):
    anna = store.add_resident("Anna", valid_until=fields.get("valid_until"))
    if "status" in fields:
        store.set_status("Anna", fields["status"])
    c = controller(store, factory)
    c.handle(grant(anna.id), now=1.0)
    assert relay_history(factory) == [False]
    [(type, name, details)] = events(c)
    assert (type, name, details["reason"]) == ("access.denied", "Anna", reason)


def test_a_resident_the_writer_has_not_read_yet_is_admitted_once_it_has_read_again_not_refused_as_removed(store, factory):
    """The vision worker reads the database itself: at start-up, or just after an enrollment, it can name a
    resident the writer's copy does not hold yet. The face waits for the writer to read again."""
    c = controller(store, factory)
    ben = store.add_resident("Ben")  # enrolled after the writer's last read
    c.handle(grant(ben.id), now=100.0)
    c.tick(100.0)
    assert relay_history(factory) == [False] and c.faces_held == 1  # not decided, and not refused
    assert c.next_deadline() <= 101.0  # the loop wakes for it at the latest when the wait ends
    assert c.writer.due_at() == c.clock.now()  # the re-read is due now (the rig's clock wakes for it)
    c.writer.write_due()  # the writer reads the residents again
    c.tick(100.05)
    assert relay_history(factory) == [False, True] and c.faces_held == 0
    assert [(e[0], e[1]) for e in events(c)] == [("access.granted", "Ben")]


def test_a_removed_resident_is_refused_after_the_writer_has_read_again(store, factory):
    anna = store.add_resident("Anna")
    c = controller(store, factory)
    store.remove("Anna")
    c.writer.refresh_directory()  # the writer has read the removal; the worker's gallery may still hold her a moment
    c.handle(grant(anna.id), now=100.0)
    assert c.faces_held == 1
    c.writer.write_due()
    c.tick(100.05)
    assert relay_history(factory) == [False]
    assert [(e[0], e[2]["reason"]) for e in events(c)] == [("access.denied", "resident_removed")]


def test_a_face_waits_at_most_residents_wait_for_a_writer_that_does_not_answer(store, factory):
    from lotcontrol.controller import RESIDENTS_WAIT

    c = controller(store, factory)
    ben = store.add_resident("Ben")
    c.handle(grant(ben.id), now=100.0)
    c.tick(100.0 + RESIDENTS_WAIT - 0.01)
    assert c.faces_held == 1
    c.tick(100.0 + RESIDENTS_WAIT)  # decided on the copy it has: he is not in it
    assert c.faces_held == 0 and relay_history(factory) == [False]
    assert [(e[0], e[2]["reason"]) for e in events(c)] == [("access.denied", "resident_removed")]


def test_faces_are_decided_in_the_order_they_came_a_known_one_waits_behind_a_held_one(store, factory):
    anna = store.add_resident("Anna")
    c = controller(store, factory)
    ben = store.add_resident("Ben")
    c.handle(grant(ben.id, track=1), now=100.0)
    c.handle(grant(anna.id, track=2), now=100.1)  # known, but Ben came first
    c.tick(100.1)
    assert c.faces_held == 2 and relay_history(factory) == [False]
    assert c.next_deadline() <= 101.0
    c.writer.write_due()
    assert c.next_deadline() == c.clock.now()  # answered: due at once (a simulated clock turns now)
    c.tick(100.2)
    assert c.faces_held == 0
    assert [(e[0], e[1], e[2]["track"]) for e in events(c)] == [("access.granted", "Ben", 1), ("access.granted", "Anna", 2)]


def test_a_face_held_when_the_loop_stops_is_still_decided_and_logged(store, factory):
    from lotcontrol.messages import Stop

    c = controller(store, factory)
    ben = store.add_resident("Ben")
    c.inbox.put(grant(ben.id))
    c.inbox.put(Stop("staff stopped it"))
    assert c.run() == "staff stopped it"
    assert c.faces_held == 0  # decided on the copy the loop has (the writer had not read again): no face lost
    assert [(e[0], e[2]["reason"], e[2]["track"]) for e in events(c)] == [("access.denied", "resident_removed", 1)]


def test_an_unknown_face_is_denied_once(store, factory):
    c = controller(store, factory)
    c.handle(Passage(4, "unknown", None, "no_match", 0.72, 8, 1.0, 2.0), now=1.0)
    assert relay_history(factory) == [False]
    assert events(c) == [("access.denied", None, {"reason": "no_match", "distance": 0.72, "frames": 8,
                                                       "duration": 1.0, "track": 4})]


def test_staff_open_the_gate_by_hand(store, factory):
    c = controller(store, factory)
    answers = []
    c.handle(Command("gate.open", {"seconds": 20}, answers.append), now=0.0)
    assert answers == [{"ok": True, "message": "gate open for 20 s", "code": "gate.opened", "params": {"seconds": "20"}}]
    c.tick(19.9)
    assert relay_history(factory) == [False, True]
    c.tick(20.0)
    assert relay_history(factory) == [False, True, False]
    assert events(c) == [("gate.manual_open", None, {"seconds": 20.0})]


def test_the_relay_pin_and_level_come_from_the_config(store, factory):
    config = parse_config({"gate": {"relay_pin": 5, "relay_active_high": False}})
    c = controller(store, factory, config)
    assert relay_history(factory, 5) == [False, True]  # active low: driven high ("off") at once
    c.handle(Command("gate.open", {}, lambda answer: None), now=0.0)
    assert relay_history(factory, 5) == [False, True, False]
    c.close()
    assert relay_history(factory, 5) == [False, True, False, True]


def test_close_leaves_the_gate_shut(store, factory):
    anna = store.add_resident("Anna")
    c = controller(store, factory)
    c.handle(grant(anna.id), now=0.0)
    c.close()
    c.close()
    assert relay_history(factory) == [False, True, False]


def test_camera_status_becomes_events(store, factory):
    c = controller(store, factory)
    c.handle(CameraStatus(False, "no frame from the camera"), now=0.0)
    c.handle(CameraStatus(True, "back"), now=5.0)
    assert [e[0] for e in events(c)] == ["camera.lost", "camera.restored"]


def test_the_gallery_and_its_risk_are_reported_and_in_status(store, factory, caplog):
    c = controller(store, factory)
    assert c.status(0.0)["gallery"] is None  # no worker has loaded one yet
    summary = {"residents": 1400, "templates": 1400, "accept_limit": 0.55, "max_stranger_rate": 0.005,
               "population": "general", "expected_stranger_rate": 0.0025, "expected_refused": 0.3, "lookalikes": 12,
               "risk_met": True}
    c.handle(GalleryLoaded(summary), now=1.0)
    assert c.status(1.0)["gallery"] == summary
    risky = {**summary, "population": "east_asian", "accept_limit": 0.3, "expected_stranger_rate": 0.16,
             "risk_met": False}
    c.handle(GalleryLoaded(risky), now=2.0)
    assert c.status(2.0)["gallery"]["risk_met"] is False
    assert [(e[0], e[2]["accept_limit"], e[2]["risk_met"]) for e in events(c)] == [
        ("vision.gallery", 0.55, True), ("vision.gallery", 0.3, False)]
    assert "no accept limit keeps the stranger risk at 0.005 for 1400 templates" in caplog.text


def test_a_worker_that_refuses_to_decide_is_an_event_and_the_controller_goes_on(store, factory, caplog):
    """faceres missing for the configured space (issue 18): the worker's refusal becomes
    vision.refused, without the gallery's risk report, and the loop handles what comes next."""
    c = controller(store, factory)
    refused = {"space": "fused", "refused": "faces are not matched, the gate stays shut for them: face model x is missing"}
    c.handle(GalleryLoaded(refused), now=1.0)
    c.handle(CameraStatus(False, "no frame from the camera"), now=2.0)
    assert [(e[0], e[2].get("refused")) for e in events(c)] == [("vision.refused", refused["refused"]),
                                                               ("camera.lost", None)]
    assert c.status(2.0)["gallery"] == refused
    assert "vision.refused: faces are not matched" in caplog.text


class FakeWorker(VisionWorker):
    """The real supervisor and its restart policy, with a process that is only counted."""

    def __init__(self):
        super().__init__(Config(), "/nonexistent", "clip.mp4", deliver=lambda message: None, clock=lambda: 0.0)
        self.generation = 1
        self.starts = self.killed = 0

    def start(self):
        self.starts += 1
        self.generation += 1

    @property
    def pid(self):
        return 4242

    def kill(self):
        self.killed += 1

    def stop(self, timeout=5.0):
        pass


def attach(c, worker):
    c.worker = worker
    return worker


def test_a_dead_worker_is_restarted_and_both_are_logged(store, factory):
    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    c.handle(WorkerGone(1, -9), now=10.0)
    c.tick(10.0)
    assert worker.starts == 1
    assert [(e[0], e[2]) for e in events(c)] == [("vision.died", {"exitcode": -9}),
                                                 ("vision.restarted", {"attempt": 1})]
    worker.last_heard = 10.0
    c.handle(WorkerGone(2, 1), now=11.0)  # dies again at once: the next restart waits a second
    c.tick(11.5)
    assert worker.starts == 1
    c.tick(12.0)
    assert worker.starts == 2


def test_a_silent_worker_is_killed_then_restarted(store, factory):
    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    worker.heard = True  # it had loaded its models and spoken: the heartbeat timeout applies
    c.tick(9.0)
    assert worker.killed == 0
    c.tick(10.5)
    assert worker.killed == 1
    c.tick(11.0)
    assert worker.killed == 1  # not twice while it dies
    c.handle(WorkerGone(1, -9), now=11.2)  # its pipe closes: restarted at once (first failure)
    c.tick(11.2)
    assert worker.starts == 1 and worker.generation == 2
    assert [e[0] for e in events(c)] == ["vision.stalled", "vision.died", "vision.restarted"]


def test_a_worker_still_loading_its_models_gets_the_start_up_allowance_not_the_heartbeat_timeout(store, factory):
    """On a busy machine (or a Pi reading its SD card) loading and checking the face models takes
    longer than a heartbeat: a worker killed for it would be killed at every restart, for ever."""
    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    assert worker.status(30.0)["starting"] is True and worker.status(30.0)["up"] is True
    c.tick(30.0)  # three heartbeat timeouts, still loading
    assert worker.killed == 0 and events(c) == []
    c.tick(120.5)  # vision.startup_timeout_seconds: it is stuck, not slow
    assert worker.killed == 1 and [e[0] for e in events(c)] == ["vision.stalled"]


def test_a_stale_message_from_an_old_worker_is_ignored(store, factory):
    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    worker.generation = 3
    c.handle(WorkerGone(2, 0), now=1.0)
    c.tick(1.0)
    assert worker.starts == 0 and events(c) == []


def test_events_wait_in_memory_while_the_database_is_locked(store, factory, tmp_path):
    anna = store.add_resident("Anna")
    c = controller(store, factory)
    c.writer.start()  # the writer thread, as lotcontrol run has it
    with Store(tmp_path / "lot.db") as other:
        other.db.execute("BEGIN EXCLUSIVE")
        store.db.conn.execute("PRAGMA busy_timeout = 0")
        c.handle(grant(anna.id), now=0.0)
        assert relay_history(factory) == [False, True]  # the gate did not wait for the database
        assert not c.writer.flush()  # tried, and kept in memory
        assert c.writer.degraded and c.status(0.0)["events_waiting"] == 2
        other.db.execute("ROLLBACK")
    assert [e[0] for e in events(c)] == ["store.degraded", "access.granted", "store.restored"]
    c.close()


def test_snapshots_are_private_deleted_with_the_resident_and_after_retention(store, factory, tmp_path):
    import os
    import stat

    anna = store.add_resident("Anna")
    config = parse_config({"events": {"snapshots": True, "retention_days": 7}})
    c = controller(store, factory, config, snapshots=tmp_path / "snapshots")
    c.handle(Passage(1, "grant", anna.id, None, 0.3, 3, 0.0, 0.2, snapshot=b"\xff\xd8anna"), now=0.0)
    c.handle(Passage(2, "unknown", None, "no_match", 0.7, 8, 0.0, 0.9, snapshot=b"\xff\xd8who"), now=1.0)
    c.writer.flush()
    granted, denied = store.events()
    anna_file = tmp_path / granted.details["snapshot"]
    other_file = tmp_path / denied.details["snapshot"]
    assert anna_file.read_bytes() == b"\xff\xd8anna"
    assert stat.S_IMODE(anna_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "snapshots").stat().st_mode) == 0o700
    store.remove("Anna")
    assert not anna_file.exists()
    assert "snapshot" not in store.events()[0].details
    foreign = tmp_path / "snapshots" / "copied-by-staff.jpg"  # not named by the writer: aged by its mtime
    foreign.write_bytes(b"\xff\xd8")
    os.utime(foreign, (0, 0))
    c.tick(10.0)
    c.writer.flush()
    assert other_file.exists() and not foreign.exists()
    # aged on the controller's clock, by the time in its name (the rig's simulated days age it too)
    c.clock.advance_to(8 * 86400.0)
    c.tick(8 * 86400.0)
    c.writer.flush()
    assert not other_file.exists()


def test_the_hourly_snapshot_clean_up_lists_the_folder_once_a_day(store, factory, tmp_path, monkeypatch):
    import os

    from lotcontrol import controller as module
    from lotcontrol.writer import snapshot_name

    folder = tmp_path / "snapshots"
    folder.mkdir()
    c = controller(store, factory, parse_config({"events": {"snapshots": True, "retention_days": 2}}),
                   snapshots=folder)
    start = c.clock.wall()
    for hour in range(-48, 48, 2):  # a file every two hours, from two days back to two days ahead
        (folder / snapshot_name(start + dt.timedelta(hours=hour, minutes=30), "granted", hour)).write_bytes(b"\xff\xd8")
    listings, scandir = [], os.scandir
    monkeypatch.setattr(module.os, "scandir", lambda path: listings.append(path) or scandir(path))
    for hour in range(48):
        c.clock.advance_to(hour * 3600.0)
        c._delete_old_snapshots(store)
        limit = start + dt.timedelta(hours=hour - 48)
        left = sorted(p.name for p in folder.iterdir())
        expected = sorted(snapshot_name(start + dt.timedelta(hours=h, minutes=30), "granted", h)
                          for h in range(-48, 48, 2) if start + dt.timedelta(hours=h, minutes=30) >= limit)
        assert left == expected, hour  # every hour, exactly what is older than retention_days is gone
    assert len(listings) == 2  # hour 0, and hour 24 when the first listing's horizon has passed


class Unreadable:
    """An input device whose reads fail (an expander off the bus, a driver error)."""

    closed = False

    @property
    def is_active(self):
        raise OSError("gone")

    def close(self):
        pass


def test_systemd_is_told_ready_and_the_watchdog_is_petted_only_while_the_fire_inputs_answer(
        store, factory, tmp_path, monkeypatch):
    import socket

    from lotcontrol.app import Lot

    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # pet every second
    config = parse_config({"gate": {"door_pin": 26},
                           "fire": {"zones": [{"name": "east", "sprinklers": [5], "charger_pin": 23}]}})
    lot = Lot(config, None, pin_factory=factory, clock=SimClock(), store=store).start()
    assert server.recv(100) == b"READY=1"
    c = lot.controller
    attach(c, FakeWorker()).last_heard = -100.0  # vision silent for long: not the watchdog's business
    c.tick(0.5)
    assert server.recv(100) == b"WATCHDOG=1"
    c.tick(1.0)  # not due yet
    door = c.site.door
    door.device = Unreadable()  # a door input that stops answering is an event, not a restart
    c.tick(2.0)
    assert server.recv(100) == b"WATCHDOG=1"
    sprinkler = c.devices.inputs[0]
    sprinkler.device = Unreadable()  # a fire input that stops answering: no more pets
    c.tick(12.0)
    server.settimeout(0.2)
    with pytest.raises(socket.timeout):
        server.recv(100)
    lot.stop()
    server.settimeout(2)
    assert server.recv(100) == b"STOPPING=1"
    server.close()


def test_events_older_than_keep_days_are_pruned_daily(store, factory):
    old = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    store.log_event("gate.manual_open", None, {}, time=old)
    c = controller(store, factory)
    c.tick(0.0)
    assert [e[0] for e in events(c)] == ["events.pruned"]
    assert events(c)[0][2]["deleted"] == 1
    assert store.verify_events() == (1, None)
    store.log_event("gate.manual_open", None, {}, time=old)
    c.tick(3600.0)  # not a day later yet
    assert len(events(c)) == 2


def test_a_worker_that_cannot_be_started_is_tried_again_with_back_off(store, factory):
    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    fail = [True]

    def start():
        if fail[0]:
            raise OSError("cannot fork")
        FakeWorker.start(worker)
    worker.start = start
    c.handle(WorkerGone(1, -9), now=10.0)
    c.tick(10.0)
    assert [e[0] for e in events(c)] == ["vision.died", "vision.restart_failed"]
    c.tick(10.5)  # 1 s back-off after the first failed attempt
    assert worker.starts == 0
    fail[0] = False
    c.tick(11.0)
    assert worker.starts == 1 and events(c)[-1][0] == "vision.restarted"


def test_a_lost_camera_is_in_status_until_frames_come_again(store, factory):
    from lotcontrol.messages import Heartbeat

    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    assert c.status(0.0)["camera"] == {"state": "ok", "since": None, "detail": None}
    c.handle(CameraStatus(False, "camera '/dev/video0' cannot be opened"), now=1.0)
    lost = c.status(1.0)["camera"]
    assert (lost["state"], lost["detail"]) == ("lost", "camera '/dev/video0' cannot be opened") and lost["since"]
    worker.last_heard = 2.0
    assert c.status(2.0)["vision"]["up"]  # the worker itself is well: vision alone would say ok
    c.handle(Heartbeat(30.0, 50, 0), now=30.0)  # the worker goes on without frames
    c.handle(CameraStatus(False, "still no camera"), now=40.0)  # a restarted worker reports it again
    assert (c.status(40.0)["camera"]["since"], c.status(40.0)["camera"]["detail"]) == (lost["since"], "still no camera")
    c.handle(Heartbeat(41.0, 0, 0), now=41.0)  # the restarted worker, no frame yet
    assert c.status(41.0)["camera"]["state"] == "lost"
    c.handle(Heartbeat(42.0, 5, 0), now=42.0)  # frames again; a new worker never reported it lost, so says nothing
    assert c.status(42.0)["camera"]["state"] == "ok"
    c.handle(Heartbeat(43.0, 9, 0), now=43.0)
    assert [e[0] for e in events(c)] == ["camera.lost", "camera.lost", "camera.restored"]


def test_frames_from_before_the_camera_was_lost_do_not_bring_it_back(store, factory):
    c = controller(store, factory)
    attach(c, FakeWorker())
    c.handle(Heartbeat(1.0, 100, 0), now=1.0)
    c.handle(Heartbeat(2.0, 105, 0), now=2.0)  # frames processed before the camera failed
    c.handle(CameraStatus(False, "camera '/dev/video0' cannot be opened"), now=5.0)
    c.handle(Heartbeat(6.0, 110, 0), now=6.0)  # counted before the loss was heard of: no sign of it back
    assert c.status(6.0)["camera"]["state"] == "lost"
    c.handle(Heartbeat(7.0, 111, 0), now=7.0)  # counting on after the loss: frames again
    assert c.status(7.0)["camera"]["state"] == "ok"


def test_a_command_the_socket_gave_up_on_is_not_carried_out(store, factory, caplog):
    import time

    c = controller(store, factory)
    answers = []
    c.handle(Command("gate.open", {}, answers.append, expires=time.monotonic() - 1.0), now=1.0)
    assert answers == [] and not c.gate.is_open
    assert "gate.open came after its client was told the controller did not answer" in caplog.text
    c.handle(Command("gate.open", {}, answers.append, expires=time.monotonic() + 60.0), now=2.0)
    assert answers[0]["ok"] and c.gate.is_open


def test_status_shows_the_camera_lost_not_vision_ok(store, factory, run, data_dir, monkeypatch):
    from lotcontrol.config import prepare_data_dir

    Store.in_dir(prepare_data_dir(data_dir)).close()
    c = controller(store, factory)
    worker = attach(c, FakeWorker())
    answer = {"ok": True, "status": json.loads(json.dumps(c.status(1.0)))}  # as the control socket sends it
    monkeypatch.setattr("lotcontrol.cli.status.ask_controller", lambda app, command: answer)
    text = run("status").output  # still loading its models: not "ok", and no camera seen yet
    assert "vision STARTING (loading the face models for 1.0 s): face entry is shut" in text
    assert "camera no frame yet\n" in text and "vision ok" not in text and "camera ok" not in text
    worker.last_heard, worker.heard = 5.0, True
    c.handle(CameraStatus(False, "camera '/dev/video0' cannot be opened"), now=5.0)
    answer["status"] = json.loads(json.dumps(c.status(5.0)))
    text = run("status").output
    since = c.camera["since"]
    assert "vision NO CAMERA: face entry is shut, 0 frames" in text and "vision ok" not in text
    assert f"camera LOST since {since}: camera '/dev/video0' cannot be opened\n" in text
    camera = json.loads(run("status", "--json").output)["camera"]
    assert camera == {"state": "lost", "since": since, "detail": "camera '/dev/video0' cannot be opened"}
    c.handle(CameraStatus(True, "back"), now=6.0)
    worker.heartbeat = Heartbeat(6.0, 12, 0)
    answer["status"] = json.loads(json.dumps(c.status(6.0)))
    assert "vision ok, 12 frames" in run("status").output and "camera ok\n" in run("status").output
