"""The hub's residents at a running lot (the composition root with MQTT on, real clock, simulated
pins): admitted once the hub's enrollment arrives, refused once the hub removes them."""

import queue
import threading

from lotcontrol.hub.store import set_lots
from lotcontrol.messages import Passage
from lotcontrol.store import Store
from lotcontrol.vision.matcher import Gallery

from .broker import make_broker, tls_files  # noqa: F401  (pytest fixtures)
from .test_fleet_residents import encoding, enroll
from .test_firewatch import factory, tree  # noqa: F401  (fixtures)
from .test_hub_mqtt import USERS, WAIT, hub_on, secure_broker
from .test_mqtt_lot import lot_config, running


def passage(resident_id):
    return Passage(track=1, outcome="grant", resident_id=resident_id, reason=None, distance=0.3, frames=3,
                   first_seen=0.0, decided=0.4)


def test_a_running_lot_admits_the_hubs_resident_and_refuses_them_once_removed(make_broker, factory, tree,
                                                                              data_dir, tmp_path):
    broker = secure_broker(make_broker)
    config = lot_config(broker, tree, username="lot-A", password=USERS["lot-A"])
    outcomes, cond = [], threading.Condition()

    def applied(uid, outcome):
        with cond:
            outcomes.append((uid, outcome and outcome.change))
            cond.notify_all()

    def wait(uid, change):
        with cond:
            assert cond.wait_for(lambda: (uid, change) in outcomes, WAIT), outcomes

    with hub_on(broker, tmp_path / "hub") as hub, running(config, data_dir, factory) as lot:
        lot.residents.on_applied(applied)
        decisions = queue.Queue()  # the loop's access events, as it makes them
        lot.controller.listeners.add(lambda type, rid, details, when: type.startswith("access.")
                                     and decisions.put((type, details)))
        anna = enroll(hub, "Anna Berg", 1)
        with hub.transaction():  # as `enroll --lot B` does it
            bob = enroll(hub, "Bob Li", 2)
            set_lots(hub, "Bob Li", ["B"], ["A", "B"])
        wait(anna, "added")
        wait(bob, "absent")
        assert lot.controller.writer.flush()
        with Store.in_dir(data_dir) as store:  # what the vision worker loads
            anna_here = store.resident("Anna Berg").id
            assert Gallery.from_store(store).match(encoding(1)).resident_id == anna_here
            assert [r.name for r in store.residents()] == ["Anna Berg"]
        lot.controller.inbox.put(passage(anna_here))
        assert decisions.get(timeout=WAIT)[0] == "access.granted"

        hub.remove("Anna Berg")
        wait(anna, "removed")
        assert lot.controller.writer.flush()
        lot.controller.inbox.put(passage(anna_here))  # the worker's gallery may still hold her a moment
        type, details = decisions.get(timeout=WAIT)
        assert (type, details["reason"]) == ("access.denied", "resident_removed")
        assert lot.controller.writer.flush()
        events = lot.controller.writer.store.events()
        assert (events[-1].type, events[-1].details["reason"]) == ("access.denied", "resident_removed")
        changes = [e.type for e in events if e.type.startswith("resident.")]
        # synced once, or again when the hub republished her (a revision or a reconnect), then removed
        assert changes[-1] == "resident.removed" and set(changes[:-1]) == {"resident.synced"}, changes
        with Store.in_dir(data_dir) as store:
            assert store.residents() == [] and len(Gallery.from_store(store)) == 0


def test_a_lot_refuses_to_change_a_resident_it_holds_for_the_hub(tmp_path, run, data_dir):
    from lotcontrol.config import prepare_data_dir
    from lotcontrol.fleet.residents import apply_message, dumps, parse_message, residents_topic
    from lotcontrol.hub import store as hub_store

    from .test_fleet_residents import private_store

    hub = next(private_store(tmp_path / "hub", hub_store.open_hub))
    uid = enroll(hub, "Anna Berg", 1)
    with Store.in_dir(prepare_data_dir(data_dir)) as lot:
        apply_message(lot, "A", parse_message(residents_topic("lotcontrol", uid), dumps(hub_store.message(hub, uid))))
        lot.add_resident("Local Resident")
    hub.close()
    expected = ("Error: resident 'Anna Berg' comes from the hub: change them there (lotcontrol --hub DIR ... "
                "on the hub's machine); this lot follows within seconds\n")
    photo = tmp_path / "never-read.jpg"  # refused before any face work
    photo.write_bytes(b"")
    for command in (["enroll", "Anna Berg", photo], ["suspend", "anna berg"], ["resume", "Anna Berg"], ["rename", "Anna Berg", "Anna"],
                    ["edit", "Anna Berg", "--unit", "5C"], ["remove", "Anna Berg", "--yes"]):
        result = run(*command)
        assert (result.exit_code, result.output) == (1, expected), command
    assert run("suspend", "Local Resident").exit_code == 0  # the lot's own residents stay the lot's
    with Store.in_dir(data_dir) as lot:
        assert [(r.name, r.status, r.templates) for r in lot.residents()] == [
            ("Anna Berg", "active", 1), ("Local Resident", "suspended", 0)]
