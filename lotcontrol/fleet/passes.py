"""Visitor passes between the hub and the lots (lotcontrol.passes): the messages and the lot's side.

The hub publishes, retained, QoS 1, over TLS only (as templates: ``residents.templates_refused``):

- ``<prefix>/passes/key``: ``{"format": 1, "key": <base64 of 32 bytes>}``, the hub's pass key, which the
  lots check the hub's passes under (kept in their database, as the hub's card key);
- ``<prefix>/passes/<id>``: ``{"format": 1, "id", "revoked", "not_after", "used": {lot: count}}`` for every
  pass still valid: whether it was revoked and its uses at each lot as the lots reported them.

Each lot reports its own uses of each pass as retained state ``<prefix>/<lot>/state/passes/<id>``:
``{"used": n}`` (lotcontrol.fleet.publish), which the hub keeps with the lot's other state and sums.

At the lot, ``PassSync`` hands each message to the writer thread (the one that writes the lot's
database), which keeps the key and each pass's state; the controller's loop reads them from the
writer's directory. A malformed message is ``fleet.bad_message``, never a crash, and changes nothing.
The key is never logged.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..passes import ID_PATTERN
from ..store import Store
from .residents import EventSink, templates_refused

log = logging.getLogger("lotcontrol")

KEY = "key"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PassKeyMessage(_Wire):
    format: Literal[1]
    key: str = Field(pattern=r"^[A-Za-z0-9+/]{43}=$")


class PassStateMessage(_Wire):
    format: Literal[1]
    id: str = Field(pattern=ID_PATTERN)
    revoked: bool
    not_after: int = Field(ge=0)
    used: dict[str, int] = Field(default_factory=dict, max_length=1000)


def passes_topic(prefix: str, name: str | None = None) -> str:
    """``<prefix>/passes/<id or key>``, or the filter for all of them with ``name`` None."""
    return f"{prefix}/passes/{name if name is not None else '+'}"


def key_payload(key: bytes) -> bytes:
    return PassKeyMessage(format=1, key=base64.b64encode(key).decode("ascii")).model_dump_json().encode()


class BadPassMessage(ValueError):
    pass


def parse(topic: str, payload: bytes) -> PassKeyMessage | PassStateMessage:
    name = topic.rsplit("/", 1)[-1]
    try:
        document = json.loads(payload.decode("utf-8"))
        message = (PassKeyMessage if name == KEY else PassStateMessage).model_validate(document)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPassMessage(f"{topic}: not JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(message)'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadPassMessage(f"{topic}: {problems}") from None
    if isinstance(message, PassStateMessage) and (message.id != name or any(v < 0 for v in message.used.values())):
        raise BadPassMessage(f"{topic}: carries pass {message.id} or a negative count")
    return message


def apply(store: Store, message: PassKeyMessage | PassStateMessage) -> bool:
    """Keep what the hub said in the lot's database; whether anything changed."""
    if isinstance(message, PassKeyMessage):
        return store.set_hub_pass_key(base64.b64decode(message.key))
    store.set_pass_state(message.id, message.revoked, message.used, message.not_after)
    return True


class PassSync:
    """Keeps the hub's pass key and the passes' states at this lot. ``submit(call)`` runs ``call(store)``
    on the writer thread; ``event`` logs an event; ``changed()`` is called there after a change (the
    writer re-reads its directory, so the loop decides on it at once)."""

    def __init__(self, prefix: str, submit: Callable[[Callable[[Store], None]], None], event: EventSink,
                 changed: Callable[[], None] = lambda: None):
        self.prefix, self.submit, self.event, self.changed = prefix, submit, event, changed
        self.applied = 0
        self._listeners: list[Callable[[PassKeyMessage | PassStateMessage | None], None]] = []

    def on_applied(self, listener: Callable[["PassKeyMessage | PassStateMessage | None"], None]) -> None:
        """Call ``listener(message)`` on the writer thread after each message is kept (None: refused): tests wait on it."""
        self._listeners.append(listener)

    def subscribe(self, link, mqtt) -> bool:
        if templates_refused(mqtt) is not None:
            return False  # the residents' sync says so already (fleet.residents_refused): the key needs TLS too
        link.subscribe(passes_topic(self.prefix), self.received, qos=1)
        return True

    def received(self, topic: str, payload: bytes) -> None:
        if payload:
            self.submit(lambda store: self.apply(store, topic, payload))

    def apply(self, store: Store, topic: str, payload: bytes) -> None:
        try:
            message = parse(topic, payload)
        except BadPassMessage as exc:
            log.warning("fleet.bad_message %s", exc)
            self.event("fleet.bad_message", None, {"topic": topic, "error": str(exc)[:500]})
            self._tell(None)
            return
        if apply(store, message):
            self.changed()
        self.applied += 1
        self._tell(message)

    def _tell(self, message) -> None:
        for listener in list(self._listeners):
            listener(message)
