"""Home Assistant MQTT discovery: the whole lot as one device, in one message.

Device-based discovery (Home Assistant 2024.11 and later): ``<discovery_prefix>/device/lotcontrol_<lot>/config``,
retained, with ``device``, ``origin``, ``availability`` and one ``components`` entry per entity:

- ``door``: binary_sensor ``door`` (with a door contact);
- ``gate``: sensor, enum shut / open / released;
- ``fire_<zone>``: binary_sensor ``heat`` for a zone with probes, ``safety`` for one with contacts only;
  on at pre-alarm and alarm, the zone's faults and drill flag as attributes;
- ``probe_<id>``: sensor ``temperature``, °C, ``measurement``;
- ``free_<zone>``: sensor, free bays, ``measurement``;
- ``access``: event entity, event types ``granted`` and ``denied`` (``reason`` an attribute: ``schedule``,
  ``antipassback``, ...);
- ``inside``: sensor, residents anti-passback counts inside, ``measurement`` (with ``access.antipassback``
  on);
- ``group_<name>``: binary_sensor, on while a window of access group ``name`` is open (unknown while the
  clock is not synchronised);
- ``alerts``: event entity, one event type per alarm-class event (lotcontrol.alerts: ``gate.tailgate`` among
  them), ``severity`` as an attribute;
- ``port_<id>``: each charging port's state (sensor, enum), its last stop and fault as attributes; for a
  port with a meter also ``port_<id>_power`` (sensor ``power``, W, ``measurement``) and
  ``port_<id>_energy`` (sensor ``energy``, kWh, ``total_increasing``: the session's energy, which
  starts again from 0 with each session, as Home Assistant reads a meter's new cycle). A null reading
  renders as ``None``, which Home Assistant's MQTT sensor takes as unknown;
- ``vision``: binary_sensor ``connectivity``, diagnostic (with a camera);
- ``store``: binary_sensor ``problem``, diagnostic (the database degraded);
- ``open_gate``: button, only with ``mqtt.allow_remote_open`` (lotcontrol.fleet.remote).

Every entity is unavailable unless ``<prefix>/<lot>/status`` is ``online`` (``offline`` from the will
and ``stopped`` both read as unavailable). Sent on every connect and again whenever Home Assistant
announces ``online`` on ``<discovery_prefix>/status`` (its birth message after a restart), at most once
a second.
"""

from __future__ import annotations

import time
from typing import Any

from .. import __version__
from ..alerts import SEVERITY
from ..charging.sessions import PORT_STATES
from ..config import Config
from .mqtt import MqttLink
from .remote import PRESS, command_topic

#: Home Assistant's `online` makes the lot announce itself again at most this often (a client repeating
#: it cannot push the lot's events out of its queue with copies of the discovery message).
RESEND_SECONDS = 1.0


def object_id(lot: str) -> str:
    return f"lotcontrol_{lot}".replace(".", "_").replace("-", "_")


def discovery_topic(config: Config) -> str:
    return f"{config.mqtt.discovery_prefix}/device/{object_id(config.mqtt.lot)}/config"


