"""Charging ports on MQTT (issue 15): each port's state retained, and in Home Assistant a state
sensor per port and power and energy sensors per metered port, against a real Mosquitto."""

import json

from lotcontrol.store import Store

from .broker import broker, make_broker, mqtt_config, watch  # noqa: F401  (pytest fixtures)
from .lots import pump, sim_lot
from .test_charging import SPRINKLER_W, config, factory, meter  # noqa: F401  (fixture)
from .test_mqtt_lot import check_discovery


def port_lot(broker, tmp_path, factory):
    store = Store(tmp_path / "lot.db")
    store.add_resident("Anna Berg")
    c = sim_lot(config(mqtt=mqtt_config(broker).model_dump(exclude_none=True)), store, factory).controller
    pump(c, 0.0)
    assert c.mqtt.connected.wait(10)
    return c


def test_each_port_is_retained_state_with_watts_kwh_and_the_last_stop(broker, watch, factory, tmp_path):
    watcher = watch(broker, "lotcontrol/A/state/ports/#")
    c = port_lot(broker, tmp_path, factory)
    c.inbox.put(meter("E1", 0.5, watts=150.0, kwh=10.0))
    pump(c, 0.5)
    c.inbox.put(meter("E1", 1.0, watts=152.34, kwh=10.25))
    pump(c, 1.0)
    pump(c, 1.6)  # a reading alone is published within PORT_STATE_SECONDS (a start or stop at once)
    e1 = json.loads(watcher.wait("lotcontrol/A/state/ports/E1", '{"state":"charging","watts":152.3,"kwh":0.25,'
                                 '"last_stop":null,"fault":null,"cut_by_fire":false}').payload)
    assert e1["kwh"] == 0.25
    unmetered = json.loads(watcher.wait("lotcontrol/A/state/ports/E2").payload)
    assert (unmetered["watts"], unmetered["kwh"]) == (None, None)
    factory.pin(SPRINKLER_W).drive_high()  # a burst: every port stops, the reason retained
    pump(c, 2.0)
    pump(c, 2.1)  # past the debounce: the stop is published in the same turn
    watcher.wait("lotcontrol/A/state/ports/E1", '{"state":"ready","watts":152.3,"kwh":0.0,'
                 '"last_stop":"fire","fault":null,"cut_by_fire":true}')
    late = watch(broker, "lotcontrol/A/state/ports/#").wait("lotcontrol/A/state/ports/E1")
    assert late.retain and json.loads(late.payload)["last_stop"] == "fire"  # a newcomer learns it at once


def test_home_assistant_gets_power_and_energy_sensors_for_each_metered_port(broker, watch, factory, tmp_path):
    watcher = watch(broker, "homeassistant/#")
    port_lot(broker, tmp_path, factory)
    components = check_discovery(json.loads(watcher.wait("homeassistant/device/lotcontrol_A/config").payload))
    ports = {name: c for name, c in components.items() if name.startswith("port_")}
    assert sorted(ports) == ["port_E1", "port_E1_energy", "port_E1_power", "port_E2", "port_W1", "port_W1_energy",
                             "port_W1_power"]  # E2 has no meter: its state only
    power, energy = ports["port_E1_power"], ports["port_E1_energy"]
    assert (power["device_class"], power["unit_of_measurement"], power["state_class"]) == ("power", "W", "measurement")
    assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
        "energy", "kWh", "total_increasing")
    assert power["state_topic"] == energy["state_topic"] == "lotcontrol/A/state/ports/E1"
    assert (power["value_template"], energy["value_template"]) == ("{{ value_json.watts }}", "{{ value_json.kwh }}")
    assert ports["port_E2"]["options"] == ["ready", "charging", "off", "disabled", "fault"]


def test_the_docs_name_every_port_entity_and_never_say_the_ports_are_not_on_home_assistant():
    """The ports are on Home Assistant (a state sensor each; power and energy with a meter): the
    docs' entity table names each, and no page says otherwise (docs/cli.md did, after they were)."""
    import re
    from pathlib import Path

    from lotcontrol.fleet.discovery import device_config
    from lotcontrol.fleet.mqtt import MqttLink

    lot = config(mqtt={"enabled": True, "lot": "A"})
    components = device_config(lot, MqttLink(lot.mqtt), vision=False)["components"].values()
    ports = {p.id: p.bay for p in lot.charging.ports}
    names = set()
    for component in components:
        for port, bay in ports.items():
            if component["name"].startswith(f"Port {port} "):
                names.add(component["name"].replace(f"({bay})", "(*bay*)").replace(f"Port {port} ", "Port *id* "))
    assert names == {"Port *id* (*bay*)", "Port *id* power", "Port *id* energy (session)"}
    docs = Path(__file__).resolve().parents[1] / "docs"
    table = (docs / "mqtt.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    text = " ".join(" ".join(page.read_text().split()) for page in sorted(docs.glob("*.md")))
    stale = [s for s in re.split(r"(?<=[.;])\s", text) if re.search(r"\bports?\b", s)
             and re.search(r"Home Assistant|MQTT", s) and re.search(r"\bnot (wired|published|yet|on)\b", s)]
    assert not stale
