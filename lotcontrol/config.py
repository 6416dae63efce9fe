"""The configuration: one TOML file, every key with a default, a description and bounds.

``load_config(path)`` returns a frozen :class:`Config` or raises :class:`ConfigError` naming the file,
the key and what is allowed. No file at the default path means all defaults; a path the user named
must exist. ``data_dir()`` resolves and prepares the directory that holds the database.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, DataDirError

CONFIG_ENV = "LOTCONTROL_CONFIG"
DATA_DIR_ENV = "LOTCONTROL_DATA_DIR"


class PinMarker:
    """Marks a field as a GPIO pin, so that one pin cannot serve two roles."""


#: A GPIO line in Broadcom (BCM) numbering, as printed on the Pi's pinout as GPIOnn.
Pin = Annotated[int, Field(ge=0, le=27), PinMarker()]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)


class MatchConfig(Section):
    accept_distance: float = Field(
        0.55, gt=0.0, lt=1.0,
        description="A face can match a resident only when its distance to their nearest template is at "
        "most this. Lower refuses more strangers and more residents; see models/README.md.",
    )
    crowding_factor: float = Field(
        0.8, gt=0.0, le=2.0,
        description="A resident's limit is also at most this times the mean distance from them to their "
        "nearest other residents: a resident who looks like others needs a closer match.",
    )
    crowding_neighbours: int = Field(
        3, ge=0, le=50,
        description="How many nearest other residents measure how crowded a resident's part of face "
        "space is; 0 turns the crowding limit off.",
    )
    margin: float = Field(
        0.05, ge=0.0, lt=0.5,
        description="The second-nearest resident must be at least this much further away than the "
        "nearest, or the face is refused as ambiguous.",
    )


class EnrollConfig(Section):
    min_face_px: int = Field(
        50, ge=20, le=1000,
        description="Smallest face width, in pixels of the photo, accepted for enrollment. Smaller "
        "faces elsewhere in a photo are ignored as background.",
    )
    min_sharpness: float = Field(
        20.0, ge=0.0, le=10000.0,
        description="Smallest sharpness (variance of the Laplacian of the face scaled to 128 px) "
        "accepted for enrollment.",
    )
    max_megapixels: float = Field(
        60.0, gt=0.0, le=500.0,
        description="Photos larger than this are refused before they are decoded (memory bound).",
    )
    workers: int = Field(
        0, ge=0, le=64,
        description="Processes that encode photos in `enroll-folder`; 0 means one per CPU core.",
    )


class CameraConfig(Section):
    source: str = Field(
        "/dev/video0", min_length=1, max_length=1000,
        description="Where frames come from: a V4L2 device (/dev/video0) or its index (0), an rtsp:// "
        "or http:// stream, a video file, or picamera2 for the Raspberry Pi Camera Module.",
    )
    reconnect_seconds: float = Field(
        2.0, gt=0.0, le=60.0,
        description="First wait before reopening a camera that stopped delivering frames; doubles up "
        "to 30 s while it stays away.",
    )


class VisionConfig(Section):
    detect_width: int = Field(
        320, ge=160, le=1920,
        description="Frames are scaled to this width for face detection (HOG, one upsample): 320 finds "
        "faces from about 80 px wide in a 640 px frame, in about 20 ms.",
    )
    search_every: int = Field(
        2, ge=1, le=30,
        description="While no face is in view, look for faces in every Nth frame that changed; while "
        "faces are followed, search the whole frame for newcomers every Nth frame (else only around them).",
    )
    follow_every: int = Field(
        4, ge=1, le=30,
        description="While every face in view is already admitted (or too small to encode yet), look "
        "in every Nth frame only.",
    )
    motion_threshold: float = Field(
        0.002, ge=0.0, le=1.0,
        description="Fraction of pixels that must change between frames before an empty scene is "
        "searched for faces; 0 searches every frame.",
    )
    min_face_px: int = Field(
        60, ge=20, le=1000, description="Faces narrower than this (frame pixels) are not encoded."
    )
    min_sharpness: float = Field(
        8.0, ge=0.0, le=10000.0, description="Faces less sharp than this are not encoded."
    )
    max_turn: float = Field(
        0.35, gt=0.0, le=1.0,
        description="Faces turned further than this are not encoded: the nose's offset from between "
        "the eyes, as a fraction of the distance between the eyes (0 is frontal).",
    )
    confirm_frames: int = Field(
        3, ge=1, le=20,
        description="A passage is granted when this many encoded frames of one face agree on one "
        "resident and none names anyone else.",
    )
    max_encodings: int = Field(
        12, ge=1, le=100,
        description="A face that has not been confirmed after this many encoded frames is refused as "
        "unknown.",
    )
    retry_seconds: float = Field(
        0.25, ge=0.0, le=10.0,
        description="A face refused as unknown is encoded again this often while it stays in view, "
        "and admitted if its latest frames agree after all (its refusal is logged once).",
    )
    track_timeout_seconds: float = Field(
        1.0, gt=0.0, le=30.0, description="A face not seen for this long has left; its passage ends."
    )
    heartbeat_timeout_seconds: float = Field(
        10.0, ge=2.0, le=300.0,
        description="The controller restarts the vision worker when it has not heard from it for this "
        "long (the worker sends a heartbeat every second).",
    )


class EventsConfig(Section):
    snapshots: bool = Field(
        False, description="Keep a JPEG crop of the face for each granted or denied passage."
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="Snapshots older than this are deleted (checked hourly)."
    )


class GateConfig(Section):
    relay_pin: Pin = Field(17, description="GPIO (BCM) of the gate relay.")
    relay_active_high: bool = Field(
        True, description="True when driving the pin high energizes the relay (opens the gate)."
    )
    open_seconds: float = Field(
        5.0, gt=0.0, le=60.0, description="How long one grant holds the gate relay on."
    )


class Config(Section):
    match: MatchConfig = MatchConfig()
    enroll: EnrollConfig = EnrollConfig()
    camera: CameraConfig = CameraConfig()
    vision: VisionConfig = VisionConfig()
    gate: GateConfig = GateConfig()
    events: EventsConfig = EventsConfig()

    @model_validator(mode="after")
    def _pins_used_once(self) -> "Config":
        seen: dict[int, str] = {}
        for key, pin in pin_fields(self):
            if pin in seen:
                raise ValueError(f"GPIO{pin} is used twice: by {seen[pin]} and by {key}")
            seen[pin] = key
        return self


def pin_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, int]]:
    """Every (dotted key, pin) pair in a configuration, in file order."""
    found: list[tuple[str, int]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            found += pin_fields(value, key + ".")
        elif any(isinstance(m, PinMarker) for m in info.metadata) and value is not None:
            found.append((key, value))
    return found


def default_config_path() -> Path:
    """``$CONFIGURATION_DIRECTORY`` (systemd) or ``$XDG_CONFIG_HOME`` / ``~/.config``."""
    if os.environ.get("CONFIGURATION_DIRECTORY"):
        return Path(os.environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / "lotcontrol.toml"
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "lotcontrol" / "lotcontrol.toml"


def config_path(path: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The file to read and whether the user named it (then it must exist)."""
    if path is not None:
        return Path(path), True
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), True
    return default_config_path(), False


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the configuration at ``path``, ``$LOTCONTROL_CONFIG`` or the default path."""
    path, explicit = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document; errors name ``source``, the key and what is allowed."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_model_at(loc[:-1]).model_fields) or "none"
        return f"unknown key {key} (allowed here: {allowed})"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error["type"] == "model_type":
        return f"{key}: must be a table ([{key}])"
    if not loc:
        return message
    return f"{key}: {message} (got {error['input']!r})"


def _model_at(loc: list[str]) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for part in loc:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model


def dump_config(config: Config) -> str:
    """The effective configuration as TOML, each key with its description as a comment."""
    lines: list[str] = []
    for section_name, section_info in Config.model_fields.items():
        section = getattr(config, section_name)
        lines.append(f"[{section_name}]")
        for name, info in type(section).model_fields.items():
            if info.description:
                lines.append(f"# {info.description}")
            lines.append(f"{name} = {_toml_value(getattr(section, name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def default_data_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd (``/var/lib/lotcontrol``), else the user's data directory."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "lotcontrol"


def prepare_data_dir(path: str | os.PathLike | None = None) -> Path:
    """Create the data directory owner-only (0700), or check that an existing one is private."""
    path = Path(path if path is not None else os.environ.get(DATA_DIR_ENV) or default_data_dir())
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = path.stat().st_mode
    except OSError as exc:
        raise DataDirError(f"data directory {path} cannot be created: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise DataDirError(f"data directory {path} is not a directory")
    if mode & 0o077:
        raise DataDirError(
            f"data directory {path} is open to other users (mode {stat.S_IMODE(mode):o}); "
            f"it holds biometric data: run `chmod 700 {path}`"
        )
    return path
