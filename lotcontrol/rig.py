"""The hardware-in-the-loop rig: a scenario file runs the real controller (and, with a camera, the
real vision worker) against simulated pins, a fake 1-Wire tree and a recorded clip, in real time.

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
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import LotControlError

SHARED_DEFAULT = Path(__file__).resolve().parents[2] / "shared"


class RigError(LotControlError, ValueError):
    """A scenario file that cannot be run as written."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResidentSpec(_Model):
    name: str
    photos: list[str] = Field(min_length=1)
    status: Literal["active", "suspended"] = "active"


class Shot(_Model):
    photo: str | None = Field(None, description="A photo held up to the camera; none: an empty scene.")
    seconds: float = Field(gt=0.0, le=600.0)


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
    do: Literal["open", "close", "press", "probe", "corrupt_probe", "kill_worker", "database_read_only",
                "database_writable", "command", "unplug_camera", "replug_camera"]
    pin: int | None = None
    probe: str | None = None
    celsius: float | None = None
    text: str | None = None
    command: str | None = None
    args: dict[str, Any] = {}


class Expectation(_Model):
    at: float | None = Field(None, ge=0.0, description="For a pin: its state at this time.")
    pin: int | None = None
    state: bool | None = None
    history: list[bool] | None = Field(None, description="For a pin: its whole history, compared in full.")
    event: str | None = None
    resident: str | None = None
    absent: bool = False
    count: int | None = Field(None, ge=0, description="For an event: exactly this many.")
    within: list[float] | None = Field(None, min_length=2, max_length=2,
                                       description="Seconds after the start: an event in it, or a pin in that state "
                                       "at some moment of it.")
    reason: str | None = None


    @model_validator(mode="after")
    def _one_kind(self) -> "Expectation":
        if (self.pin is None) == (self.event is None):
            raise ValueError("an expectation is about a pin or an event")
        if self.pin is not None and self.history is None and self.state is None:
            raise ValueError(f"say which state GPIO{self.pin} should be in (state = true/false) or its history")
        return self


class Scenario(_Model):
    name: str
    duration: float | None = Field(None, gt=0.0, le=600.0)
    config: dict[str, Any] = {}
    residents: list[ResidentSpec] = []
    camera: CameraSpec | None = None
    actions: list[Action] = []
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
    if scenario.duration is None and scenario.camera is None:
        raise RigError(f"scenario {path}: give a duration (or a camera, whose end ends the run)")
    plugs = [a for a in scenario.actions if a.do in ("unplug_camera", "replug_camera")]
    if plugs and (scenario.camera is None or scenario.camera.script is None):
        raise RigError(f"scenario {path}: {plugs[0].do} needs a camera script (a clip is a file, not a camera)")
    return scenario


def _resolve(text: str, base: Path, shared: Path) -> Path:
    path = Path(text.replace("{shared}", str(shared)))
    return path if path.is_absolute() else base / path


def run(path: Path) -> Report:
    """Run one scenario file; its report says what passed, what failed and what was observed."""
    from .config import parse_config, prepare_data_dir
    from .controller import Controller
    from .enroll import analyse_photos, duplicate_check_gallery, enroll
    from .hardware import simulated_factory
    from .store import Store, isotime, utc_now
    from .supervisor import VisionWorker

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
        try:
            config = parse_config(raw, source=f"{path} [config]")
        except LotControlError as exc:
            raise RigError(str(exc)) from None
        for zone in config.fire.zones:
            for probe in zone.probes:
                (tree / probe).mkdir(parents=True, exist_ok=True)
                (tree / probe / "temperature").write_text("22000")
        data_dir = prepare_data_dir(tmp_path / "data")
        store = Store.in_dir(data_dir)
        for spec in scenario.residents:
            photos = [str(_resolve(p, path.parent, shared)) for p in spec.photos]
            result = enroll(store, duplicate_check_gallery(store, config), spec.name,
                            list(analyse_photos(photos, config.enroll)), config, force=True)
            if result.resident is None:
                raise RigError(f"scenario {path}: resident {spec.name!r} could not be enrolled: {result.rejected}")
            if spec.status != "active":
                store.set_status(spec.name, spec.status)
        factory = simulated_factory()
        controller = Controller(config, store, pin_factory=factory)
        clip_started = threading.Event()
        time_base: list[float] = []
        if scenario.camera is not None:
            source = _camera_source(scenario.camera, path, shared, tmp_path)

            def deliver(message):
                if not clip_started.is_set() and getattr(message, "time_base", 0.0) > 0.0:
                    time_base.append(message.time_base)
                    clip_started.set()
                controller.inbox.put(message)
            controller.worker = VisionWorker(config, str(data_dir), source, deliver=deliver)
        thread = threading.Thread(target=controller.run, name="rig-controller", daemon=True)
        thread.start()
        if scenario.camera is not None:
            # time 0 is the clip's first frame, not the controller's start (the worker loads first)
            if not clip_started.wait(60):
                controller.stop("the clip never started")
                thread.join()
                raise RigError(f"scenario {path}: the vision worker did not start the clip within 60 s")
            start = time_base[0]
        else:
            start = time.monotonic()
        started_wall = utc_now() - dt.timedelta(seconds=time.monotonic() - start)
        for action in sorted(scenario.actions, key=lambda a: a.at):
            delay = start + action.at - time.monotonic()
            if delay > 0 and controller.finished.wait(delay):
                break
            _act(action, controller, factory, store, tree, tmp_path)
        if scenario.duration is not None:
            controller.finished.wait(max(0.0, start + scenario.duration - time.monotonic()))
            controller.stop("the scenario's time is up")
        thread.join(timeout=600)
        report.seconds = round(time.monotonic() - start, 2)
        events = store.events()
        for expectation in scenario.expect:
            report.checks.append(_check(expectation, factory, start, events, started_wall, isotime))
        store.close()
        factory.reset()
    return report


