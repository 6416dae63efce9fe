"""The hub and the lots through a real Mosquitto (TLS, passwords and the shipped ACL): enrollment and
removal reach the lots' own stores, nothing of a removed resident lingers, offline lots catch up,
only lots read the residents, and templates never travel without TLS."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from lotcontrol.config import Config, HubConfig
from lotcontrol.fleet.mqtt import MqttLink
from lotcontrol.fleet.residents import ResidentSync, residents_topic
from lotcontrol.hub import store as hub_store
from lotcontrol.hub.publisher import Hub, TemplatesRefused
from lotcontrol.messages import Passage
from lotcontrol.store import Store
from lotcontrol.vision.matcher import Gallery
from lotcontrol.writer import CallJob, Writer

from .broker import broker, make_broker, mqtt_config, tls_files, watch  # noqa: F401  (pytest fixtures)
from .test_fleet_residents import encoding, enroll
from .test_firewatch import tree  # noqa: F401  (fixture: a 1-Wire tree with one probe)

ACL = Path(__file__).resolve().parents[1] / "hardware" / "mosquitto" / "lotcontrol.acl"
USERS = {"hub": "hub-secret", "homeassistant": "ha-secret", **{f"lot-{lot}": f"{lot}-secret" for lot in "ABCDE"}}
WAIT = 10.0  # seconds: a deadline for things that take milliseconds


class Outcomes:
    """What a lot's resident sync did with each message from the hub: ``_applied`` is its listener
    (on the writer thread); ``wait(uid, change)`` waits for an outcome."""

    def __init__(self, broker, lot: str):
        self.broker, self.lot = broker, lot
        self.outcomes: list[tuple[str, str | None]] = []
        self._cond = threading.Condition()

    def _applied(self, uid, outcome) -> None:
        with self._cond:
            self.outcomes.append((uid, outcome.change if outcome else None))
            self._cond.notify_all()

    def wait(self, uid: str, change: str | None, after: int = 0) -> int:
        """Index of the first outcome ``change`` for ``uid`` (from index ``after`` on)."""
        def found():
            return next((i for i, o in enumerate(self.outcomes) if i >= after and o == (uid, change)), None)
        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, WAIT):
                raise AssertionError(f"lot {self.lot}: no {change} for {uid} within {WAIT} s: {self.outcomes}\n"
                                     f"{self.broker.log()[-2000:]}")
            return found()


class LotSide(Outcomes):
    """A lot's residents without the rest of the controller: its store, its writer thread, the sync
    and its MQTT link."""

    def __init__(self, folder: Path, broker, lot: str, **mqtt):
        super().__init__(broker, lot)
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder
        self.mqtt = mqtt_config(broker, lot=lot, **mqtt)
        self.writer = Writer(Store.in_dir(folder))
        self.writer.start()
        self.events: list[tuple[str, dict]] = []
        self.link: MqttLink | None = None
        self.subscribed = self.connect()

    def connect(self) -> bool:
        self.link = MqttLink(self.mqtt)
        sync = ResidentSync(self.lot, self.mqtt.topic_prefix,
                            lambda call: self.writer.put(CallJob("resident from the hub", call)), self._event)
        sync.on_applied(self._applied)
        subscribed = sync.subscribe(self.link, self.mqtt)
        self.link.start()
        return subscribed

    def disconnect(self) -> None:
        self.link.stop()

    def _event(self, type, resident_id, details) -> None:
        with self._cond:
            self.events.append((type, details))
            self._cond.notify_all()

    def read(self) -> Store:
        """A second connection for the test's own reads (the writer thread owns the first)."""
        return Store.in_dir(self.folder)

    def close(self) -> None:
        self.link.stop()
        self.writer.close()
        self.writer.store.close()


def secure_broker(make_broker):
    """A TLS broker with the users of USERS and the shipped ACL."""
    return make_broker(users=USERS, acl=ACL.read_text(), tls=True)


