"""What the controller writes, and for how long: ordinary events share a commit (fewer writes on the
SD card), an alarm is committed at once; charging sessions are pruned with the events."""

import datetime as dt

import pytest
from gpiozero.pins.mock import MockFactory

from lotcontrol.store import Store, isotime
from lotcontrol.writer import CallJob, EventJob, Writer

T0 = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.reset()


def test_ordinary_events_share_a_commit_and_an_alarm_is_committed_at_once(tmp_path):
    now = [0.0]
    with Store(tmp_path / "lot.db") as store:
        writer = Writer(store, commit_seconds=30.0, now=lambda: now[0])
        writer.put(EventJob("access.granted", None, {}, T0))
        writer.put(EventJob("access.denied", None, {}, T0))
        assert not writer.write_due() and store.events() == []  # they wait to share a commit
        now[0] = 29.0
        assert not writer.write_due()
        writer.put(EventJob("fire.alarm", None, {"zone": "east"}, T0, urgent=True))
        assert writer.write_due()  # the alarm at once, with everything before it, in one commit
        assert [e.type for e in store.events()] == ["access.granted", "access.denied", "fire.alarm"]
        assert writer.commits == 1 and writer.events_written == 3
        writer.put(EventJob("access.granted", None, {}, T0))
        now[0] = 58.9
        assert not writer.write_due()
        now[0] = 59.0  # 30 s after it was handed over
        assert writer.write_due() and writer.commits == 2 and len(store.events()) == 4


def test_the_controller_marks_alarm_class_events_urgent(tmp_path, factory):
    from lotcontrol.config import Config
    from lotcontrol.controller import Controller
    from lotcontrol.sim.clock import SimClock

    with Store(tmp_path / "lot.db") as store:
        c = Controller(Config(), store, pin_factory=factory, clock=SimClock())
        c.writer.jobs.clear()
        c.event("access.granted", None, {})
        c.event("fire.alarm", None, {"zone": "east"})
        assert [job.urgent for job in c.writer.jobs] == [False, True]
        assert c.writer.commit_seconds == Config().events.commit_seconds > 0
        c.close()


def test_charging_sessions_are_pruned_with_the_events(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        store.open_charging("old", "P01", None, "2020-01-01T00:00:00.000+00:00")
        store.close_charging("old", "2020-01-01T02:00:00.000+00:00", "full", 0.5, 200.0)
        store.open_charging("running", "P02", None, "2020-01-01T00:00:00.000+00:00")  # left open: kept
        store.open_charging("new", "P03", None, isotime(T0))
        store.close_charging("new", isotime(T0), "full", 0.5, 200.0)
        assert store.prune_charging("2026-01-01T00:00:00.000+00:00") == 1
        assert sorted(s["port"] for s in store.charging_sessions()) == ["P02", "P03"]


def test_work_that_is_no_event_is_done_at_once_unless_it_is_routine(tmp_path):
    """Found by the hub's tests: a resident removed at the hub waited commit_seconds to be applied
    (and refused at the gate)."""
    done = []
    with Store(tmp_path / "lot.db") as store:
        writer = Writer(store, commit_seconds=30.0, now=lambda: 0.0)
        writer.put(CallJob("charging checkpoint", lambda store: done.append("checkpoint"), urgent=False))
        assert not writer.write_due() and done == []
        writer.put(CallJob("resident from the hub", lambda store: done.append("resident")))
        assert writer.write_due() and done == ["checkpoint", "resident"]


def test_the_writer_thread_reads_the_residents_again_when_asked_not_only_every_refresh(tmp_path, monkeypatch):
    import lotcontrol.writer

    monkeypatch.setattr(lotcontrol.writer, "REFRESH_SECONDS", 3600.0)  # no periodic read within the test
    with Store(tmp_path / "lot.db") as store:
        writer = Writer(store)
        writer.start()
        try:
            assert writer.directory.by_id == {}
            ben = store.add_resident("Ben")
            asked = writer.reread()
            with writer._cond:
                assert writer._cond.wait_for(lambda: writer.answered >= asked, 30)
            assert writer.directory.get(ben.id).name == "Ben"
        finally:
            assert writer.close()
