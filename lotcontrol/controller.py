"""The controller's loop: messages in, outputs switched, events handed to the writer.

Everything that happens arrives in one inbox (lotcontrol.messages) and is handled by one loop
through a dispatch table; the loop also closes the gate on time, re-evaluates the fire zones,
re-reads every input once a second for a missed edge, and lets the vision supervisor restart a
worker that died or went silent. What the outputs do is decided by lotcontrol.policy and applied
before anything is written. The loop never waits on face work, the disk, the database or the
network: events, snapshots and pruning go to the writer thread (lotcontrol.writer), the latched
safety state to its own (safety.latch), alerts to the notify command's (lotcontrol.alerts, lotcontrol.notify).

A message whose handling fails is logged as ``controller.error`` and the loop goes on: no one
message can silence the siren or release an egress hold. The parts are put together, started and
stopped by lotcontrol.app.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import queue
import threading
import time
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gpiozero import OutputDevice

from . import passes, policy, schedule
from .charging.ports import ChargingPorts, UnknownPort
from .charging.sessions import DISABLED, Change
from .clock import Clock
from .config import Config, pin_label
from .messages import (BaySensor, BeamBroken, CameraStatus, Command, ContactChange, Credential, DoorChange, ExitChange,
                       FramesDone, GalleryLoaded, Heartbeat, InterruptedSessions, LivenessLogged, MeterReading, Notice, Passage,
                       PassShown, Reading, SourceEnded, Stop, WorkerGone)
from .alerts import Alerts, severity
from .notify import Notifier
from .phrases import Phrase, answer as answer_saying
from .pins import InputLine, switch
from .safety import latch
from .safety.debounce import Debouncer
from .safety.devices import FireDevices
from .safety.fire import FireZones, Transition
from .service import notify, watchdog_interval
from .site.bays import BayWatch
from .site.door import DoorWatch
from .site.gate import Gate
from .site.inputs import SiteInputs
from .site.presence import Presence
from .site.reader import WiegandReader
from .site.spoof import SpoofWatch
from .site.tailgate import EntryWatch
from .store import Store, isotime
from .writer import CallJob, EventJob, EventListeners, Writer, snapshot_name, snapshot_time

log = logging.getLogger("lotcontrol")

TICK = 0.05  # seconds between checks of deadlines when nothing arrives
RESIDENTS_WAIT = 1.0  # the longest a face naming a resident waits for the writer to read the residents again
REREAD_SECONDS = 1.0  # every input is read again this often, for an edge its callback missed
DOOR, EXIT = "door", "exit"
CHARGING_STATE = "charging.json"  # the ports staff disabled, beside safety.json
PRESENCE_STATE = "presence.json"  # who anti-passback counts inside (lotcontrol.site.presence), beside safety.json
SNAPSHOT_HORIZON = 86400.0  # the snapshot folder is listed at most this often (seconds of the wall clock)


@dataclass
class Waiting:
    """A factor at the gate waiting for the others until ``until`` (access.factor_window_seconds): a
    credential as the reader said it (``card``, ``pin``, ``resident_id``), or a face (``passage``)."""

    until: float
    reader: str = "gate"
    card: str | None = None
    pin: str | None = None
    resident_id: int | None = None
    passage: Passage | None = None


def _by(args: dict) -> dict:
    """Who gave a staff command, for its event: ``{"by": name}`` when the command named someone."""
    return {"by": args["by"]} if args.get("by") else {}


class Controller:
    """One lot's policy state and outputs. Built and started by lotcontrol.app; tests may build one
    directly and call ``handle`` and ``tick`` with the times they choose."""

    def __init__(self, config: Config, store: Store | None = None, *, pin_factory=None, clock: Clock | None = None,
                 snapshots: Path | None = None, state_path: Path | None = None, inputs: bool = True):
        self.config = config
        self.clock = clock or Clock()
        self.pin_factory = pin_factory
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # put() is safe in a signal handler
        self.observers: list[Callable[[object | None], None]] = []  # called after every turn of the loop
        # told of every event, on the loop's thread (lotcontrol.fleet.publish queues it for MQTT); never the
        # snapshot: no face leaves the lot this way
        self.listeners = EventListeners()
        now = self.clock.now()
        self.fire = FireZones(config.fire, now)
        self.bays = BayWatch(config.bays, now)
        self.door = DoorWatch(config.gate.held_open_seconds)
        self.entries = EntryWatch(config.gate.tailgate_grace_seconds)
        self.spoofs = SpoofWatch()
        self.gate_inputs: Debouncer[str] = Debouncer(config.gate.debounce_seconds)
        self._door_released = False  # whether the gate was released when the door last began to open
        self.writer = Writer(store, snapshots, wall=self.clock.wall, synced=self.clock.synchronized,
                             commit_seconds=config.events.commit_seconds, now=self.clock.now)
        self.notifier = Notifier(config.notify.command, timeout=config.notify.timeout_seconds,
                                 retries=config.notify.retries)
        # every alarm-class event, from the loop and from the writer (store.degraded), to the notify command
        self.alerts = Alerts(self.notifier, config.notify.min_severity)
        self.listeners.add(self.alerts, early=False)
        self.writer.listeners.add(self.alerts, early=False)
        self.gate = self.devices = self.buzzer = self.site = self.charging = None
        self.reader: WiegandReader | None = None  # the card and PIN reader, with wiegand.d0_pin
        self.exit_reader: WiegandReader | None = None  # a card reader on the lot side, with wiegand.exit_d0_pin
        self._factor: Waiting | None = None  # a card or PIN waiting for its other factor (a PIN, a card, a face)
        self._face: Waiting | None = None  # a face waiting for a card or PIN (face_and_card, face_and_pin)
        self._paired_track: int | None = None  # the face (track) a card or PIN was last granted with
        # faces naming a resident the writer's copy did not hold when they came: (the passage, the writer's
        # re-read asked for it, the latest it waits), decided once that re-read is done (``_held_tick``)
        self._held: list[tuple[Passage, int, float]] = []
        self._card_read: dict[str, Any] | None = None  # `card add --read`: until when, and the card's digest
        # visitor passes granted by this process: id -> (uses here counted so far, not-after); the database's
        # count (the writer's directory) catches up when the use is written
        self._pass_granted: dict[str, tuple[int, int]] = {}
        self.meters = None  # the meter pollers, when ports have meters (lotcontrol.charging.meters)
        self._ports_decided: tuple | None = None  # (safety state, demands, the port switches the policy gave)
        self._next_checkpoint = 0.0
        self._next_verify = 0.0
        self._charging_updated: float | None = None  # the turn (now) the ports' logic last ran in
        self.inputs: list[InputLine] = []
        self.worker = None  # the vision supervisor, when there is a camera
        self.gallery: dict | None = None  # the worker's last GalleryLoaded summary
        # the camera as the worker reported it (camera.lost / camera.restored), shown by `status`
        self.camera: dict[str, Any] = {"state": "ok", "since": None, "detail": None}
        self._frames: int | None = None  # frames processed at the worker's last heartbeat (None: since the loss)
        self.mqtt = None  # the MQTT link, when lotcontrol.app started one (shown by `status`)
        self.poller = None  # the probe poller, when there are probes
        self.inputs_open = False
        self.finished = threading.Event()
        self.exit_reason: str | None = None
        self._passage: int | None = None  # the resident whose grant holds the gate open now
        self._renotify_at: float | None = None
        self._next_reread = 0.0
        self._next_cleanup = 0.0
        self._snapshots_due: collections.deque | None = None  # (time, name): due within the horizon of the last listing
        self._snapshots_listed_until = ""
        self._next_prune = 0.0
        self._watchdog = watchdog_interval()
        self._next_pet = 0.0
        self.errors = 0
        try:  # outputs first, each in its safe state; a failure half-way releases what was opened
            self.gate = Gate(config.gate, pin_factory=pin_factory)
            self.devices = FireDevices(config.fire, pin_factory=pin_factory)
            self.buzzer = None if config.gate.buzzer_pin is None else OutputDevice(
                config.gate.buzzer_pin, initial_value=False, pin_factory=pin_factory)
            self.charging = ChargingPorts(config.charging, now, pin_factory=pin_factory)
        except Exception:
            self._release_devices()
            raise
        if config.charging.ports:  # before any session of this run is opened: the writer keeps the order
            self.writer.put(CallJob("interrupted charging sessions", self._close_interrupted_sessions))
        self._restore_disabled_ports(state_path)
        self._restore_presence(state_path)
        # with beams: residents granted in this opening, counted inside when the beams see them enter
        self._entering: list[int] = []
        self._entering_ends: float | None = None  # the opening's end (the gate shut + the grace)
        self.groups = {name: schedule.group(name, g.windows, g.holidays) for name, g in config.access.groups.items()}
        self.timezone = zoneinfo.ZoneInfo(config.site.timezone)
        latched, problem = latch.load(state_path)  # before the first evaluation
        self.latch = latch.LatchFile(state_path, saved=None if problem else latched)
        unknown = self.fire.restore(latched)
        for zone in self.fire.latched():
            details = {"zone": zone, **({"error": problem} if problem else {})}
            self.event("fire.alarm.restored", None, details)  # an alert: staff are told
            self._renotify_at = now + config.fire.renotify_seconds  # reminded while it stands, as any alarm
        for zone in unknown:
            self.event("fire.alarm.restored", None, {"zone": zone, "error": "no such zone configured any more"})
        if inputs:
            self.open_inputs()

    # --- start-up ---

    def _restore_disabled_ports(self, state_path: Path | None) -> None:
        """The ports staff disabled stay disabled across a restart: kept in ``DATA_DIR/charging.json``
        (written as the latched alarms are, by a thread of its own). A file that cannot be read
        disables every port until staff enable them."""
        path = None if state_path is None else state_path.with_name(CHARGING_STATE)
        disabled, problem = latch.load(path)
        self.port_holds = latch.LatchFile(path, saved=None if problem else disabled)
        names = list(self.charging.ports) if latch.EVERY_ZONE in disabled else list(disabled)
        for port in names:
            if port in self.charging.ports:
                self.charging.ports[port].stop(self.clock.now(), disable=True)
        if problem and self.charging.ports:
            self.event("charging.fault", None, {"port": "*", "error": f"{path} cannot be read: every port is "
                                                "disabled until staff enable it"})
            self._save_disabled_ports()  # a readable file in its place

    def _restore_presence(self, state_path: Path | None) -> None:
        """Who anti-passback counts inside, as the last controller left it (``DATA_DIR/presence.json``,
        written as the latched alarms are). A file that cannot be read counts nobody inside (a resident
        is never locked out by a damaged record), and says so."""
        path = None if state_path is None else state_path.with_name(PRESENCE_STATE)
        saved, problem = latch.load(path)
        self.presence = Presence(None if problem else saved)
        self.presence_file = latch.LatchFile(path, saved=None if problem else saved)
        if problem:
            self.event("presence.cleared", None, {"by": "restart", "error": f"{path} cannot be read: nobody is "
                                                  "counted inside"})
            self.presence_file.put({})

    def _save_disabled_ports(self) -> None:
        self.port_holds.put({p.id: {"state": DISABLED} for p in self.charging.ports.values() if p.state == DISABLED})

    def open_inputs(self) -> None:
        """The fire contacts, bay sensors, beams, door and exit button; then the first evaluation,
        which is when charging may come on."""
        now = self.clock.now()
        try:
            for zone, line in self.devices.open_inputs(self.inbox.put, self.clock.now):
                self.fire.initial_contact(zone, line.name, line.last)
            self.site = SiteInputs(self.config, self.inbox.put, pin_factory=self.pin_factory, clock=self.clock.now)
            exit_reader = self.config.wiegand.exit_reader()
            if exit_reader is not None:
                self.exit_reader = WiegandReader(exit_reader, window=self.config.access.factor_window_seconds,
                                                 deliver=self.inbox.put, directory=lambda: self.writer.directory,
                                                 clock=self.clock.now, pin_factory=self.pin_factory, name="exit")
            if self.config.wiegand.d0_pin is not None:
                self.reader = WiegandReader(self.config.wiegand, window=self.config.access.factor_window_seconds,
                                            deliver=self.inbox.put, directory=lambda: self.writer.directory,
                                            clock=self.clock.now, pin_factory=self.pin_factory)
        except Exception:
            self._release_devices()
            raise
        self.inputs = self.devices.inputs + self.site.lines
        for (zone, bay), occupied in self.site.bay_readings().items():
            self.bays.initial(zone, bay, occupied, now)
        self.gate_inputs.initial(DOOR, self.site.door_open())
        self.gate_inputs.initial(EXIT, self.site.exit_pressed())
        self.door.door(self.site.door_open(), now, released=True)  # as found: no alarm at start
        while not self.inbox.empty():  # the probes' first readings, and any change since the inputs opened
            self.handle(self.inbox.get_nowait(), now)
        self.inputs_open = True
        self._next_reread = now + REREAD_SECONDS
        self._evaluate(now)

    # --- events: logged now, written by the writer thread ---

    def event(self, type: str, resident_id: int | None = None, details: dict[str, Any] | None = None,
              snapshot: tuple[str, bytes] | None = None) -> None:
        details = details or {}
        name = self.writer.directory.name(resident_id)
        log.info("%s%s%s", type, f" {name}" if name else "", "".join(f" {k}={v}" for k, v in details.items()))
        wall = self.clock.wall()
        # an alarm-class event is committed at once; the others may wait events.commit_seconds to share a commit
        self.writer.put(EventJob(type, resident_id, details, wall, snapshot, self.clock.synchronized(),
                                 urgent=severity(type) is not None))
        self.listeners(type, resident_id, details, wall)

    # --- handling: one method per message type ---

    def handle(self, message: object, now: float) -> None:
        """Handle one message; a failure is an event (``controller.error``), never the end of the loop."""
        try:
            self.HANDLERS[type(message)](self, message, now)
        except Exception as exc:
            self.errors += 1
            log.exception("controller.error handling %s", type(message).__name__)
            try:
                self.event("controller.error", None, {"message": type(message).__name__,
                                                      "error": f"{type(exc).__name__}: {exc}"[:500]})
                if isinstance(message, Command):
                    message.reply(answer_saying(False, Phrase("controller.failed", command=message.name, error=exc)))
            except Exception:
                log.exception("controller.error could not be reported")

    def _on_fire_input(self, message: ContactChange | Reading, now: float) -> None:
        self.fire.feed(message)
        self._evaluate(now)
        if isinstance(message, Reading) and self.charging.by_probe:
            self._charging_changes(self.charging.probe(message, now))
            self._apply_outputs()

    def _on_meter(self, message: MeterReading, now: float) -> None:
        port = self.charging.ports.get(message.port)
        wanted = None if port is None else port.wants_power
        self._charging_changes(self.charging.meter(message, now))
        # an overload or a lost meter switches its port off now; a reading that leaves the port's
        # demand as it was changes no relay (the ports' relays depend on nothing else a reading
        # sets), so the 40 ports are not gone through again for it (a relay write that failed is
        # tried again by the tick)
        if port is None or port.wants_power != wanted:
            self._apply_outputs()

    def _on_interrupted(self, message: InterruptedSessions, now: float) -> None:
        self._charging_changes(self.charging.resume(message.sessions, now))

    def _on_bay(self, message: BaySensor, now: float) -> None:
        self.bays.sensor(message.zone, message.bay, message.occupied, message.time)

    def _on_beam(self, message: BeamBroken, now: float) -> None:
        counted = self.bays.beam(message.beam, message.time)
        if counted is None:
            return
        self.event(counted.type, None, counted.details)
        if counted.type == "bays.exit":
            self._exited("beams")
        elif self._awaited(now):
            self._count_in(self._entering.pop(0))
        tailgate = self.entries.entry(message.time) if counted.type == "bays.entry" else None
        if tailgate is not None:
            details, picture = tailgate
            if picture is not None:  # the refused face's snapshot, already on its way to the disk
                details["snapshot"] = f"snapshots/{picture[0]}"
            self.event("gate.tailgate", None, details)

    def _on_door(self, message: DoorChange, now: float) -> None:
        if message.is_open is not False and self.gate_inputs.stable.get(DOOR) is False:
            self._door_released = self.gate.is_open  # released when it began to open, not when settled
        self.gate_inputs.feed(DOOR, message.is_open, message.time)

    def _on_exit(self, message: ExitChange, now: float) -> None:
        self.gate_inputs.feed(EXIT, message.pressed, message.time)

    def _lookalike_pin(self, resident) -> bool:
        """Whether the resident is one of a look-alike pair of whom either has a PIN."""
        return resident is not None and resident.id in self.writer.directory.lookalike_pin

    def _mode(self, resident_id: int | None) -> str:
        """A resident's access mode (policy.mode_of: their own, a look-alike's face_and_pin, the site's)."""
        resident = self.writer.directory.get(resident_id)
        return policy.mode_of(resident, self.config.access.mode, self._lookalike_pin(resident))

    def _on_passage(self, passage: Passage, now: float) -> None:
        """A face: paired with a card or PIN waiting for it (1:1), held for one (its resident's mode is
        1:1, or a resident it claims 1:1 is), or decided alone (1:N). A face naming a resident the
        loop's copy does not hold waits for the writer to read the residents again, and the faces
        after it wait behind it: faces are decided in the order they came."""
        named = {passage.resident_id} - {None}
        if self._factor is not None or self.config.access.mode in policy.ONE_TO_ONE:
            named |= set(dict(passage.claims))  # a card or PIN may be checked against whom it claims
        if any(self.writer.directory.get(rid) is None for rid in named):
            # the worker may have read the database after the writer last did (the lot just started, a
            # resident just enrolled): decided once the writer has read it again, not refused as removed
            self._held.append((passage, self.writer.reread(), now + RESIDENTS_WAIT))
        elif self._held:
            _, asked, until = self._held[-1]
            self._held.append((passage, asked, until))
        else:
            self._decide_face(passage, now)

    def _held_deadline(self) -> float | None:
        """When the first face held is to be decided: now once the writer has read the residents again
        for it (a simulated clock turns at once; the real loop at its next tick), else when its wait ends."""
        if not self._held:
            return None
        _, asked, until = self._held[0]
        return self.clock.now() if self.writer.answered >= asked else until

    @property
    def faces_held(self) -> int:
        """Faces waiting for the writer to read the residents again before they are decided."""
        return len(self._held)

    def _held_tick(self, now: float, *, stopping: bool = False) -> None:
        """Decide the faces held for a re-read of the residents once it is done (or has taken too long;
        ``stopping``: now, on the copy the loop has, as the loop ends)."""
        while self._held:
            passage, asked, until = self._held[0]
            if self.writer.answered < asked and now < until and not stopping:
                return
            self._held.pop(0)
            self._decide_face(passage, now)

    def _decide_face(self, passage: Passage, now: float) -> None:
        if passage.track == self._paired_track:
            return  # the worker's look again at a face already let in with its card or PIN
        if self._pair_face(passage, now):
            return
        if self._waits_for_factor(passage):
            if self._face is not None:  # another face came first and is still alone: it is refused now
                self._face_timeout(now)
            self._face = Waiting(now + self.config.access.factor_window_seconds, passage=passage)
            return
        self._face_alone(passage, now)

    def _waits_for_factor(self, passage: Passage) -> bool:
        """Whether a face waits for a card or PIN: the gallery accepted it as a resident whose mode is
        1:1, or it is within the 1:1 limit of one (and it is not a resident the face alone lets in)."""
        claims_one_to_one = any(self._mode(rid) in policy.ONE_TO_ONE for rid in dict(passage.claims))
        alone = passage.outcome == "grant" and self._mode(passage.resident_id) not in policy.ONE_TO_ONE
        return not alone and (claims_one_to_one or passage.outcome == "grant") and not self.fire.alarm

    def _pin_without_claims(self, waiting: Waiting, passage: Passage, now: float) -> None:
        """A PIN and a face that is within the 1:1 limit of nobody whose PIN it could be: refused as
        face_mismatch (both factors used)."""
        self._factor = self._face = None
        self._decided(False, None, "face_mismatch", {"by": "pin+face", "reader": waiting.reader, "distance": None,
                                                     "track": passage.track}, now, passage)

    def _pair_face(self, passage: Passage, now: float) -> bool:
        """A face for the card or PIN waiting: checked 1:1 against the card's resident, or the PIN sent
        to the reader's thread to be checked against the residents the face claims (face_and_pin)."""
        waiting = self._factor
        if waiting is None:
            return False
        mode = self._mode(waiting.resident_id)
        if waiting.resident_id is not None and mode in policy.ONE_TO_ONE:
            self._credential_decision(waiting, now, Waiting(waiting.until, passage=passage))
            return True
        if waiting.card is None and waiting.pin == "entered" and self.reader is not None:
            claims = [rid for rid in dict(passage.claims) if self._mode(rid) == policy.FACE_AND_PIN]
            if claims:
                self._face = Waiting(waiting.until, passage=passage)
                self.reader.check_claims(claims)
                return True
            if self._waits_for_factor(passage) and self._face_mode(passage) == policy.FACE_AND_PIN:
                self._pin_without_claims(waiting, passage, now)
                return True
        return False

    def _face_mode(self, passage: Passage) -> str:
        """The mode of the resident a held face stands for: the one the gallery accepted it as, else the
        first it claims 1:1 whose mode is 1:1."""
        named = passage.resident_id if passage.outcome == "grant" else None
        first = next((rid for rid in dict(passage.claims) if self._mode(rid) in policy.ONE_TO_ONE), named)
        return self._mode(named if named is not None else first)

    def _face_alone(self, passage: Passage, now: float) -> None:
        details: dict[str, Any] = {"distance": passage.distance, "frames": passage.frames,
                                   "duration": round(passage.duration, 3), "track": passage.track}
        if passage.liveness is not None:
            details["liveness"] = passage.liveness  # vision.liveness log or enforce: what it said, its cues
        resident = self.writer.directory.get(passage.resident_id)
        decision = policy.admission(passage.outcome, passage.reason, fire_alarm=self.fire.alarm,
                                    bays=self.bays.availability(), lot_full=self.config.bays.lot_full,
                                    resident=resident, today=self._today(), site_mode=self.config.access.mode,
                                    lookalike_pin=self._lookalike_pin(resident), rules=self._rules())
        details.update(decision.notes)
        if not decision.grant:
            resident_id = None if decision.reason == "resident_removed" else passage.resident_id
            snapshot = self._snapshot(passage, "denied")
            self.event("access.denied", resident_id, {"reason": decision.reason, **details}, snapshot)
            self.entries.refused(now, snapshot)
            if decision.reason == "not_live":
                spoof = self.spoofs.refused(now, passage.resident_id, passage.track)
                if spoof is not None:
                    if snapshot is not None:
                        spoof["snapshot"] = f"snapshots/{snapshot[0]}"
                    self.event("gate.spoof_attempt", passage.resident_id, spoof)
            return
        if not self._open_for(resident.id, now):
            log.info("gate held open for %s (same passage)", resident.name)
            return
        self._entered(resident.id)
        self.event("access.granted", resident.id, details, self._snapshot(passage, "granted"))

    def _on_liveness_logged(self, message: LivenessLogged, now: float) -> None:
        """vision.liveness = "log": what liveness said of a passage once it could, after the decision."""
        self.event("vision.liveness", message.resident_id,
                   {"track": message.track, "outcome": message.outcome, "liveness": message.liveness})

    def _open_for(self, resident_id: int | None, now: float, passage: int | str | None = None) -> bool:
        """Open the gate for a resident granted at the camera or the reader (or a visitor's pass:
        ``passage`` names it); False when it is the same passage holding the gate open (one grant: one
        entry counted, one event)."""
        passage = resident_id if passage is None else passage
        same_passage = self._passage == passage and self.gate.is_open
        self.gate.open(now)
        self._passage = passage
        if not same_passage:
            self.entries.granted(now, resident_id)
        return not same_passage

    def _on_pass(self, message: PassShown, now: float) -> None:
        """A QR code at the camera, checked as a visitor pass: its signature (under this lot's key or
        the hub's), its lot, its time, its uses (here and, as the hub last said, at the other lots) and
        whether it was revoked. A grant is one use, written at once; the text is never logged."""
        directory = self.writer.directory
        visitor_pass = passes.verify(message.text, directory.pass_keys)
        refusal = passes.BAD_SIGNATURE
        details: dict[str, Any] = {"by": "pass"}
        if visitor_pass is not None:
            details.update({"pass": visitor_pass.id, "visitor": visitor_pass.visitor})
            if self._passage == f"pass:{visitor_pass.id}" and self.gate.is_open:
                return  # shown again while the gate it opened is still open: the same passage
            wall = self.clock.wall() if self.clock.synchronized() else None
            refusal = passes.check(visitor_pass, lot=self.config.mqtt.lot, now=wall,
                                   used=self._pass_uses(visitor_pass.id),
                                   revoked=visitor_pass.id in directory.revoked_passes)
        decision = policy.pass_admission(refusal, fire_alarm=self.fire.alarm, bays=self.bays.availability(),
                                         lot_full=self.config.bays.lot_full)
        details.update(decision.notes)
        if not decision.grant:
            self.event("access.denied", None, {"reason": decision.reason, **details})
            return
        here = max(self._pass_granted.get(visitor_pass.id, (0, 0))[0],
                   directory.pass_uses.get(visitor_pass.id, (0, 0))[0]) + 1
        self._pass_granted[visitor_pass.id] = (here, visitor_pass.not_after)
        pass_id, not_after, when = visitor_pass.id, visitor_pass.not_after, isotime(self.clock.wall())
        self.writer.put(CallJob("visitor pass use", lambda store: store.record_pass_use(pass_id, not_after, when)))
        self._open_for(None, now, f"pass:{visitor_pass.id}")
        left = max(0, visitor_pass.uses - self._pass_uses(visitor_pass.id))
        self.event("access.granted", None, {**details, "uses_left": left})

    def _pass_uses(self, pass_id: str) -> int:
        """The uses of a pass this lot knows of: here (written, or granted since) and at the other lots."""
        directory = self.writer.directory
        here = max(self._pass_granted.get(pass_id, (0, 0))[0], directory.pass_uses.get(pass_id, (0, 0))[0])
        return passes.known_uses(pass_id, self.config.mqtt.lot, here=here, hub=directory.hub_pass_uses.get(pass_id))

    def pass_counts(self) -> dict[str, int]:
        """Each pass's uses at this lot, for the passes still valid (published for the hub to count)."""
        wall = self.clock.wall().timestamp()
        counts = {pid: (count, not_after) for pid, (count, not_after) in self.writer.directory.pass_uses.items()}
        for pid, (count, not_after) in self._pass_granted.items():
            counts[pid] = (max(count, counts.get(pid, (0, 0))[0]), not_after)
        return {pid: count for pid, (count, not_after) in counts.items() if not_after >= wall}

    def _on_credential(self, message: Credential, now: float) -> None:
        """A card or PIN at the reader, matched by its thread: the policy decides, or waits for the
        other factor until access.factor_window_seconds (then ``pin_missing`` or ``card_missing``)."""
        if message.reader == "exit":
            self._exit_card(message, now)
            return
        if self._card_read is not None and message.digest is not None and now < self._card_read["until"]:
            self._card_read["digest"] = message.digest  # staff are putting this card on file: not an entry
            if self.reader is not None:
                self.reader.decided()
                self.reader.feedback(True, now)
            return
        waiting = Waiting(now + self.config.access.factor_window_seconds, message.reader, message.card, message.pin,
                          message.resident_id)
        answer = (self._face is not None and message.card is None and message.pin is not None
                  and message.pin != "entered")  # the reader's answer on a PIN checked against a face's claims
        if answer and self._factor is not None:
            waiting.until = self._factor.until
        if (message.card is None and message.pin == "entered" and self._face is not None
                and self.reader is not None):  # a PIN after a face: checked against the residents it claims
            claims = [rid for rid in dict(self._face.passage.claims) if self._mode(rid) == policy.FACE_AND_PIN]
            if claims:
                waiting.until = self._face.until
                self._factor = waiting
                self.reader.check_claims(claims)
                return
            if self._face_mode(self._face.passage) == policy.FACE_AND_PIN:
                self._pin_without_claims(waiting, self._face.passage, now)
                return
        face = self._face if answer or self._mode(message.resident_id) in policy.ONE_TO_ONE else None
        self._credential_decision(waiting, now, face)

    def _credential_decision(self, waiting: Waiting, now: float, face: Waiting | None) -> None:
        """The policy on a credential (and, for the 1:1 modes, the face held for it): decided, or kept
        waiting for the factor still to come."""
        resident = self.writer.directory.get(waiting.resident_id)
        passage = None if face is None else face.passage
        decision = policy.credential_admission(
            waiting.card, waiting.pin, fire_alarm=self.fire.alarm, bays=self.bays.availability(),
            lot_full=self.config.bays.lot_full, resident=resident, today=self._today(),
            site_mode=self.config.access.mode,
            face=None if passage is None else waiting.resident_id in dict(passage.claims),
            lookalike_pin=self._lookalike_pin(resident), rules=self._rules(),
            lookalike=passage is not None and policy.nearer_lookalike(
                waiting.resident_id, passage.claims, self.writer.directory.lookalikes.get(waiting.resident_id, ()),
                self.config.access.lookalike_margin))
        if decision is None:
            self._factor = waiting
            if face is not None:
                self._face = face
            return
        self._factor = None
        if passage is not None:
            self._face = None
        by = "+".join(f for f, given in (("card", waiting.card), ("pin", waiting.pin), ("face", passage)) if given)
        details: dict[str, Any] = {"by": by, "reader": waiting.reader, **decision.notes}
        if passage is not None:  # the face's 1:1 distance to the named resident (None: not within the limit)
            details.update({"distance": dict(passage.claims).get(waiting.resident_id), "track": passage.track})
        self._decided(decision.grant, None if decision.reason in ("resident_removed", "card_unknown")
                      else waiting.resident_id, decision.reason, details, now, passage)

    def _exit_card(self, message: Credential, now: float) -> None:
        """A card at the exit reader: leaving is never refused, so the gate opens as for the exit
        button, whoever's card it is; a resident's card counts them out (anti-passback) by name. A PIN
        there is nothing."""
        if self.exit_reader is not None:
            self.exit_reader.decided()
        if message.card is None:
            return
        self.gate.open(now)
        self._passage = None
        self.entries.opened(now, watched=True)  # as the exit button's: someone slipping in is a tailgate
        known = message.card == "known" and self.writer.directory.get(message.resident_id) is not None
        self.event("gate.exit", message.resident_id if known else None, {"by": "exit_reader"})
        if known and message.resident_id in self.presence.records:
            self.presence.forget(message.resident_id)
            self._save_presence()
            self.event("presence.exit", message.resident_id, {"by": "exit_reader"})

    def _decided(self, grant: bool, resident_id: int | None, reason: str | None, details: dict, now: float,
                 passage: Passage | None = None) -> None:
        """A decision at the reader: its factors used, its LED or buzzer, the gate and the event (with the
        face's snapshot when a face was one of the factors)."""
        if self.reader is not None:
            self.reader.decided()
            self.reader.feedback(grant, now)
        snapshot = None if passage is None else self._snapshot(passage, "granted" if grant else "denied")
        if not grant:
            self.event("access.denied", resident_id, {"reason": reason, **details}, snapshot)
            if passage is not None:
                self.entries.refused(now, snapshot)
            return
        if passage is not None:
            self._paired_track = passage.track
        if self._open_for(resident_id, now):
            self._entered(resident_id)
            self.event("access.granted", resident_id, details, snapshot)

    def _factor_tick(self, now: float) -> None:
        """A factor left alone past its window is refused, naming the factor that did not come."""
        for reader in (self.reader, self.exit_reader):
            if reader is not None:
                reader.tick(now)
        if self._factor is not None and now >= self._factor.until:
            waiting, self._factor = self._factor, None
            mode = self._mode(waiting.resident_id) if waiting.resident_id is not None else self.config.access.mode
            face = self._face is not None and self._face.until <= waiting.until
            by = "+".join(f for f, given in (("card", waiting.card), ("pin", waiting.pin)) if given)
            self._decided(False, waiting.resident_id,
                          policy.missing_factor(mode, card=waiting.card, pin=waiting.pin, face=face),
                          {"by": by, "reader": waiting.reader}, now)
            if face:  # the face paired with it is used by this refusal
                self._face = None
        if self._face is not None and now >= self._face.until:
            self._face_timeout(now)

    def _face_timeout(self, now: float) -> None:
        """A face held for a card or PIN that did not come: refused, naming the factor of the mode of
        the resident it was granted as (1:N) or claims first (1:1)."""
        passage, self._face = self._face.passage, None
        named = passage.resident_id if passage.outcome == "grant" else None
        mode = self._face_mode(passage)
        details = {"by": "face", "distance": passage.distance, "frames": passage.frames,
                   "duration": round(passage.duration, 3), "track": passage.track}
        self._decided(False, named, policy.missing_factor(mode, card=None, pin=None, face=True), details, now, passage)

    # --- schedules and anti-passback (lotcontrol.schedule, lotcontrol.site.presence) ---

    def _synced_wall(self) -> dt.datetime | None:
        """The wall time, or None while NTP has not set the clock."""
        return self.clock.wall() if self.clock.synchronized() else None

    def _rules(self) -> policy.Rules:
        wall = self._synced_wall()
        inside = set(self._inside(wall)) | set(self._entering if self._awaited(self.clock.now()) else ())
        if self.gate.is_open and self._passage is not None:
            inside.discard(self._passage)  # their own passage holds the gate open: the same entry, not a second
        return policy.Rules(self.groups, None if wall is None else wall.astimezone(self.timezone),
                            self.config.access.antipassback, frozenset(inside))

    def _inside(self, wall: dt.datetime | None) -> list[int]:
        """The residents anti-passback counts inside now, in the order they came."""
        return [rid for rid in self.presence.records if self._counts_inside(rid, wall)]

    def _counts_inside(self, resident_id: int, wall: dt.datetime | None) -> bool:
        resident = self.writer.directory.get(resident_id)
        return resident is not None and self.presence.inside(resident_id, resident.presence_reset, wall,
                                                             self.config.access.presence_hours)

    def _save_presence(self) -> None:
        """presence.json, without the records of residents removed since (once the residents are read:
        before the database is open, nobody is known and every record is kept)."""
        if self.writer.store is not None:
            for resident_id in [r for r in self.presence.records if self.writer.directory.get(r) is None]:
                self.presence.forget(resident_id)
        self.presence_file.put(self.presence.saved())

    def _entered(self, resident_id: int) -> None:
        """A resident granted entry, where anti-passback watches them: counted inside now, or with beams
        once the beams see an entry in this opening (a resident granted who walks away is not inside;
        meanwhile a second grant for them is refused all the same)."""
        resident = self.writer.directory.get(resident_id)
        if resident is None or policy.antipassback_of(resident, self.config.access.antipassback) == "off":
            return
        if self.config.bays.beams is None:
            self._count_in(resident_id)
            return
        self._awaited(self.clock.now())
        self._entering.append(resident_id)
        self._entering_ends = None  # the gate is open

    def _awaited(self, now: float) -> bool:
        """Whether residents granted in this opening are still awaited at the beams (dropped once it ended)."""
        if self._entering and self._entering_ends is not None and now > self._entering_ends:
            self._entering.clear()
        return bool(self._entering)

    def _count_in(self, resident_id: int) -> None:
        resident = self.writer.directory.get(resident_id)
        if resident is None:
            return
        self.presence.entered(resident_id, resident.presence_reset, self._synced_wall())
        self._save_presence()

    def _exited(self, by: str) -> None:
        """Someone left (the beams, or the exit button without beams): the resident counted inside the
        longest is counted out."""
        if not self.presence.records:
            return
        wall = self._synced_wall()
        known = self.writer.store is not None  # the residents are read: a record of nobody known is void
        resident_id = self.presence.exited(lambda rid: self._counts_inside(rid, wall) if known else True)
        self._save_presence()
        if resident_id is not None:
            self.event("presence.exit", resident_id, {"by": by})

    def _today(self) -> dt.date | None:
        """The date validity is judged by, or None while the wall clock is not synchronised (a Pi
        without a real-time clock boots in 1970: nobody is refused by a date before NTP has set it)."""
        return self.clock.today() if self.clock.synchronized() else None

    def _snapshot(self, passage: Passage, outcome: str) -> tuple[str, bytes] | None:
        if not passage.snapshot or self.writer.snapshots is None:
            return None
        return snapshot_name(self.clock.wall(), outcome, passage.track), passage.snapshot

    def _on_heartbeat(self, message: Heartbeat | FramesDone, now: float) -> None:
        """The supervisor keeps it (FramesDone: the rig's lockstep, nothing more to do here); here only
        a camera reported lost that delivers frames again to a restarted worker (which never reported it
        lost, so will not report it back) is marked back: frames counted past the first heartbeat after
        the loss."""
        if not isinstance(message, Heartbeat):
            return
        advanced = self._frames is not None and message.frames > self._frames
        self._frames = message.frames
        if advanced and self.camera["state"] == "lost":
            self._on_camera(CameraStatus(True, "the camera delivers frames again"), now)

    def _on_gallery(self, message: GalleryLoaded, now: float) -> None:
        """The limit the stranger risk gave for the gallery on file, and whether the risk is met."""
        summary = self.gallery = dict(message.summary)
        if summary.get("refused"):  # the face space's model is missing or damaged: no face decided
            self.event("vision.refused", None, summary)
            log.error("vision.refused: %s", summary["refused"])
            return
        wanted = summary.get("max_stranger_rate")
        self.event("vision.gallery", None, summary)
        if not summary["risk_met"]:
            log.warning("vision.gallery: no accept limit keeps the stranger risk at %s for %d templates "
                        "(expected %s at the smallest limit, %s): see docs/configuration.md, How a face is matched",
                        wanted, summary["templates"], summary["expected_stranger_rate"], summary["accept_limit"])

    def _on_worker_gone(self, message: WorkerGone, now: float) -> None:
        if self.worker is not None and not self.finished.is_set():
            for type, details in self.worker.gone(message, now):
                self.event(type, None, details)

    def _on_camera(self, message: CameraStatus, now: float) -> None:
        state = "ok" if message.ok else "lost"
        since = self.camera["since"] if state == self.camera["state"] else isotime(self.clock.wall())
        self.camera = {"state": state, "since": since, "detail": message.detail}  # lost since the first report
        if not message.ok:
            self._frames = None  # frames the lost camera gave before it failed are no sign of it back
        self.event("camera.restored" if message.ok else "camera.lost", None, {"detail": message.detail})

    def _on_source_ended(self, message: SourceEnded, now: float) -> None:
        self.exit_reason = f"the video ended after {message.frames} frames"
        self.finished.set()

    def _on_notice(self, message: Notice, now: float) -> None:
        self.event(message.type, None, message.details)

    def _on_stop(self, message: Stop, now: float) -> None:
        self.exit_reason = message.reason
        self.finished.set()

    def _on_command(self, command: Command, now: float) -> None:
        if command.expires is not None and time.monotonic() > command.expires:
            log.warning("control socket: %s came after its client was told the controller did not answer; "
                        "not carried out", command.name)
            return
        handler = self.COMMANDS.get(command.name)
        if handler is None:
            command.reply({"ok": False, "message": f"unknown command {command.name!r}"})
            return
        command.reply(handler(self, command.args, now))

    HANDLERS: dict[type, Callable[["Controller", Any, float], None]] = {
        ContactChange: _on_fire_input, Reading: _on_fire_input, BaySensor: _on_bay, BeamBroken: _on_beam,
        DoorChange: _on_door, ExitChange: _on_exit, Passage: _on_passage, LivenessLogged: _on_liveness_logged,
        Heartbeat: _on_heartbeat,
        FramesDone: _on_heartbeat,
        GalleryLoaded: _on_gallery,
        WorkerGone: _on_worker_gone, CameraStatus: _on_camera, SourceEnded: _on_source_ended, Stop: _on_stop,
        Command: _on_command, Notice: _on_notice, MeterReading: _on_meter, InterruptedSessions: _on_interrupted,
        Credential: _on_credential, PassShown: _on_pass,
    }

    # --- staff commands (their arguments were checked at the control socket) ---

    def _cmd_gate_open(self, args: dict, now: float) -> dict:
        seconds = float(args.get("seconds") or self.config.gate.open_seconds)
        self.gate.open(now, seconds)
        self._passage = None
        self.entries.opened(now, watched=False)
        self.event("gate.manual_open", None, {"seconds": seconds, **_by(args)})
        return answer_saying(True, Phrase("gate.opened", seconds=f"{seconds:g}"))

    def _cmd_status(self, args: dict, now: float) -> dict:
        return {"ok": True, "status": self.status(now)}

    def _cmd_bays_status(self, args: dict, now: float) -> dict:
        return {"ok": True, "zones": self.bays.status(now)}

    def _cmd_bays_set(self, args: dict, now: float) -> dict:
        try:
            change = self.bays.set_occupied(str(args["zone"]), int(args["occupied"]))
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "message": str(exc)}
        self.event(change.type, None, change.details)
        return answer_saying(True, Phrase("bays.set", zone=change.details["zone"], n=change.details["occupied"]))

    def _cmd_fire_status(self, args: dict, now: float) -> dict:
        return {"ok": True, "zones": self._fire_status(now)}

    def _cmd_fire_reset(self, args: dict, now: float) -> dict:
        transitions, refused = self.fire.reset(now)
        self._apply_outputs()
        self._fire_events(transitions, now, _by(args))
        if refused:
            return answer_saying(False, Phrase("fire.reset_refused", inputs="; ".join(refused)))
        if transitions:
            return answer_saying(True, Phrase("fire.reset", n=len([t for t in transitions if t.type == "fire.reset"])))
        return answer_saying(True, Phrase("fire.none_in_alarm"))

    def _cmd_fire_drill(self, args: dict, now: float) -> dict:
        zone = str(args.get("zone"))
        if zone not in self.fire.zones:
            known = ", ".join(self.fire.zones)
            return answer_saying(False, Phrase("fire.no_zone", zone=zone, known=known) if known
                                 else Phrase("fire.no_zones", zone=zone))
        self.event("fire.drill", None, {"zone": zone, **_by(args)})
        transitions = self.fire.drill(zone, now)
        self._apply_outputs()
        self._fire_events(transitions, now)
        return answer_saying(True, Phrase("fire.drill", zone=zone))

    def _cmd_charging_status(self, args: dict, now: float) -> dict:
        return {"ok": True, "ports": self.charging.status(now)}

    def _charging_port(self, action: str, args: dict, now: float) -> dict:
        """charging.stop, charging.enable, charging.disable: one port, named in ``port``."""
        try:
            if action == "enable":
                allows = self._zone_allows()
                ok, message, changes = self.charging.enable(args["port"], now, lambda zone: allows.get(zone, False))
            else:
                ok = True
                message, changes = self.charging.stop(args["port"], now, disable=action == "disable")
        except UnknownPort as exc:
            return answer_saying(False, exc.args[0])
        self._apply_outputs()
        self._charging_changes(changes)
        self._save_disabled_ports()
        if ok:
            self.event("charging.staff", None, {"port": args["port"], "action": action, **_by(args)})
        return answer_saying(ok, message)

    def _cmd_card_read(self, args: dict, now: float) -> dict:
        """`card add --read`: with ``seconds``, the next card at the reader within that time is kept
        (as its digest) instead of deciding an entry; without, whether it has come yet. The answers
        carry their phrase's code (lotcontrol.phrases): the web console says them in its language."""
        if self.reader is None:
            return answer_saying(False, Phrase("card.no_reader"))
        if args.get("seconds") is not None:
            self._card_read = {"until": now + float(args["seconds"]), "seconds": float(args["seconds"]), "digest": None}
            return {"ok": True, "digest": None}
        read = self._card_read
        if read is None:
            return answer_saying(False, Phrase("card.not_started"))
        if read["digest"] is not None:
            self._card_read = None
            return {"ok": True, "digest": read["digest"]}
        if now >= read["until"]:
            self._card_read = None
            wiegand = self.config.wiegand
            return answer_saying(False, Phrase("card.too_late", d0=pin_label(wiegand.d0_pin),
                                               d1=pin_label(wiegand.d1_pin), seconds=f"{read['seconds']:g}"))
        return {"ok": True, "digest": None}

    COMMANDS: dict[str, Callable[["Controller", dict, float], dict]] = {
        "gate.open": _cmd_gate_open, "status": _cmd_status, "bays.status": _cmd_bays_status,
        "bays.set": _cmd_bays_set, "fire.status": _cmd_fire_status, "fire.reset": _cmd_fire_reset,
        "fire.drill": _cmd_fire_drill, "charging.status": _cmd_charging_status,
        "charging.stop": lambda self, args, now: self._charging_port("stop", args, now),
        "charging.enable": lambda self, args, now: self._charging_port("enable", args, now),
        "charging.disable": lambda self, args, now: self._charging_port("disable", args, now),
        "card.read": _cmd_card_read,
    }

    # --- evaluation and outputs ---

    def _evaluate(self, now: float) -> None:
        """Evaluate the fire zones; outputs first, then events and notifications, which may wait."""
        if not self.inputs_open:
            return  # nothing to evaluate yet: the outputs stay in their safe state
        transitions = self.fire.update(now)
        self._apply_outputs()
        self._fire_events(transitions, now)
        self._charging_update(now)
        if self.fire.alarm and self._renotify_at is not None and now >= self._renotify_at:
            self._renotify_at = now + self.config.fire.renotify_seconds
            self.alerts("fire.alarm.standing", None, {"zones": list(self.fire.latched())}, self.clock.wall())

    def _apply_outputs(self) -> None:
        safety = policy.SafetyState(self.inputs_open, self.fire.alarm, self.fire.may_charge(), self.door.held)
        out = policy.outputs(safety)
        if self.charging.relays:  # the port relays first, at once; a failure there holds back no other output
            self._guarded("charging outputs", lambda now: self._apply_ports(safety), self.clock.now())
        self.devices.apply(out.chargers, out.siren)
        if out.gate_hold != self.gate.held:
            now = self.clock.now()
            if out.gate_hold:
                self._passage = None
                self.entries.opened(now, watched=False)  # everyone must get out: nobody counted
                self._entering.clear()
                if self.presence.records:  # ... and nobody is counted inside after it
                    self.event("presence.cleared", None, {"by": "fire", "residents": self.presence.clear()})
                    self.presence_file.put({})
            else:
                self.entries.shut(now)
        self.gate.hold(out.gate_hold)
        if self.buzzer is not None:
            switch(self.buzzer, out.buzzer)
        self.latch.put(self.fire.latched())

    # --- charging ports (lotcontrol.charging) ---

    def _apply_ports(self, safety: policy.SafetyState) -> None:
        demands = self.charging.demands()
        if self._ports_decided is not None and self._ports_decided[:2] == (safety, demands):
            wanted = self._ports_decided[2]  # the policy's answer to the same question (asked three times a turn)
        else:
            wanted = policy.port_switches(safety, demands)
            self._ports_decided = (safety, demands, wanted)
        self._charging_changes(self.charging.switch(wanted))
        if self.meters is not None:
            self.meters.want_switches(wanted)  # a pile's own switch coil, written by its poller

    def _zone_allows(self) -> dict[str, bool]:
        safety = policy.SafetyState(self.inputs_open, self.fire.alarm, self.fire.may_charge(), self.door.held)
        return {zone: policy.zone_may_charge(safety, zone) for zone in self.charging.zones}

    def _charging_tick(self, now: float) -> None:
        """The ports' clocks: fire cuts, timers, silent meters; then their relays; what the expanders'
        writer threads found (a chip that does not answer or reset itself), and once a second a check
        for a reset asked of them; a checkpoint of the running sessions' energy every minute (so a
        restart loses at most a minute of it)."""
        if not self.charging.ports:
            return
        if self._charging_updated != now:  # the fire step ran it this turn already (unless it failed)
            self._charging_update(now)
        self._charging_changes(self.charging.expander_reports())
        if now >= self._next_verify:
            self._next_verify = now + REREAD_SECONDS
            self.charging.verify_expanders()
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + 60.0
            running = [(p.session.key, p.session.kwh, p.session.peak_watts) for p in self.charging.ports.values()
                       if p.session is not None and p.metered]
            if running:
                self.writer.put(CallJob("charging checkpoint", lambda store: store.checkpoint_charging(running),
                                         urgent=False))

    def _charging_update(self, now: float) -> None:
        """The ports' logic on the fire watch's verdict and the clock; the relays follow at once."""
        if self.charging.ports:
            changes = self.charging.update(now, self._zone_allows())
            self._charging_updated = now
            if changes:
                self._apply_outputs()
                self._charging_changes(changes)

    def _charging_changes(self, changes: list[Change]) -> None:
        """Events for the ports' changes; the sessions handed to the writer (opened, then closed)."""
        for change in changes:
            session = change.session
            # the bay's resident by id, never by name in the details: erasing them erases it here too
            self.event(change.type, self._resident_id(session.resident if session else None), change.details)
            if session is None:
                continue
            if change.type == "charging.started":
                row = {"key": session.key, "port": session.port, "resident": session.resident,
                       "start": isotime(self.clock.wall()), "meter_start": session.start_kwh}
                self.writer.put(CallJob("charging session", lambda store, row=row: store.open_charging(**row),
                                               urgent=False))
            else:
                row = {"key": session.key, "end": isotime(self.clock.wall()), "reason": session.reason,
                       "kwh": round(session.kwh, 4) if session.start_kwh is not None else None,
                       "peak_watts": round(session.peak_watts, 1) if session.start_kwh is not None else None}
                self.writer.put(CallJob("charging session", lambda store, row=row: store.close_charging(**row),
                                               urgent=False))

    def _resident_id(self, name: str | None) -> int | None:
        return None if name is None else self.writer.directory.id_of(name)

    def _fire_events(self, transitions: list[Transition], now: float, by: dict | None = None) -> None:
        """``by``: who reset the alarm (a staff command's ``by``), added to its fire.reset events."""
        for transition in transitions:
            details = {**transition.details(), **(by or {})} if transition.type == "fire.reset" else transition.details()
            self.event(transition.type, None, details)  # an alert: to the notify command
            if transition.type == "fire.alarm" and self._renotify_at is None:
                self._renotify_at = now + self.config.fire.renotify_seconds
        if not self.fire.alarm:
            self._renotify_at = None

    def _fire_status(self, now: float) -> list[dict]:
        return [{**zone, "charging": self.devices.charging(zone["zone"])} for zone in self.fire.status(now)]

    def _gate_inputs(self, now: float) -> None:
        for which, state in self.gate_inputs.settled(now):
            if which == DOOR:
                # released or not when it began to open: a grant inside the debounce hides no forced door
                for type, details in self.door.door(state, now, released=self._door_released):
                    self.event(type, None, details)
            elif state:  # the exit button, pressed and held past the debounce
                self.gate.open(now)
                self._passage = None
                self.entries.opened(now, watched=True)
                self.event("gate.exit", None, {})
                if self.config.bays.beams is None:  # with beams, each person leaving is counted there
                    self._exited("exit_button")

    def _reread_inputs(self, now: float) -> None:
        """Read every input again; a state no callback reported is handled as an edge, and said."""
        self._next_reread = now + REREAD_SECONDS
        for line in self.inputs:
            message = line.reread(now)
            if message is not None:
                self.event("input.missed_edge", None, {"input": line.name, "state": line.last})
                self.handle(message, now)

    def status(self, now: float) -> dict[str, Any]:
        return {"gate": "open" if self.gate.is_open else "shut", "fire_hold": self.gate.held,
                "door": None if self.site is None or self.site.door is None else ("open" if self.door.is_open else "shut"),
                "door_held_open": self.door.held, "bays": self.bays.counts(), "lot_full": self.bays.lot_full,
                "bays_unknown": self.bays.availability() == policy.UNKNOWN,
                "fire": self._fire_status(now), "vision": None if self.worker is None else self.worker.status(now),
                "camera": None if self.worker is None else self.camera,
                "gallery": self.gallery,
                "events_waiting": self.writer.waiting, "store_degraded": self.writer.degraded,
                "safety_state_error": self.latch.error, "errors": self.errors,
                "mqtt": None if self.mqtt is None else self.mqtt.status(), "charging": self.charging.status(now),
                "reader": None if self.reader is None else {
                    "keypad_locked": self.reader.limit.locked(now),
                    "waiting_for": self._waiting_for()},
                "access": self.access_status(),
                "clock_synced": self.clock.synchronized()}

    def _waiting_for(self) -> str | None:
        """The factor the gate waits for (``status``): card, pin or face; None when nothing waits."""
        if self._factor is not None:
            waiting = self._factor
            mode = self._mode(waiting.resident_id) if waiting.resident_id is not None else self.config.access.mode
            if waiting.card is None and waiting.pin == "entered" and self._face is None:
                return "card" if mode not in policy.ONE_TO_ONE else "face"
            return policy.missing_factor(mode, card=waiting.card, pin=waiting.pin,
                                         face=self._face is not None).removesuffix("_missing")
        if self._face is not None:
            mode = self._face_mode(self._face.passage)
            return policy.missing_factor(mode, card=None, pin=None, face=True).removesuffix("_missing")
        return None

    def access_status(self) -> dict[str, Any]:
        """Schedules and anti-passback now: the site's anti-passback, who is counted inside, and each
        access group's windows open or shut (None for all while the clock is not synchronised)."""
        wall = self._synced_wall()
        local = None if wall is None else wall.astimezone(self.timezone)
        inside = self._inside(wall)
        return {"antipassback": self.config.access.antipassback, "inside": len(inside),
                "inside_residents": [self.writer.directory.name(rid) for rid in inside],
                "groups": {name: None if local is None else group.open_at(local) for name, group in self.groups.items()}}

    def healthy(self) -> bool:
        """What the systemd watchdog is petted on: this loop runs (we are in it) and the fire
        inputs answer. Vision trouble is not here, nor a bay or door input (an event, a bay
        UNKNOWN): a restart would take the fire watch down with it and cycle the contactors."""
        return self.site is not None and all(line.answers for line in self.devices.inputs)

    # --- the loop ---

    def tick(self, now: float) -> None:
        """Deadlines and periodic work, each step guarded on its own: a step that fails is an event
        (``controller.error``) and the others still run; the gate's timer and the outputs always
        run. The watchdog is petted only after a turn in which every step succeeded."""
        if not self.inputs_open:
            return
        ok = True
        for name, step in (("reread", self._reread_due), ("gate_inputs", self._gate_inputs),
                           ("fire", self._evaluate), ("bays", self._bays_update), ("door", self._door_update),
                           ("charging", self._charging_tick), ("housekeeping", self._housekeeping),
                           ("vision", self._vision_tick), ("held", self._held_tick), ("reader", self._factor_tick)):
            ok = self._guarded(name, step, now) and ok
        ok = self._guarded("gate", self._gate_tick, now) and ok
        ok = self._guarded("outputs", lambda now: self._apply_outputs(), now) and ok
        if ok and self._watchdog is not None and now >= self._next_pet:
            self._next_pet = now + self._watchdog
            if self.healthy():
                notify("WATCHDOG=1")

    def _guarded(self, name: str, step: Callable[[float], None], now: float, where: str = "tick") -> bool:
        try:
            step(now)
            return True
        except Exception as exc:
            self.errors += 1
            log.exception("controller.error in %s", name)
            try:
                self.event("controller.error", None, {"message": f"{where}:{name}",
                                                      "error": f"{type(exc).__name__}: {exc}"[:500]})
            except Exception:
                log.exception("controller.error could not be reported")
            return False

    def _reread_due(self, now: float) -> None:
        if now >= self._next_reread:
            self._reread_inputs(now)

    def _bays_update(self, now: float) -> None:
        for bay_event in self.bays.update(now):
            self.event(bay_event.type, None, bay_event.details)

    def _door_update(self, now: float) -> None:
        for type, details in self.door.update(now, self.gate.held):
            self.event(type, None, details)

    def _gate_tick(self, now: float) -> None:
        if self.gate.tick(now):
            self._passage = None
            self.entries.shut(now)
            self._entering_ends = now + self.config.gate.tailgate_grace_seconds

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_cleanup:
            self._next_cleanup = now + 3600
            self.writer.put(CallJob("snapshot clean-up", self._delete_old_snapshots, urgent=False))
        if now >= self._next_prune:
            self._next_prune = now + 86400
            self.writer.put(CallJob("event pruning", self._prune_old_events, urgent=False))

    def _vision_tick(self, now: float) -> None:
        if self.worker is not None:
            for type, details in self.worker.tick(now):
                self.event(type, None, details)

    def step(self, now: float) -> None:
        """Handle every message waiting now, then the deadlines: one turn of the loop without
        waiting (the rig's simulated clock drives the controller this way)."""
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                break
            self.handle(message, now)
        self.tick(now)
        self._observe(None)

    def _observe(self, message: object | None) -> None:
        for observer in self.observers:
            try:
                observer(message)
            except Exception:
                log.exception("an observer failed on %s", type(message).__name__)

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.gate.next_deadline(), self.fire.next_deadline(),
                                 self.gate_inputs.next_deadline(), self.door.next_deadline(),
                                 self.charging.next_deadline(), self._factor and self._factor.until,
                                 self._face and self._face.until, self._held_deadline(),
                                 self.reader and self.reader.feedback_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def run(self) -> str:
        """Handle messages and deadlines until stopped or the video ends; returns why it stopped."""
        while not self.finished.is_set():
            now = self.clock.now()
            deadline = self._guarded_deadline(now)
            timeout = TICK if deadline is None else max(0.0, min(TICK, deadline - now))
            try:
                message = self.inbox.get(timeout=timeout)
            except queue.Empty:
                message = None
            now = self.clock.now()
            if message is not None:
                self.handle(message, now)
            self.tick(now)
            self._observe(message)
        self._guarded("held", lambda now: self._held_tick(now, stopping=True), self.clock.now(), where="run")
        return self.exit_reason or "stopped"

    def _guarded_deadline(self, now: float) -> float | None:
        """The next deadline; a part that fails to say is a controller.error and the loop waits one TICK."""
        found: list[float | None] = []
        self._guarded("deadlines", lambda now: found.append(self.next_deadline()), now, where="run")
        return found[0] if found else None

    def stop(self, reason: str) -> None:
        self.inbox.put(Stop(reason))

    # --- housekeeping, run by the writer thread ---

    def _close_interrupted_sessions(self, store: Store) -> None:
        """Sessions the last controller left open (it died during them): those of metered ports
        handed to the loop, to be closed from their meters' next reading (charging.interrupted per
        port); the rest (no meter, a port no longer configured) closed now with the energy of their
        last checkpoint, and said once."""
        metered = {p.id for p in self.charging.ports.values() if p.metered}
        closed, kwh, kept = store.close_interrupted_charging(isotime(self.clock.wall()), metered)
        if closed:
            store.log_event("charging.interrupted", None, {"sessions": closed, "kwh": round(kwh, 3)},
                            time=self.clock.wall(), synced=self.clock.synchronized())
            log.info("charging.interrupted sessions=%d kwh=%.3f", closed, kwh)
        if kept:
            self.inbox.put(InterruptedSessions(tuple((r["key"], r["port"], r["meter_start"], r["kwh"], r["peak_watts"])
                                                     for r in kept)))

    def _prune_old_events(self, store: Store) -> None:
        if not self.clock.synchronized():  # a wall clock years ahead would make every event old
            log.info("events not pruned: the clock is not synchronised")
            return
        cutoff = isotime(self.clock.wall() - dt.timedelta(days=self.config.events.keep_days))
        deleted = store.prune_events(cutoff)
        sessions = store.prune_charging(cutoff)  # finished ones: a session still open is kept
        # visitor passes expired that long ago: their uses and the hub's word on them (a pass past its
        # time is refused by its own not-after, whatever is kept)
        store.prune_passes(int((self.clock.wall() - dt.timedelta(days=self.config.events.keep_days)).timestamp()))
        if deleted or sessions:
            store.log_event("events.pruned", None, {"deleted": deleted, "charging_sessions": sessions,
                                                    "older_than": cutoff}, time=self.clock.wall(), synced=True)
            log.info("events.pruned deleted=%d charging_sessions=%d older_than=%s", deleted, sessions, cutoff)

    def _delete_old_snapshots(self, store: Store) -> None:
        """Snapshots older than events.retention_days, hourly. The folder (a month of passages:
        60,000 files at 2,000 a day) is listed at most once a day: a listing keeps, in time order,
        the files that come due within ``SNAPSHOT_HORIZON`` of the cut-off, and the hours after it
        delete from those. A snapshot written since with a time that old (the wall clock stepped
        back by the retention period) is found by the next listing."""
        folder = self.writer.snapshots
        if folder is None or not folder.is_dir():
            return
        if not self.clock.synchronized():  # a clock years ahead (or behind, since the files) would take every one
            log.info("snapshots not cleaned up: the clock is not synchronised")
            return
        # by the time in its name (the controller's wall clock when it was taken: snapshot_name), so the
        # rig's simulated days age them as the events; a file named otherwise by its modification time
        cutoff = self.clock.wall() - dt.timedelta(days=self.config.events.retention_days)
        limit = _snapshot_key(cutoff)
        if self._snapshots_due is None or limit >= self._snapshots_listed_until:
            horizon = _snapshot_key(cutoff + dt.timedelta(seconds=SNAPSHOT_HORIZON))
            due = []
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.name.endswith(".jpg"):
                        continue
                    taken = snapshot_time(entry.name)
                    if taken is None:
                        taken = _snapshot_key(dt.datetime.fromtimestamp(entry.stat().st_mtime, dt.timezone.utc))
                    if taken < horizon:
                        due.append((taken, entry.name))
            due.sort()
            self._snapshots_due, self._snapshots_listed_until = collections.deque(due), horizon
        old, where = 0, str(folder)
        while self._snapshots_due and self._snapshots_due[0][0] < limit:
            try:
                os.unlink(os.path.join(where, self._snapshots_due.popleft()[1]))
            except FileNotFoundError:
                pass  # erased with its resident meanwhile
            old += 1
        if old:
            log.info("deleted %d snapshot(s) older than %d days", old, self.config.events.retention_days)

    # --- the end ---

    def make_safe(self) -> None:
        """Every output off — charging off, siren silent, gate shut, buzzer off — each on its own,
        so that one that fails keeps no other on. The first thing a stop does."""
        if self.charging is not None:
            try:
                self.charging.make_safe()
            except Exception:
                log.exception("the charging ports could not be made safe")
        devices = [] if self.devices is None else [*self.devices.chargers.values(), self.devices.siren]
        for reader in (self.reader, self.exit_reader):
            if reader is None:
                continue
            try:
                reader.make_safe()
            except Exception:
                log.exception("the reader's LED and buzzer could not be switched off")
        for device in (*devices, None if self.gate is None else self.gate.relay, self.buzzer):
            if device is None:
                continue
            try:
                if not device.closed:
                    device.off()
            except Exception:
                log.exception("output %s could not be switched off", device)

    def _release_devices(self) -> None:
        """Every output off, then every pin released; a part that fails to close stops no other."""
        self.make_safe()
        for part in (self.charging, self.devices, self.gate, self.site, self.reader, self.exit_reader, self.buzzer):
            if part is None:
                continue
            try:
                if isinstance(part, OutputDevice):
                    if not part.closed:
                        part.close()
                else:
                    part.close()
            except Exception:
                log.exception("%s could not be closed", type(part).__name__)

    def end_sessions(self) -> None:
        """An orderly stop, once the loop has ended and the outputs are off: every running charging
        session closed as ``interrupted`` with its energy to the last reading (before the writer's
        last pass). A controller that dies instead leaves them to the next one (``resume``)."""
        if self.charging is not None:
            try:
                self._charging_changes(self.charging.interrupt(self.clock.now()))
            except Exception:
                log.exception("the running charging sessions could not be closed")

    def close(self) -> None:
        """Outputs safe and pins released, then the threads that write. Safe to call twice."""
        self._release_devices()
        if self.poller is not None:
            self.poller.close()
        if self.meters is not None:
            self.meters.close()
        self.notifier.close()
        self.latch.close()
        self.port_holds.close()
        self.presence_file.close()
        self.writer.close()


def _snapshot_key(when: dt.datetime) -> str:
    """A time as snapshot file names begin with it (sorts as text in time order)."""
    return snapshot_time(snapshot_name(when, "old", 0))