@contextlib.contextmanager
def hub_running(broker, folder: Path, lots=("A", "B")):
    """The hub's database in ``folder`` and the hub publishing it (and keeping what ``lots`` publish),
    stopped at the end; yields the Hub (its database: ``hub.store``)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    store = hub_store.open_hub(folder)
    config = Config(mqtt=mqtt_config(broker, lot="hub", username="hub", password=USERS["hub"]),
                    hub=HubConfig(lots=list(lots), poll_seconds=0.05))
    hub = Hub(store, config).start()
    try:
        yield hub
    finally:
        hub.stop()
        store.close()


@contextlib.contextmanager
def hub_on(broker, folder: Path, lots=("A", "B")):
    """As ``hub_running``, yielding a connection of the test's own to the hub's database, as staff
    commands have theirs (sharing the hub's would let it read a transaction the test has not committed)."""
    with hub_running(broker, folder, lots) as hub:
        with hub_store.open_hub(folder) as store:
            yield store


@pytest.fixture
def village(make_broker, tmp_path):
    """A TLS broker with the shipped ACL, the hub publishing, and lots A and B connected."""
    broker = secure_broker(make_broker)
    with hub_on(broker, tmp_path / "hub") as store:
        lots = {lot: LotSide(tmp_path / f"lot-{lot}", broker, lot, username=f"lot-{lot}",
                             password=USERS[f"lot-{lot}"]) for lot in ("A", "B")}
        yield broker, store, lots
        for lot in lots.values():
            lot.close()


def test_enrollment_and_removal_reach_each_lot_and_nothing_of_the_resident_lingers(village, watch):
    broker, hub, lots = village
    anna = enroll(hub, "Anna Berg", 1, 2)
    with hub.transaction():  # as `enroll --lot B` does it: never published as "every lot" in between
        bob = enroll(hub, "Bob Li", 3)
        hub_store.set_lots(hub, "Bob Li", ["B"], ["A", "B"])
    for lot in lots.values():
        lot.wait(anna, "added")
    lots["B"].wait(bob, "added")
    lots["A"].wait(bob, "absent")  # not assigned to A: never in A's gallery
    with lots["A"].read() as store:
        assert [r.name for r in store.residents()] == ["Anna Berg"]
        assert Gallery.from_store(store).match(encoding(1)).resident_id == store.resident("Anna Berg").id
    with lots["B"].read() as store:
        assert sorted(r.name for r in store.residents()) == ["Anna Berg", "Bob Li"]

    hub.remove("Anna Berg")
    for lot in lots.values():
        lot.wait(anna, "removed")
        with lot.read() as store:
            assert "Anna Berg" not in [r.name for r in store.residents()]
            assert Gallery.from_store(store).match(encoding(1)).resident_id is None
            assert store.db.execute("SELECT count(*) FROM templates").fetchone()[0] == (1 if lot.lot == "B" else 0)
    assert hub.db.execute("SELECT count(*) FROM templates WHERE resident_id NOT IN "
                          "(SELECT id FROM residents)").fetchone()[0] == 0
    # the broker keeps only the tombstone: no name, no template
    late = watch(broker, residents_topic("lotcontrol", anna), username="lot-A", password=USERS["lot-A"],
                 tls=broker.tls)
    retained = late.wait(residents_topic("lotcontrol", anna))
    assert retained.retain and set(json.loads(retained.payload)) == {"format", "uid", "revision", "removed"}


def test_a_lot_that_was_offline_catches_up_with_removals_and_goes_on_with_its_copy(village):
    broker, hub, lots = village
    anna, bob = enroll(hub, "Anna Berg", 1), enroll(hub, "Bob Li", 2)
    lot = lots["A"]
    lot.wait(anna, "added")
    lot.wait(bob, "added")
    lot.disconnect()  # the lot's network is down: it goes on with its copy
    hub.remove("Anna Berg")
    hub.set_status("Bob Li", "suspended")
    lots["B"].wait(anna, "removed")  # the tombstone is on the broker
    with lot.read() as store:
        assert sorted(r.name for r in store.residents()) == ["Anna Berg", "Bob Li"]
    mark = len(lot.outcomes)
    lot.connect()
    lot.wait(anna, "removed", after=mark)
    lot.wait(bob, "updated", after=mark)
    with lot.read() as store:
        assert [(r.name, r.status) for r in store.residents()] == [("Bob Li", "suspended")]


def hand_client(broker, user: str) -> paho.Client:
    """A plain paho client with ``user``'s password over TLS, connected (what a forger would use)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"by-hand-{user}")
    client.username_pw_set(user, USERS[user])
    client.tls_set(ca_certs=str(broker.tls.ca))
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def send(client: paho.Client, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish QoS 1 and wait for the broker's acknowledgement (it has handled the message then)."""
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT)


