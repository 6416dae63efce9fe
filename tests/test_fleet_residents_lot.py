"""The hub's residents at a running lot (the composition root with MQTT on, real clock, simulated
pins): admitted once the hub's enrollment arrives, refused once the hub removes them."""

import threading

from lotcontrol.hub.store import set_lots
from lotcontrol.messages import Passage
from lotcontrol.store import Store
from lotcontrol.vision.matcher import Gallery

from .broker import make_broker, tls_files  # noqa: F401  (pytest fixtures)
from .test_fleet_residents import encoding, enroll
from .test_firewatch import factory, tree  # noqa: F401  (fixtures)
from .test_hub_mqtt import USERS, WAIT, hub_on, secure_broker
from .test_mqtt_lot import ask, local_events, lot_config, running


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
        ask(lot, "status")
        assert local_events(lot)[-1] == "access.granted"

        hub.remove("Anna Berg")
        wait(anna, "removed")
        assert lot.controller.writer.flush()
        lot.controller.inbox.put(passage(anna_here))  # the worker's gallery may still hold her a moment
        ask(lot, "status")
        assert lot.controller.writer.flush()
        events = lot.controller.writer.store.events()
        assert (events[-1].type, events[-1].details["reason"]) == ("access.denied", "resident_removed")
        assert [e.type for e in events if e.type.startswith("resident.")] == ["resident.synced", "resident.removed"]
        with Store.in_dir(data_dir) as store:
            assert store.residents() == [] and len(Gallery.from_store(store)) == 0
