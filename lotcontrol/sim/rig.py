"""The hardware-in-the-loop rig: a scenario file runs the real controller (and, with a camera, the
real vision worker) against simulated pins, a fake 1-Wire tree and a recorded clip or scripted
camera. It starts the lot through the composition root (lotcontrol.app), as ``lotcontrol run`` does.
Scenarios run on a simulated clock: without a camera in milliseconds; with a camera in lockstep with
the real vision worker, which handles every frame of the clip or script at its clip time whatever
the machine's load. A scenario about real time (a database locked by another process) says
``clock = "real"``.

A scenario (TOML, in hardware/rig/) gives the configuration, the residents to enroll, the camera (a
recorded clip, or a script of still photos and empty frames: camera.ScriptedSource), a timeline of
actions and the expectations. ``{shared}`` in a path stands for the folder of
shared test photos (``$LOTCONTROL_SHARED``, else ``../shared`` beside the repository); a scenario
that needs it is skipped where it is absent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import LotControlError
from ..config import AccessMode
from ..store import isotime, utc_now
from .faults import lock_database

SHARED_DEFAULT = Path(__file__).resolve().parents[3] / "shared"
KEY_GAP = 0.3  # s between two keys typed at the reader's keypad
_WALL_STEP = re.compile(r"([+-])(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def wall_step(text: str) -> dt.timedelta:
    """``+36h``, ``-3d``: a step of the wall clock."""
    sign, number, unit = _WALL_STEP.fullmatch(text).groups()
    return dt.timedelta(seconds=(-1 if sign == "-" else 1) * float(number) * _UNIT_SECONDS[unit])


class RigError(LotControlError, ValueError):
    """A scenario file that cannot be run as written."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResidentSpec(_Model):
    name: str
    photos: list[str] = Field([], description="Enrollment photos; none: on file without a face (for "
                              "scenarios whose passages are given by a `passage` action, not filmed).")
    status: Literal["active", "suspended"] = "active"
    card: str | None = Field(None, description="Their card on file, FORMAT:NUMBER (e.g. 26:1193046): "
                             "played at the reader by a `card` action.")
    pin: str | None = Field(None, description="Their PIN on file (4-12 digits).")
    access_mode: AccessMode | None = None
    valid_from: str | None = Field(None, description="The first day they may enter (YYYY-MM-DD).")
    valid_until: str | None = Field(None, description="The last day they may enter (YYYY-MM-DD).")
    groups: list[str] = Field([], description="Their access groups ([config.access.groups.NAME]).")
    antipassback: Literal["off", "log", "enforce"] | None = Field(None, description="Their own anti-passback.")
    lookalike_of: str | None = Field(None, description="Another resident: the two flagged as a look-alike pair, as "
                                     "enrollment flags them (access.lookalike_margin, face_and_pin by default).")


class PassSpec(_Model):
    visitor: str = Field(description="The visitor's name: a pass issued as `visitor add` does, signed with the "
                         "lot's key, shown to the camera by a shot that names the visitor.")
    uses: int = Field(1, ge=1, le=100)
    valid_seconds: float = Field(7200.0, gt=0.0, description="From the scenario's wall start.")
    lots: list[str] | None = None
    revoked: bool = False
    forged: bool = Field(False, description="Signed with a key that is not the lot's (a forged or altered pass): "
                         "refused as pass_bad_signature.")


class Shot(_Model):
    photo: str | None = Field(None, description="A photo held up to the camera; none: an empty scene.")
    visitor: str | None = Field(None, description="A visitor's pass (of `passes`) held up to the camera: its "
                                "QR code as `visitor add --png` writes it.")
    seconds: float = Field(gt=0.0, le=600.0)

    @model_validator(mode="after")
    def _one_thing(self) -> "Shot":
        if self.photo is not None and self.visitor is not None:
            raise ValueError("a shot shows a photo or a visitor's pass, not both")
        return self


class CameraSpec(_Model):
    clip: str | None = None
    script: list[Shot] | None = Field(None, min_length=1)
    fps: float = Field(15.0, gt=0.0, le=60.0, description="Frames per second of a script.")

    @model_validator(mode="after")
    def _one_kind(self) -> "CameraSpec":
        if (self.clip is None) == (self.script is None):
            raise ValueError("give either a clip or a script of shots")
        return self