def device_config(config: Config, link: MqttLink, *, vision: bool) -> dict[str, Any]:
    """The discovery payload for this lot (see the module's docstring)."""
    lot = config.mqtt.lot
    uid = object_id(lot)

    def state(*levels: str) -> str:
        return link.topic("state", *levels)

    def key(text: str) -> str:
        return text.replace(".", "_").replace("-", "_")

    components: dict[str, dict[str, Any]] = {}
    if config.gate.door_pin is not None:
        components["door"] = {"platform": "binary_sensor", "name": "Door", "device_class": "door",
                              "state_topic": state("door"), "payload_on": "open", "payload_off": "shut"}
    components["gate"] = {"platform": "sensor", "name": "Gate", "device_class": "enum",
                          "options": ["shut", "open", "released"], "state_topic": state("gate"),
                          "icon": "mdi:gate"}
    for zone in config.fire.zones:
        components[f"fire_{key(zone.name)}"] = {
            "platform": "binary_sensor", "name": f"Fire {zone.name}",
            "device_class": "heat" if zone.probes else "safety", "state_topic": state("fire", zone.name),
            "value_template": "{{ 'ON' if value_json.state in ('prealarm', 'alarm') else 'OFF' }}",
            "json_attributes_topic": state("fire", zone.name)}
        for probe in zone.probes:
            components[f"probe_{key(probe)}"] = {
                "platform": "sensor", "name": f"Probe {probe} ({zone.name})", "device_class": "temperature",
                "unit_of_measurement": "°C", "state_class": "measurement", "suggested_display_precision": 1,
                "state_topic": state("probes", probe), "value_template": "{{ value_json.celsius }}",
                "json_attributes_topic": state("probes", probe)}
    for zone in config.bays.zones:
        components[f"free_{key(zone.name)}"] = {
            "platform": "sensor", "name": f"Free bays {zone.name}", "state_class": "measurement",
            "unit_of_measurement": "bays", "icon": "mdi:bicycle-electric", "state_topic": state("bays", zone.name),
            "value_template": "{{ value_json.free }}", "json_attributes_topic": state("bays", zone.name)}
    components["access"] = {"platform": "event", "name": "Access", "event_types": ["granted", "denied"],
                            "state_topic": link.topic("access"), "icon": "mdi:face-recognition"}
    components["alerts"] = {"platform": "event", "name": "Alerts", "event_types": sorted(SEVERITY),
                            "state_topic": link.topic("alerts"), "icon": "mdi:alarm-light"}
    if config.access.antipassback != "off":
        components["inside"] = {"platform": "sensor", "name": "Residents inside", "state_class": "measurement",
                                "unit_of_measurement": "residents", "icon": "mdi:account-arrow-right",
                                "state_topic": state("access"), "value_template": "{{ value_json.inside }}"}
    for group in config.access.groups:
        components[f"group_{key(group)}"] = {
            "platform": "binary_sensor", "name": f"Access group {group}", "icon": "mdi:calendar-clock",
            "state_topic": state("access"),
            "value_template": f"{{% set open = value_json.groups[{group!r}] %}}"
                              "{{ None if open is none else ('ON' if open else 'OFF') }}"}
    for port in config.charging.ports:
        topic = state("ports", port.id)
        components[f"port_{key(port.id)}"] = {
            "platform": "sensor", "name": f"Port {port.id} ({port.bay})", "device_class": "enum",
            "options": list(PORT_STATES), "state_topic": topic, "value_template": "{{ value_json.state }}",
            "json_attributes_topic": topic, "icon": "mdi:ev-plug-type2"}
        if port.meter is not None:
            components[f"port_{key(port.id)}_power"] = {
                "platform": "sensor", "name": f"Port {port.id} power", "device_class": "power",
                "unit_of_measurement": "W", "state_class": "measurement", "state_topic": topic,
                "value_template": "{{ value_json.watts }}"}
            components[f"port_{key(port.id)}_energy"] = {
                "platform": "sensor", "name": f"Port {port.id} energy (session)", "device_class": "energy",
                "unit_of_measurement": "kWh", "state_class": "total_increasing", "state_topic": topic,
                "value_template": "{{ value_json.kwh }}", "suggested_display_precision": 3}
    if vision:
        components["vision"] = {"platform": "binary_sensor", "name": "Vision worker",
                                "device_class": "connectivity", "entity_category": "diagnostic",
                                "state_topic": state("vision"),
                                "value_template": "{{ 'ON' if value_json.up else 'OFF' }}",
                                "json_attributes_topic": state("vision")}
    components["store"] = {"platform": "binary_sensor", "name": "Database degraded", "device_class": "problem",
                           "entity_category": "diagnostic", "state_topic": state("store"),
                           "payload_on": "degraded", "payload_off": "ok"}
    if config.mqtt.allow_remote_open:
        components["open_gate"] = {"platform": "button", "name": "Open gate", "command_topic": command_topic(link),
                                   "payload_press": PRESS.decode(), "icon": "mdi:gate-open"}
    for name, component in components.items():
        component["unique_id"] = f"{uid}_{name}"
    return {
        "device": {"identifiers": [uid], "name": f"Charging lot {lot}", "manufacturer": "lotcontrol",
                   "model": "e-bike charging lot controller", "sw_version": __version__},
        "origin": {"name": "lotcontrol", "sw_version": __version__},
        "availability": [{"topic": link.status_topic,
                          "value_template": "{{ 'online' if value == 'online' else 'offline' }}"}],
        "qos": 1,
        "components": components,
    }


class Discovery:
    """Announces the lot on every connect and whenever Home Assistant comes online."""

    def __init__(self, config: Config, link: MqttLink, *, vision: bool):
        self.link = link
        self.topic = discovery_topic(config)
        self.payload = device_config(config, link, vision=vision)
        self.sent = 0
        self._last_asked = float("-inf")
        link.on_connect(self.send)
        link.subscribe(f"{config.mqtt.discovery_prefix}/status", self._on_ha_status)

    def send(self) -> None:
        self.sent += 1
        self.link.publish(self.topic, self.payload, retain=True)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        now = time.monotonic()
        if payload.strip() == b"online" and now - self._last_asked >= RESEND_SECONDS:
            self._last_asked = now
            self.send()
