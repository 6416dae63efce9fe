"""The configuration: one TOML file, every key with a default, a description and bounds.

``load_config(path)`` returns a frozen :class:`Config` or raises :class:`ConfigError` naming the file,
the key and what is allowed. No file at the default path means all defaults; a path the user named
must exist. ``data_dir()`` resolves and prepares the directory that holds the database.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .charging.timing import bus_problem
from .errors import ConfigError, DataDirError
from .safety.probes import capacity_problem

log = logging.getLogger("lotcontrol")

CONFIG_ENV = "LOTCONTROL_CONFIG"
DATA_DIR_ENV = "LOTCONTROL_DATA_DIR"


class PinMarker:
    """Marks a field as a GPIO pin, so that one pin cannot serve two roles."""


#: A GPIO line in Broadcom (BCM) numbering, as printed on the Pi's pinout as GPIOnn.
Pin = Annotated[int, Field(ge=0, le=27), PinMarker()]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True)


class ExpanderPin(Section):
    """A pin of an MCP23017 I²C expander (lotcontrol.expander)."""

    bus: int = Field(1, ge=0, le=31, description="The I²C bus (/dev/i2c-N); 1 on a Pi's header (pins 3 and 5).")
    address: int = Field(0x20, ge=0x20, le=0x27, description="The chip's address, 0x20-0x27 (its A0-A2 pins).")
    pin: int = Field(ge=0, le=15, description="0-7 are GPA0-GPA7, 8-15 are GPB0-GPB7.")

    @property
    def label(self) -> str:
        return f"MCP23017 bus {self.bus} 0x{self.address:02x} GP{'AB'[self.pin // 8]}{self.pin % 8}"


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
    max_stranger_rate: float | None = Field(
        0.005, gt=0.0, lt=1.0,
        description="The risk the site accepts that a stranger's face is taken for someone on file, per "
        "decision. The accept limit is lowered, for the gallery this lot has, until the shipped "
        "calibration (vision/calibration.json) puts the risk at most this; none keeps accept_distance.",
    )
    lookalike_distance: float = Field(
        0.45, ge=0.0, lt=1.0,
        description="Two residents whose templates are this near are a look-alike pair: flagged for "
        "staff, and each is admitted only on a face nearer them than lookalike_factor x their distance.",
    )
    lookalike_factor: float = Field(
        0.5, gt=0.0, le=1.0,
        description="A look-alike's limit is at most this times the distance to the other of the pair "
        "(0.5: nearer them than half-way, so never nearer the other).",
    )
    population: Literal["general", "east_asian"] = Field(
        "general",
        description="Whose faces the calibration is for: `east_asian` where most residents and passers-by "
        "are East Asian (dlib's encoder confuses them far more often: see docs/configuration.md, limits).",
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
        description="Photos larger than this (width x height, read from the file's header) are refused "
        "before they are decoded (memory bound).",
    )
    max_file_mb: float = Field(
        100.0, gt=0.0, le=2000.0,
        description="Photo files larger than this are refused without being read; devices and FIFOs are "
        "refused as not photos.",
    )
    workers: int = Field(
        0, ge=0, le=64,
        description="Processes that encode photos in `enroll-folder`; 0 means one per CPU core.",
    )
    camera_seconds: float = Field(
        8.0, gt=0.0, le=120.0,
        description="How long `enroll NAME --camera` watches the resident at most (--seconds overrides); it "
        "stops earlier once it has enough good frames, facing the camera and turned to either side.",
    )
    camera_templates: int = Field(
        5, ge=1, le=20,
        description="Templates `enroll NAME --camera` keeps: the good frames most different from each "
        "other (farthest-point selection in encoding space).",
    )
    camera_same_person: float = Field(
        0.6, gt=0.0, lt=2.0,
        description="Faces enrolled as one resident must be one person: `enroll NAME --camera` refuses, "
        "enrolling nothing, when a frame's encoding is further than this from the mean of the first frames' "
        "(the face changed person); `enroll NAME PHOTOS` applies the same rule to the photos, after the "
        "resident's templates on file, unless --confirm-same-person; `residents check` lists residents "
        "whose templates break it.",
    )
    duplicate_distance: float = Field(
        0.15, ge=0.0, lt=0.6,
        description="A photo whose face is within this of a template on file (the same photo re-encoded, "
        "resized or cropped) is skipped as a copy, not stored again. On people it was not chosen on, no "
        "pair of different photos of one person came this near (nearest 0.17), while 96-100 % of PNG, "
        "JPEG q95, 2x and cropped copies did (docs/configuration.md has the figures).",
    )


class CameraConfig(Section):
    source: str = Field(
        "/dev/video0", min_length=1, max_length=1000,
        description="Where frames come from: a V4L2 device (/dev/video0) or its index (0), an rtsp:// "
        "or http:// stream, a video file, picamera2 for the Raspberry Pi Camera Module, or script:FILE "
        "(the rig's scripted camera of still photos).",
    )
    lost_after_seconds: float = Field(
        3.0, ge=0.0, le=300.0,
        description="The camera is reported lost (camera.lost) only after this long without frames.",
    )
    reconnect_seconds: float = Field(
        2.0, gt=0.0, le=60.0,
        description="First wait before reopening a camera that stopped delivering frames; doubles up "
        "to 30 s while it stays away.",
    )


def _default_encoder() -> str:
    from .vision.encoders import numbers

    return numbers().default


class VisionConfig(Section):
    detector: Literal["hog", "blazeface"] = Field(
        "hog",
        description="Face detector: dlib's HOG (at detect_width, one upsample) or BlazeFace, MediaPipe's "
        "short-range detector on onnxruntime (the whole frame letterboxed to 128 px; needs `make "
        "install`). HOG finds more faces at the gate's distances: docs/benchmarks.md, \"Face detectors\".",
    )
    encoder: Literal["dlib", "faceres", "fused"] = Field(
        default_factory=_default_encoder,
        description="The face space faces are matched in: dlib's 128-d encoder, faceres (HSE's 1,024-d, "
        "on onnxruntime) or both fused; default: the best measured (lotcontrol/vision/encoders.json). "
        "Faces on file with dlib alone are still matched, on dlib (`residents check` lists them). The "
        "space needs a shipped calibration, and faceres its model file (`make install`).",
    )

    @model_validator(mode="after")
    def _looked_for_within_track_timeout(self) -> "VisionConfig":
        for key in ("search_seconds", "follow_seconds"):
            if getattr(self, key) >= self.track_timeout_seconds:
                raise ValueError(
                    f"{key} = {getattr(self, key):g} is not shorter than track_timeout_seconds = "
                    f"{self.track_timeout_seconds:g}: a face looked for only that often would be taken to have "
                    "left between two looks (a new passage at each look); shorten it or lengthen track_timeout_seconds")
        return self

    @model_validator(mode="after")
    def _encoder_calibrated(self) -> "VisionConfig":
        from .vision.calibration import shipped_file

        if not shipped_file(self.encoder).is_file():
            raise ValueError(
                f"encoder = {self.encoder!r} has no shipped calibration ({shipped_file(self.encoder).name}): "
                "use a space that has one (dlib, or the default)")
        return self
    liveness: Literal["off", "log", "enforce"] = Field(
        "log",
        description="Whether a face must be a head, not a flat picture (a printed photo, a phone) held up to "
        "the camera, judged over the frames of its passage (lotcontrol/vision/liveness.py): `off`; `log` "
        "records in each decision what liveness says (`liveness` in the event) and refuses nobody; `enforce` "
        "refuses a face it judges not live (`reason = not_live`; three in a minute of one face are "
        "`gate.spoof_attempt`), and a face that leaves before liveness could tell as `liveness_undecided` "
        "(not an attack). The rig's scripted camera, bench.passages and the demo film flat photos: they "
        "run with `off` or `log`. What RGB liveness cannot stop: docs/configuration.md, \"Liveness\".",
    )
    detect_width: int = Field(
        320, ge=160, le=1920,
        description="Frames are scaled to this width for face detection (HOG, one upsample): 320 finds "
        "faces from about 80 px wide in a 640 px frame, in about 20 ms.",
    )
    search_seconds: float = Field(
        0.1, ge=0.0, le=5.0,
        description="While no face is in view, look for faces in frames that changed at most this often "
        "(0.1: every 3rd frame at 30 fps, every 2nd at 15 fps); while faces are followed, search the "
        "whole frame for newcomers this often (in between only around the faces followed).",
    )
    follow_seconds: float = Field(
        0.25, ge=0.0, le=5.0,
        description="While every face in view is already admitted (or too small to encode yet), look "
        "at most this often.",
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
    clear_margin: float | None = Field(
        0.08, ge=0.0, le=0.5,
        description="Decide a passage early on its frames taken together (the mean of their encodings): "
        "admit on fewer than confirm_frames frames (never on one) when every frame accepted the resident "
        "and the mean is this far inside their limit; refuse when no frame matched and the mean is this "
        "far beyond it. Absent: always confirm_frames frames, or max_encodings to refuse.",
    )
    max_encodings: int = Field(
        12, ge=1, le=100,
        description="A face that has not been confirmed after this many encoded frames is refused as "
        "unknown.",
    )
    retry_seconds: float = Field(
        0.25, ge=0.0, le=10.0,
        description="A face refused as unknown is encoded again after this long while it stays in view, "
        "and admitted if its latest frames agree after all (its refusal is logged once); the wait "
        "doubles after each look, up to retry_max_seconds, and a face still being decided goes first. In "
        "between it is looked for every search_seconds (or follow_seconds, if shorter), as an empty scene is.",
    )
    retry_max_seconds: float = Field(
        2.0, ge=0.0, le=60.0,
        description="The longest wait between looks at a refused face still in view.",
    )
    track_timeout_seconds: float = Field(
        1.0, gt=0.0, le=30.0, description="A face not seen for this long has left; its passage ends. Longer "
        "than search_seconds and follow_seconds (checked)."
    )
    heartbeat_timeout_seconds: float = Field(
        10.0, ge=2.0, le=300.0,
        description="The controller restarts the vision worker when it has not heard from it for this "
        "long (the worker sends a heartbeat every second).",
    )
    startup_timeout_seconds: float = Field(
        120.0, ge=10.0, le=900.0,
        description="A vision worker that has said nothing yet since it started (it loads and checks the "
        "face models first: seconds on an idle machine, far longer on a busy Pi) is restarted only after "
        "this long; from its first message on, vision.heartbeat_timeout_seconds applies.",
    )


class EventsConfig(Section):
    snapshots: bool = Field(
        False, description="Keep a JPEG crop of the face for each granted or denied passage."
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="Snapshots older than this are deleted (checked hourly)."
    )
    keep_days: int = Field(
        365, ge=7, le=36500,
        description="Events and finished charging sessions older than this are deleted (daily); the hash chain stays verifiable.",
    )
    commit_seconds: float = Field(
        30.0, ge=0.0, le=300.0,
        description="The longest an ordinary event waits to share a commit with others (fewer writes on the SD "
        "card); an alarm-class event is committed at once, with everything before it. 0: every event at once.",
    )


class BayZoneConfig(Section):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="The zone's name in counts and commands.")
    bays: Annotated[list[Pin | ExpanderPin], PinMarker()] = Field(
        [], max_length=26, description="One occupancy sensor input per bay: a GPIO, or an MCP23017 pin "
        "({bus = 1, address = 0x20, pin = 3}; the chip has pull-ups only: occupied_high = false, or an "
        "external pull-down).",
    )
    occupied_high: bool = Field(
        True, description="True when a sensor drives its pin high for an occupied bay (pulled down "
        "otherwise); False for sensors that pull low when occupied (pulled up)."
    )
    capacity: int = Field(
        0, ge=0, le=5000,
        description="Bays counted by passages instead of sensors (with [bays.beams]); 0 for none.",
    )

    @model_validator(mode="after")
    def _counts_something(self) -> "BayZoneConfig":
        if not self.bays and not self.capacity:
            raise ValueError(f"bay zone {self.name!r} has neither bay sensors nor a capacity")
        if self.bays and self.capacity:
            raise ValueError(f"bay zone {self.name!r} has both bay sensors and a counted capacity; use one")
        return self


class BeamsConfig(Section):
    zone: str = Field(description="The counted bay zone (with a capacity) the beams count for.")
    outer_pin: Pin = Field(description="The beam on the street side of the gate (broken = pin high).")
    inner_pin: Pin = Field(description="The beam on the lot side of the gate (broken = pin high).")


class BaysConfig(Section):
    zones: list[BayZoneConfig] = Field([], max_length=26, description="The bay zones ([[bays.zones]]).")
    beams: BeamsConfig | None = Field(None, description="A pair of beams at the gate counting passages.")
    hold_seconds: float = Field(
        2.0, ge=0.0, le=300.0, description="A bay sensor must hold a new state this long to count."
    )
    chatter_per_minute: int = Field(
        10, ge=2, le=1000, description="A bay sensor changing more often than this is UNKNOWN (faulty)."
    )
    stuck_hours: float = Field(
        72.0, gt=0.0, le=24 * 365, description="A bay sensor that has not changed for this long is suspect: reported, "
        "still counted in its last state."
    )
    lot_full: str = Field(
        "refuse", pattern=r"^(refuse|warn)$",
        description="When every bay is known occupied: refuse residents at the gate (refuse), or admit and log "
        "it (warn). Free bays that cannot be known never refuse anyone.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "BaysConfig":
        _once([z.name for z in self.zones], "bay zone {!r} is named twice")
        if self.beams is not None:
            counted = [z for z in self.zones if z.name == self.beams.zone and z.capacity]
            if not counted:
                raise ValueError(f"beams count for zone {self.beams.zone!r}, which is not a bay zone with a capacity")
        return self


class GateConfig(Section):
    relay_pin: Pin = Field(17, description="GPIO (BCM) of the gate relay.")
    relay_active_high: bool = Field(
        True, description="True when driving the pin high energizes the relay (opens the gate)."
    )
    open_seconds: float = Field(
        5.0, gt=0.0, le=60.0, description="How long one grant holds the gate relay on."
    )
    door_pin: Pin | None = Field(
        None, description="Door position contact: closed (pin low, pulled up) while the door is shut."
    )
    exit_pin: Pin | None = Field(
        None, description="Request-to-exit button on the lot side: pressing it closes to ground."
    )
    buzzer_pin: Pin | None = Field(None, description="Buzzer at the door, on while it is held open too long.")
    held_open_seconds: float = Field(
        15.0, gt=0.0, le=600.0, description="A door open longer than this after it was released is an alarm."
    )
    debounce_seconds: float = Field(
        0.05, ge=0.0, le=2.0,
        description="The door contact and the exit button must hold a new state this long to count (a door "
        "bouncing shut is not forced open; one press is one exit).",
    )
    tailgate_grace_seconds: float = Field(
        5.0, ge=0.0, le=60.0,
        description="With [bays.beams]: entries (outer then inner beam) are counted against the grants of an "
        "opening until this long after the gate shuts; one more entry than grants is gate.tailgate.",
    )


#: How a resident may enter, per site (access.mode) or per resident (lotcontrol.policy decides).
AccessMode = Literal["face", "face_or_card", "card_and_pin", "face_and_card", "face_and_pin"]


class AccessGroupConfig(Section):
    """An access group ([access.groups.NAME]): when its residents may enter (lotcontrol.schedule)."""

    windows: list[str] = Field(
        min_length=1, max_length=50,
        description="Weekly windows in site.timezone, each DAYS HH:MM-HH:MM: days daily, mon...sun, a range "
        "(mon-fri) or a list (sat,sun); end exclusive; an end before the start crosses midnight "
        "(\"fri 22:00-02:00\"); 00:00-24:00 is the whole day.",
    )
    holidays: list[str] = Field(
        [], max_length=400,
        description="Days (YYYY-MM-DD) the group's windows that start on them stay shut.",
    )

    @model_validator(mode="after")
    def _parsed(self) -> "AccessGroupConfig":
        from .schedule import parse_holiday, parse_window

        try:  # each message names the window or day at fault: the table is not repeated after it
            for window in self.windows:
                parse_window(window)
            _once(self.holidays, "holiday {} is listed twice")
            for holiday in self.holidays:
                parse_holiday(holiday)
        except ValueError as exc:
            raise _whole(str(exc)) from None
        return self


#: An access group's name, as residents name it (edit NAME --groups a,b).
GroupName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]


class AccessConfig(Section):
    mode: AccessMode = Field(
        "face", description="How residents enter, unless their own record says otherwise (`lotcontrol edit "
        "NAME --access-mode`): face (the camera alone), face_or_card (the camera, or a card at the reader), "
        "card_and_pin (a card and its resident's PIN at the reader, in either order), face_and_card (a card, "
        "and a face matching the card's resident 1:1), face_and_pin (a PIN, and a face matching 1:1 the "
        "resident whose PIN it is).",
    )
    factor_window_seconds: float = Field(
        30.0, gt=0.0, le=300.0,
        description="The modes of two factors: both must come within this many seconds, in either order; "
        "the refusal names the one that did not come (pin_missing, card_missing, face_missing).",
    )
    max_impostor_rate: float = Field(
        0.001, gt=0.0, lt=0.1,
        description="face_and_card, face_and_pin: the share of other people's faces that may come within "
        "the 1:1 limit of the resident a card or PIN names; the limit is the largest distance the 1:1 "
        "calibration (vision/calibration.py) gives for it.",
    )
    lookalike_margin: float = Field(
        0.1, ge=0.0, le=0.2,
        description="face_and_card, face_and_pin, for one of a flagged look-alike pair: the face must also be "
        "nearer the resident the card or PIN names than the other of the pair by more than this distance, "
        "else refused as lookalike (a relative with the other's card or PIN; python -m lotcontrol.bench.modes).",
    )
    groups: dict[GroupName, AccessGroupConfig] = Field(
        {}, max_length=100,
        description="Access groups ([access.groups.NAME]) with weekly windows and holidays. A resident in groups "
        "(`edit NAME --groups a,b`) enters only while a window of one of them is open (refused: schedule); "
        "a resident in none enters at any time. Leaving is never refused.",
    )
    antipassback: Literal["off", "log", "enforce"] = Field(
        "off",
        description="One entry, then an exit: a second entry by a resident the lot counts as inside is refused "
        "(enforce, reason antipassback) or admitted and said in the event (log). Exits are counted by the "
        "beams (inner then outer), or by the exit button without beams. A resident's own setting "
        "(`edit NAME --antipassback`) overrides it.",
    )
    presence_hours: float = Field(
        12.0, ge=0.0, le=24.0 * 30,
        description="A resident counted inside is counted out this long after their entry (judged once the "
        "clock is synchronised), so a missed exit does not lock them out for ever; 0: only an exit or staff "
        "(`edit NAME --reset-presence`).",
    )


class VisitorsConfig(Section):
    scan_every_frames: int = Field(
        5, ge=0, le=1000,
        description="The vision worker looks for a visitor pass's QR code (`lotcontrol visitor add`) in every Nth "
        "frame, only while no face is being decided; 0: passes are not read.",
    )
    seen_again_seconds: float = Field(
        3.0, gt=0.0, le=600.0,
        description="A QR code read again within this many seconds of its last reading is the same showing "
        "(sent to the controller once); read after a longer absence it is shown anew (a second use).",
    )


class WiegandConfig(Section):
    d0_pin: Pin | None = Field(None, description="The reader's D0 line (through a level shifter to 3.3 V); "
                               "none: no card reader.")
    d1_pin: Pin | None = Field(None, description="The reader's D1 line (through a level shifter to 3.3 V).")
    led_pin: Pin | None = Field(None, description="The reader's LED line (through a transistor): on while "
                                "a card or PIN is granted.")
    buzzer_pin: Pin | None = Field(None, description="The reader's buzzer line (through a transistor): on "
                                   "when a card or PIN is refused.")
    feedback_seconds: float = Field(1.0, gt=0.0, le=10.0,
                                    description="How long the LED or the buzzer stays on after a decision.")
    pin_timeout_seconds: float = Field(
        10.0, gt=0.0, le=120.0,
        description="Digits typed at the keypad are dropped when no key follows within this time.",
    )
    exit_d0_pin: Pin | None = Field(None, description="An exit reader's D0 line, on the lot side (through a level "
                                    "shifter): a card shown there opens the gate and counts its resident out "
                                    "(anti-passback); none: no exit reader.")
    exit_d1_pin: Pin | None = Field(None, description="The exit reader's D1 line.")

    @model_validator(mode="after")
    def _pair(self) -> "WiegandConfig":
        if (self.d0_pin is None) != (self.d1_pin is None):
            raise ValueError("d0_pin and d1_pin go together: set both (a reader) or neither")
        if self.d0_pin is None and (self.led_pin is not None or self.buzzer_pin is not None):
            raise ValueError("led_pin and buzzer_pin are the reader's: set d0_pin and d1_pin too")
        if (self.exit_d0_pin is None) != (self.exit_d1_pin is None):
            raise ValueError("exit_d0_pin and exit_d1_pin go together: set both (an exit reader) or neither")
        return self

    def exit_reader(self) -> "WiegandConfig | None":
        """The exit reader as a reader of its own (its lines as D0 and D1; no LED or buzzer), or None."""
        if self.exit_d0_pin is None:
            return None
        return self.model_copy(update={"d0_pin": self.exit_d0_pin, "d1_pin": self.exit_d1_pin, "led_pin": None,
                                       "buzzer_pin": None, "exit_d0_pin": None, "exit_d1_pin": None})


#: The error type of a table's check whose message names every value it is about: the table itself
#: (a list of every probe, say) is not repeated after it.
WHOLE_TABLE = "whole_table"


def _whole(problem: str) -> PydanticCustomError:
    """A table's check failing with a message that names everything it is about."""
    return PydanticCustomError(WHOLE_TABLE, "{problem}", {"problem": problem})


