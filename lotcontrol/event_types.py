"""The event types lotcontrol logs: one list, checked against the source by the tests.

``tests/event_scan.py`` reads every place in the package where an event is made (a call of
``event``/``log_event`` or of an event's class, a keyword ``event=``, a ``(type, details)`` pair) and
``tests/test_cli_events.py`` fails when this list and the source disagree; a conftest fixture fails any
test during which the package logs a type not on it. ``matching(text)`` says whether ``events --type``
could match anything: a type exactly, or a dotted prefix of one (``access`` for ``access.granted`` and
``access.denied``).
"""

from __future__ import annotations

import difflib

TYPES: tuple[str, ...] = (
    "access.denied", "access.granted", "bay.fault", "bay.restored", "bay.suspect", "bays.count_set",
    "bays.entry", "bays.exit", "bays.free", "bays.full", "camera.lost", "camera.restored",
    "charging.fault", "charging.interrupted", "charging.staff", "charging.started",
    "charging.stopped", "controller.error", "events.pruned", "fire.alarm", "fire.alarm.restored",
    "fire.cleared", "fire.drill", "fire.fault", "fire.prealarm", "fire.reset", "fleet.bad_message",
    "fleet.residents_refused", "gate.closed", "gate.exit", "gate.forced", "gate.held_open",
    "gate.manual_open", "gate.spoof_attempt", "gate.tailgate", "input.missed_edge", "mqtt.command",
    "mqtt.command_refused", "mqtt.connected", "mqtt.disconnected", "mqtt.failed", "presence.cleared",
    "presence.exit",
    "resident.card_added", "resident.card_removed", "resident.edited", "resident.enrolled",
    "resident.lookalike_cleared", "resident.pin_cleared", "resident.pin_set", "resident.removed", "resident.renamed",
    "resident.resumed", "resident.same_person_confirmed", "resident.suspended",
    "resident.sync_refused", "resident.synced", "snapshot.enrolled", "store.degraded",
    "store.restored", "vision.died", "vision.gallery", "vision.liveness", "vision.refused", "vision.restart_failed",
    "vision.restarted", "vision.stalled", "vision.started", "visitor.pass_issued", "visitor.revoked", "web.export", "web.language",
    "web.login", "web.login_failed", "web.logout", "web.refused", "web.user_added",
    "web.user_removed", "wiegand.bad_frame", "wiegand.keypad_locked", "wiegand.pin_timeout",
)


def matching(text: str) -> bool:
    """Whether ``text`` is a type or a dotted prefix of one (as ``Store.events`` filters)."""
    return any(t == text or t.startswith(text + ".") for t in TYPES)


def close_to(text: str) -> list[str]:
    """The types and prefixes most like ``text`` (a misspelling), best first."""
    prefixes = {".".join(t.split(".")[:n]) for t in TYPES for n in range(1, t.count(".") + 1)}
    return difflib.get_close_matches(text, sorted(prefixes | set(TYPES)), n=4, cutoff=0.6)
