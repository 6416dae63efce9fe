"""Residents from the hub at a lot: the message on ``<prefix>/residents/<uid>`` and applying it.

The hub (lotcontrol.hub) publishes each resident retained, QoS 1, as one JSON document: their name,
unit, status, validity, the lots they may enter (``null``: every lot) and their face templates
(dlib's 128 float32 numbers, base64, in ``encoding``; every other encoder's embedding with its version
in ``embeddings``; with the photo's SHA-256, face width and sharpness; never a photo). A template
without ``embeddings`` (a hub from before issue 18, or a face encoded by dlib alone) is a dlib-only
face: it works on dlib alone at the lot.
A removed resident becomes a retained tombstone ``{"format": 1, "uid": ..., "revision": ...,
"removed": true}``: it replaces the message that held the templates, so the broker keeps nothing of
them, and a lot that was offline still learns of the removal when it reconnects and the broker
hands it the retained messages again.

At the lot, ``ResidentSync`` subscribes through the lot's one MQTT link and hands each message to
the writer thread (the one thread that writes the lot's database), where ``apply_message`` keeps the
local copy in step: a resident assigned to this lot is added or updated, one removed at the hub or
not assigned here is erased (templates, snapshots, name). The vision worker sees the new templates
through the database's gallery version, and the controller the new records through the writer's
directory, as for a local enrollment. A malformed message is an event (``fleet.bad_message``),
never a crash, and changes nothing. Templates are refused on a connection without TLS
(``templates_refused``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import AccessMode
from ..errors import LotControlError, ResidentNotFound
from ..store import Embedding, Store, Template, check_embedding, embedding_dim

log = logging.getLogger("lotcontrol")

FORMAT = 1
UID_PATTERN = r"^[0-9a-f]{32}$"
MAX_TEMPLATES = 1000
MAX_CARDS = 20
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")

EventSink = Callable[[str, "int | None", "dict[str, Any]"], None]


class BadResidentMessage(LotControlError, ValueError):
    """A message on a residents topic that is not a resident or a tombstone this lotcontrol reads."""


# --- the message -------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WireEmbedding(_Wire):
    """One encoder's embedding of a face: its version and its float32 numbers, base64."""

    version: str = Field(pattern=r"^[A-Za-z0-9_.+-]{1,100}$")
    vector: str = Field(max_length=8000)


class WireTemplate(_Wire):
    photo_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    face_px: int = Field(ge=1, le=100_000)
    quality: float = Field(ge=0.0, le=1e9)
    encoding: str = Field(max_length=1000)  # dlib's, as before issue 18
    embeddings: dict[str, WireEmbedding] = Field(default_factory=dict, max_length=8)  # the other encoders'

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        decode_encoding(value)
        return value

    @field_validator("embeddings")
    @classmethod
    def _embeddings(cls, value: dict[str, WireEmbedding]) -> dict[str, WireEmbedding]:
        if "dlib" in value:
            raise ValueError("dlib's embedding travels in 'encoding', not in 'embeddings'")
        for name, embedding in value.items():
            decode_encoding(embedding.vector, name)
        return value

    def template(self) -> Template:
        embeddings = {name: Embedding(e.version, decode_encoding(e.vector, name)) for name, e in self.embeddings.items()}
        return Template({"dlib": decode_encoding(self.encoding), **embeddings}, self.photo_sha256, self.face_px,
                        self.quality)

    @classmethod
    def of(cls, template: Template) -> "WireTemplate":
        """A stored face as it travels: dlib's in ``encoding`` (dlib's version is its only one so far),
        every other encoder's in ``embeddings``."""
        return cls(photo_sha256=template.photo_sha256, face_px=template.face_px, quality=template.quality,
                   encoding=encode_encoding(template.encoding),
                   embeddings={name: WireEmbedding(version=e.version, vector=encode_encoding(e.vector, name))
                               for name, e in template.embeddings.items() if name != "dlib"})


