"""Charging sessions as pure logic: meter readings, probe readings, the fire watch's verdict, staff
commands and the loop's clock in; the port's state, its sessions and their events out. No pin, no
meter, no clock of its own: lotcontrol.charging.ports feeds it and switches the relays.

A port is ``ready`` (enabled: its relay may be on), ``charging`` (a session runs; relay on),
``off`` (a session ended or staff stopped it: off until ``enable``), ``disabled`` (staff took it out
of service) or ``fault`` (its meter is lost: off until the meter answers, then ``off``). A metered
port's relay is on only while its meter answers: a meter never read is not known to work.

A session starts when a ready metered port draws more than ``no_load_watts``, or when the port's
switch is turned on for someone: enabling a port whose bay is assigned to a resident, or any port
without a meter (its timer runs from then). It ends, switching the port off, with one reason:

- ``full``: after drawing more than ``full_watts``, below it for ``full_minutes`` (0 W included:
  many chargers switch themselves off when the battery is full);
- ``no_load``: never above ``no_load_watts`` for ``no_load_minutes`` (nothing plugged in);
- ``overload``: above ``max_watts`` in readings spanning ``overload_seconds`` (``charging.overload_seconds``,
  0.5 s by default; the meter poller reads an overloaded meter again within that time instead of
  waiting for its next poll, lotcontrol.charging.meters), or at once at ``OVERLOAD_AT_ONCE`` times
  ``max_watts`` (a short circuit): cut within 1 s of the first reading that shows it (the issue
  asks both "above max_watts for 2 s" and "an overload cut within 1 s"; the safer one is kept);
- ``timer``: ``max_hours`` after it started;
- ``over_temperature``: the bay's probe at ``over_temperature_c``;
- ``meter_lost``: no good reading for ``meter_lost_polls`` polls (failed answers, or that many
  polls' time plus one without any); a failed read never reads as 0 W, which would mean "full";
- ``fire``: the fire watch cut the port's zone (lotcontrol.policy). The port stays ready: when the
  fire watch lets power back (a pre-alarm held clear, an alarm reset by staff), a metered port's
  load starts a new session, and a port switched on for someone starts one for them again;
- ``staff``: ``lotcontrol charging stop`` or ``disable``;
- ``interrupted``: the controller stopped (``interrupt``) or died (``resume``) during it.

Ports without a meter end only on the timer, fire and staff.

The loop runs a port's ``update`` only when it is due (``Port.due_at``): after an input (a reading,
a probe, a command), when its zone's verdict changed, or when its session's timer or its silent
meter's limit comes; in between ``update`` would change nothing, and 40 ports asked every turn were
most of what the charging ports cost the loop (lotcontrol.charging.ports).

A session the last controller left open when it died (``resume``) is closed as ``interrupted`` with
the energy its meter counted since it started: the meter's total at its start (stored) against its
total at this run's first reading of it, taken before the port is switched on again (the relay was
off meanwhile), so the energy of the minutes since the last checkpoint is neither lost nor counted
again by the new session, which starts from that same reading.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from ..phrases import Phrase

READY, CHARGING, OFF, DISABLED, FAULT = "ready", "charging", "off", "disabled", "fault"
PORT_STATES = (READY, CHARGING, OFF, DISABLED, FAULT)
OVERLOAD_SECONDS = 0.5  # the default of charging.overload_seconds
OVERLOAD_AT_ONCE = 2.0  # this many times max_watts is cut at the first reading (a short circuit)
# the reasons, and ``interrupted``: the controller stopped (or died) during the session
REASONS = ("full", "timer", "overload", "no_load", "over_temperature", "meter_lost", "fire", "staff", "interrupted")
# ``Port.due_at`` errs this much early: the sums it is made of and the differences ``update`` compares
# may round apart by a few ulps (a run before a port is due changes nothing; a run skipped would)
DUE_EARLY = 1e-3


@dataclass(frozen=True)
class MeterValues:
    watts: float
    kwh: float
    volts: float | None = None
    amps: float | None = None


@dataclass
class Session:
    key: str  # unique: the stored row's key, so a session is never counted twice
    port: str
    resident: str | None
    start: float
    start_kwh: float | None
    kwh: float = 0.0
    peak_watts: float = 0.0
    drew: bool = False  # has drawn more than full_watts
    low_since: float | None = None  # below full_watts since
    idle_since: float | None = None  # at or below no_load_watts since (while it has not drawn)
    over_since: float | None = None  # above max_watts since
    end: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Change:
    """Something to tell: ``type`` is charging.started, charging.stopped or charging.fault."""

    type: str
    details: dict[str, Any]
    session: Session | None = None


@dataclass
class Port:
    """One port's charging logic. ``settings`` is its PortConfig; ``poll_seconds`` and
    ``lost_polls`` the meters' poll interval and how many polls make a meter lost;
    ``overload_seconds`` how long readings above ``max_watts`` make an overload; ``changed`` is
    called after every input and every ``update`` (whoever keeps the ports' demands and their next
    due time: lotcontrol.charging.ports).

    ``due_at``: the earliest loop time at which ``update`` can change anything while its zone's
    verdict stays as it was (-inf: at the next turn, after an input; inf: only an input or the fire
    watch can). Running ``update`` earlier is harmless; skipping it when due would not be."""

    settings: Any
    poll_seconds: float
    lost_polls: int
    now: float
    overload_seconds: float = OVERLOAD_SECONDS
    changed: Callable[[], None] | None = None
    state: str = field(init=False)
    session: Session | None = None
    reading: MeterValues | None = None
    last_good: float | None = None
    failed_polls: int = 0
    fault: str | None = None
    last_stop: str | None = None
    cut: bool = False  # the fire watch forbids power in the port's zone
    celsius: float | None = None
    interrupted: list[Session] = field(default_factory=list)  # the last run's, until a reading closes them

    def __post_init__(self) -> None:
        self.id = self.settings.id
        self.metered = self.settings.meter is not None
        self.state = READY if self.settings.enabled else DISABLED
        self.pending_start = self.state == READY and self._on_for_someone()
        self.created = self.now
        self.due_at = -math.inf

    # --- what the relay should do ---

    @property
    def wants_power(self) -> bool:
        if self.state not in (READY, CHARGING):
            return False
        return not self.metered or self.last_good is not None  # a silent meter is given lost_polls polls

    def _on_for_someone(self) -> bool:
        return not self.metered or self.settings.resident is not None

    # --- inputs ---

    def meter(self, values: MeterValues | None, error: str | None, now: float, answered: bool = False) -> list[Change]:
        """One poll of the port's meter: values, or the error that stands in their place. ``answered``:
        the meter answered but a register could not be read (an exception, a value that is no number):
        the port is faulty at once, where silence is given ``lost_polls`` polls."""
        self._touched()
        if values is None:
            self.failed_polls += 1
            changes = []
            if self.fault is None:
                self.fault = f"meter: {error}"
                changes.append(Change("charging.fault", {"port": self.id, "error": self.fault}))
            if answered or self.failed_polls >= self.lost_polls:
                changes += self._lost(now)
            return changes
        self.failed_polls = 0
        self.last_good = now
        self.reading = values
        changes = self._close_interrupted(now)
        if self.fault is not None:
            self.fault = None
            if self.state == FAULT:
                self.state = OFF
        if self.state == READY and not self.cut and values.watts > self.settings.no_load_watts:
            changes += self._start(now)
        if self.state == CHARGING and self.session is not None:
            changes += self._judge(self.session, values, now)
        return changes

    def _judge(self, s: Session, values: MeterValues, now: float) -> list[Change]:
        p = self.settings
        watts = values.watts
        if s.start_kwh is None:
            s.start_kwh = values.kwh
        s.kwh = max(0.0, values.kwh - s.start_kwh)
        s.peak_watts = max(s.peak_watts, watts)
        if watts > p.max_watts:
            s.over_since = now if s.over_since is None else s.over_since
            if now - s.over_since >= self.overload_seconds or watts >= OVERLOAD_AT_ONCE * p.max_watts:
                return self._stop(now, "overload", OFF, {"watts": round(watts, 1)})
        else:
            s.over_since = None
        if watts > p.full_watts:
            s.drew = True
        s.low_since = None if watts >= p.full_watts else (now if s.low_since is None else s.low_since)
        if s.drew and s.low_since is not None and now - s.low_since >= p.full_minutes * 60:
            return self._stop(now, "full", OFF)
        if not s.drew:
            s.idle_since = None if watts > p.no_load_watts else (now if s.idle_since is None else s.idle_since)
            if s.idle_since is not None and now - s.idle_since >= p.no_load_minutes * 60:
                return self._stop(now, "no_load", OFF)
        return []

    def temperature(self, celsius: float | None, now: float) -> list[Change]:
        """A reading of the bay's probe (None: a fault, which the fire watch handles)."""
        self._touched()
        self.celsius = celsius
        if celsius is None or celsius < self.settings.over_temperature_c or self.state not in (READY, CHARGING):
            return []
        details = {"celsius": celsius}
        if self.session is None:
            self.state, self.last_stop = OFF, "over_temperature"
            return [Change("charging.stopped", {"port": self.id, "reason": "over_temperature", **details})]
        return self._stop(now, "over_temperature", OFF, details)

    def update(self, now: float, fire_allows: bool) -> list[Change]:
        """The loop's clock and the fire watch's verdict for the port's zone: fire, timer, a silent meter."""
        changes: list[Change] = []
        was_cut, self.cut = self.cut, not fire_allows
        if self.cut and self.session is not None:
            changes += self._stop(now, "fire", READY)
        if self.state == READY and not self.cut and (self.pending_start or (was_cut and self._on_for_someone())):
            if self.wants_power:
                self.pending_start = False
                changes += self._start(now)
        s = self.session
        if s is not None and now - s.start >= self.settings.max_hours * 3600:
            changes += self._stop(now, "timer", OFF)
        if self.metered and self.state in (READY, CHARGING):
            since = self.last_good if self.last_good is not None else self.created
            if now - since > (self.lost_polls + 1) * self.poll_seconds:
                if self.fault is None:
                    self.fault = f"meter: no reading for {now - since:.0f} s"
                    changes.append(Change("charging.fault", {"port": self.id, "error": self.fault}))
                changes += self._lost(now)
        self._schedule()
        return changes

    def _schedule(self) -> None:
        """``due_at`` from the state ``update`` left: the session's timer, the silent meter's limit."""
        due = math.inf
        if (self.cut and self.session is not None) or (self.state == READY and not self.cut and self.pending_start
                                                         and self.wants_power):
            due = -math.inf  # (``update`` leaves neither; kept so that due_at never hides them)
        s = self.session
        if s is not None:
            due = min(due, s.start + self.settings.max_hours * 3600)
        if self.metered and self.state in (READY, CHARGING):
            since = self.last_good if self.last_good is not None else self.created
            due = min(due, since + (self.lost_polls + 1) * self.poll_seconds)
        self.due_at = due - DUE_EARLY
        if self.changed is not None:
            self.changed()

    def _touched(self) -> None:
        """An input came: ``update`` runs at the next turn, and ``changed`` is told."""
        self.due_at = -math.inf
        if self.changed is not None:
            self.changed()

    def resume(self, key: str, meter_start: float, kwh: float | None, peak: float | None, now: float) -> list[Change]:
        """A session the last controller left open: closed from this run's first reading of the meter
        (now, if one came already), with at least its last checkpoint's energy."""
        self._touched()
        self.interrupted.append(Session(key, self.id, None, now, meter_start, kwh or 0.0, peak or 0.0))
        return self._close_interrupted(now)

    def _close_interrupted(self, now: float, meter_lost: bool = False) -> list[Change]:
        """Close the last run's sessions from the meter's total; a meter lost before it was read
        closes them with their checkpoint's energy."""
        if not self.interrupted:
            return []
        # the meter's total when this run first read it: the new session's start, else the last reading
        total = (self.session.start_kwh if self.session is not None and self.session.start_kwh is not None
                 else None if self.reading is None else self.reading.kwh)
        if total is None and not meter_lost:
            return []
        changes = []
        for s in self.interrupted:
            counted = None if total is None else total - s.start_kwh
            if counted is not None and counted >= s.kwh:  # a meter that went back (replaced) keeps the checkpoint's
                s.kwh = counted
            s.end, s.reason = now, "interrupted"
            changes.append(Change("charging.interrupted", {"port": self.id, "kwh": round(s.kwh, 4)}, s))
        self.interrupted = []
        return changes

    # --- staff ---

    def interrupt(self, now: float) -> list[Change]:
        """The controller stops (an orderly stop): the running session ends as ``interrupted`` with
        its energy to the last reading."""
        self._touched()
        return [] if self.session is None else self._stop(now, "interrupted", READY)

    def stop(self, now: float, disable: bool = False) -> list[Change]:
        self._touched()
        target = DISABLED if disable else OFF
        if self.session is not None:
            return self._stop(now, "staff", target)
        if disable or self.state not in (FAULT, DISABLED):  # stopping never brings a disabled port back
            self.state = target
        self.pending_start = False
        return []

    def enable(self, now: float) -> tuple[bool, Phrase, list[Change]]:
        """Switch the port on again; refused while its meter is lost. (ok, message, changes)."""
        self._touched()
        if self.state == FAULT:
            return False, Phrase("port.faulty", port=self.id, fault=self.fault), []
        if self.state in (READY, CHARGING):
            return True, Phrase(f"port.already_{self.state}", port=self.id), []
        self.state = READY
        self.pending_start = self._on_for_someone()
        changes = self.update(now, not self.cut)
        code = "port.enabled_session" if self.session else "port.enabled_cut" if self.cut else "port.enabled"
        return True, Phrase(code, port=self.id), changes

    # --- sessions ---

    def _start(self, now: float) -> list[Change]:
        start_kwh = self.reading.kwh if (self.metered and self.reading is not None) else None
        self.session = Session(uuid.uuid4().hex, self.id, self.settings.resident, now, start_kwh, idle_since=now)
        self.state = CHARGING
        return [Change("charging.started", {"port": self.id, "bay": self.settings.bay}, self.session)]

    def _stop(self, now: float, reason: str, state: str, extra: dict | None = None) -> list[Change]:
        s = self.session
        self.session = None
        self.state, self.last_stop = state, reason
        if s is None:
            return []
        s.end, s.reason = now, reason
        details = {"port": self.id, "reason": reason, "minutes": round((now - s.start) / 60, 1), **(extra or {})}
        if self.metered:
            details.update(kwh=round(s.kwh, 3), peak_watts=round(s.peak_watts, 1))
        return [Change("charging.stopped", details, s)]

    def _lost(self, now: float) -> list[Change]:
        changes = self._close_interrupted(now, meter_lost=True)
        changes += self._stop(now, "meter_lost", FAULT) if self.session is not None else []
        if self.state == READY:
            self.state, self.last_stop = FAULT, "meter_lost"
        return changes

    def status(self, now: float) -> dict[str, Any]:
        s = self.session
        return {"port": self.id, "zone": self.settings.zone, "bay": self.settings.bay,
                "resident": self.settings.resident, "state": self.state, "cut_by_fire": self.cut,
                # a meter that failed shows no power (never its last reading as if it were now)
                "watts": None if self.reading is None or not self.metered or self.fault else round(self.reading.watts, 1),
                "kwh": None if s is None or not self.metered else round(s.kwh, 3),
                "minutes": None if s is None else round((now - s.start) / 60, 1),
                "last_stop": self.last_stop, "fault": self.fault, "metered": self.metered, "celsius": self.celsius}
