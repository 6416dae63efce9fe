"""The MQTT link (lotcontrol.fleet.mqtt) against a real Mosquitto on 127.0.0.1."""

import os
import subprocess
import sys
import threading

import pytest

from lotcontrol.fleet.mqtt import MqttConfigError, MqttLink

from .broker import broker, make_broker, mqtt_config, tls_files, watch  # noqa: F401  (pytest fixtures)


@pytest.fixture
def links():
    made = []

    def make(config, **options):
        made.append(MqttLink(config, **options))
        return made[-1]
    yield make
    for link in made:
        link.stop()


def test_online_on_connect_and_stopped_on_a_clean_stop(broker, watch, links):
    watcher = watch(broker, "lotcontrol/A/#")
    link = links(mqtt_config(broker)).start()
    watcher.wait("lotcontrol/A/status", "online")
    link.publish(link.topic("events", "test"), {"n": 1}, retain=False)
    link.stop()
    watcher.wait("lotcontrol/A/status", "stopped")  # the watcher's own client may hear it a moment later
    seen = [(m.topic, m.payload) for m in watcher.messages()]
    assert seen == [("lotcontrol/A/status", b"online"), ("lotcontrol/A/events/test", b'{"n":1}'),
                    ("lotcontrol/A/status", b"stopped")]
    late = watch(broker, "lotcontrol/A/status")  # retained: a client that comes later learns it
    message = late.wait("lotcontrol/A/status")
    assert (message.payload, message.retain) == (b"stopped", True)


KILLED = """
import os, signal, sys
from lotcontrol.config import MqttConfig
from lotcontrol.fleet.mqtt import MqttLink
link = MqttLink(MqttConfig(enabled=True, host="127.0.0.1", port=int(sys.argv[1]), lot="A")).start()
assert link.connected.wait(10)
print("connected", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_controller_is_announced_offline_by_its_will(broker, watch):
    watcher = watch(broker, "lotcontrol/A/status")
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(broker.port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert child.stdout.readline().strip() == "connected"
        online = len(watcher.messages())
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == -9
    finally:
        child.kill()
        child.wait()
    watcher.wait("lotcontrol/A/status", "offline", after=online)
    late = watch(broker, "lotcontrol/A/status").wait("lotcontrol/A/status")
    assert (late.payload, late.retain) == (b"offline", True)


def test_a_full_queue_drops_the_oldest_and_counts_the_drops(make_broker, watch, links):
    broker = make_broker(start=False)  # nothing listens yet: everything waits in the queue
    # not started until the watcher listens (a link reconnecting at once would deliver before the watcher
    # subscribed); queueing is the same started or not (a broker that is away at start: test_mqtt_lot)
    link = links(mqtt_config(broker, queue_size=10))
    for n in range(25):
        link.publish(link.topic("events", "n"), str(n))
    assert (link.queued, link.dropped) == (10, 15)
    broker.start()
    watcher = watch(broker, "lotcontrol/A/events/#")
    link.start()
    assert link.connected.wait(10)
    watcher.wait("lotcontrol/A/events/n", "24")
    assert [m.payload for m in watcher.messages()] == [str(n).encode() for n in range(15, 25)]


def test_publish_never_waits_for_a_broker_that_is_away(make_broker, links):
    broker = make_broker(start=False)
    link = links(mqtt_config(broker, queue_size=100)).start()
    done = threading.Event()

    def flood():
        for n in range(10000):
            link.publish("lotcontrol/A/events/flood", str(n))
        done.set()
    thread = threading.Thread(target=flood)
    thread.start()
    thread.join()  # returns: nothing in publish waits on the network
    assert done.is_set() and link.dropped == 9900 and not link.connected.is_set()


def test_subscriptions_survive_the_broker_restarting(broker, links):
    link = links(mqtt_config(broker)).start()
    got = []
    arrived = threading.Condition()

    def on_message(topic, payload):
        with arrived:
            got.append((topic, payload))
            arrived.notify_all()
    link.subscribe("lotcontrol/residents/#", on_message)
    assert link.connected.wait(5)
    statuses, changed = [], threading.Condition()

    def on_status(connected, detail):
        with changed:
            statuses.append(connected)
            changed.notify_all()
    link.on_status(on_status)
    broker.kill()
    broker.start()
    sender = links(mqtt_config(broker, lot="hub"), status_topic=None).start()
    # publish retained, so the message waits for the link however long its reconnect takes
    sender.publish("lotcontrol/residents/7", b"hello", retain=True)
    with arrived:
        assert arrived.wait_for(lambda: got, 10), "the subscription did not survive the restart"
    assert got == [("lotcontrol/residents/7", b"hello")]

    def down_then_up():  # the first connect's own report may come after on_status was set: skip it
        return False in statuses and True in statuses[statuses.index(False):]
    with changed:
        assert changed.wait_for(down_then_up, 10), statuses


def test_a_callback_that_raises_does_not_kill_the_connection(broker, links, watch):
    link = links(mqtt_config(broker)).start()
    good = threading.Event()
    link.subscribe("x/bad", lambda topic, payload: 1 / 0)
    link.subscribe("x/good", lambda topic, payload: good.set())
    assert link.connected.wait(5)
    sender = links(mqtt_config(broker, lot="B")).start()
    # retained: connected is set once the link has asked for its subscriptions, not once the broker has
    # them; a loaded machine delivered the sender's messages before that, to nobody (the test failed).
    # Retained, each waits for its subscription, and bad's still comes first (subscribed first)
    sender.publish("x/bad", "boom", retain=True)
    sender.publish("x/good", "fine", retain=True)
    assert good.wait(10)
    assert link.callback_errors == 1 and link.connected.is_set()


def test_tls_with_a_password_file_and_client_certificate(make_broker, watch, links, tmp_path):
    acl = "user lot-A\ntopic readwrite lotcontrol/A/#\n"
    broker = make_broker(users={"lot-A": "s3cret"}, acl=acl, tls=True, require_certificate=True)
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    link = links(mqtt_config(broker, username="lot-A", password_file=str(secret))).start()
    assert link.connected.wait(10), broker.log()
    assert link.encrypted


def test_a_password_file_others_can_read_is_refused(broker, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(MqttConfigError, match=r"mqtt.password_file .*password can be read by others \(mode 644\): "
                                              r"run `chmod 600"):
        MqttLink(mqtt_config(broker, username="lot-A", password_file=str(secret)))


def test_a_password_file_that_is_not_text_is_a_clear_error(tmp_path):
    """A binary file named as the password file (a key, a copied database) is a configuration error
    naming the key and the file, which `run` turns into the event mqtt.failed; it raised
    UnicodeDecodeError, which stopped the controller at start, fire watch and all."""
    from lotcontrol.config import MqttConfig

    secret = tmp_path / "password"
    secret.write_bytes(b"\xff\xfe\x00secret\n")
    secret.chmod(0o600)
    config = MqttConfig(enabled=True, lot="A", username="lot-A", password_file=str(secret))
    with pytest.raises(MqttConfigError, match=r"mqtt.password_file .*password is not UTF-8 text"):
        MqttLink(config)


def test_a_wrong_password_is_reported_not_raised(make_broker, links):
    broker = make_broker(users={"lot-A": "right"})
    link = links(mqtt_config(broker, username="lot-A", password="wrong"))
    told = threading.Event()
    details = []
    link.on_status(lambda connected, detail: (details.append(detail), told.set()))
    link.start()
    assert told.wait(5)
    assert "refused" in details[0] and not link.connected.is_set()