class ResidentMessage(_Wire):
    """One resident as the hub publishes them, or their tombstone (``removed``)."""

    format: Literal[1]
    uid: str = Field(pattern=UID_PATTERN)
    revision: int = Field(ge=1)
    removed: bool = False
    name: str | None = Field(None, max_length=200)
    unit: str | None = Field(None, max_length=64)
    status: Literal["active", "suspended"] | None = None
    valid_from: str | None = Field(None, max_length=10)
    valid_until: str | None = Field(None, max_length=10)
    lots: list[str] | None = Field(None, max_length=1000)
    templates: list[WireTemplate] = Field(default_factory=list, max_length=MAX_TEMPLATES)
    access_mode: AccessMode | None = None
    # access groups by name (the lot's [access.groups.NAME]) and their own anti-passback: absent when none
    groups: list[str] = Field(default_factory=list, max_length=100)
    antipassback: Literal["off", "log", "enforce"] | None = None
    # cards as keyed digests under the hub's card key (sent with them), the PIN as its argon2id hash
    cards: list[str] = Field(default_factory=list, max_length=MAX_CARDS)
    pin: str | None = Field(None, pattern=r"^\$argon2id\$[A-Za-z0-9$=,+/]{1,200}$")
    card_key: str | None = Field(None, pattern=r"^[A-Za-z0-9+/]{43}=$")

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        if any(not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", g) for g in value):
            raise ValueError("an access group is a name of letters, digits, _ . - (at most 40)")
        return sorted(set(value))

    @field_validator("cards")
    @classmethod
    def _cards(cls, value: list[str]) -> list[str]:
        if any(not re.fullmatch(r"[0-9a-f]{64}", d) for d in value):
            raise ValueError("a card is its digest: 64 hexadecimal digits")
        return sorted(set(value))

    @model_validator(mode="after")
    def _whole(self) -> "ResidentMessage":
        if self.cards and self.card_key is None:
            raise ValueError("cards come with the hub's card_key")
        if self.removed:
            if self.name is not None or self.templates or self.cards or self.pin:
                raise ValueError("a tombstone carries neither a name nor templates nor credentials")
        elif self.name is None or self.status is None:
            raise ValueError("a resident needs a name and a status")
        return self

    def assigned_to(self, lot: str) -> bool:
        return not self.removed and (self.lots is None or lot in self.lots)


def encode_encoding(encoding: np.ndarray, encoder: str = "dlib") -> str:
    array = check_embedding(encoder, encoding).astype("<f4")
    return base64.b64encode(array.tobytes()).decode("ascii")


def decode_encoding(text: str, encoder: str = "dlib") -> np.ndarray:
    """An encoder's embedding from its base64, or ValueError naming the encoder and what is wrong."""
    what = "the encoding" if encoder == "dlib" else f"the {encoder} embedding"
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None
    dim = embedding_dim(encoder)
    if len(raw) != 4 * dim:
        raise ValueError(f"{what} must be {dim} float32 numbers ({4 * dim} bytes), not {len(raw)} bytes")
    array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} holds a number that is not finite")
    return array


def residents_topic(prefix: str, uid: str | None = None) -> str:
    """``<prefix>/residents/<uid>``, or the filter for every resident with ``uid`` None."""
    return f"{prefix}/residents/{uid if uid is not None else '+'}"


def dumps(message: ResidentMessage) -> bytes:
    """The message as published: a tombstone holds nothing but the uid and the revision."""
    if message.removed:
        return message.model_dump_json(include={"format", "uid", "revision", "removed"}).encode()
    # a dlib-only face travels as before issue 18, so a lot not yet upgraded still reads it
    dlib_only = {i: {"embeddings"} for i, t in enumerate(message.templates) if not t.embeddings}
    # likewise a resident in no access group and with the site's anti-passback
    unset = {field: True for field in ("groups", "antipassback") if not getattr(message, field)}
    return message.model_dump_json(exclude={"removed": True, "templates": dlib_only, **unset}).encode()


def parse_message(topic: str, payload: bytes) -> ResidentMessage:
    """The message on ``topic``, or BadResidentMessage naming the topic and what is wrong."""
    uid = topic.rsplit("/", 1)[-1]
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadResidentMessage(f"{topic}: not JSON: {exc}") from None
    try:
        message = ResidentMessage.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(message)'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors()[:5])
        raise BadResidentMessage(f"{topic}: {problems}") from None
    if message.uid != uid:
        raise BadResidentMessage(f"{topic}: carries resident {message.uid}, not the topic's {uid}")
    return message


# --- the lot's copy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    change: str  # "added", "updated", "removed", "unchanged", "absent" (nothing here to remove)
    name: str | None
    resident_id: int | None = None
    templates: int = 0  # on file after an add or update; erased by a removal


class SyncConflict(LotControlError, ValueError):
    """The hub's resident cannot be put on file here (a lot-local resident has the name or a photo)."""