def test_only_lots_read_the_residents_and_only_the_hub_writes_them(village, watch):
    broker, hub, lots = village
    anna = enroll(hub, "Anna Berg", 1)
    lots["B"].wait(anna, "added")
    home_assistant = watch(broker, "lotcontrol/#", username="homeassistant", password=USERS["homeassistant"],
                           tls=broker.tls)
    hub.set_status("Anna Berg", "suspended")
    lots["B"].wait(anna, "updated")
    forger = hand_client(broker, "lot-A")  # a lot tries to slip a resident in
    forged = "f" * 32
    try:
        send(forger, residents_topic("lotcontrol", forged), b"{}", retain=True)
        send(forger, "lotcontrol/A/status", b"barrier")  # something Home Assistant may read (not retained)
    finally:
        forger.disconnect()
        forger.loop_stop()
    # the broker handles one client's messages in order: by now Home Assistant would have had the
    # retained resident (when it subscribed) and the live change, had it been allowed to read them
    home_assistant.wait("lotcontrol/A/status", "barrier")  # not lot A's own retained `online`
    assert [m.topic for m in home_assistant.messages() if "/residents/" in m.topic] == []
    mark = len(lots["B"].outcomes)
    hub.set_status("Anna Berg", "active")  # published after the forgery was refused
    lots["B"].wait(anna, "updated", after=mark)
    assert [o for o in lots["B"].outcomes if o[0] == forged] == []


def test_a_malformed_retained_message_is_an_event_and_the_lot_goes_on(village):
    broker, hub, lots = village
    bad = "e" * 32
    sender = hand_client(broker, "hub")
    try:
        send(sender, residents_topic("lotcontrol", bad), b'{"format": 1, "uid": "nonsense"}', retain=True)
    finally:
        sender.disconnect()
        sender.loop_stop()
    lot = lots["A"]
    lot.wait(bad, None)
    [(kind, details)] = [e for e in lot.events if e[0] == "fleet.bad_message"]
    assert details["topic"] == residents_topic("lotcontrol", bad) and "uid" in details["error"]
    anna = enroll(hub, "Anna Berg", 1)
    lot.wait(anna, "added")