class Action(_Model):
    at: float = Field(ge=0.0, description="Seconds after the start.")
    do: Literal["open", "close", "press", "bounce", "probe", "corrupt_probe", "kill_worker", "kill_controller",
                "database_read_only", "database_writable", "lock_database", "command", "unplug_camera",
                "replug_camera", "passage", "silence_meter", "restore_meter", "meter_watts", "hold_meters",
                "card", "card_bits", "keypad", "show_pass",
                "step_wall_clock", "ntp_sync"]
    visitor: str | None = Field(None, description="show_pass: the visitor (of `passes`) whose pass the vision "
                                "worker read (for scenarios without a camera; with one, hold it up in a shot).")
    resident: str | None = Field(None, description="passage: the resident the vision worker recognised "
                                 "(confirmed over its frames); none: an unknown face. card: whose card is "
                                 "shown at the Wiegand reader (played as its pulse train on D0/D1).")
    claims: list[str] | None = Field(None, description="passage: the residents the face is within the 1:1 limit "
                                     "of, nearest first (face_and_card, face_and_pin); default: the resident "
                                     "recognised, if any.")
    distances: list[float] | None = Field(None, description="passage: the face's distance to each of `claims`, "
                                          "in their order (default: 0.3 to each).")
    at_exit: bool = Field(False, description="card, card_bits: at the exit reader (wiegand.exit_d0_pin, "
                          "exit_d1_pin) instead of the gate's.")
    bits: str | None = Field(None, pattern=r"^[01x]{1,64}$", description="card_bits: a frame as the reader's "
                             "bits, first sent first (a bad frame: a flipped parity bit, a wrong length; x: both "
                             "lines low at once, interference).")
    keys: str | None = Field(None, pattern=r"^[0-9*#]{1,40}$", description="keypad: keys typed at the reader, "
                             "each sent as an 8-bit burst, KEY_GAP s apart (e.g. \"4711#\").")
    pin: int | None = None
    seconds: float = Field(0.2, gt=0.0, le=600.0, description="press: how long the button is held; "
                           "lock_database: how long another process holds the database locked; "
                           "hold_meters: how long the bus stays busy.")
    times: int = Field(3, ge=1, le=100, description="bounce: how many open-close flickers.")
    every: float = Field(0.005, gt=0.0, le=1.0, description="bounce: seconds between two changes.")
    probe: str | None = None
    celsius: float | None = None
    bus: str | None = Field(None, description="silence_meter, restore_meter, meter_watts: the meter's bus; "
                            "hold_meters: the bus a poll is started on whose answers are held back for `seconds` "
                            "(simulated), the poller's thread waiting inside a request meanwhile (a busy bus).")
    unit: int | None = Field(None, description="...and its unit id.")
    watts: float | None = Field(None, description="meter_watts: the power it reads from now on.")
    text: str | None = None
    by: str | None = Field(None, description="step_wall_clock: how far the wall clock is set, forward or back: "
                           "`+36h`, `-3d`, `+90m`, `-45s` (monotonic time goes on as it was).")
    synced: bool = Field(True, description="ntp_sync: whether the wall clock is synchronised from now on.")
    command: str | None = None
    args: dict[str, Any] = {}