def _once(items: list, message: str) -> None:
    """Raise ``message`` (formatted with the item) for the first item that occurs twice."""
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(message.format(item))
        seen.add(item)


class FireZoneConfig(Section):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="The zone's name in events and commands, e.g. east-row.")
    sprinklers: Annotated[list[Pin], PinMarker()] = Field(
        [], max_length=26,
        description="Burst/feedback contacts of the zone's sprinkler units, one GPIO each, wired normally "
        "closed to ground: an open loop (a burst bulb or a cut wire) is an alarm.",
    )
    probes: list[Annotated[str, Field(pattern=r"^28-[0-9a-f]{12}$")]] = Field(
        [], max_length=20, description="DS18B20 temperature probes by 1-Wire id (28-xxxxxxxxxxxx)."
    )
    panel_pin: Pin | None = Field(None, description="A fire panel's alarm relay contact (normally closed).")
    call_point_pin: Pin | None = Field(None, description="A manual call point's contact (normally closed).")
    charger_pin: Pin | None = Field(
        None, description="The contactor that powers the zone's chargers; energized means power on."
    )
    charger_active_high: bool = Field(True, description="True when driving the pin high energizes the contactor.")

    @model_validator(mode="after")
    def _has_sensors(self) -> "FireZoneConfig":
        if not (self.sprinklers or self.probes or self.panel_pin is not None or self.call_point_pin is not None):
            raise ValueError(f"fire zone {self.name!r} has no sensors (sprinklers, probes, panel_pin or call_point_pin)")
        return self


