"""The controller: owns the GPIO, the policy and the database; never runs face work.

Everything that happens arrives in one inbox — the vision worker's messages, the fire contacts and
probes, bay sensors, beams, door and exit button, staff commands from the control socket — and is
handled by one loop, which also closes the gate on time, re-evaluates the fire zones, and restarts a
vision worker that died or went silent. Nothing here waits on the camera. Outputs switch before
anything is written; events that cannot be written (database locked or unwritable) are kept in
memory and written when the database is back.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gpiozero import OutputDevice

from .bays import BayWatch
from .config import Config
from .decision import admit
from .door import DoorWatch
from .fire import Reading, Transition
from .firewatch import ContactChange, FireWatch
from .gate import Gate
from .hardware import switch
from .notify import Notifier
from .sensors import BaySensor, BeamBroken, DoorChange, ExitPressed, Sensors
from .service import notify, watchdog_interval
from .messages import CameraStatus, Heartbeat, Passage, SourceEnded
from .store import Store, isotime, utc_now
from .supervisor import WorkerGone

log = logging.getLogger("lotcontrol")

TICK = 0.05  # seconds between checks of deadlines when nothing arrives
PENDING_EVENTS = 10_000  # events kept in memory while the database cannot be written


@dataclass(frozen=True)
class Command:
    """A staff command from the control socket; ``reply`` gets the answer."""

    name: str
    args: dict[str, Any]
    reply: Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Stop:
    reason: str


class Controller:
    def __init__(self, config: Config, store: Store | None, *, pin_factory=None, worker=None,
                 clock: Callable[[], float] = time.monotonic, today: Callable[[], dt.date] | None = None,
                 snapshots: Path | None = None, inputs: bool = True):
        self.config = config
        self.store = store
        self.clock = clock
        self.today = today or (lambda: dt.datetime.now().date())
        self.inbox: queue.Queue = queue.Queue()
        self.gate = self.fire = self.buzzer = self.sensors = None
        self.pin_factory = pin_factory
        self.bays = BayWatch(config.bays, clock())
        self.door = DoorWatch(config.gate.held_open_seconds)
        self._fire_hold = False
        self._renotify_at: float | None = None
        self.notifier = Notifier(config.fire.notify_command, timeout=config.fire.notify_timeout_seconds,
                                 retries=config.fire.notify_retries)
        try:  # outputs first, each in its safe state; a failure half-way releases what was opened
            self.gate = Gate(config.gate, pin_factory=pin_factory)
            self.fire = FireWatch(config.fire, pin_factory=pin_factory, clock=clock)
            self.buzzer = None if config.gate.buzzer_pin is None else OutputDevice(
                config.gate.buzzer_pin, initial_value=False, pin_factory=pin_factory)
        except Exception:
            self._release_devices()
            raise
        self.worker = worker
        self.snapshots = snapshots
        self._watchdog = watchdog_interval()
        self._next_pet = 0.0
        self.finished = threading.Event()
        self.exit_reason: str | None = None
        self._pending: collections.deque = collections.deque(maxlen=PENDING_EVENTS)
        self._degraded = False
        self._passage: int | None = None  # the resident whose grant holds the gate open now
        self._restart_at: float | None = None
        self._restarts = 0
        self._started_at = 0.0
        self._next_cleanup = 0.0
        self._next_prune = 0.0
        self.heartbeat: Heartbeat | None = None
        self.inputs_open = False
        if inputs:
            self.open_inputs()

    def open_inputs(self) -> None:
        """The fire contacts and probes, bay sensors, beams, door and exit button; then the first
        evaluation, which is when charging may come on."""
        now = self.clock()
        try:
            self.fire.open_inputs(self.inbox.put, pin_factory=self.pin_factory)
            self.sensors = Sensors(self.config, self.inbox.put, pin_factory=self.pin_factory, clock=self.clock)
        except Exception:
            self._release_devices()
            raise
        for (zone, bay), occupied in self.sensors.bay_readings().items():
            self.bays.initial(zone, bay, occupied, now)
        self.door.door(self.sensors.door_open(), now, released=True)  # as found: no alarm at start
        self.inputs_open = True
        self._fire_update(now)

    # --- events ---

    def event(self, type: str, resident_id: int | None = None, details: dict[str, Any] | None = None) -> None:
        """Log an event now; if the database cannot take it, keep it until it can."""
        when = utc_now()
        name = self._name(resident_id)
        log.info("%s%s%s", type, f" {name}" if name else "", "".join(f" {k}={v}" for k, v in (details or {}).items()))
        self._pending.append((type, resident_id, details or {}, when))
        self._flush_events()

    def _flush_events(self) -> None:
        if self.store is None:
            return  # not opened yet: the outputs come first at start-up
        written = 0
        while self._pending:
            type, resident_id, details, when = self._pending[0]
            try:
                self.store.log_event(type, resident_id, details, time=when)
            except sqlite3.Error as exc:
                if not self._degraded:
                    self._degraded = True
                    # dated with the first event it kept back, so the log reads in order
                    self._pending.appendleft(("store.degraded", None, {"error": str(exc)}, when))
                    log.warning("store.degraded: events kept in memory until the database can be written: %s", exc)
                return
            self._pending.popleft()
            written += 1
        if self._degraded:
            self._degraded = False
            self.store.log_event("store.restored", None, {"events_written": written})
            log.info("store.restored events_written=%d", written)

    def _name(self, resident_id: int | None) -> str | None:
        if resident_id is None or self.store is None:
            return None
        try:
            resident = self.store.resident_by_id(resident_id)
        except sqlite3.Error:
            return f"#{resident_id}"
        return resident.name if resident else f"#{resident_id}"

    # --- handling ---

    def handle(self, message: object, now: float) -> None:
        if isinstance(message, (ContactChange, Reading)):
            self.fire.feed(message)
            self._fire_update(now)
        elif isinstance(message, BaySensor):
            self.bays.sensor(message.zone, message.bay, message.occupied, message.time)
        elif isinstance(message, BeamBroken):
            counted = self.bays.beam(message.beam, message.time)
            if counted is not None:
                self.event(counted.type, None, counted.details)
        elif isinstance(message, DoorChange):
            for type, details in self.door.door(message.is_open, now, released=self.gate.is_open):
                self.event(type, None, details)
        elif isinstance(message, ExitPressed):
            self.gate.open(now)
            self._passage = None
            self.event("gate.exit", None, {})
        elif isinstance(message, Passage):
            self._on_passage(message, now)
        elif isinstance(message, Heartbeat):
            self.heartbeat = message
        elif isinstance(message, WorkerGone):
            self._on_worker_gone(message, now)
        elif isinstance(message, CameraStatus):
            self.event("camera.restored" if message.ok else "camera.lost", None, {"detail": message.detail})
        elif isinstance(message, SourceEnded):
            self.exit_reason = f"the video ended after {message.frames} frames"
            self.finished.set()
        elif isinstance(message, Command):
            self._on_command(message, now)
        elif isinstance(message, Stop):
            self.exit_reason = message.reason
            self.finished.set()

    def _on_passage(self, passage: Passage, now: float) -> None:
        details: dict[str, Any] = {"distance": passage.distance, "frames": passage.frames,
                                   "duration": round(passage.duration, 3), "track": passage.track}
        if self.fire.alarm:  # the gate is held open for egress; nobody is let in towards a fire
            self._deny(passage, "fire_alarm", details)
            return
        if passage.outcome == "grant" and self.bays.lot_full:
            if self.config.bays.lot_full == "refuse":
                self._deny(passage, "lot_full", details)
                return
            details["lot_full"] = True
        if passage.outcome != "grant":
            self._deny(passage, passage.reason or "unknown", details)
            return
        try:
            resident = self.store.resident_by_id(passage.resident_id)
        except sqlite3.Error:
            resident = None
        refusal = admit(resident, self.today())
        if refusal is not None:
            self._deny(passage, refusal, details)
            return
        same_passage = self._passage == resident.id and self.gate.is_open
        self.gate.open(now)
        self._passage = resident.id
        if same_passage:
            log.info("gate held open for %s (same passage)", resident.name)
            return
        self.event("access.granted", resident.id, {**details, **self._snapshot(passage, "granted")})

    def _deny(self, passage: Passage, reason: str, details: dict[str, Any]) -> None:
        resident_id = passage.resident_id if reason not in ("resident_removed",) else None
        self.event("access.denied", resident_id, {"reason": reason, **details, **self._snapshot(passage, "denied")})

    def _snapshot(self, passage: Passage, outcome: str) -> dict[str, str]:
        if not passage.snapshot or self.snapshots is None:
            return {}
        self.snapshots.mkdir(mode=0o700, exist_ok=True)
        name = f"{isotime(utc_now()).replace(':', '')}-{outcome}-{passage.track}.jpg"
        path = self.snapshots / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(passage.snapshot)
        return {"snapshot": f"snapshots/{name}"}

    def prune_old_events(self) -> int:
        """Delete events older than events.keep_days, and say so in the log."""
        cutoff = isotime(utc_now() - dt.timedelta(days=self.config.events.keep_days))
        try:
            deleted = self.store.prune_events(cutoff)
        except sqlite3.Error as exc:
            log.warning("old events not pruned: %s", exc)
            return 0
        if deleted:
            self.event("events.pruned", None, {"deleted": deleted, "older_than": cutoff})
        return deleted

    def delete_old_snapshots(self) -> int:
        """Delete entry snapshots older than events.retention_days; how many went."""
        if self.snapshots is None or not self.snapshots.is_dir():
            return 0
        cutoff = time.time() - self.config.events.retention_days * 86400
        old = [p for p in self.snapshots.glob("*.jpg") if p.stat().st_mtime < cutoff]
        for path in old:
            path.unlink(missing_ok=True)
        if old:
            log.info("deleted %d snapshot(s) older than %d days", len(old), self.config.events.retention_days)
        return len(old)

    # --- fire ---

    def _fire_update(self, now: float) -> None:
        """Evaluate the zones; outputs first (chargers, siren inside FireWatch, then the gate), then
        events and notifications, which may wait."""
        transitions = self.fire.update(now)
        self._fire_outputs(now)
        self._fire_events(transitions, now)
        if self.fire.alarm and self._renotify_at is not None and now >= self._renotify_at:
            self._renotify_at = now + self.config.fire.renotify_seconds
            self.notifier.send({"type": "fire.alarm.standing", "time": isotime(utc_now()),
                                "zones": [z["zone"] for z in self.fire.status(now) if z["state"] == "alarm"]})

    def _fire_outputs(self, now: float) -> None:
        if self.fire.alarm and not self._fire_hold:
            self._fire_hold = True
            self.gate.open(now, math.inf)  # released and held open for egress
            self._passage = None
        elif not self.fire.alarm and self._fire_hold:
            self._fire_hold = False
            self.gate.shut()

    def _fire_events(self, transitions: list[Transition], now: float) -> None:
        for transition in transitions:
            self.event(transition.type, None, transition.details())
            self.notifier.send({"type": transition.type, "time": isotime(utc_now()), **transition.details()})
            if transition.type == "fire.alarm" and self._renotify_at is None:
                self._renotify_at = now + self.config.fire.renotify_seconds
        if not self.fire.alarm:
            self._renotify_at = None

    def _on_command(self, command: Command, now: float) -> None:
        if command.name.startswith("fire."):
            self._on_fire_command(command, now)
        elif command.name == "gate.open":
            seconds = float(command.args.get("seconds") or self.config.gate.open_seconds)
            self.gate.open(now, seconds)
            self._passage = None
            self.event("gate.manual_open", None, {"seconds": seconds})
            command.reply({"ok": True, "message": f"gate open for {seconds:g} s"})
        elif command.name == "status":
            command.reply({"ok": True, "status": self.status(now)})
        elif command.name == "bays.status":
            command.reply({"ok": True, "zones": self.bays.status(now)})
        elif command.name == "bays.set":
            try:
                change = self.bays.set_occupied(str(command.args.get("zone")), int(command.args["occupied"]))
            except (ValueError, KeyError, TypeError) as exc:
                command.reply({"ok": False, "message": str(exc)})
                return
            self.event(change.type, None, change.details)
            command.reply({"ok": True, "message": f"zone {change.details['zone']!r}: {change.details['occupied']} occupied"})
        else:
            command.reply({"ok": False, "message": f"unknown command {command.name!r}"})

    def _on_fire_command(self, command: Command, now: float) -> None:
        if command.name == "fire.status":
            command.reply({"ok": True, "zones": self.fire.status(now)})
        elif command.name == "fire.reset":
            transitions, refused = self.fire.reset(now)
            self._fire_outputs(now)
            self._fire_events(transitions, now)
            if refused:
                command.reply({"ok": False, "message": "reset refused, inputs still in alarm: " + "; ".join(refused)})
            elif transitions:
                command.reply({"ok": True, "message": f"reset {len([t for t in transitions if t.type == 'fire.reset'])} zone(s)"})
            else:
                command.reply({"ok": True, "message": "no zone was in alarm"})
        elif command.name == "fire.drill":
            zone = str(command.args.get("zone"))
            if zone not in self.fire.zones:
                known = ", ".join(self.fire.zones) or "none configured"
                command.reply({"ok": False, "message": f"no fire zone {zone!r} (zones: {known})"})
                return
            self.event("fire.drill", None, {"zone": zone})
            transitions = self.fire.drill(zone, now)
            self._fire_outputs(now)
            self._fire_events(transitions, now)
            command.reply({"ok": True, "message": f"drill in zone {zone!r}: alarm actions on; end it with "
                                                  "`lotcontrol fire reset`"})
        else:
            command.reply({"ok": False, "message": f"unknown command {command.name!r}"})

    def status(self, now: float) -> dict[str, Any]:
        vision = None
        if self.worker is not None:
            vision = {"pid": self.worker.pid, "silent_seconds": round(self.worker.silent_for(now), 1),
                      "frames": self.heartbeat.frames if self.heartbeat else 0,
                      "dropped": self.heartbeat.dropped if self.heartbeat else 0,
                      "restarts": self._restarts}
        return {"gate": "open" if self.gate.is_open else "shut", "fire_hold": self._fire_hold,
                "door": None if self.sensors is None or self.sensors.door is None else ("open" if self.door.is_open else "shut"),
                "door_held_open": self.door.held, "bays": self.bays.counts(), "lot_full": self.bays.lot_full,
                "fire": self.fire.status(now), "vision": vision, "events_waiting": len(self._pending)}

    # --- the vision worker ---

    def _on_worker_gone(self, gone: WorkerGone, now: float) -> None:
        if self.worker is None or gone.generation != self.worker.generation or self.finished.is_set():
            return
        self.event("vision.died", None, {"exitcode": gone.exitcode})
        delay = min(2 ** self._restarts - 1, 30)  # 0, 1, 3, 7 ... 30 s when it keeps dying
        self._restart_at = now + delay

    def _supervise(self, now: float) -> None:
        if self.worker is None:
            return
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self._restarts += 1
                self.worker.start()
                self._started_at = now
                self.event("vision.restarted", None, {"attempt": self._restarts, "pid": self.worker.pid})
            return
        if self._restarts and now - self._started_at > 60:
            self._restarts = 0  # it has stayed up: the next failure restarts at once again
        silent = self.worker.silent_for(now)
        if silent > self.config.vision.heartbeat_timeout_seconds:
            self.event("vision.stalled", None, {"silent_seconds": round(silent, 1)})
            self.worker.kill()  # its WorkerGone schedules the restart
            self.worker.last_heard = now  # do not kill it twice while it dies

    def healthy(self, now: float) -> bool:
        """What the systemd watchdog is petted on: this loop runs (we are in it), the inputs answer,
        and the vision worker was heard from within its heartbeat timeout."""
        if self.worker is not None and self.worker.silent_for(now) > self.config.vision.heartbeat_timeout_seconds:
            return False
        if self.sensors is None:
            return False
        return all(_answers(device) for device in self.sensors.devices + self.fire.devices)

    def tick(self, now: float) -> None:
        if not self.inputs_open:
            return  # nothing to evaluate yet: the outputs stay in their safe state
        if self._watchdog is not None and now >= self._next_pet:
            self._next_pet = now + self._watchdog
            if self.healthy(now):
                notify("WATCHDOG=1")
        self._fire_update(now)
        for bay_event in self.bays.update(now):
            self.event(bay_event.type, None, bay_event.details)
        for type, details in self.door.update(now, self._fire_hold):
            self.event(type, None, details)
        if self.buzzer is not None:
            switch(self.buzzer, self.door.held)
        if self.gate.tick(now):
            self._passage = None
        if now >= self._next_cleanup:
            self._next_cleanup = now + 3600
            self.delete_old_snapshots()
        if now >= self._next_prune and self.store is not None:
            self._next_prune = now + 86400
            self.prune_old_events()
        self._supervise(now)
        if self._pending:
            self._flush_events()

    # --- the loop ---

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()
            self.event("vision.started", None, {"pid": self.worker.pid, "source": self.worker.source})
        notify("READY=1")

    def run(self) -> str:
        """Handle messages and deadlines until stopped or the video ends; returns why it stopped."""
        self.start()
        try:
            while not self.finished.is_set():
                now = self.clock()
                deadlines = [d for d in (self.gate.next_deadline(), self.fire.next_deadline()) if d is not None]
                timeout = TICK if not deadlines else max(0.0, min(TICK, min(deadlines) - now))
                try:
                    message = self.inbox.get(timeout=timeout)
                except queue.Empty:
                    message = None
                now = self.clock()
                if message is not None:
                    self.handle(message, now)
                self.tick(now)
        finally:
            self.close()
        return self.exit_reason or "stopped"

    def _release_devices(self) -> None:
        """Every output off and every pin released (the gate shut, charging off, siren silent)."""
        for part in (self.gate, self.fire, self.sensors):
            if part is not None:
                part.close()
        if self.buzzer is not None and not self.buzzer.closed:
            self.buzzer.off()
            self.buzzer.close()
        if getattr(self, "notifier", None) is not None:
            self.notifier.close()

    def stop(self, reason: str) -> None:
        self.inbox.put(Stop(reason))

    def close(self) -> None:
        """Stop the worker, shut the gate, write what events are left. Safe to call twice."""
        notify("STOPPING=1")
        if self.worker is not None:
            self.worker.stop()
        self._release_devices()
        self._flush_events()


def _answers(device) -> bool:
    try:
        _ = device.value  # reading it is the test
        return True
    except Exception:
        return False
