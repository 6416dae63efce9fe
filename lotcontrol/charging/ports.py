"""The charging ports as devices: each port's relay (a GPIO or an MCP23017 pin, through
lotcontrol.pins) and its charging logic (lotcontrol.charging.sessions), driven by the controller's
loop. The relays are switched here, at once, in the loop; a meter's reading only ever arrives as a
message from the meter poller (lotcontrol.charging.meters), so nothing here waits for Modbus.

A relay write that fails is a ``charging.fault`` event, once until a write succeeds again, and is
tried again; it never stops the loop, and the zone contactor stays as the second line of defence. An
expander relay is written by its chip's writer thread (lotcontrol.expander): the loop only asks, so
a stuck I²C bus never holds back the fire outputs; a chip whose writes fail, or that reset itself,
is said each loop turn from what that thread found (``expander_reports``).

The loop asks the ports several times a turn (every 50 ms, and at every message): each port's
logic runs only when it is due (``Port.due_at``: an input came, its zone's verdict changed, its
session's timer or its silent meter's limit is reached), and what they ask of the relays
(``demands``) is kept until a port changes; each port tells of its changes (``Port.changed``), so
a turn with nothing due costs a comparison, not 40 ports.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from ..messages import MeterReading, Reading
from ..phrases import Phrase
from ..config import ChargingConfig, pin_label
from ..pins import open_output, switch
from .sessions import Change, MeterValues, Port

log = logging.getLogger("lotcontrol")


class UnknownPort(LookupError):
    """A command names a port that is not configured."""


class ChargingPorts:
    """Every configured port: relays created off, then the logic. Closes what it opened on failure."""

    def __init__(self, settings: ChargingConfig, now: float, *, pin_factory=None):
        self.settings = settings
        self.ports = {p.id: Port(p, settings.poll_seconds, settings.meter_lost_polls, now, settings.overload_seconds,
                                 changed=self._changed)
                      for p in settings.ports}
        self.zones = sorted({p.zone for p in settings.ports})
        self._zoned = [(port, port.settings.zone) for port in self.ports.values()]
        self._due = -math.inf  # the earliest Port.due_at (-inf: a port changed since it was taken)
        self._allows: dict[str, bool] | None = None  # the zones' verdicts the ports last ran on
        self._demands: dict[str, tuple[str, bool]] | None = None  # (None: a port changed since they were taken)
        self.relays: dict[str, Any] = {}
        self.relay_faults: dict[str, str] = {}
        self._set: dict[str, bool] = {}  # port -> the state its relay last took
        self.by_probe: dict[str, list[Port]] = {}
        for port in self.ports.values():
            if port.settings.probe is not None:
                self.by_probe.setdefault(port.settings.probe, []).append(port)
        self.reset_line = None
        try:
            if settings.expander_reset_pin is not None:  # low (in reset: relays off) until the chips are set up
                self.reset_line = open_output(settings.expander_reset_pin, pin_factory=pin_factory)
                self.reset_line.on()
            for p in settings.ports:
                self.relays[p.id] = open_output(p.relay_pin if p.relay_pin is not None else p.expander,
                                                active_high=p.active_high, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self.chips: dict[int, tuple[Any, list[str]]] = {}  # id(chip) -> (the MCP23017, its ports)
        for port_id, relay in self.relays.items():
            if hasattr(relay, "chip"):
                self.chips.setdefault(id(relay.chip), (relay.chip, []))[1].append(port_id)
        self._said: dict[int, tuple[str | None, int]] = {id(c): (None, c.resets) for c, _ in self.chips.values()}

    # --- the relays ---

    def demands(self) -> dict[str, tuple[str, bool]]:
        """port -> (its fire zone, whether its logic wants power): what lotcontrol.policy decides on.
        The same dict until a port changes (never altered: the controller knows it again by identity)."""
        if self._demands is None:
            self._demands = {port.id: (zone, port.wants_power) for port, zone in self._zoned}
        return self._demands

    def _changed(self) -> None:
        """A port took an input or ran its logic: its demand and its due time are taken again."""
        self._due = -math.inf
        self._demands = None

    def switch(self, wanted: dict[str, bool]) -> list[Change]:
        """Set every relay as ``wanted`` (each on its own: one that fails stops no other). A relay is
        written only when its wanted state differs from the last one it took (the loop asks every
        50 ms; reading back each output costs more than the rest of the ports' work)."""
        if wanted == self._set:
            return []  # every relay took the level asked, and none failed since (a failed one is not in _set)
        changes = []
        for port_id, relay in self.relays.items():
            on = wanted.get(port_id, False)
            if self._set.get(port_id) is on:
                continue
            try:
                switch(relay, on)
                self._set[port_id] = on
            except Exception as exc:
                self._set.pop(port_id, None)
                if port_id not in self.relay_faults:
                    self.relay_faults[port_id] = f"{type(exc).__name__}: {exc}"
                    changes.append(Change("charging.fault", {"port": port_id, "error": "the relay cannot be "
                                                             f"switched: {self.relay_faults[port_id]}"}))
                continue
            if not hasattr(relay, "chip") and self.relay_faults.pop(port_id, None) is not None:
                log.info("charging port %s: its relay answers again", port_id)  # (an expander's: expander_reports)
        return changes

    def verify_expanders(self) -> None:
        """Ask each expander with a port relay to check itself for a reset (in its writer thread: the
        loop never waits for the bus); what it finds comes back through ``expander_reports``."""
        for chip, _ in self.chips.values():
            chip.request_verify()

    def expander_reports(self) -> list[Change]:
        """What the expanders' writer threads found since the last call: a chip that stopped
        answering (its ports faulty, said once), answers again, or had reset itself (set again)."""
        changes = []
        for key, (chip, ports) in self.chips.items():
            said, resets = self._said[key]
            error = chip.error
            if error is not None and said is None:
                for port_id in ports:
                    self.relay_faults[port_id] = f"the {chip.name} does not answer: {error}"
                changes.append(Change("charging.fault", {"port": ", ".join(ports), "error": f"the {chip.name} "
                                                         f"does not answer: {error}"}))
            elif error is None and said is not None:
                for port_id in ports:
                    self.relay_faults.pop(port_id, None)
                log.info("charging ports %s: the %s answers again", ", ".join(ports), chip.name)
            if chip.resets > resets:
                changes.append(Change("charging.fault", {"port": ", ".join(ports), "error": f"the {chip.name} had "
                                                         "reset itself (its relays were off); its pins were set again"}))
            self._said[key] = (error if said is None else (said if error is not None else None), chip.resets)
        return changes

    def flush(self) -> None:
        """Wait until each expander's writer has written what was asked (tests and the rig)."""
        for chip, _ in self.chips.values():
            chip.flush()

    def next_deadline(self) -> float | None:
        """The earliest end of a running session on its timer (``max_hours``)."""
        ends = [p.session.start + p.settings.max_hours * 3600 for p in self.ports.values() if p.session is not None]
        return min(ends, default=None)

    def relay_on(self, port_id: str) -> bool | None:
        try:
            return bool(self.relays[port_id].is_active)
        except Exception:
            return None

    # --- inputs ---

    def update(self, now: float, zone_allows: dict[str, bool]) -> list[Change]:
        """The loop's clock and the fire watch's verdict for each zone: the ports that are due, or
        whose zone's verdict is not the one they last ran on, run their logic (in the configured order)."""
        if now < self._due and zone_allows == self._allows:
            return []
        changes: list[Change] = []
        for port, zone in self._zoned:
            allows = zone_allows.get(zone, False)
            if now >= port.due_at or port.cut == allows:
                changes += port.update(now, allows)
        self._due = min((port.due_at for port in self.ports.values()), default=math.inf)
        self._allows = dict(zone_allows)
        return changes

    def meter(self, reading: MeterReading, now: float) -> list[Change]:
        port = self.ports.get(reading.port)
        if port is None:
            return []
        if reading.error is not None or reading.watts is None or reading.kwh is None:
            return port.meter(None, reading.error or "no value", reading.time, answered=reading.answered)
        return port.meter(MeterValues(reading.watts, reading.kwh, reading.volts, reading.amps), None, reading.time)

    def probe(self, reading: Reading, now: float) -> list[Change]:
        changes: list[Change] = []
        for port in self.by_probe.get(reading.probe, []):
            changes += port.temperature(reading.celsius, now)
        return changes

    def resume(self, sessions, now: float) -> list[Change]:
        """The sessions the last controller left open on metered ports (messages.InterruptedSessions):
        each closed from its port's meter."""
        changes: list[Change] = []
        for key, port_id, meter_start, kwh, peak in sessions:
            if port_id in self.ports:
                changes += self.ports[port_id].resume(key, meter_start, kwh, peak, now)
        return changes

    def interrupt(self, now: float) -> list[Change]:
        """The controller stops: every running session ends as ``interrupted``."""
        changes: list[Change] = []
        for port in self.ports.values():
            changes += port.interrupt(now)
        return changes

    # --- staff ---

    def port(self, port_id: str) -> Port:
        if port_id not in self.ports:
            known = ", ".join(self.ports)
            raise UnknownPort(Phrase("port.unknown", port=port_id, known=known) if known
                              else Phrase("port.none", port=port_id))
        return self.ports[port_id]

    def stop(self, port_id: str, now: float, disable: bool = False) -> tuple[Phrase, list[Change]]:
        port = self.port(port_id)
        changes = port.stop(now, disable)
        code = ("port.disabled" if disable else "port.stopped") + ("_session" if changes else "")
        return Phrase(code, port=port_id), changes

    def enable(self, port_id: str, now: float, zone_allows: Callable[[str], bool]) -> tuple[bool, Phrase, list[Change]]:
        port = self.port(port_id)
        port.cut = not zone_allows(port.settings.zone)
        return port.enable(now)

    # --- what is shown and published ---

    def status(self, now: float) -> list[dict[str, Any]]:
        """One dict per port (state, W, kWh this session, minutes, last stop, relay): what
        ``lotcontrol charging`` shows and what a publisher (MQTT) can read."""
        return [{**port.status(now), "relay": self.relay_on(port.id), "relay_fault": self.relay_faults.get(port.id),
                 "switch": pin_label(port.settings.relay_pin if port.settings.relay_pin is not None
                                     else port.settings.expander)}
                for port in self.ports.values()]

    # --- the end ---

    def make_safe(self) -> None:
        """Every relay off, each on its own; then the expanders held in reset (all their pins off)."""
        self._set.clear()
        for relay in [*self.relays.values(), self.reset_line]:
            try:
                if relay is not None and not relay.closed:
                    relay.off()
            except Exception:
                log.exception("charging relay %s could not be switched off", relay)

    def close(self) -> None:
        self.make_safe()
        for relay in [*self.relays.values(), self.reset_line]:
            try:
                if relay is not None:
                    relay.close()
            except Exception:
                log.exception("charging relay %s could not be closed", relay)
