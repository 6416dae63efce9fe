"""What one lot tells the village: every event, and its state retained, on ``<prefix>/<lot>/...``.

- ``events/<type>``: every event as JSON (not retained): ``type``, ``time``, ``resident_id`` and
  ``resident`` (the name) where there is one, ``clock_synced: false`` when the lot's clock was not
  synchronised (its ``time`` may be hours or years off), and the event's details. Never a face or a snapshot.
- ``access``: ``access.granted`` / ``access.denied`` once more, as Home Assistant's event entity takes
  them: ``event_type`` (granted or denied), ``resident``, ``resident_id``, ``reason`` (a refusal's: the
  factor at fault, e.g. ``face_mismatch``, ``pin_missing``), ``by`` (the factors given: ``face``,
  ``card``, ``card+pin``, ``pin+face``, ... ; None for a face alone), ``distance``.
- ``alerts``: every alarm-class event once more (lotcontrol.alerts), whatever ``notify.min_severity``:
  the event's JSON with ``severity`` (critical, warning, info) and ``event_type`` (the type, for Home
  Assistant's event entity). Not retained.
- ``state/...`` (retained, published when it changes): see ``lot_state``.

``LotPublisher`` is called on the controller's loop thread (an event listener and an observer of each
turn; the writer thread calls it for the events it makes itself, ``store.degraded`` and
``store.restored``): it only compares a few values and appends to the link's bounded queue, so the loop never waits
on the broker. After every (re)connect, and after the queue dropped anything, every state topic is
published again, so a retained state is never left stale by a drop.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..alerts import severity
from ..store import isotime
from .mqtt import MqttLink

ACCESS = {"access.granted": "granted", "access.denied": "denied"}
RESEND_AFTER_DROP_SECONDS = 1.0  # a queue overflowing while connected re-sends the state at most this often
#: The ports' state is read at most this often (reading 40 ports costs a turn about 0.15 ms; their meters
#: are polled about once a second), and at once on a charging event (a start, a stop, a fault).
PORT_STATE_SECONDS = 1.0
ACCESS_STATE_SECONDS = 1.0  # the access state likewise (a window's edge is published within a second)


def lot_state(controller, now: float) -> dict[str, Any]:
    """Every retained state topic (below ``state/``) and its payload, read from the controller:

    - ``gate``: ``shut``, ``open``, or ``released`` (held open for egress by a fire alarm);
    - ``door``: ``open`` or ``shut`` (absent without a door contact);
    - ``bays/<zone>``: ``{"free", "occupied", "unknown"}``;
    - ``fire/<zone>``: ``{"state": normal|prealarm|alarm, "faults": [...], "drill": bool}``;
    - ``probes/<id>``: ``{"celsius": 21.4 (0.1 °C steps) or null, "fault": null or why}``;
    - ``vision``: ``{"up": bool, "restarts": n}`` (absent without a camera);
    - ``store``: ``ok`` or ``degraded`` (the database cannot be written; events wait in memory);
    - ``passes/<id>``: ``{"used": n}``, this lot's uses of each visitor pass still valid (the hub sums
      them across lots: lotcontrol.fleet.passes);

    and the charging ports' (``port_state``) and ``access`` (``access_state``): ``{"antipassback":
    off|log|enforce, "inside": n, "groups": {name: true|false|null}}``, the site's anti-passback, how many
    residents it counts inside (no names), and each access group's windows open or shut (null while the
    clock is not synchronised).
    """
    gate = controller.gate
    state: dict[str, Any] = {"gate": "released" if gate.held else "open" if gate.is_open else "shut"}
    site = controller.site
    if site is not None and site.door is not None:
        state["door"] = "open" if controller.door.is_open else "shut"
    for zone, counts in controller.bays.counts().items():
        state[f"bays/{zone}"] = counts
    for name, zone in controller.fire.zones.items():
        state[f"fire/{name}"] = {"state": zone.level, "faults": sorted(zone.faults), "drill": zone.drill}
        for probe in zone.zone.probes:
            reading = zone.readings.get(probe)
            celsius = None if reading is None or reading.celsius is None else round(reading.celsius, 1)
            fault = zone.faults.get(probe) or (reading.fault if reading is not None else None)
            state[f"probes/{probe}"] = {"celsius": celsius, "fault": fault}
    if controller.worker is not None:
        status = controller.worker.status(now)
        state["vision"] = {"up": bool(status["up"]), "restarts": status["restarts"]}
    state["store"] = "degraded" if controller.writer.degraded else "ok"
    for pass_id, used in controller.pass_counts().items():
        state[f"passes/{pass_id}"] = {"used": used}
    return state


def access_state(controller) -> dict[str, Any]:
    """``access``: ``{"antipassback", "inside", "groups"}`` (see ``lot_state``); read at most once a
    second (a turn would pay a few hundred µs with 40 residents inside), and at once on an access event."""
    access = controller.access_status()
    return {"access": {"antipassback": access["antipassback"], "inside": access["inside"], "groups": access["groups"]}}


def port_state(controller, now: float) -> dict[str, Any]:
    """``ports/<id>``: each charging port, ``{"state", "watts", "kwh", "last_stop", "fault", "cut_by_fire"}``:
    ``watts`` the meter's last reading and ``kwh`` this session's energy (0 between sessions), both null
    for a port without a meter (or, for watts, before its first reading)."""
    return {f"ports/{port['port']}": {
        "state": port["state"], "watts": port["watts"],
        "kwh": port["kwh"] if port["kwh"] is not None or not port["metered"] else 0.0,
        "last_stop": port["last_stop"], "fault": port["fault"], "cut_by_fire": port["cut_by_fire"]}
        for port in controller.charging.status(now)}


class LotPublisher:
    """Publishes one controller's events and state through ``link``."""

    def __init__(self, link: MqttLink, controller):
        self.link = link
        self.controller = controller
        self.published: dict[str, Any] = {}  # state topic -> the payload last handed to the link
        self._resend = True
        self._dropped = link.dropped
        self._next_drop_resend = 0.0
        self._next_ports = 0.0
        self._next_access = 0.0
        link.on_connect(self.resend)

    def attach(self) -> "LotPublisher":
        # with the events made before (fire.alarm.restored at start; a database that cannot be opened)
        self.controller.listeners.add(self.on_event)
        self.controller.writer.listeners.add(self.on_event)  # store.degraded, store.restored
        self.controller.observers.append(self.on_turn)
        return self

    def resend(self) -> None:
        """Publish every state topic again at the next turn (called on the link's network thread)."""
        self._resend = True

    def on_event(self, type: str, resident_id: int | None, details: dict[str, Any], when: dt.datetime) -> None:
        message: dict[str, Any] = {"type": type, "time": isotime(when)}
        if not self.controller.clock.synchronized():
            message["clock_synced"] = False  # the time may be hours or years off (NTP has not set the clock)
        if resident_id is not None:
            message["resident_id"] = resident_id
            message["resident"] = self.controller.writer.directory.name(resident_id)
        message.update(details)
        self.link.publish(self.link.topic("events", type), message, retain=False)
        if type.startswith("charging."):
            self._next_ports = 0.0  # the ports' state at the end of this turn
        if type.startswith(("access.", "presence.")):
            self._next_access = 0.0
        level = severity(type)
        if level is not None:
            self.link.publish(self.link.topic("alerts"), {**message, "severity": level, "event_type": type},
                              retain=False)
        if type in ACCESS:
            self.link.publish(self.link.topic("access"), {
                "event_type": ACCESS[type], "time": message["time"], "resident_id": resident_id,
                "resident": message.get("resident"), "reason": details.get("reason"), "by": details.get("by"),
                "distance": details.get("distance"), **({"clock_synced": False} if "clock_synced" in message else {}),
                **({"antipassback": True} if details.get("antipassback") else {})},
                retain=False)

    def on_turn(self, message: object | None = None) -> None:
        now = self.controller.clock.now()
        if self.link.dropped != self._dropped and self.link.connected.is_set() and now >= self._next_drop_resend:
            # a state may have been among what was lost (while away, the reconnect re-sends anyway)
            self._dropped = self.link.dropped
            self._next_drop_resend = now + RESEND_AFTER_DROP_SECONDS
            self._resend = True
        if self._resend:
            self._resend = False
            self.published.clear()
            self._next_ports = self._next_access = 0.0
        state = lot_state(self.controller, now)
        if self.controller.charging.ports and now >= self._next_ports:
            self._next_ports = now + PORT_STATE_SECONDS
            state.update(port_state(self.controller, now))
        if now >= self._next_access:
            self._next_access = now + ACCESS_STATE_SECONDS
            state.update(access_state(self.controller))
        for key, payload in state.items():
            if self.published.get(key) != payload:
                self.published[key] = payload
                self.link.publish(self.link.topic("state", *key.split("/")), payload, retain=True)
