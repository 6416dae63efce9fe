"""Alerts: which events are alarm-class, how grave each is, and handing them to the notify command.

One table, ``SEVERITY``, maps each alarm-class event type to ``critical``, ``warning`` or ``info``
(the "all clear" that follows an alarm is ``info``). Two places take it:

- the notify command (``[notify]``: lotcontrol.notify runs it in its own thread): an ``Alerts`` is an
  event listener of the controller and of its writer (``store.degraded``) and queues each alert at or
  above ``notify.min_severity``, with ``severity`` added to the event's JSON;
- MQTT (lotcontrol.fleet.publish): every alert, whatever ``min_severity``, on ``<prefix>/<lot>/alerts``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .config import SEVERITIES
from .notify import Notifier
from .store import isotime

CRITICAL, WARNING, INFO = "critical", "warning", "info"

SEVERITY: dict[str, str] = {
    "fire.alarm": CRITICAL,            # a zone in alarm: charging cut, gate released, siren on
    "fire.alarm.restored": CRITICAL,   # an alarm latched before a restart stands again
    "fire.alarm.standing": CRITICAL,   # the reminder every fire.renotify_seconds while an alarm stands
    "gate.forced": CRITICAL,           # the door opened without a grant
    "gate.tailgate": CRITICAL,         # more people came in than were granted (one grant, one entry)
    "gate.spoof_attempt": CRITICAL,    # one face refused as not live 3 times in a minute (vision.liveness enforce)
    "fire.prealarm": WARNING,
    "fire.fault": WARNING,             # a sensor that can no longer watch its zone
    "gate.held_open": WARNING,
    "camera.lost": WARNING,            # face entry is shut until it is back
    "vision.stalled": WARNING,
    "vision.refused": WARNING,         # the face space's model is missing or damaged: face entry is shut
    "store.degraded": WARNING,         # the database cannot be written: events wait in memory
    "wiegand.keypad_locked": WARNING,  # 5 wrong PINs in a minute at a reader: its keypad locked for a minute
    "bays.full": INFO,
    "fire.cleared": INFO,
    "fire.reset": INFO,
    "camera.restored": INFO,
    "store.restored": INFO,
}


def severity(type: str) -> str | None:
    """The event's severity, or None when it is no alert."""
    return SEVERITY.get(type)


def at_least(level: str, minimum: str) -> bool:
    return SEVERITIES.index(level) >= SEVERITIES.index(minimum)


def alert(type: str, details: dict[str, Any], when: dt.datetime) -> dict[str, Any] | None:
    """The JSON an alert is told as (``type``, ``severity``, ``time`` and the details), or None."""
    level = severity(type)
    if level is None:
        return None
    return {"type": type, "severity": level, "time": isotime(when), **details}


class Alerts:
    """An event listener: each alert at or above ``min_severity`` is queued for the notify command
    (never waits: the notifier runs it in its own thread)."""

    def __init__(self, notifier: Notifier, min_severity: str):
        self.notifier = notifier
        self.min_severity = min_severity

    def __call__(self, type: str, resident_id: int | None, details: dict[str, Any], when: dt.datetime) -> None:
        if not self.notifier.command:
            return  # no command configured: nothing to build
        message = alert(type, details, when)
        if message is not None and at_least(message["severity"], self.min_severity):
            self.notifier.send(message)