def copy_of(store: Store, uid: str) -> tuple[int, str] | None:
    """(local resident id, digest of the message applied) of the hub's resident ``uid`` here, if any."""
    row = store.db.execute("SELECT resident_id, digest FROM hub_copies WHERE uid = ?", [uid]).fetchone()
    return (row[0], row[1]) if row else None


def digest(message: ResidentMessage) -> str:
    """What the message says, as a digest: the same resident sent again (a reconnect, the hub
    publishing everything anew) is recognised without comparing field by field."""
    return hashlib.sha256(message.model_dump_json().encode()).hexdigest()


def apply_message(store: Store, lot: str, message: ResidentMessage) -> Outcome:
    """Bring the lot's copy of one hub resident in step with ``message``, in one transaction."""
    with store.transaction():
        held = copy_of(store, message.uid)
        if not message.assigned_to(lot):
            if held is None:
                return Outcome("absent", None)
            resident = store.resident_by_id(held[0])
            store.remove(resident.name)
            return Outcome("removed", resident.name, None, resident.templates)
        # the same message again: nothing new. Anything else is applied, whatever its revision: a hub
        # restored from a backup counts its revisions on from the backup's, below what lots have seen.
        said = digest(message)
        if held is not None and held[1] == said:
            resident = store.resident_by_id(held[0])
            return Outcome("unchanged", resident.name, resident.id, resident.templates)
        templates = [t.template() for t in message.templates]
        fields = {"unit": message.unit or "", "valid_from": message.valid_from or "",
                  "valid_until": message.valid_until or ""}
        resident_id = held[0] if held else None
        _check_free(store, message, resident_id, templates)
        if held is None:
            resident = store.add_resident(message.name, **{k: v or None for k, v in fields.items()})
            store.db.execute("INSERT INTO hub_copies (resident_id, uid, revision, digest) VALUES (?, ?, ?, ?)",
                             [resident.id, message.uid, message.revision, said])
            change = "added"
        else:
            resident = store.resident_by_id(held[0])
            if resident.name != message.name:
                resident = store.rename(resident.name, message.name)
            resident = store.update_resident(resident.name, **fields)
            store.db.execute("UPDATE hub_copies SET revision = ?, digest = ? WHERE uid = ?",
                             [message.revision, said, message.uid])
            change = "updated"
        if resident.status != message.status:
            resident = store.set_status(resident.name, message.status)
        on_file = [sha for (sha,) in store.db.execute(
            "SELECT photo_sha256 FROM templates WHERE resident_id = ? ORDER BY id", [resident.id])]
        if on_file != [t.photo_sha256 for t in templates]:  # the gallery reloads only on a real change
            store.replace_templates(resident.id, templates)
        if message.card_key is not None:
            store.set_hub_card_key(base64.b64decode(message.card_key))
        store.replace_credentials(resident.id, message.cards, message.pin)
        if resident.access_mode != message.access_mode:
            resident = store.set_access_mode(resident.name, message.access_mode)
        if resident.groups != tuple(message.groups):
            resident = store.set_groups(resident.name, message.groups)
        if resident.antipassback != message.antipassback:
            resident = store.set_antipassback(resident.name, message.antipassback)
        return Outcome(change, resident.name, resident.id, len(templates))


def _check_free(store: Store, message: ResidentMessage, resident_id: int | None, templates: list[Template]) -> None:
    """The name and the photos must not belong to anyone else here (a lot-local resident, or another
    of the hub's residents not yet renamed here)."""
    try:
        other = store.resident(message.name)
    except ResidentNotFound:
        other = None
    except ValueError as exc:
        raise BadResidentMessage(f"resident {message.uid}: {exc}") from None
    if other is not None and other.id != resident_id:
        whose = "another of the hub's residents" if store.is_hub_copy(other.id) else "a resident enrolled at this lot"
        raise SyncConflict(f"the name {message.name!r} is taken here by {whose}")
    for template in templates:
        owner = store.db.execute("SELECT resident_id FROM templates WHERE photo_sha256 = ?",
                                 [template.photo_sha256]).fetchone()
        if owner is not None and owner[0] != resident_id:
            raise SyncConflict(f"photo {template.photo_sha256[:12]}… of {message.name!r} is enrolled here for "
                               f"resident #{owner[0]}")