class FireConfig(Section):
    zones: list[FireZoneConfig] = Field([], max_length=26, description="The fire zones ([[fire.zones]]).")
    siren_pin: Pin | None = Field(None, description="Siren and beacon output, on while any zone is in alarm.")
    siren_active_high: bool = Field(True, description="True when driving the pin high sounds the siren.")
    poll_seconds: float = Field(1.0, ge=0.1, le=10.0, description="How often the probes are read.")
    stale_seconds: float = Field(
        10.0, ge=1.0, le=600.0, description="A probe with no new reading for this long is a fault."
    )
    prealarm_c: float = Field(50.0, ge=30.0, le=80.0, description="Pre-alarm at or above this temperature.")
    alarm_c: float = Field(
        60.0, ge=40.0, le=90.0, description="Alarm at or above this: below the 68 °C sprinkler bulbs, so "
        "the controller acts before they burst.",
    )
    rise_c_per_minute: float = Field(
        8.0, ge=1.0, le=60.0, description="Pre-alarm when a probe rises this fast over the last minute..."
    )
    rise_above_c: float = Field(40.0, ge=0.0, le=80.0, description="...while above this temperature.")
    hold_seconds: float = Field(
        60.0, ge=0.0, le=3600.0,
        description="A pre-alarm or fault clears once readings have been normal for this long. An alarm "
        "stays until staff reset it.",
    )
    debounce_seconds: float = Field(0.02, ge=0.0, le=5.0, description="Contacts must hold this long to count.")
    fault_cuts_power: bool = Field(
        True, description="A faulty sensor cuts charger power in its zone (it can no longer watch it)."
    )
    w1_path: str = Field("/sys/bus/w1/devices", min_length=1, description="Where the kernel lists 1-Wire devices.")
    renotify_seconds: float = Field(
        300.0, ge=10.0, le=86400.0, description="Staff are notified again this often while an alarm stands."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "FireConfig":
        if self.prealarm_c >= self.alarm_c:
            raise ValueError(f"prealarm_c ({self.prealarm_c}) must be below alarm_c ({self.alarm_c})")
        if self.stale_seconds < 2 * self.poll_seconds:
            raise ValueError(f"stale_seconds ({self.stale_seconds}) must be at least twice poll_seconds "
                             f"({self.poll_seconds}), or every probe would be stale between two polls")
        _once([z.name for z in self.zones], "fire zone {!r} is named twice")
        _once([p for z in self.zones for p in z.probes], "probe {} is listed in two zones")
        problem = capacity_problem(self, sum(len(z.probes) for z in self.zones))
        if problem:  # one controller reads them all: each poll must fit (see lotcontrol.safety.probes)
            raise PydanticCustomError(WHOLE_TABLE, "{problem}", {"problem": problem})
        return self


#: How grave an alert is, least first (lotcontrol.alerts maps each alarm-class event to one).
SEVERITIES = ("info", "warning", "critical")


class NotifyConfig(Section):
    command: list[str] = Field(
        [], max_length=50,
        description="Run for each alert (an alarm-class event, see README \"Alerts\") with the event as JSON "
        "on stdin (argv list, e.g. [\"/usr/local/bin/send-sms\", \"+4670...\"]); empty: only the log and MQTT.",
    )
    min_severity: Literal["info", "warning", "critical"] = Field(
        "info", description="Alerts below this severity (info < warning < critical) do not run the command; "
        "MQTT carries them all.",
    )
    timeout_seconds: float = Field(10.0, gt=0.0, le=300.0, description="The command's time limit.")
    retries: int = Field(3, ge=0, le=10, description="Tries after a failed notification.")


#: A topic level of our own: no MQTT wildcards, separators or leading $.
TopicLevel = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class MqttTlsConfig(Section):
    ca_file: str = Field(min_length=1, max_length=1000,
                         description="The CA certificate (PEM) that signed the broker's certificate.")
    cert_file: str | None = Field(None, min_length=1, max_length=1000,
                                  description="This client's certificate (PEM), where the broker asks for one.")
    key_file: str | None = Field(None, min_length=1, max_length=1000,
                                 description="The private key of cert_file (PEM, readable only by the service user).")

    @model_validator(mode="after")
    def _pair(self) -> "MqttTlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


#: Topic levels below the prefix that are the hub's, not a lot's
RESERVED_LOT_IDS = {"residents": "lotcontrol/residents/ holds the hub's residents",
                    "passes": "lotcontrol/passes/ holds the hub's visitor passes"}


class MqttConfig(Section):
    enabled: bool = Field(False, description="Connect to an MQTT broker (off: the lot is an island, as before).")
    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="The broker's host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="The broker's port: 1883 plain, 8883 with TLS.")
    lot: TopicLevel = Field("lot", description="This lot's id in topics (lotcontrol/<lot>/...) and in Home Assistant.")
    topic_prefix: TopicLevel = Field("lotcontrol", description="The first level of every topic lotcontrol uses.")
    tls: MqttTlsConfig | None = Field(None, description="TLS to the broker ([mqtt.tls]); none: plain TCP.")
    username: str | None = Field(None, min_length=1, max_length=256, description="The broker user (per lot).")
    password: str | None = Field(None, min_length=1, max_length=256,
                                 description="The broker password; better password_file.")
    password_file: str | None = Field(
        None, min_length=1, max_length=1000,
        description="A file whose first line is the broker password; refused when others can read it.",
    )
    keepalive_seconds: int = Field(
        30, ge=5, le=600, description="The broker declares the lot offline after 1.5 times this without a word.",
    )
    reconnect_min_seconds: float = Field(1.0, gt=0.0, le=60.0, description="First wait before reconnecting.")
    reconnect_max_seconds: float = Field(60.0, gt=0.0, le=3600.0,
                                         description="The wait doubles after each failed try, up to this.")
    queue_size: int = Field(
        1000, ge=10, le=100000,
        description="Messages waiting for the broker; when full the oldest is dropped (and counted).",
    )
    discovery: bool = Field(True, description="Announce the lot to Home Assistant (MQTT discovery).")
    discovery_prefix: TopicLevel = Field("homeassistant", description="Home Assistant's discovery prefix.")
    allow_remote_open: bool = Field(
        False, description="Offer a Home Assistant button that opens the gate once (as `lotcontrol gate open`).",
    )
    allow_plaintext: bool = Field(
        False, description="Let templates travel without TLS: only for a test broker on 127.0.0.1.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "MqttConfig":
        if self.lot in RESERVED_LOT_IDS:
            raise ValueError(f"lot {self.lot!r} cannot be a lot id: {RESERVED_LOT_IDS[self.lot]}")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            raise ValueError(f"reconnect_min_seconds ({self.reconnect_min_seconds}) is above "
                             f"reconnect_max_seconds ({self.reconnect_max_seconds})")
        return self


class HubConfig(Section):
    data_dir: str | None = Field(
        None, min_length=1, max_length=1000,
        description="The hub's data directory (its database of every resident): set in the hub's own "
        "configuration, staff commands work on the hub, as with --hub DIR, and `lotcontrol hub` publishes from it.",
    )
    lots: list[TopicLevel] = Field(
        default_factory=list, max_length=100,
        description="The lots a resident can be assigned to (enroll --lot, lotcontrol lots): each lot's mqtt.lot.",
    )
    poll_seconds: float = Field(
        0.2, gt=0.0, le=10.0,
        description="How often the hub process looks in its database for changes to publish, and writes "
        "what the lots published (status, state, events) to it.",
    )

    @model_validator(mode="after")
    def _lots(self) -> "HubConfig":
        _once(self.lots, "lot {!r} is listed twice")
        for reserved, why in RESERVED_LOT_IDS.items():
            if reserved in self.lots:
                raise ValueError(f"{reserved!r} cannot be a lot id: {why}")
        return self


class RegisterConfig(Section):
    address: int = Field(ge=0, le=65535, description="The register's address (0-based, as on the wire).")
    table: str = Field("input", pattern=r"^(input|holding)$", description="Input registers (FC 4) or holding (FC 3).")
    type: str = Field("float32", pattern=r"^(float32|int16|uint16|int32|uint32)$",
                      description="How its words are read: an IEEE float or an integer, 1 or 2 registers.")
    scale: float = Field(1.0, gt=0.0, description="Multiplied in: the result must be V, A, W or kWh.")


class MeterProfile(Section):
    """Where a meter (or a charging pile) keeps its readings: power and energy at least."""

    word_order: str = Field("big", pattern=r"^(big|little)$", description="Which register of a 32-bit value comes first.")
    voltage: RegisterConfig | None = Field(None, description="Volts (only shown).")
    current: RegisterConfig | None = Field(None, description="Amperes (only shown).")
    power: RegisterConfig = Field(description="Active power in W: full, overload and no-load are decided on it.")
    energy: RegisterConfig = Field(description="The meter's total active energy in kWh: a session's energy is its rise.")
    switch_coil: int | None = Field(None, ge=0, le=65535, description="A coil that switches the port (piles).")


#: Eastron SDM120-Modbus (single-phase DIN-rail meter): input registers, IEEE floats, high word first.
SDM120 = {"voltage": {"address": 0x0000}, "current": {"address": 0x0006}, "power": {"address": 0x000C},
          "energy": {"address": 0x0156}}


class MeterBusConfig(Section):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$", description="The bus's name.")
    port: str = Field(
        "/dev/ttyUSB0", min_length=1, max_length=200,
        description="The RS-485 adapter's serial port (Modbus RTU), or tcp://HOST:PORT for a Modbus TCP "
        "gateway (and the tests' simulated meters).",
    )
    baud: int = Field(9600, description="Bits per second on the bus: 1200 to 115200.")
    parity: str = Field("N", pattern=r"^[NEO]$", description="N, E or O.")
    stopbits: int = Field(1, ge=1, le=2, description="1 or 2.")
    timeout_seconds: float = Field(0.2, ge=0.02, le=5.0, description="A meter silent this long has not answered.")
    turnaround_seconds: float = Field(
        0.02, ge=0.0, le=1.0, description="How long a meter takes to start its answer (counted by check-config)."
    )

    @model_validator(mode="after")
    def _baud(self) -> "MeterBusConfig":
        if self.baud not in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200):
            raise _whole(f"meter bus {self.name!r}: baud {self.baud} is not one of 1200, 2400, 4800, 9600, "
                         "19200, 38400, 57600, 115200")
        return self


class PortMeterConfig(Section):
    bus: str = Field(description="The [[charging.buses]] the meter is on.")
    unit: int = Field(ge=1, le=247, description="Its Modbus unit id (slave address), unique on the bus.")
    profile: str = Field("sdm120", description="Its register map: a [charging.profiles.NAME] or the built-in sdm120.")


class PortConfig(Section):
    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$",
                    description="The port's name in commands, events and reports, e.g. A-01.")
    zone: str = Field(description="The fire zone it stands in: its pre-alarm or fault cuts this port.")
    bay: str = Field(min_length=1, max_length=40, description="The bay it serves.")
    resident: str | None = Field(None, max_length=100, description="The resident the bay is assigned to: "
                                 "sessions are billed to them, and enabling the port starts one for them.")
    relay_pin: Pin | None = Field(None, description="The port's relay on a GPIO (BCM).")
    expander: ExpanderPin | None = Field(None, description="Or the port's relay on an MCP23017 pin.")
    active_high: bool = Field(True, description="True when driving the output high energizes the relay.")
    meter: PortMeterConfig | None = Field(None, description="Its energy meter; without one: timer and fire only.")
    probe: str | None = Field(None, pattern=r"^28-[0-9a-f]{12}$",
                              description="A probe over the bay (one of the fire zones' probes).")
    enabled: bool = Field(True, description="Ready at start-up; false: off until `lotcontrol charging enable`.")
    full_watts: float = Field(10.0, ge=0.0, le=1000.0, description="A battery is full when the power stays below this...")
    full_minutes: float = Field(20.0, gt=0.0, le=600.0, description="...for this long, after it drew more.")
    max_hours: float = Field(8.0, gt=0.0, le=48.0, description="A session ends after this long (timer).")
    max_watts: float = Field(600.0, gt=0.0, le=5000.0, description="Above this for charging.overload_seconds (twice this at once): overload, off.")
    no_load_watts: float = Field(2.0, ge=0.0, le=100.0, description="Switched on and drawing at most this...")
    no_load_minutes: float = Field(2.0, gt=0.0, le=120.0, description="...for this long: no load, the port goes off.")
    over_temperature_c: float = Field(45.0, ge=20.0, le=90.0, description="The bay's probe at or above this: off.")

    @model_validator(mode="after")
    def _one_switch(self) -> "PortConfig":
        if (self.relay_pin is None) == (self.expander is None):
            raise _whole(f"charging port {self.id!r} needs exactly one switch: relay_pin or expander")
        if self.no_load_watts >= self.full_watts and self.full_watts:
            raise _whole(f"charging port {self.id!r}: no_load_watts ({self.no_load_watts}) must be below "
                         f"full_watts ({self.full_watts})")
        return self


