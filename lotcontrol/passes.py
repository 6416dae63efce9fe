"""Visitor passes: what a pass says, how it is signed and checked, and its uses (pure but for HMAC).

A pass is the text of a QR code a visitor shows the gate camera (``lotcontrol visitor add``)::

    LCV1.<body>.<mac>

``body`` is base64url (no padding) of compact JSON: ``i`` the pass id (16 hex digits, random), ``v`` the
visitor's name, ``l`` the lots it opens (a list of ``mqtt.lot`` ids; null: every lot), ``n`` the last
moment it is valid (not-after, Unix seconds, UTC) and ``u`` how many entries it allows. ``mac`` is
base64url of HMAC-SHA256 of ``LCV1.<body>`` under the pass key: the hub's (made once in the hub's
database and sent to the lots over the TLS MQTT link, as the hub's card key is), or on a lone lot the
lot's own. A lot checks a pass under its own key and the hub's. Nothing in a pass is secret but its
signature is what makes it a pass: the text is never logged, put in an event or published; events
name the pass by its id and its visitor.

Uses are counted where they happen (each lot's database, ``pass_uses``) and across lots through the
hub: each lot publishes its own count of each pass as retained state (``state/passes/<id>``), the hub
sums them and publishes every pass's per-lot counts and whether it was revoked (``<prefix>/passes/<id>``).
A lot that cannot hear the hub counts its own uses on top of the last counts it heard: it never lets
in more than the uses it knows of (``known_uses``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from .errors import InvalidValue

PREFIX = "LCV1."
MAX_TEXT = 1000  # characters: a QR code's text longer than this is no pass (checked before anything else)
MAX_USES = 100
MAX_VALID = dt.timedelta(days=30)
ID_PATTERN = r"^[0-9a-f]{16}$"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: Why a pass is refused (the ``reason`` of ``access.denied``).
BAD_SIGNATURE, WRONG_LOT, EXPIRED, USED_UP, REVOKED = (
    "pass_bad_signature", "pass_wrong_lot", "pass_expired", "pass_used_up", "pass_revoked")
#: The wall clock is not synchronised (NTP): a pass's time cannot be judged, so it is refused.
TIME_UNKNOWN = "pass_time_unknown"


@dataclass(frozen=True)
class Pass:
    id: str
    visitor: str
    lots: tuple[str, ...] | None
    not_after: int  # Unix seconds
    uses: int

    def body(self) -> dict:
        return {"i": self.id, "v": self.visitor, "l": None if self.lots is None else list(self.lots),
                "n": self.not_after, "u": self.uses}


def new_id() -> str:
    return secrets.token_hex(8)


def parse_duration(text: str) -> dt.timedelta:
    """``--valid``: ``90m``, ``2h``, ``1.5h``, ``3d`` (at most 30 days)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidValue(f"--valid {text!r}: give a number and s, m, h or d (e.g. 2h, 90m, 3d)")
    valid = dt.timedelta(seconds=float(match[1]) * _UNIT[match[2]])
    if valid <= dt.timedelta(0) or valid > MAX_VALID:
        raise InvalidValue(f"--valid {text!r}: a pass is valid for more than 0 s and at most {MAX_VALID.days} days")
    return valid


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()


def sign(key: bytes, visitor_pass: Pass) -> str:
    """The pass as the text of its QR code."""
    body = json.dumps(visitor_pass.body(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    signed = PREFIX + _b64(body)
    return f"{signed}.{_b64(_mac(key, signed))}"


def verify(text: str, keys: tuple[bytes, ...]) -> Pass | None:
    """The pass ``text`` carries if it is signed under one of ``keys``, else None (tampered with, signed
    elsewhere, not a pass at all, or no key known yet)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT or not text.startswith(PREFIX) or not keys:
        return None
    signed, _, mac = text.rpartition(".")
    try:
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if not any(hmac.compare_digest(_mac(key, signed), given) for key in keys):
        return None
    try:
        body = json.loads(_unb64(signed[len(PREFIX):]).decode("utf-8"))
        lots = body["l"]
        visitor_pass = Pass(str(body["i"]), str(body["v"]), None if lots is None else tuple(str(x) for x in lots),
                            int(body["n"]), int(body["u"]))
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None  # signed with our key but not a pass this lotcontrol reads
    if not re.match(ID_PATTERN, visitor_pass.id):
        return None
    return visitor_pass


def known_uses(pass_id: str, lot: str, *, here: int, hub: dict[str, int] | None) -> int:
    """The uses of a pass this lot knows of: its own (``here``: counted in its database and since),
    or the hub's count for this lot if higher, plus every other lot's as the hub last said."""
    hub = hub or {}
    return max(here, hub.get(lot, 0)) + sum(count for other, count in hub.items() if other != lot)


def check(visitor_pass: Pass | None, *, lot: str, now: dt.datetime | None, used: int, revoked: bool) -> str | None:
    """Why the pass may not be used at ``lot`` now (a reason above), or None if it may. ``now`` is
    None while the wall clock is not synchronised."""
    if visitor_pass is None:
        return BAD_SIGNATURE
    if revoked:
        return REVOKED
    if visitor_pass.lots is not None and lot not in visitor_pass.lots:
        return WRONG_LOT
    if now is None:
        return TIME_UNKNOWN
    if now.timestamp() > visitor_pass.not_after:
        return EXPIRED
    if used >= visitor_pass.uses:
        return USED_UP
    return None


def not_after_text(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")