def templates_refused(mqtt) -> str | None:
    """Why templates may not travel on this connection (None: they may): only over TLS, or in plain
    text to a test broker on this machine with ``mqtt.allow_plaintext``."""
    if mqtt.tls is not None:
        return None
    if mqtt.allow_plaintext and mqtt.host in LOCAL_HOSTS:
        return None
    if mqtt.allow_plaintext:
        return (f"face templates travel only over TLS: mqtt.allow_plaintext is for a test broker on "
                f"127.0.0.1, not {mqtt.host}; set [mqtt.tls]")
    return "face templates travel only over TLS: set [mqtt.tls] (ca_file) for the broker"


# --- the subscription --------------------------------------------------------------------------


class ResidentSync:
    """Keeps this lot's residents in step with the hub's retained messages.

    ``submit(call)`` runs ``call(store)`` on the thread that writes the lot's database (the writer's
    ``CallJob``); ``event(type, resident_id, details)`` logs an event. Messages that cannot be applied
    because another of the hub's residents holds the name (a rename not seen yet: retained messages
    come in topic order, not in the order they were made) wait and are tried again after each change.
    """

    def __init__(self, lot: str, prefix: str, submit: Callable[[Callable[[Store], None]], None],
                 event: EventSink):
        self.lot, self.prefix = lot, prefix
        self.submit, self.event = submit, event
        self.waiting: dict[str, ResidentMessage] = {}  # writer thread only
        self.applied = 0  # messages applied (changing something or not)
        self.changes = 0  # of which changed the lot's residents
        self.rejected = 0
        self._listeners: list[Callable[[str, Outcome | None], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, link, mqtt) -> bool:
        """Subscribe on ``link`` (the lot's MqttLink), or refuse with an event where the connection
        has no TLS. Returns whether it subscribed."""
        refused = templates_refused(mqtt)
        if refused is not None:
            self.event("fleet.residents_refused", None, {"error": refused})
            return False
        link.subscribe(residents_topic(self.prefix), self.received, qos=1)
        return True

    def on_applied(self, listener: Callable[[str, Outcome | None], None]) -> None:
        """Call ``listener(uid, outcome)`` on the writer thread after each message (outcome None: it
        was refused): the benchmark and the tests wait on it."""
        with self._lock:
            self._listeners.append(listener)

    # --- the network thread ---

    def received(self, topic: str, payload: bytes) -> None:
        """A message from the broker: handed to the writer thread, never applied here."""
        if not payload:
            return  # a retained message being cleared: nothing to apply
        self.submit(lambda store: self.apply(store, topic, payload))

    # --- the writer thread ---

    def apply(self, store: Store, topic: str, payload: bytes) -> Outcome | None:
        uid = topic.rsplit("/", 1)[-1]
        try:
            message = parse_message(topic, payload)
        except BadResidentMessage as exc:
            self.rejected += 1
            log.warning("fleet.bad_message %s", exc)
            self.event("fleet.bad_message", None, {"topic": topic, "error": str(exc)[:500]})
            self._tell(uid, None)
            return None
        outcome = self._apply(store, message)
        if outcome is not None and outcome.change not in ("unchanged", "absent"):
            for waiting in list(self.waiting.values()):
                self._apply(store, waiting)
        return outcome

    def _apply(self, store: Store, message: ResidentMessage) -> Outcome | None:
        try:
            outcome = apply_message(store, self.lot, message)
        except SyncConflict as exc:
            first = message.uid not in self.waiting
            self.waiting[message.uid] = message
            if first:
                self.event("resident.sync_refused", None, {"uid": message.uid, "error": str(exc)})
            self._tell(message.uid, None)
            return None
        except ValueError as exc:  # a name or a field this lot cannot store: the message is at fault
            self.rejected += 1
            log.warning("fleet.bad_message resident %s: %s", message.uid, exc)
            self.event("fleet.bad_message", None, {"topic": residents_topic(self.prefix, message.uid),
                                                   "error": str(exc)[:500]})
            self._tell(message.uid, None)
            return None
        self.waiting.pop(message.uid, None)
        self.applied += 1
        if outcome.change not in ("unchanged", "absent"):
            self.changes += 1
        if outcome.change in ("added", "updated"):
            self.event("resident.synced", outcome.resident_id,
                       {"change": outcome.change, "templates": outcome.templates, "revision": message.revision})
        elif outcome.change == "removed":
            reason = "removed" if message.removed else "not_assigned"
            self.event("resident.removed", None, {"templates_erased": outcome.templates, "by": "hub",
                                                  "reason": reason})
        self._tell(message.uid, outcome)
        return outcome

    def _tell(self, uid: str, outcome: Outcome | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(uid, outcome)