def _camera_source(camera: CameraSpec, path: Path, shared: Path, tmp: Path) -> str:
    """The camera.source for the worker: the clip, or a script file for camera.ScriptedSource."""
    if camera.clip is not None:
        return str(_resolve(camera.clip, path.parent, shared))
    shots = []
    for shot in camera.script:
        photo = None if shot.photo is None else _resolve(shot.photo, path.parent, shared)
        if photo is not None and not photo.is_file():
            raise RigError(f"scenario {path}: camera photo {photo} does not exist")
        shots.append({"photo": None if photo is None else str(photo), "seconds": shot.seconds})
    script = tmp / "camera.json"
    script.write_text(json.dumps({"fps": camera.fps, "size": [640, 480], "shots": shots,
                                  "unplugged": str(tmp / "camera-unplugged"), "started": str(tmp / "camera-started")}))
    return f"script:{script}"


def _act(action: Action, controller, factory, store, tree: Path, tmp: Path) -> None:
    from .controller import Command

    if action.do in ("open", "close", "press"):
        pin = factory.pin(action.pin)
        if action.do == "open":
            pin.drive_high()
        elif action.do == "close":
            pin.drive_low()
        else:  # a push button closing to ground: a press and its release
            pin.drive_high()
            pin.drive_low()
    elif action.do == "probe":
        (tree / action.probe / "temperature").write_text(str(int(action.celsius * 1000)))
    elif action.do == "corrupt_probe":
        (tree / action.probe / "temperature").write_text(action.text or "85000")
    elif action.do == "kill_worker":
        controller.worker.kill()
    elif action.do == "database_read_only":
        store.db.execute("PRAGMA query_only = ON")
    elif action.do == "database_writable":
        store.db.execute("PRAGMA query_only = OFF")
    elif action.do == "unplug_camera":
        (tmp / "camera-unplugged").touch()
    elif action.do == "replug_camera":
        (tmp / "camera-unplugged").unlink(missing_ok=True)
    elif action.do == "command":
        controller.inbox.put(Command(action.command, action.args, lambda answer: None))


def _pin_history(pin) -> list[tuple[float, bool]]:
    """(monotonic time, state) for every change; MockPin keeps deltas, ending at _last_change."""
    times, t = [], pin._last_change
    for state in reversed(pin.states):
        times.append((t, bool(state.state)))
        t -= state.timestamp
    return list(reversed(times))


def _check(e: Expectation, factory, start: float, events, started_wall, isotime) -> Check:
    if e.pin is not None and e.history is not None:
        history = _pin_history(factory.pin(e.pin))
        observed = [s for _, s in history]
        times = ", ".join(f"{round(t - start, 3)}" for t, _ in history)
        return Check(f"GPIO{e.pin} went through {e.history}", observed == e.history, f"{observed} at [{times}] s")
    if e.pin is not None and e.within is not None:  # in that state at some moment of the window
        history = _pin_history(factory.pin(e.pin))
        low, high = start + e.within[0], start + e.within[1]
        times = [max(t, low) for i, (t, s) in enumerate(history) if s == e.state and t <= high
                 and (i + 1 == len(history) or history[i + 1][0] >= low)]
        return Check(f"GPIO{e.pin} is {'high' if e.state else 'low'} within {e.within[0]}-{e.within[1]} s",
                     bool(times), f"from {round(times[0] - start, 3)} s" if times else "not in that state then")
    if e.pin is not None:
        moment = start + (e.at or 0.0)
        state, since = None, 0.0
        for t, s in _pin_history(factory.pin(e.pin)):
            if t <= moment:
                state, since = s, t
        return Check(f"GPIO{e.pin} is {'high' if e.state else 'low'} at {e.at} s", state == e.state,
                     f"{'high' if state else 'low'} since {round(since - start, 3)} s")
    matching = [ev for ev in events if ev.type == e.event
                and (e.resident is None or ev.resident == e.resident)
                and (e.reason is None or ev.details.get("reason") == e.reason)]
    if e.within is not None:
        low = isotime(started_wall + dt.timedelta(seconds=e.within[0]))
        high = isotime(started_wall + dt.timedelta(seconds=e.within[1]))
        matching = [ev for ev in matching if low <= ev.time <= high]
    what = e.event + (f" for {e.resident}" if e.resident else "") + (f" ({e.reason})" if e.reason else "")
    window = f" within {e.within[0]}-{e.within[1]} s" if e.within else ""
    if e.absent:
        return Check(f"no {what}{window}", not matching, f"{len(matching)} seen")
    if e.count is not None:
        return Check(f"{e.count} x {what}{window}", len(matching) == e.count, f"{len(matching)} seen")
    seconds = [round((dt.datetime.fromisoformat(ev.time) - started_wall).total_seconds(), 2) for ev in matching]
    return Check(f"{what}{window}", bool(matching), f"at {seconds} s" if seconds else "not seen")