class ChargingConfig(Section):
    poll_seconds: float = Field(2.0, ge=0.2, le=60.0, description="How often every meter is read.")
    meter_lost_polls: int = Field(3, ge=1, le=20, description="A meter silent for this many polls is lost: its port goes off.")
    overload_seconds: float = Field(
        0.5, ge=0.0, le=1.0,
        description="A port reading above its max_watts for this long is cut (overload); its meter is read again "
        "meanwhile, so the cut comes this plus up to two meter reads after the first reading over the limit (0.88 s "
        "with the defaults at 9,600 baud). 0: at the first reading.",
    )
    profiles: dict[str, MeterProfile] = Field({}, description="Register maps by name, besides the built-in sdm120.")
    buses: list[MeterBusConfig] = Field([], max_length=8, description="RS-485 meter buses ([[charging.buses]]).")
    ports: list[PortConfig] = Field([], max_length=200, description="The charging ports ([[charging.ports]]).")
    expander_reset_pin: Pin | None = Field(
        None, description="A GPIO wired to the MCP23017s' RESET pins, held high while the controller runs: when "
        "it stops or dies the pin falls, the chips reset and every expander relay is off (hardware/README.md).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "ChargingConfig":
        try:
            self._check()
        except ValueError as exc:  # each message names what it is about: the table is not repeated after it
            raise _whole(str(exc)) from None
        return self

    def _check(self) -> None:
        _once([b.name for b in self.buses], "meter bus {!r} is named twice")
        _once([p.id for p in self.ports], "charging port {!r} is named twice")
        buses = {b.name: b for b in self.buses}
        for port in self.ports:
            if port.meter is None:
                continue
            if port.meter.bus not in buses:
                raise ValueError(f"charging port {port.id!r}: its meter is on bus {port.meter.bus!r}, which is not "
                                 f"a [[charging.buses]] (buses: {', '.join(buses) or 'none'})")
            if port.meter.profile not in self.meter_profiles():
                raise ValueError(f"charging port {port.id!r}: no meter profile {port.meter.profile!r} (profiles: "
                                 f"{', '.join(self.meter_profiles())})")
        units: dict[tuple[str, int], str] = {}
        for port in self.ports:
            if port.meter is not None:
                where = (port.meter.bus, port.meter.unit)
                if where in units:
                    raise ValueError(f"meter unit id {port.meter.unit} is used twice on bus {port.meter.bus!r}: by "
                                     f"charging port {units[where]!r} and by {port.id!r} (two meters would answer)")
                units[where] = port.id
        for bus in self.buses:
            meters = [self.meter_profiles()[p.meter.profile] for p in self.ports if p.meter and p.meter.bus == bus.name]
            problem = bus_problem(bus, meters, self.poll_seconds)
            if problem:
                raise ValueError(problem)

    def meter_profiles(self) -> dict[str, MeterProfile]:
        return {"sdm120": MeterProfile.model_validate(SDM120), **self.profiles}


#: keys of [fire] that moved to [notify] (still read, with a warning)
MOVED_TO_NOTIFY = {"notify_command": "command", "notify_timeout_seconds": "timeout_seconds",
                   "notify_retries": "retries"}


def _old_names(new_keys) -> list[tuple[str, str]]:
    return [(f"fire.{old}", new) for old, new in MOVED_TO_NOTIFY.items() if new in new_keys]


class SiteConfig(Section):
    timezone: str = Field(
        "Asia/Shanghai", min_length=1, max_length=64,
        description="The lot's time zone (IANA name), for the times people read (the web console's dates) and "
        "the access groups' windows. Asia/Shanghai is Beijing time.",
    )

    @model_validator(mode="after")
    def _known_zone(self) -> "SiteConfig":
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is no IANA time zone (e.g. Asia/Shanghai, Europe/Berlin)") from None
        return self


class WebTlsConfig(Section):
    cert_file: str = Field(min_length=1, max_length=1000, description="The certificate (PEM, with its chain).")
    key_file: str = Field(min_length=1, max_length=1000, description="Its private key (PEM), readable by the service only.")


class WebConfig(Section):
    host: str = Field(
        "127.0.0.1", min_length=1, max_length=253,
        description="The address `lotcontrol web` listens on. Anything but a loopback address needs [web.tls].",
    )
    port: int = Field(8080, ge=1, le=65535, description="Its port.")
    tls: WebTlsConfig | None = Field(None, description="HTTPS ([web.tls]): needed to serve the LAN.")
    session_hours: float = Field(12.0, gt=0.0, le=24.0 * 30, description="A login lasts this long.")
    login_failures: int = Field(
        5, ge=1, le=100,
        description="Failed logins allowed per user name, and four times as many per client address, within login_window_minutes.",
    )
    login_window_minutes: float = Field(15.0, gt=0.0, le=1440.0, description="The window of login_failures.")
    poll_seconds: float = Field(
        1.0, ge=0.2, le=60.0,
        description="How often the web process asks the controller for its status while a page is open (once for every browser).",
    )
    enroll_camera: str | None = Field(
        None, min_length=1, max_length=1000,
        description="The camera the residents page enrolls at, as `enroll --camera` takes it (default camera.source, "
        "the gate camera: while the controller runs, its frames come from the vision worker; or a second camera, "
        "e.g. /dev/video1 at the office).",
    )

    @model_validator(mode="after")
    def _lan_needs_tls(self) -> "WebConfig":
        import ipaddress

        try:
            loopback = self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and self.tls is None:
            raise ValueError(f"host {self.host!r} serves the network: set [web.tls] cert_file and key_file "
                             "(passwords and sessions never cross the LAN in clear), or keep host = \"127.0.0.1\"")
        return self


class Config(Section):
    match: MatchConfig = MatchConfig()
    enroll: EnrollConfig = EnrollConfig()
    camera: CameraConfig = CameraConfig()
    vision: VisionConfig = VisionConfig()
    gate: GateConfig = GateConfig()
    events: EventsConfig = EventsConfig()
    fire: FireConfig = FireConfig()
    notify: NotifyConfig = NotifyConfig()
    bays: BaysConfig = BaysConfig()
    mqtt: MqttConfig = MqttConfig()
    hub: HubConfig = HubConfig()
    charging: ChargingConfig = ChargingConfig()
    access: AccessConfig = AccessConfig()
    wiegand: WiegandConfig = WiegandConfig()
    visitors: VisitorsConfig = VisitorsConfig()
    site: SiteConfig = SiteConfig()
    web: WebConfig = WebConfig()

    @model_validator(mode="before")
    @classmethod
    def _notify_moved(cls, data: Any) -> Any:
        """fire.notify_* of older configurations is read as notify.* (every alert goes to one command
        now, not only the fire's), with a warning to edit the file: a lot upgraded without editing its
        configuration must not lose its fire watch over a renamed key."""
        fire = data.get("fire") if isinstance(data, dict) else None
        if not isinstance(fire, dict) or not isinstance(data.get("notify", {}), dict):
            return data
        moved = {new: fire[old] for old, new in MOVED_TO_NOTIFY.items() if old in fire}
        if not moved:
            return data
        notify = data.get("notify", {})
        both = [key for key in moved if key in notify]
        if both:
            raise ValueError("; ".join(f"{old} and notify.{new} are both set: keep notify.{new} only"
                                       for old, new in _old_names(both)))
        for old, new in _old_names(moved):
            log.warning("configuration: %s is now notify.%s (in [notify]); read as such, edit the file", old, new)
        return {**data, "fire": {k: v for k, v in fire.items() if k not in MOVED_TO_NOTIFY},
                "notify": {**notify, **moved}}

    @model_validator(mode="after")
    def _pins_used_once(self) -> "Config":
        seen: dict[int, str] = {}
        for key, pin in pin_fields(self):
            if pin in seen:
                raise ValueError(f"GPIO{pin} is used twice: by {seen[pin]} and by {key}")
            seen[pin] = key
        return self

    @model_validator(mode="after")
    def _expander_pins_used_once(self) -> "Config":
        seen: dict[tuple[int, int, int], str] = {}
        for key, pin in expander_fields(self):
            where = (pin.bus, pin.address, pin.pin)
            if where in seen:
                raise ValueError(f"{pin.label} is used twice: by {seen[where]} and by {key}")
            seen[where] = key
        return self

    @model_validator(mode="after")
    def _reader_for_cards(self) -> "Config":
        """A site whose residents enter by card needs the card reader: without it nobody could."""
        if self.access.mode != "face" and self.wiegand.d0_pin is None:
            raise ValueError(f"access.mode = {self.access.mode!r} needs the card reader: set wiegand.d0_pin "
                             "and wiegand.d1_pin (or keep access.mode = \"face\")")
        return self

    @model_validator(mode="after")
    def _ports_in_fire_zones(self) -> "Config":
        """A charging port is cut by its fire zone and reads its probe from there: both must exist."""
        zones = {z.name: z for z in self.fire.zones}
        for port in self.charging.ports:
            if port.zone not in zones:
                raise ValueError(f"charging port {port.id!r} is in zone {port.zone!r}, which is not a fire zone "
                                 f"(zones: {', '.join(zones) or 'none'}): a port must be cut by a fire watch")
            if port.probe is not None and port.probe not in zones[port.zone].probes:
                raise ValueError(f"charging port {port.id!r}: probe {port.probe} is not among zone "
                                 f"{port.zone!r}'s probes")
        return self


def pin_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, int]]:
    """Every (dotted key, pin) pair in a configuration, in file order."""
    found: list[tuple[str, int]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            found += pin_fields(value, key + ".")
        elif isinstance(value, list) and any(isinstance(item, BaseModel) for item in value):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found += pin_fields(item, f"{key}[{index}].")
                elif _is_pin(info.metadata, info.annotation):  # a GPIO in a list that also holds expander pins
                    found.append((f"{key}[{index}]", item))
        elif value is not None and _is_pin(info.metadata, info.annotation):
            found += [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(key, value)]
    return found


def expander_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, ExpanderPin]]:
    """Every (dotted key, expander pin) pair in a configuration, in file order."""
    found: list[tuple[str, ExpanderPin]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            where = f"{key}[{index}]" if isinstance(value, list) else key
            if isinstance(item, ExpanderPin):
                found.append((where, item))
            elif isinstance(item, BaseModel):
                found += expander_fields(item, where + ".")
    return found


def _is_pin(metadata: list, annotation: Any) -> bool:
    """Whether a field is marked as a pin, directly or inside Optional[...]."""
    if any(isinstance(m, PinMarker) for m in metadata):
        return True
    return any(_is_pin(list(getattr(arg, "__metadata__", ())), arg) for arg in getattr(annotation, "__args__", ()))


def pin_label(pin: int | ExpanderPin) -> str:
    """A pin as people read it: GPIO17, or MCP23017 bus 1 0x20 GPA3."""
    return f"GPIO{pin}" if isinstance(pin, int) else pin.label


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
    if error["type"] == WHOLE_TABLE:
        return f"{key}: {message}"
    if loc[-1] in SECRET_KEYS:
        return f"{key}: {message}"  # never the secret itself
    return f"{key}: {message} (got {_without_secrets(error['input'])!r})"


SECRET_KEYS = frozenset({"password"})  # a value never shown in an error (mqtt.password)


def _without_secrets(value: Any) -> Any:
    """``value`` as an error shows it: a table's secrets (at any depth) replaced by ``***``."""
    if isinstance(value, dict):
        return {k: "***" if k in SECRET_KEYS else _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def _model_at(loc: list[str]) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for part in loc:
        if part.isdigit() or part not in model.model_fields:
            continue  # an index into a list of tables
        annotation = model.model_fields[part].annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            break
    return model


def dump_config(config: Config) -> str:
    """The effective configuration as TOML, each key with its description as a comment."""
    lines: list[str] = []
    for section_name in Config.model_fields:
        lines += _dump_table(getattr(config, section_name), f"[{section_name}]")
    return "\n".join(lines)


def _dump_table(section: BaseModel, header: str) -> list[str]:
    lines, tables = [header], []
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            inner = header.strip("[]")
            tables += [line for item in value for line in _dump_table(item, f"[[{inner}.{name}]]")]
            continue
        if isinstance(value, BaseModel):  # a sub-table such as [mqtt.tls] or [bays.beams]
            tables += _dump_table(value, f"[{header.strip('[]')}.{name}]")
            continue
        if info.description:
            lines.append(f"# {info.description}")
        if value is None:
            lines.append(f"# {name} is not set")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    return lines + [""] + tables


def _toml_value(value: Any) -> str:
    if isinstance(value, BaseModel):  # a nested table (a port's meter or expander pin), inline
        value = {k: v for k, v in value.model_dump().items() if v is not None}
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
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


def prepare_data_dir(path: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """Create the data directory owner-only (0700), or check that an existing one is private; with
    ``create`` False (a command that only reads) a missing one is an error, never made."""
    path = Path(path if path is not None else os.environ.get(DATA_DIR_ENV) or default_data_dir())
    if not create and not path.exists():
        raise DataDirError(f"data directory {path} does not exist: is the path right? The controller (`lotcontrol "
                           "run`, `lotcontrol hub`) or a command that writes (enroll) creates it")
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