def test_templates_never_travel_without_tls(broker, tmp_path, run):
    """A plain connection: the hub does not start and the lot does not subscribe, each saying why."""
    plain = mqtt_config(broker, lot="A")
    lot = LotSide(tmp_path / "lot", broker, "A")
    try:
        assert lot.subscribed is False
        assert lot.events == [("fleet.residents_refused", {
            "error": "face templates travel only over TLS: set [mqtt.tls] (ca_file) for the broker"})]
    finally:
        lot.close()
    (tmp_path / "hub").mkdir(mode=0o700)
    with hub_store.open_hub(tmp_path / "hub") as store:
        with pytest.raises(TemplatesRefused, match="the hub does not start: face templates travel only over TLS"):
            Hub(store, Config(mqtt=plain))
    config = tmp_path / "hub.toml"
    config.write_text(f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n')
    result = run("--config", config, "--hub", tmp_path / "hub", "hub", data_dir=False)
    assert result.exit_code == 1
    assert result.output == ("Error: the hub does not start: face templates travel only over TLS: "
                             "set [mqtt.tls] (ca_file) for the broker\n")


def test_a_broker_that_lost_its_retained_messages_gets_them_back_with_what_changed_meanwhile(
        make_broker, tmp_path, watch):
    broker = secure_broker(make_broker)  # without persistence: a restart loses every retained message
    lot_a = {"username": "lot-A", "password": USERS["lot-A"], "tls": broker.tls}
    with hub_on(broker, tmp_path / "hub") as hub:
        anna = enroll(hub, "Anna Berg", 1)
        watch(broker, residents_topic("lotcontrol"), **lot_a).wait(residents_topic("lotcontrol", anna))
        broker.stop()
        bob = enroll(hub, "Bob Li", 2)  # while the broker is down: waits in the hub's database
        broker.start()
        late = watch(broker, residents_topic("lotcontrol"), **lot_a)
        for uid, name in ((anna, "Anna Berg"), (bob, "Bob Li")):
            message = late.wait(residents_topic("lotcontrol", uid), timeout=WAIT)
            assert json.loads(message.payload)["name"] == name


def test_the_hub_command_publishes_until_sigterm(make_broker, tmp_path, watch):
    broker = secure_broker(make_broker)
    (tmp_path / "hub").mkdir(mode=0o700)
    with hub_store.open_hub(tmp_path / "hub") as store:
        anna = enroll(store, "Anna Berg", 1)
    password = tmp_path / "hub.password"
    password.write_text(USERS["hub"] + "\n")
    password.chmod(0o600)
    config = tmp_path / "hub.toml"
    config.write_text(f"""[hub]
lots = ["A", "B"]

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
lot = "hub"
username = "hub"
password_file = "{password}"

[mqtt.tls]
ca_file = "{broker.tls.ca}"
""")
    config.chmod(0o600)
    hub = subprocess.Popen([sys.executable, "-m", "lotcontrol", "--config", str(config), "--hub",
                            str(tmp_path / "hub"), "hub"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lot_a = {"username": "lot-A", "password": USERS["lot-A"], "tls": broker.tls}
        watch(broker, residents_topic("lotcontrol"), **lot_a).wait(residents_topic("lotcontrol", anna),
                                                                   timeout=WAIT * 3)  # the interpreter starts first
        late = watch(broker, residents_topic("lotcontrol"), **lot_a).wait(residents_topic("lotcontrol", anna))
        assert json.loads(late.payload)["name"] == "Anna Berg" and late.retain
    finally:
        hub.send_signal(signal.SIGTERM)
        output, _ = hub.communicate(timeout=WAIT)
    assert hub.returncode == 0, output
    assert output.splitlines()[0] == (f"hub on {tmp_path / 'hub'}: publishing to {broker.host}:{broker.port} "
                                      "(lots: A, B)")
    assert "hub: published resident Anna Berg revision" in output


class VillageLot(Outcomes):
    """One lot's whole controller as `lotcontrol run` builds it (lotcontrol.app.Lot: simulated pins of
    its own, the simulated clock), on the broker as user lot-<lot>, following the hub. The writer
    thread runs, so the hub's residents reach the lot's store as they arrive; the loop turns when the
    test pumps it."""

    def __init__(self, folder: Path, broker, tree, lot: str):
        from lotcontrol.sim.pins import simulated_factory

        from .lots import pump, sim_lot
        from .test_mqtt_lot import lot_config

        super().__init__(broker, lot)
        folder.mkdir(mode=0o700)
        self.folder, self.pins, self.pump = folder, simulated_factory(), pump
        config = lot_config(broker, tree, lot=lot, username=f"lot-{lot}", password=USERS[f"lot-{lot}"])
        self.store = Store.in_dir(folder)
        self.lot = sim_lot(config, self.store, self.pins)
        self.controller = c = self.lot.controller
        self.access: list[dict] = []
        c.listeners.add(lambda type, rid, details, when: type.startswith("access.") and self.access.append(
            {"type": type, "resident_id": rid, **details}))
        c.writer.start()
        self.lot.residents.on_applied(self._applied)
        self.now = 0.0
        self.turn(0.0)

    def turn(self, seconds: float) -> None:
        self.now += seconds
        self.pump(self.controller, self.now)

    def face(self, seed: int) -> Passage:
        """The decision the vision worker makes on this face with the lot's gallery as it is on file now."""
        with Store.in_dir(self.folder) as store:
            match = Gallery.from_store(store).match(encoding(seed))
        granted = match.resident_id is not None
        return Passage(seed, "grant" if granted else "unknown", match.resident_id, None if granted else "no_match",
                       round(match.distance, 4), 3, self.now, self.now + 0.4)

    def at_gate(self, passage: Passage) -> dict:
        """The controller's decision on ``passage`` (the access event), and the gate shut again after it."""
        self.controller.inbox.put(passage)
        self.turn(1.0)
        decision = self.access[-1]
        self.turn(self.controller.config.gate.open_seconds + 1)
        return decision

    def close(self) -> None:
        self.lot.stop()  # its writer first: a store is never closed under the thread that writes it
        self.store.close()
        self.pins.reset()


def states(pins, pin) -> list[bool]:
    return [state for _, state in pins.pin(pin).history]


def test_a_village_of_five_lots_each_with_its_own_gallery_through_a_broker_outage(make_broker, tmp_path, tree):
    """The village rig: the hub, five lot controllers and the broker on one machine. A resident assigned to
    lot C is admitted there and refused at A (and everywhere else); removed while the broker is away, they
    are refused everywhere once it is back; meanwhile the gates and the fire outputs answer as ever."""
    from .test_mqtt_lot import CHARGER, RELAY, SIREN, SPRINKLER

    broker = secure_broker(make_broker)
    with hub_on(broker, tmp_path / "hub", lots="ABCDE") as hub:
        lots: dict[str, VillageLot] = {}
        try:
            for name in "ABCDE":
                lots[name] = VillageLot(tmp_path / f"lot-{name}", broker, tree, name)
            with hub.transaction():  # as `enroll --lots C` does it
                carla = enroll(hub, "Carla Lot-C", 1)
                hub_store.set_lots(hub, "Carla Lot-C", ["C"], list("ABCDE"))
            everyone = enroll(hub, "Eve Everywhere", 2)
            for name, lot in lots.items():
                lot.wait(everyone, "added")
                lot.wait(carla, "added" if name == "C" else "absent")
            for name, lot in lots.items():  # Carla at every gate, Eve at every gate
                decision = lot.at_gate(lot.face(1))
                if name == "C":
                    assert (decision["type"], decision["resident_id"]) == ("access.granted", lot.face(1).resident_id)
                else:
                    assert (decision["type"], decision["reason"]) == ("access.denied", "no_match"), name
                assert lot.at_gate(lot.face(2))["type"] == "access.granted", name
            carla_at_c = lots["C"].face(1)  # her decision at C while she is on file there
            for lot in lots.values():
                assert states(lot.pins, RELAY)[-1] is False and states(lot.pins, CHARGER)[-1] is True

            broker.stop()  # the broker is gone (and, without persistence, its retained messages with it)
            hub.remove("Carla Lot-C")  # waits in the hub's database
            assert lots["C"].at_gate(lots["C"].face(1))["type"] == "access.granted"  # C goes on with its copy
            b = lots["B"]
            b.pins.pin(SPRINKLER).drive_high()  # a sprinkler bursts at lot B during the outage
            b.turn(0.01)
            b.turn(0.05)  # past the 20 ms debounce
            assert states(b.pins, CHARGER)[-2:] == [True, False]  # charging cut
            assert states(b.pins, RELAY)[-2:] == [False, True]  # the gate released for egress
            assert states(b.pins, SIREN)[-2:] == [False, True]
            assert b.controller.mqtt.connected.is_set() is False  # it did all that without the broker
            for name, lot in lots.items():
                if name != "B":  # the other lots' fire outputs untouched, their gates still answer
                    assert states(lot.pins, CHARGER)[-1] is True and states(lot.pins, SIREN)[-1] is False
                    assert lot.at_gate(lot.face(2))["type"] == "access.granted", name

            mark = {name: len(lot.outcomes) for name, lot in lots.items()}
            broker.start()  # the links reconnect; the hub publishes everything again, the tombstone too
            for name, lot in lots.items():
                lot.wait(carla, "removed" if name == "C" else "absent", after=mark[name])
                lot.wait(everyone, "unchanged", after=mark[name])
            for name, lot in lots.items():  # every lot refuses Carla now (B while its alarm stands, anyone)
                decision = lot.at_gate(lot.face(1))
                reason = "fire_alarm" if name == "B" else "no_match"
                assert (decision["type"], decision["reason"]) == ("access.denied", reason), name
                with Store.in_dir(lot.folder) as store:
                    assert [r.name for r in store.residents()] == ["Eve Everywhere"]
                    assert store.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 1
            # a worker still holding the old gallery at C would name her: the controller refuses that too
            stale = lots["C"].at_gate(carla_at_c)
            assert (stale["type"], stale["reason"]) == ("access.denied", "resident_removed")
            assert states(b.pins, RELAY)[-1] is True and states(b.pins, CHARGER)[-1] is False  # B's alarm stands
        finally:
            for lot in lots.values():
                lot.close()


def test_a_visitor_pass_is_counted_across_two_lots_and_revoked_through_the_hub(make_broker, tmp_path, tree, watch):
    """The hub's pass key reaches lots A and B; a two-entry pass is used once at A, once at B (which
    heard of A's use through the hub), and A then refuses it used up; a pass revoked at the hub is
    refused at both lots. No pass is ever on the broker, Home Assistant never reads the hub's passes."""
    import time

    from lotcontrol import passes
    from lotcontrol.messages import PassShown

    from .test_mqtt_lot import RELAY

    def heard(lot: VillageLot, check) -> None:
        """Wait until ``check(directory)`` holds at ``lot``, woken by each pass message it keeps."""
        cond = threading.Condition()

        def kept(message) -> None:
            with cond:
                cond.notify_all()
        lot.lot.passes.on_applied(kept)
        with cond:
            assert cond.wait_for(lambda: check(lot.controller.writer.directory), WAIT), (
                lot.folder.name, vars(lot.controller.writer.directory))

    def show(lot: VillageLot, text: str) -> dict:
        lot.controller.inbox.put(PassShown(text, lot.now))
        lot.turn(1.0)
        decision = lot.access[-1]
        lot.turn(lot.controller.config.gate.open_seconds + 1)
        return decision

    def issue(hub, uses: int) -> tuple[str, str]:
        # valid from the lots' simulated wall clock (2026-11-28) to an hour past the real time (the hub's)
        visitor_pass = passes.Pass(passes.new_id(), "Courier Li", ("A", "B"), int(time.time()) + 3600, uses)
        hub.add_pass(visitor_pass.id, visitor_pass.visitor, ["A", "B"], visitor_pass.not_after, uses)
        return visitor_pass.id, passes.sign(hub.pass_key(), visitor_pass)

    broker = secure_broker(make_broker)
    home_assistant = watch(broker, "lotcontrol/#", username="homeassistant", password=USERS["homeassistant"],
                           tls=broker.tls)
    on_the_broker = watch(broker, "lotcontrol/#", username="hub", password=USERS["hub"], tls=broker.tls)
    with hub_on(broker, tmp_path / "hub") as hub:
        lots: dict[str, VillageLot] = {}
        try:
            for name in "AB":
                lots[name] = VillageLot(tmp_path / f"lot-{name}", broker, tree, name)
            for lot in lots.values():
                heard(lot, lambda d: len(d.pass_keys) == 2)  # its own key and the hub's
            a, b = lots["A"], lots["B"]
            pass_id, text = issue(hub, 2)
            assert show(a, text)["uses_left"] == 1
            heard(b, lambda d: d.hub_pass_uses.get(pass_id) == {"A": 1})
            granted = show(b, text)
            assert (granted["type"], granted["uses_left"], granted["visitor"]) == ("access.granted", 0, "Courier Li")
            heard(a, lambda d: d.hub_pass_uses.get(pass_id) == {"A": 1, "B": 1})
            assert show(a, text)["reason"] == "pass_used_up"

            revoked_id, revoked = issue(hub, 5)
            hub.revoke_pass(revoked_id)
            for lot in lots.values():
                heard(lot, lambda d: revoked_id in d.revoked_passes)
                assert show(lot, revoked)["reason"] == "pass_revoked"
            assert states(a.pins, RELAY) == [False, True, False] and states(b.pins, RELAY) == [False, True, False]
            # each lot's last refusal reached Home Assistant: everything before it would have too
            home_assistant.wait("lotcontrol/A/events/access.denied", count=2)  # used up, revoked
            home_assistant.wait("lotcontrol/B/events/access.denied")  # revoked
            assert [m.topic for m in home_assistant.messages() if m.topic.startswith("lotcontrol/passes/")] == []
            assert on_the_broker.messages(f"lotcontrol/passes/{pass_id}")  # what the hub published of it
            said = b"".join(m.payload for m in home_assistant.messages() + on_the_broker.messages())
            assert b"Courier Li" in said and pass_id.encode() in said  # the events name the visitor and the pass
            for secret in (text, revoked, *text.split(".")[1:], *revoked.split(".")[1:]):
                assert secret.encode() not in said
        finally:
            for lot in lots.values():
                lot.close()
