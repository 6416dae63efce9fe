"""Alerts: every alarm-class event, provoked through the controller's real inputs where it has one,
reaches the notify command (a script that appends what it gets to a file) with its severity, and
the lot's alerts topic on a real Mosquitto; notify.min_severity holds back the lesser ones from the
command only."""

import json
import sys

import pytest

from lotcontrol.alerts import SEVERITY, Alerts, alert
from lotcontrol.config import parse_config
from lotcontrol.errors import ConfigError
from lotcontrol.messages import CameraStatus, Command
from lotcontrol.store import Store

from .broker import broker, make_broker, mqtt_config, watch  # noqa: F401  (pytest fixtures)
from .lots import pump, sim_lot
from .test_firewatch import PROBE, SPRINKLER, factory, tree  # noqa: F401  (fixtures)
from .test_mqtt_lot import BAY, DOOR, lot_config

ISSUE = {"fire.alarm", "fire.prealarm", "fire.fault", "gate.forced", "gate.held_open", "camera.lost",
         "vision.stalled", "bays.full", "store.degraded"}  # the alarm-class events issue 14 names


def notify_script(tmp_path):
    """A notify command that appends the JSON it is given, one line each, to a file."""
    out = tmp_path / "notified.jsonl"
    return out, [sys.executable, "-c", f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')"]


def notified(c, out):
    c.notifier.drain()  # every queued notification tried (a join, no sleep)
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def config_with(broker, tree, command, **notify):
    config = lot_config(broker, tree)
    return config.model_copy(update={"notify": config.notify.model_copy(update={"command": command, **notify})})


def test_the_table_holds_every_alarm_class_event_of_the_issue():
    assert ISSUE <= set(SEVERITY)
    assert {SEVERITY[t] for t in ("fire.alarm", "gate.forced")} == {"critical"}
    assert alert("gate.exit", {}, None) is None  # not an alert


def test_every_alarm_class_event_reaches_the_notify_command_and_mqtt(broker, watch, factory, tree, tmp_path):
    out, command = notify_script(tmp_path)
    watcher = watch(broker, "lotcontrol/A/alerts")
    store = Store(tmp_path / "lot.db")
    c = sim_lot(config_with(broker, tree, command), store, factory).controller
    pump(c, 0.0)
    assert c.mqtt.connected.wait(10)
    c.inbox.put(CameraStatus(False, "no frame for 10 s"))  # the camera worker's report
    pump(c, 1.0)
    factory.pin(DOOR).drive_high()  # the door opens without a grant: forced
    pump(c, 2.0)
    pump(c, 2.5)
    factory.pin(DOOR).drive_low()
    pump(c, 3.0)
    c.inbox.put(Command("gate.open", {}))  # staff open the gate; the door opens and stays open
    pump(c, 3.5)
    factory.pin(DOOR).drive_high()
    pump(c, 4.0)
    pump(c, 4.5)
    pump(c, 4.0 + c.config.gate.held_open_seconds + 1)
    factory.pin(BAY).drive_high()  # the only bay is taken
    pump(c, 100.0)
    pump(c, 100.0 + c.config.bays.hold_seconds + 1)
    (tree / PROBE / "temperature").write_text("52000")  # a probe reads 52 °C: pre-alarm
    c.poller.poll()
    pump(c, 200.0)
    (tree / PROBE / "temperature").unlink()  # the probe can no longer be read: a fault
    c.poller.poll()
    pump(c, 201.0)
    factory.pin(SPRINKLER).drive_high()  # a sprinkler bursts
    pump(c, 202.0)
    pump(c, 202.1)
    c.event("vision.stalled", None, {"silent_seconds": 12.0})  # as the vision supervisor's tick makes it
    store.close()  # every write fails from now on: the writer says store.degraded
    c.inbox.put(Command("gate.open", {}))
    pump(c, 203.0)
    told = notified(c, out)
    types = [n["type"] for n in told]
    assert ISSUE <= set(types), ISSUE - set(types)
    assert all(n["severity"] == SEVERITY[n["type"]] and n["time"] for n in told)
    fire = next(n for n in told if n["type"] == "fire.alarm")
    assert (fire["severity"], fire["zone"]) == ("critical", "east")
    assert "gate.manual_open" not in types  # an event, not an alert
    published = watcher.wait("lotcontrol/A/alerts", count=len(told))
    messages = [json.loads(m.payload) for m in watcher.messages("lotcontrol/A/alerts")]
    assert [(m["event_type"], m["severity"]) for m in messages] == [(n["type"], n["severity"]) for n in told]
    assert published.retain is False


def test_min_severity_holds_back_the_lesser_alerts_from_the_command_not_from_mqtt(broker, watch, factory, tree,
                                                                                tmp_path):
    out, command = notify_script(tmp_path)
    watcher = watch(broker, "lotcontrol/A/alerts")
    c = sim_lot(config_with(broker, tree, command, min_severity="critical"), Store(tmp_path / "lot.db"),
                factory).controller
    pump(c, 0.0)
    assert c.mqtt.connected.wait(10)
    c.inbox.put(CameraStatus(False, "no frame for 10 s"))  # warning
    pump(c, 1.0)
    factory.pin(SPRINKLER).drive_high()  # critical
    pump(c, 2.0)
    pump(c, 2.1)
    assert [n["type"] for n in notified(c, out)] == ["fire.alarm"]
    watcher.wait("lotcontrol/A/alerts", count=2)
    assert [json.loads(m.payload)["event_type"] for m in watcher.messages("lotcontrol/A/alerts")] == [
        "camera.lost", "fire.alarm"]


def test_an_alert_only_queues_for_the_command_thread():
    class Queue:
        command = ["notify-staff"]
        sent = []

        def send(self, message):
            self.sent.append(message)

    alerts = Alerts(Queue(), "warning")
    import datetime as dt
    when = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    alerts("bays.full", None, {"free": 0}, when)  # info: below warning
    alerts("gate.forced", None, {}, when)
    assert Queue.sent == [{"type": "gate.forced", "severity": "critical", "time": "2026-11-30T00:00:00.000+00:00"}]


def test_the_old_fire_notify_keys_are_read_as_notify_with_a_warning(caplog):
    # a lot upgraded without editing its configuration keeps its fire watch and its notifications
    config = parse_config({"fire": {"notify_command": ["/bin/true"], "notify_retries": 1}})
    assert (config.notify.command, config.notify.retries) == (["/bin/true"], 1)
    assert "fire.notify_command is now notify.command (in [notify]); read as such, edit the file" in caplog.text
    with pytest.raises(ConfigError, match=r"fire.notify_command and notify.command are both set: keep notify.command"):
        parse_config({"fire": {"notify_command": ["/bin/true"]}, "notify": {"command": ["/bin/false"]}})
    with pytest.raises(ConfigError, match="min_severity"):
        parse_config({"notify": {"min_severity": "loud"}})


def test_a_stop_with_the_notification_queue_full_does_not_hang(tmp_path):
    """An alarm storm while the notify command hangs fills the queue (1,000 alerts); the stop that follows
    must still end (the latched state and the ports' holds are saved after it), not wait for ever for
    room to say 'stop' in a queue nobody empties any more."""
    import threading

    from lotcontrol.notify import Notifier

    notifier = Notifier(["sleep", "30"], timeout=0.2, retries=0, backoff=0.01)
    for n in range(2000):
        notifier.send({"type": "fire.alarm", "n": n})
    closing = threading.Thread(target=notifier.close, daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive()
    assert not notifier._thread.is_alive()