class Expectation(_Model):
    at: float | None = Field(None, ge=0.0, description="For a pin: its state at this time.")
    pin: int | None = None
    state: bool | None = None
    history: list[bool] | None = Field(None, description="For a pin: its whole history, compared in full.")
    event: str | None = None
    resident: str | None = None
    visitor: str | None = Field(None, description="For an event: the visitor its pass names (access.granted, access.denied).")
    absent: bool = False
    count: int | None = Field(None, ge=0, description="For an event: exactly this many.")
    within: list[float] | None = Field(None, min_length=2, max_length=2,
                                       description="Seconds after the start: an event in it, or a pin in that state "
                                       "at some moment of it.")
    reason: str | None = None
    energy: Literal["resident", "port"] | None = Field(
        None, description="The charging report's line for this port or resident (`name`): its `kwh` "
        "within [low, high] and, with `count`, its number of sessions.")
    name: str | None = None
    kwh: list[float] | None = Field(None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _one_kind(self) -> "Expectation":
        if sum(x is not None for x in (self.pin, self.event, self.energy)) != 1:
            raise ValueError("an expectation is about a pin, an event or the energy report")
        if self.energy is not None and (self.name is None or self.kwh is None):
            raise ValueError("an energy expectation names the port or resident (name) and its kwh = [low, high]")
        if self.pin is not None and self.history is None and self.state is None:
            raise ValueError(f"say which state GPIO{self.pin} should be in (state = true/false) or its history")
        return self


class MeterSpec(_Model):
    """A simulated SDM120 on a scenario's meter bus (a pymodbus server the rig starts): constant
    ``watts`` until ``taper_at`` s, then a linear taper over ``taper_seconds`` to ``trickle`` W."""

    bus: str
    unit: int = Field(ge=1, le=247)
    watts: float = Field(200.0, ge=0.0)
    taper_at: float = Field(1e9, ge=0.0)
    taper_seconds: float = Field(1800.0, gt=0.0)
    trickle: float = Field(3.0, ge=0.0)
    kwh: float = Field(0.0, ge=0.0, description="The meter's total energy at the start.")


class Scenario(_Model):
    name: str
    duration: float | None = Field(None, gt=0.0, le=86400.0, description="Seconds; at most an hour in real time.")
    clock: Literal["simulated", "real"] = Field(
        "simulated", description="A simulated clock (without a camera: runs in milliseconds; with one: in lockstep "
        "with the vision worker, frame by frame), or real time (no camera).")
    step: float = Field(0.05, ge=0.01, le=600.0, description="Simulated clock: the longest jump when nothing is due "
                        "(the loop's 50 ms tick by default; longer to run hours, e.g. the 8 h charging timer).")
    config: dict[str, Any] = {}
    wall_start: str | None = Field(None, description="Simulated clock: the wall time at the start (ISO, e.g. "
                                   "`1970-01-01T00:00:00+00:00`, a Pi without a real-time clock); default 2026-11-28 09:00 UTC.")
    clock_synced: bool = Field(True, description="Simulated clock: whether the wall clock starts synchronised "
                               "(NTP); false until an `ntp_sync` action.")
    residents: list[ResidentSpec] = []
    passes: list[PassSpec] = Field([], description="Visitor passes issued before the start (lotcontrol.passes).")
    camera: CameraSpec | None = None
    actions: list[Action] = []
    meters: list[MeterSpec] = Field([], description="Simulated meters; each bus they name is served by the rig "
                                    "(its `port` is replaced), on the simulated clock only.")
    expect: list[Expectation] = Field(min_length=1)


@dataclass
class Check:
    description: str
    passed: bool
    observed: str


@dataclass
class Report:
    scenario: str
    path: str
    checks: list[Check] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.skipped is None and all(c.passed for c in self.checks)


def shared_folder() -> Path:
    return Path(os.environ.get("LOTCONTROL_SHARED") or SHARED_DEFAULT)


def load(path: Path) -> Scenario:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RigError(f"scenario {path}: {exc}") from None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RigError(f"scenario {path}: {problems}") from None
    visitors = {p.visitor for p in scenario.passes}
    if len(visitors) != len(scenario.passes):
        raise RigError(f"scenario {path}: two passes for one visitor")
    shown = [s.visitor for s in (scenario.camera.script or []) if s.visitor] if scenario.camera else []
    shown += [a.visitor for a in scenario.actions if a.do == "show_pass"]
    if any(a.do == "show_pass" for a in scenario.actions) and scenario.camera is not None:
        raise RigError(f"scenario {path}: a show_pass action is for scenarios without a camera (with one, hold the "
                       "pass up in a shot)")
    for visitor in shown:
        if visitor not in visitors:
            raise RigError(f"scenario {path}: a shot shows the pass of {visitor!r}, who has none in passes")
    if scenario.duration is None and scenario.camera is None:
        raise RigError(f"scenario {path}: give a duration (or a camera, whose end ends the run)")
    plugs = [a for a in scenario.actions if a.do in ("unplug_camera", "replug_camera")]
    if plugs and (scenario.camera is None or scenario.camera.script is None):
        raise RigError(f"scenario {path}: {plugs[0].do} needs a camera script (a clip is a file, not a camera)")
    passages = [a for a in scenario.actions if a.do == "passage"]
    if passages and scenario.camera is not None:
        raise RigError(f"scenario {path}: a passage action is for scenarios without a camera (with one, film it)")
    named = {r.name for r in scenario.residents}
    for action in passages:
        for who in [action.resident, *(action.claims or [])]:
            if who is not None and who not in named:
                raise RigError(f"scenario {path}: passage for {who!r}, who is not among the residents")
        if action.distances is not None and len(action.distances) != len(action.claims or []):
            raise RigError(f"scenario {path}: passage at {action.at} s: one distance for each of its claims")
    for spec in scenario.residents:
        if spec.lookalike_of is not None and spec.lookalike_of not in named - {spec.name}:
            raise RigError(f"scenario {path}: {spec.name}'s lookalike_of {spec.lookalike_of!r} is not another resident")
    # The scripted camera films still photos: flat pictures to liveness, which would refuse every face
    # in them. The rig runs liveness in "log" unless a scenario says otherwise, and a script may not enforce it.
    if scenario.camera is not None and scenario.camera.script is not None \
            and scenario.config.get("vision", {}).get("liveness") == "enforce":
        raise RigError(f"scenario {path}: vision.liveness = \"enforce\" with a scripted camera: its still photos "
                       "are flat pictures to liveness and every face in them would be refused; use \"log\" or \"off\"")
    if scenario.camera is not None and scenario.clock != "simulated":
        raise RigError(f"scenario {path}: a camera scenario runs on the simulated clock (in lockstep with the "
                       "vision worker): drop clock = \"real\"")
    meters = {(m.bus, m.unit) for m in scenario.meters}
    if scenario.meters and scenario.clock != "simulated":
        raise RigError(f"scenario {path}: simulated meters run on the simulated clock only")
    for action in scenario.actions:
        if action.do == "hold_meters" and action.bus not in {bus for bus, _ in meters}:
            raise RigError(f"scenario {path}: hold_meters at {action.at} s names no bus of simulated meters")
        if action.do in ("silence_meter", "restore_meter", "meter_watts") and (action.bus, action.unit) not in meters:
            raise RigError(f"scenario {path}: {action.do} at {action.at} s names no simulated meter "
                           f"(bus {action.bus!r}, unit {action.unit})")
    if scenario.clock != "simulated" and (scenario.duration or 0) > 3600:
        raise RigError(f"scenario {path}: a real-time scenario runs at most 3600 s")
    if scenario.camera is not None and (scenario.duration or 0) > 3600:
        raise RigError(f"scenario {path}: a camera scenario runs at most 3600 s (every frame is filmed)")
    reader = [a for a in scenario.actions if a.do in ("card", "card_bits", "keypad")]
    if reader and scenario.clock != "simulated":
        raise RigError(f"scenario {path}: {reader[0].do} plays 50 us pulses: on the simulated clock only")
    carded = {r.name for r in scenario.residents if r.card}
    for action in reader:
        if action.do == "card" and action.resident not in carded:
            raise RigError(f"scenario {path}: card at {action.at} s: {action.resident!r} is not a resident with a card")
        if (action.do == "card_bits") != (action.bits is not None) or (action.do == "keypad") != (action.keys is not None):
            raise RigError(f"scenario {path}: {action.do} at {action.at} s: card_bits takes bits, keypad takes keys")
    steps = [a for a in scenario.actions if a.do in ("step_wall_clock", "ntp_sync")]
    if (steps or scenario.wall_start or not scenario.clock_synced) and scenario.clock != "simulated":
        raise RigError(f"scenario {path}: the wall clock is stepped and synchronised on the simulated clock only")
    for action in steps:
        if action.do == "step_wall_clock" and (action.by is None or _WALL_STEP.fullmatch(action.by) is None):
            raise RigError(f"scenario {path}: step_wall_clock at {action.at} s: by = {action.by!r} is not a step "
                           "such as \"+36h\" or \"-3d\" (s, m, h or d)")
    if scenario.wall_start is not None:
        try:
            wall_start = dt.datetime.fromisoformat(scenario.wall_start)
        except ValueError:
            wall_start = None
        if wall_start is None or wall_start.tzinfo is None:
            raise RigError(f"scenario {path}: wall_start {scenario.wall_start!r} is not an ISO time with its zone "
                           "(1970-01-01T00:00:00+00:00)")
    if steps and any(e.event is not None and e.within is not None for e in scenario.expect):
        raise RigError(f"scenario {path}: an event's `within` is measured on the wall clock, which this scenario "
                       "steps: expect the pins' times (monotonic) instead")
    kills = [a for a in scenario.actions if a.do == "kill_controller"]
    if kills and (scenario.camera is not None or scenario.clock != "simulated"):
        raise RigError(f"scenario {path}: kill_controller runs on the simulated clock only (no camera, clock = \"simulated\")")
    return scenario


def _credentials(store, scenario: Scenario) -> None:
    """The residents' cards, PINs, access modes, groups, anti-passback and look-alike flags, put on file
    as `card add`, `pin set`, `edit` and enrollment do."""
    from ..credentials import card_digest, hash_pin, parse_uid

    for spec in scenario.residents:
        if spec.card:
            store.add_card(spec.name, card_digest(store.card_key(), parse_uid(spec.card)))
        if spec.pin:
            store.set_pin(spec.name, hash_pin(spec.pin))
        if spec.access_mode:
            store.set_access_mode(spec.name, spec.access_mode)
        if spec.groups:
            store.set_groups(spec.name, spec.groups)
        if spec.antipassback:
            store.set_antipassback(spec.name, spec.antipassback)
        if spec.lookalike_of:
            store.flag_lookalike(store.resident(spec.name).id, store.resident(spec.lookalike_of).id, 0.3)


def _resolve(text: str, base: Path, shared: Path) -> Path:
    path = Path(text.replace("{shared}", str(shared)))
    return path if path.is_absolute() else base / path


#: Enrollment's face work on the scenarios' photos, done once per process: the scenarios enroll the
#: same photos again and again (Lin-Manuel Miranda's in five). Keyed by the photo's path, its content
#: and the enroll settings, so a changed photo or setting is analysed again (which encoders are
#: installed is the process's own, the same for every scenario it runs).
_ANALYSED: dict[tuple[str, str, str], Any] = {}


def _analysed(paths: list[str], settings) -> list:
    """``enroll.analyse_photo`` of each photo, from _ANALYSED where it was made before."""
    from ..enroll import analyse_photo, photo_sha256

    found = []
    for photo in paths:
        content = photo_sha256(photo, settings)  # read within enroll.max_file_mb, as enrollment reads it
        if content is None:
            found.append(analyse_photo(photo, settings))  # it says what is wrong with the file
            continue
        key = (photo, content, settings.model_dump_json())
        if key not in _ANALYSED:
            _ANALYSED[key] = analyse_photo(photo, settings)
        found.append(_ANALYSED[key])
    return found


def run(path: Path) -> Report:
    """Run one scenario file; its report says what passed, what failed and what was observed."""
    from ..charging.report import report as charging_report
    from ..config import parse_config, prepare_data_dir
    from ..enroll import duplicate_check_gallery, enroll
    from ..store import Store

    path = Path(path)
    scenario = load(path)
    report = Report(scenario.name, str(path))
    shared = shared_folder()
    needs = [r for spec in scenario.residents for r in spec.photos]
    if scenario.camera is not None:
        needs += [scenario.camera.clip] if scenario.camera.clip else [s.photo for s in scenario.camera.script if s.photo]
    if any("{shared}" in p for p in needs) and not shared.is_dir():
        report.skipped = f"{shared} is absent (the shared face photos and clips)"
        return report
    with tempfile.TemporaryDirectory(prefix="lotcontrol-rig-") as tmp:
        tmp_path = Path(tmp)
        tree = tmp_path / "w1"
        raw = {**scenario.config}
        fire = dict(raw.get("fire", {}))
        fire.setdefault("w1_path", str(tree))
        raw["fire"] = fire
        raw["vision"] = {"liveness": "log", **raw.get("vision", {})}  # said explicitly: see load()
        meters = _meter_servers(scenario, raw)
        try:
            config = parse_config(raw, source=f"{path} [config]")
        except LotControlError as exc:
            _close_all(meters.values())
            raise RigError(str(exc)) from None
        for zone in config.fire.zones:
            for probe in zone.probes:
                (tree / probe).mkdir(parents=True, exist_ok=True)
                (tree / probe / "temperature").write_text("22000")
        data_dir = prepare_data_dir(tmp_path / "data")
        with Store.in_dir(data_dir) as store:
            for spec in scenario.residents:
                if not spec.photos:
                    store.add_resident(spec.name, valid_from=spec.valid_from, valid_until=spec.valid_until)
                    if spec.status != "active":
                        store.set_status(spec.name, spec.status)
                    continue
                photos = [str(_resolve(p, path.parent, shared)) for p in spec.photos]
                result = enroll(store, duplicate_check_gallery(store, config), spec.name,
                                _analysed(photos, config.enroll), config)
                if result.resident is None:
                    raise RigError(f"scenario {path}: resident {spec.name!r} could not be enrolled: {result.refused}")
                if spec.status != "active":
                    store.set_status(spec.name, spec.status)
                if spec.valid_from or spec.valid_until:
                    store.update_resident(spec.name, valid_from=spec.valid_from, valid_until=spec.valid_until)
            _credentials(store, scenario)
            pngs, texts = _passes(store, scenario, tmp_path)
            bench = Bench(scenario, path, config, data_dir, store, tree, tmp_path)
            bench.meters = meters
            bench.passes = texts
            for server in meters.values():
                server.clock = bench.clock.now  # the charge curves run on the rig's clock
            try:
                if bench.simulated:
                    bench.run_simulated(_camera_source(scenario.camera, path, shared, tmp_path, pngs)
                                        if scenario.camera else None)
                else:
                    bench.run_real_time()
            finally:
                _close_all(meters.values())
            report.seconds = round(bench.seconds, 2)
            events = store.events()
            totals = charging_report(store.charging_sessions())
            for expectation in scenario.expect:
                report.checks.append(_energy(expectation, totals) if expectation.energy is not None else
                                     _check(expectation, bench.factory, bench.start, events, bench.started_wall))
            bench.factory.reset()
    return report


class Bench:
    """One scenario's lot on the bench: simulated pins, a fake 1-Wire tree, the real controller.

    It runs on a simulated clock (``clock = "simulated"``, the default): time jumps from one instant
    that matters to the next (an action, a deadline of the controller, a probe poll, a meter poll,
    the camera's next frame, or at most the scenario's ``step`` on: the loop's 50 ms ``TICK`` by
    default), and between two instants every background write (events, the safety state) is
    finished, as if the disk took no time. With a camera the vision worker runs in lockstep: at each
    instant it gets the frames up to that time and the rig waits until it has handled them and
    their messages are in the controller's inbox before the controller takes its turn. A scenario
    about real time (a database locked by another process) says ``clock = "real"``.
    """

    def __init__(self, scenario: Scenario, path: Path, config, data_dir: Path, store, tree: Path, tmp: Path):
        from ..clock import Clock
        from .clock import SimClock
        from .pins import simulated_factory

        self.scenario, self.path, self.config = scenario, path, config
        self.data_dir, self.store, self.tree, self.tmp = data_dir, store, tree, tmp
        self.simulated = scenario.clock == "simulated"
        if self.simulated:
            wall = dt.datetime.fromisoformat(scenario.wall_start) if scenario.wall_start else None
            self.clock = SimClock(wall_start=wall, synced=scenario.clock_synced)
        else:
            self.clock = Clock()
        self.factory = simulated_factory(clock=self.clock.now)
        if config.gate.exit_pin is not None:
            self.factory.pin(config.gate.exit_pin).drive_high()  # a push button is open at rest
        for pin in (config.wiegand.d0_pin, config.wiegand.d1_pin, config.wiegand.exit_d0_pin,
                    config.wiegand.exit_d1_pin):
            if pin is not None:
                self.factory.pin(pin).drive_high()  # a Wiegand reader holds its data lines high
        self.lot = None
        self.start = 0.0
        self.seconds = 0.0
        self.lockers: list = []
        self._tracks = 1
        self.scheduled: list[tuple[float, int, bool]] = []  # (time, pin, high?) changes to come
        self.passes: dict[str, str] = {}  # each visitor's pass, as the vision worker reads it (show_pass)
        self.meters: dict = {}  # bus name -> its simulated meters (sim.meters.SimulatedMeters)
        self.busy: list[tuple[float, threading.Event, threading.Thread]] = []  # held buses: (until, release, poll)

    def _lot(self, camera: str | None = None):
        from ..app import Lot

        return Lot(self.config, self.data_dir, pin_factory=self.factory, clock=self.clock, store=self.store,
                   camera=camera)

    def run_simulated(self, camera: str | None = None) -> None:
        from ..controller import TICK

        self.lot = self._lot(camera).start()
        self.started_wall = self.clock.wall()
        actions = sorted(self.scenario.actions, key=lambda a: a.at)
        poll_every = self.config.fire.poll_seconds
        probes = any(zone.probes for zone in self.config.fire.zones)
        next_poll = poll_every if probes else float("inf")  # no probe: nothing to read
        meter_every = self.config.charging.poll_seconds
        next_meter_poll = 0.0 if self.meters else float("inf")
        end = self.scenario.duration or 3600.0  # a camera scenario ends with its clip or script
        guard = self.config.vision.startup_timeout_seconds + 60  # real seconds: a failure guard only
        t = 0.0
        try:
            while True:
                while self.scheduled and self.scheduled[0][0] <= t:
                    _, pin, high = self.scheduled.pop(0)
                    self.factory.pin(pin).drive_high() if high else self.factory.pin(pin).drive_low()
                while actions and actions[0].at <= t:
                    self._settle()
                    self._act(actions.pop(0), t)
                if t >= next_poll:
                    self.lot.controller.poller.poll()
                    next_poll += poll_every
                while self.busy and self.busy[0][0] <= t:  # a held bus lets go: its poll ends, its readings come
                    _, release, poll = self.busy.pop(0)
                    release.set()
                    poll.join(10)
                if t >= next_meter_poll:
                    if not self.busy:  # a busy bus is not polled again meanwhile (its poller is inside a request)
                        self.lot.controller.meters.poll()  # real Modbus traffic, at the simulated instant
                    next_meter_poll += meter_every
                elif self.meters and not self.busy and (self.lot.controller.meters.next_confirm() or float("inf")) <= t:
                    self.lot.controller.meters.confirm()  # an overloaded meter read again
                worker = self.lot.controller.worker
                if worker is not None and not worker.step_to(t, guard):
                    raise RigError(f"scenario {self.path}: the vision worker did not handle its frames up to "
                                   f"{t:.3f} s within {guard:g} s (real time)")
                for reader in (self.lot.controller.reader, self.lot.controller.exit_reader):
                    if reader is not None:
                        reader.decode_due()  # the reader's thread, at this simulated instant
                self.lot.controller.step(t)
                self._settle()
                if self.lot.controller.faces_held:  # the writer has read the residents again for them:
                    self.lot.controller.step(t)      # decided at this instant, as the loop's next tick would
                    self._settle()
                if t >= end or self.lot.controller.finished.is_set():
                    break
                deadline = self.lot.controller.next_deadline()
                upcoming = [t + max(TICK, self.scenario.step), next_poll, next_meter_poll, end] + [a.at for a in actions[:1]] + [c[0] for c in self.scheduled[:1]]
                if deadline is not None and deadline > t:
                    upcoming.append(deadline)
                upcoming += [until for until, _, _ in self.busy[:1]]
                for reader in (self.lot.controller.reader, self.lot.controller.exit_reader):
                    due = None if reader is None else reader.next_deadline()
                    if due is not None:
                        upcoming.append(max(due, t))  # a frame read: decoded exactly its quiet gap after its last pulse
                if worker is not None and worker.next_frame is not None and worker.next_frame > t:
                    upcoming.append(worker.next_frame)  # the camera's next frame (or its next reopening)
                confirm = self.lot.controller.meters.next_confirm() if self.meters else None
                if confirm is not None and confirm > t:
                    upcoming.append(confirm)
                t = min(upcoming)
                self.clock.advance_to(t)
        finally:
            for _, release, poll in self.busy:
                release.set()
                poll.join(10)
            self.lot.stop()
        self.seconds = t

    def _settle(self) -> None:
        controller = self.lot.controller
        controller.charging.flush()  # the expanders' writer threads, at this simulated instant
        controller.writer.flush()
        controller.latch.flush()
        controller.port_holds.flush()
        controller.presence_file.flush()

    def run_real_time(self) -> None:
        self.lot = self._lot().start()
        controller = self.lot.controller
        thread = threading.Thread(target=self.lot.run, name="rig-controller", daemon=True)
        thread.start()
        try:
            self.start = time.monotonic()
            self.started_wall = utc_now() - dt.timedelta(seconds=time.monotonic() - self.start)
            for action in sorted(self.scenario.actions, key=lambda a: a.at):
                delay = self.start + action.at - time.monotonic()
                if delay > 0 and controller.finished.wait(delay):
                    break
                self._act(action, time.monotonic() - self.start)
            controller.finished.wait(max(0.0, self.start + self.scenario.duration - time.monotonic()))
        finally:
            controller.stop("the scenario's time is up")
            thread.join(timeout=600)
            for locker in self.lockers:
                locker.kill()
                locker.wait()
            self.lot.stop()
        self.seconds = time.monotonic() - self.start

    def _act(self, action: Action, t: float) -> None:
        from ..messages import Command, Passage, PassShown

        controller = self.lot.controller
        if action.do in ("open", "close", "press"):
            pin = self.factory.pin(action.pin)
            if action.do == "open":
                pin.drive_high()
            elif action.do == "close":
                pin.drive_low()
            else:  # a push button closing to ground: pressed now, released after action.seconds
                pin.drive_low()
                self._later([(action.seconds, action.pin, True)], t)
        elif action.do == "bounce":  # a contact changing state with bounces: it flickers, then settles
            start = self.factory.pin(action.pin).state
            changes = [(i * action.every, action.pin, not start if i % 2 == 0 else start)
                       for i in range(2 * action.times + 1)]
            self._later(changes, t)
        elif action.do == "passage":  # what the vision worker says after confirming a face over its frames
            resident = None if action.resident is None else self.store.resident(action.resident)
            claims = action.claims if action.claims is not None else [action.resident] if resident else []
            controller.inbox.put(Passage(self._tracks, "grant" if resident else "unknown",
                                         resident.id if resident else None, None if resident else "no_match",
                                         0.3 if resident else 0.7, 3, t, t + 0.2,
                                         claims=tuple((self.store.resident(n).id, d) for n, d in
                                                      zip(claims, action.distances or [0.3] * len(claims)))))
            self._tracks += 1
        elif action.do == "show_pass":  # what the vision worker sends on reading the visitor's QR code
            controller.inbox.put(PassShown(self.passes[action.visitor], t))
        elif action.do == "probe":
            (self.tree / action.probe / "temperature").write_text(str(int(action.celsius * 1000)))
        elif action.do == "corrupt_probe":
            (self.tree / action.probe / "temperature").write_text(action.text or "85000")
        elif action.do == "kill_worker":  # dead before it is given the frames from now on
            controller.worker.kill()
            controller.worker.process.join(self.config.vision.startup_timeout_seconds + 60)
        elif action.do == "database_read_only":
            self.store.db.execute("PRAGMA query_only = ON")
        elif action.do == "database_writable":
            self.store.db.execute("PRAGMA query_only = OFF")
        elif action.do == "lock_database":
            self.lockers.append(lock_database(self.store.path, action.seconds))
        elif action.do == "unplug_camera":
            (self.tmp / "camera-unplugged").touch()
        elif action.do == "replug_camera":
            (self.tmp / "camera-unplugged").unlink(missing_ok=True)
        elif action.do == "kill_controller":
            self._kill_and_restart()
        elif action.do == "step_wall_clock":  # NTP (or staff) set the wall clock: only events' times move
            self.clock.step_wall(wall_step(action.by))
        elif action.do == "ntp_sync":
            self.clock.sync(action.synced)
        elif action.do == "command":
            controller.inbox.put(Command(action.command, action.args))
        elif action.do in ("silence_meter", "restore_meter"):
            server = self.meters[action.bus]
            (server.silent.add if action.do == "silence_meter" else server.silent.discard)(action.unit)
        elif action.do == "hold_meters":  # a poll in flight on a busy bus: its thread waits inside a request
            server = self.meters[action.bus]
            release = server.hold()
            poller = next(p for p in controller.meters.pollers if p.bus.name == action.bus)
            poll = threading.Thread(target=poller.poll, name=f"rig-busy-{action.bus}", daemon=True)
            poll.start()
            if not server.held.wait(10):
                release.set()
                raise RigError(f"scenario {self.path}: hold_meters at {action.at} s: the poll sent no request")
            self.busy.append((t + action.seconds, release, poll))
            self.busy.sort(key=lambda b: b[0])
        elif action.do in ("card", "card_bits", "keypad"):
            self._later(self._reader_train(action), t)
        elif action.do == "meter_watts":
            server = self.meters[action.bus]
            before = server.curves[action.unit]
            server.curves[action.unit] = (lambda watts, curve: lambda t: (watts, curve(t)[1]))(action.watts, before)

    def _reader_train(self, action: Action) -> list[tuple[float, int, bool]]:
        """The pulse trains a Wiegand reader sends: a resident's card, raw bits, or keys one by one."""
        from ..credentials import parse_uid
        from ..site.wiegand import card_frame, key_frame
        from .pins import pulse_train

        wiegand = self.config.wiegand
        d0, d1 = (wiegand.exit_d0_pin, wiegand.exit_d1_pin) if action.at_exit else (wiegand.d0_pin, wiegand.d1_pin)
        if d0 is None:
            raise RigError(f"scenario {self.path}: {action.do} at {action.at} s: the configuration has no reader "
                           "([config.wiegand] d0_pin, d1_pin)")
        if action.do == "card":
            spec = next(r for r in self.scenario.residents if r.name == action.resident)
            card = parse_uid(spec.card)
            return pulse_train(d0, d1, card_frame(card.number, card.bits), 0.0)
        if action.do == "card_bits":
            return pulse_train(d0, d1, [2 if b == "x" else int(b) for b in action.bits], 0.0)
        return [change for index, key in enumerate(action.keys)
                for change in pulse_train(d0, d1, key_frame(key), index * KEY_GAP)]

    def _later(self, changes: list[tuple[float, int, bool]], t: float) -> None:
        """Pin changes at offsets from now: on the simulated clock at those instants, else by timers."""
        for offset, pin, high in changes:
            if self.simulated:
                self.scheduled.append((t + offset, pin, high))
            else:
                level = self.factory.pin(pin)
                threading.Timer(offset, level.drive_high if high else level.drive_low).start()
        self.scheduled.sort()

    def _kill_and_restart(self) -> None:
        """The controller process dies hard (SIGKILL, a power blip) and systemd starts it again on
        the same data directory."""
        abandon(self.lot)
        self.lot = self._lot().start()


def abandon(lot) -> None:
    """A lot's controller process dies hard (SIGKILL, a power blip), on the simulated clock, between
    two instants: what it held in memory is gone (the events its writer had not committed), its pins
    are released (as lgpio releases them when the process dies: every output off), its threads die,
    the kernel drops its flock; nothing of its orderly stop runs. A database connection the lot
    opened itself is left to the caller (closing it writes nothing: no transaction is open between
    two instants)."""
    old = lot.controller
    old._release_devices()  # the kernel releases the lines; nothing is flushed
    old.writer.jobs.clear()  # events not yet written die with the process
    if old.meters is not None:
        old.meters.close()  # its poller threads die with it
    lot._stack.pop_all()  # nothing of the dead process's orderly stop runs
    old.notifier.close()
    lot.lock.close()  # the kernel drops a dead process's flock


def _meter_servers(scenario: Scenario, raw: dict[str, Any]) -> dict:
    """A pymodbus server of simulated meters for each bus the scenario's meters name, on the rig's
    simulated clock (set later); each such bus's `port` in ``raw`` is replaced by its server."""
    if not scenario.meters:
        return {}
    from ..config import ChargingConfig
    from .meters import SimulatedMeters, charge_curve

    profile = ChargingConfig().meter_profiles()["sdm120"]
    servers: dict = {}
    charging = dict(raw.get("charging", {}))
    buses = [dict(b) for b in charging.get("buses", [])]
    try:
        for name in sorted({m.bus for m in scenario.meters}):
            curves = {m.unit: charge_curve(m.watts, m.taper_at, m.taper_seconds, m.trickle, m.kwh)
                      for m in scenario.meters if m.bus == name}
            servers[name] = SimulatedMeters(curves, profile, clock=lambda: 0.0)  # the rig's clock, once it has one
            for bus in buses:
                if bus.get("name") == name:
                    bus["port"] = servers[name].url
    except Exception:
        _close_all(servers.values())
        raise
    charging["buses"] = buses
    raw["charging"] = charging
    return servers


def _close_all(servers) -> None:
    for server in servers:
        server.close()


def _passes(store, scenario: Scenario, tmp: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The scenario's visitor passes, issued as `visitor add` does (signed with the lot's key, valid from
    the scenario's wall start): each one's QR code as a PNG to show the camera, and its text (what the
    vision worker reads from it); by visitor."""
    import segno

    from .. import passes
    from ..cli.visitors import PNG_SCALE
    from .clock import SimClock

    start = SimClock(wall_start=dt.datetime.fromisoformat(scenario.wall_start) if scenario.wall_start else None).wall()
    pngs: dict[str, Path] = {}
    texts: dict[str, str] = {}
    for index, spec in enumerate(scenario.passes):
        visitor_pass = passes.Pass(passes.new_id(), spec.visitor, None if spec.lots is None else tuple(spec.lots),
                                   int(start.timestamp() + spec.valid_seconds), spec.uses)
        store.add_pass(visitor_pass.id, spec.visitor, spec.lots, visitor_pass.not_after, spec.uses)
        if spec.revoked:
            store.revoke_pass(visitor_pass.id)
        pngs[spec.visitor] = tmp / f"pass-{index}.png"
        texts[spec.visitor] = passes.sign(b"not the lot's key" if spec.forged else store.pass_key(), visitor_pass)
        segno.make(texts[spec.visitor], error="m").save(str(pngs[spec.visitor]), kind="png", scale=PNG_SCALE, border=4)
    return pngs, texts


def _camera_source(camera: CameraSpec, path: Path, shared: Path, tmp: Path, pngs: dict[str, Path] | None = None) -> str:
    """The camera.source for the worker: the clip, or a script file for camera.ScriptedSource."""
    if camera.clip is not None:
        return str(_resolve(camera.clip, path.parent, shared))
    shots = []
    for shot in camera.script:
        photo = (pngs or {}).get(shot.visitor) if shot.visitor else None if shot.photo is None else \
            _resolve(shot.photo, path.parent, shared)
        if photo is not None and not photo.is_file():
            raise RigError(f"scenario {path}: camera photo {photo} does not exist")
        shots.append({"photo": None if photo is None else str(photo), "seconds": shot.seconds})
    script = tmp / "camera.json"
    script.write_text(json.dumps({"fps": camera.fps, "size": [640, 480], "shots": shots,
                                  "unplugged": str(tmp / "camera-unplugged"), "started": str(tmp / "camera-started")}))
    return f"script:{script}"


def _energy(e: Expectation, totals: list[dict]) -> Check:
    """A line of the charging report (``lotcontrol charging report``), after the run."""
    row = next((r for r in totals if r["by"] == e.energy and r["name"] == e.name), None)
    low, high = e.kwh
    what = f"charging report, {e.energy} {e.name}: {low}-{high} kWh" + (f" in {e.count} session(s)" if e.count else "")
    if row is None:
        return Check(what, False, "no line")
    ok = low <= row["kwh"] <= high and (e.count is None or row["sessions"] == e.count) and not row["open"]
    return Check(what, ok, f"{row['kwh']:.6f} kWh in {row['sessions']} session(s), {row['open']} still open")


def _check(e: Expectation, factory, start: float, events, started_wall) -> Check:
    if e.pin is not None and e.history is not None:
        history = factory.pin(e.pin).history
        observed = [s for _, s in history]
        times = ", ".join(f"{round(t - start, 3)}" for t, _ in history)
        return Check(f"GPIO{e.pin} went through {e.history}", observed == e.history, f"{observed} at [{times}] s")
    if e.pin is not None and e.within is not None:  # in that state at some moment of the window
        history = factory.pin(e.pin).history
        low, high = start + e.within[0], start + e.within[1]
        times = [max(t, low) for i, (t, s) in enumerate(history) if s == e.state and t <= high
                 and (i + 1 == len(history) or history[i + 1][0] >= low)]
        return Check(f"GPIO{e.pin} is {'high' if e.state else 'low'} within {e.within[0]}-{e.within[1]} s",
                     bool(times), f"from {round(times[0] - start, 3)} s" if times else "not in that state then")
    if e.pin is not None:
        moment = start + (e.at or 0.0)
        state, since = None, 0.0
        for t, s in factory.pin(e.pin).history:
            if t <= moment:
                state, since = s, t
        return Check(f"GPIO{e.pin} is {'high' if e.state else 'low'} at {e.at} s", state == e.state,
                     f"{'high' if state else 'low'} since {round(since - start, 3)} s")
    matching = [ev for ev in events if ev.type == e.event
                and (e.resident is None or ev.resident == e.resident)
                and (e.visitor is None or ev.details.get("visitor") == e.visitor)
                and (e.reason is None or ev.details.get("reason") == e.reason)]
    if e.within is not None:
        low = isotime(started_wall + dt.timedelta(seconds=e.within[0]))
        high = isotime(started_wall + dt.timedelta(seconds=e.within[1]))
        matching = [ev for ev in matching if low <= ev.time <= high]
    what = e.event + (f" for {e.resident or e.visitor}" if e.resident or e.visitor else "") + \
        (f" ({e.reason})" if e.reason else "")
    window = f" within {e.within[0]}-{e.within[1]} s" if e.within else ""
    if e.absent:
        return Check(f"no {what}{window}", not matching, f"{len(matching)} seen")
    if e.count is not None:
        return Check(f"{e.count} x {what}{window}", len(matching) == e.count, f"{len(matching)} seen")
    seconds = [round((dt.datetime.fromisoformat(ev.time) - started_wall).total_seconds(), 2) for ev in matching]
    return Check(f"{what}{window}", bool(matching), f"at {seconds} s" if seconds else "not seen")
