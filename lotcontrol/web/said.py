"""What the controller and the store say to the web page (an action's result, a refusal's reason, why
it does not answer), in the page's language.

The store's errors (a resident's field refused, a card on file already, the database locked) and the
control socket's (the controller not running, busy or silent) carry a stable code and their values (``LotControlError.code``, ``.params``): ``ERRORS`` has one catalogue
message per code, and ``error`` says it with the values (a field's name translated too). An error
without a code, or with one ``ERRORS`` lacks, falls back to the sentences below, then to its English
(tests/test_web_residents.py fails on a code raised in the package that ``ERRORS`` lacks).

The controller answers in English, as the command line shows it. Each of its sentences is one pattern
here and one gettext message (``N_``: extracted into the catalogue with the
templates' strings, see docs/web.md); a sentence's names (zones, ports, inputs, paths) are kept as
they are. A sentence no pattern knows is shown as said, in English (tests/test_web.py drives the real
controller through every command the page gives and checks each answer is known).
"""

from __future__ import annotations

import re
from typing import Callable

from ..errors import LotControlError
from ..phrases import N_, PHRASES, Phrase


Q = r"(?:'[^']*'|\"[^\"]*\")"  # a name as Python's repr quotes it

#: (the controller's sentence, the message shown for it): first match wins.
SENTENCES: list[tuple[str, str]] = [
    # the gate (controller._cmd_gate_open)
    (r"gate open for (?P<seconds>[\d.e+-]+) s", N_("gate open for %(seconds)s s")),
    # the fire watch (controller._cmd_fire_reset, _cmd_fire_drill)
    (r"reset refused, inputs still in alarm: (?P<inputs>.+)", N_("reset refused, inputs still in alarm: %(inputs)s")),
    (r"reset (?P<n>\d+) zone\(s\)", N_("reset %(n)s zone(s)")),
    (r"no zone was in alarm", N_("no zone was in alarm")),
    (r"no fire zone (?P<zone>" + Q + r") \(zones: none configured\)", N_("no fire zone %(zone)s (none configured)")),
    (r"no fire zone (?P<zone>" + Q + r") \(zones: (?P<known>.*)\)", N_("no fire zone %(zone)s (zones: %(known)s)")),
    (r"drill in zone (?P<zone>" + Q + r"): alarm actions on; end it with `lotcontrol fire reset`",
     N_("drill in zone %(zone)s: alarm actions on; end it with the reset")),
    # the bays (controller._cmd_bays_set)
    (r"zone (?P<zone>" + Q + r"): (?P<n>\d+) occupied", N_("zone %(zone)s: %(n)s occupied")),
    # charging ports (charging.ports, charging.sessions)
    (r"no charging port (?P<port>" + Q + r") \(ports: none configured\)", N_("no charging port %(port)s (none configured)")),
    (r"no charging port (?P<port>" + Q + r") \(ports: (?P<known>.*)\)", N_("no charging port %(port)s (ports: %(known)s)")),
    (r"port (?P<port>" + Q + r") stopped \(its session ended\)", N_("port %(port)s stopped (its session ended)")),
    (r"port (?P<port>" + Q + r") stopped", N_("port %(port)s stopped")),
    (r"port (?P<port>" + Q + r") disabled \(its session ended\)", N_("port %(port)s disabled (its session ended)")),
    (r"port (?P<port>" + Q + r") disabled", N_("port %(port)s disabled")),
    (r"port (?P<port>" + Q + r") is faulty \((?P<fault>.*)\); it can be enabled once its meter answers",
     N_("port %(port)s is faulty (%(fault)s); it can be enabled once its meter answers")),
    (r"port (?P<port>" + Q + r") is already ready", N_("port %(port)s is already ready")),
    (r"port (?P<port>" + Q + r") is already charging", N_("port %(port)s is already charging")),
    (r"port (?P<port>" + Q + r") enabled \(a session started\)", N_("port %(port)s enabled (a session started)")),
    (r"port (?P<port>" + Q + r") enabled \(its zone is cut by the fire watch: it comes on when power may return\)",
     N_("port %(port)s enabled (its zone is cut by the fire watch: it comes on when power may return)")),
    (r"port (?P<port>" + Q + r") enabled", N_("port %(port)s enabled")),
    # the controller itself, and the control socket between it and the page
    (r"the controller could not do (?P<command>" + Q + r"): (?P<error>.*)",
     N_("the controller could not do %(command)s: %(error)s")),
    (r"the controller did not answer within (?P<seconds>[\d.]+) s", N_("the controller did not answer within %(seconds)s s")),
]
_COMPILED = [(re.compile(pattern, re.DOTALL), message) for pattern, message in SENTENCES]


def known(text: str) -> str | None:
    """The catalogue's message for the controller's sentence ``text``, or None."""
    for pattern, message in _COMPILED:
        if pattern.fullmatch(text):
            return message
    return None


def translate(text: str | None, gettext: Callable[[str], str]) -> str:
    """``text`` as the page's language says it (``gettext``: the page's catalogue); unknown: as it came."""
    if not text:
        return text or ""
    for pattern, message in _COMPILED:
        found = pattern.fullmatch(text)
        if found:
            return gettext(message) % found.groupdict()
    return text


#: The store's and the residents' errors by code (LotControlError.code): the message, its values by name.
ERRORS: dict[str, str] = {
    "resident.not_found": N_("no resident named '%(name)s'"),
    "resident.hub_copy": N_("resident '%(name)s' comes from the hub: change them there; this lot follows "
                            "within seconds"),
    "name.empty": N_("a resident's name cannot be empty"),
    "name.too_long": N_("a resident's name can have at most %(limit)s characters, not %(length)s"),
    "name.char": N_("a resident's name cannot contain '%(char)s': '%(name)s'"),
    "name.invisible": N_("a resident's name cannot contain the invisible or control character %(char)s: '%(name)s'"),
    "value.invisible": N_("%(field)s cannot contain control or invisible characters"),
    "value.too_long": N_("%(field)s can have at most %(limit)s characters, not %(length)s"),
    "value.phone": N_("phone '%(value)s' is not a phone number (digits, spaces, + ( ) - . / only)"),
    "value.date": N_("%(field)s '%(value)s' is not a date (YYYY-MM-DD)"),
    "value.validity": N_("valid from %(valid_from)s is after valid until %(valid_until)s"),
    "value.choice": N_("%(field)s must be one of %(allowed)s or site, not '%(value)s'"),
    "database.locked": N_("the database is locked by another process (waited %(seconds)s s): try again in a moment"),
    "card.uid": N_("a card's number is FORMAT:NUMBER, the format 26 or 34 and the number in decimal "
                   "(e.g. 26:1234567)"),
    "card.range": N_("a %(bits)s-bit card's number is below %(limit)s"),
    "card.taken": N_("this card is already %(owner)s's"),
    "card.on_file": N_("this card is already on file for %(name)s"),
    "card.no_such": N_("%(name)s has no such card on file"),
    "card.no_such_tag": N_("%(name)s has no card %(tag)s on file"),
    "card.none": N_("%(name)s has no card on file"),
    "pin.digits": N_("a PIN is %(low)s to %(high)s digits (0-9), as typed at the keypad"),
    "pin.mismatch": N_("the PIN and the PIN typed again differ"),
    "pin.none": N_("%(name)s has no PIN on file"),
    "group.name": N_("access group '%(group)s' is not a group name (letters, digits, _ . -)"),
    "group.unknown": N_("no access group '%(group)s' in the configuration (groups: %(known)s)"),
    "lookalike.not_flagged": N_("%(first)s and %(second)s are not flagged as look-alikes"),
    # the control socket, between the page and the controller (control_socket.request)
    "controller.not_running": N_("the controller is not running on %(dir)s (no answer on %(path)s); start it with "
                                 "`lotcontrol run`"),
    "controller.busy": N_("the controller on %(dir)s is busy: %(path)s took no connection within %(seconds)s s; "
                          "try again"),
    "controller.silent": N_("the controller on %(dir)s did not answer on %(path)s within %(seconds)s s"),
    "controller.unreachable": N_("the controller on %(dir)s cannot be reached on %(path)s: %(error)s"),
    "controller.no_answer": N_("the controller on %(dir)s hung up on %(path)s without an answer"),
    "controller.hung_up": N_("the controller on %(dir)s hung up on %(path)s: %(error)s"),
    "controller.garbled": N_("the controller on %(dir)s gave an answer that cannot be read: %(answer)s (on %(path)s)"),
}

#: A resident's fields as an error names them (``field`` in its values).
FIELDS: dict[str, str] = {
    "unit": N_("unit"), "phone": N_("phone"), "note": N_("note"), "valid_from": N_("valid from"),
    "valid_until": N_("valid until"), "access_mode": N_("access mode"), "antipassback": N_("anti-passback"),
    "since": N_("From"), "until": N_("To"),  # the events page's dates (web.bad_date)
}


def error(exc: BaseException | str | None, gettext: Callable[[str], str]) -> str:
    """An error or a sentence the page shows, in its language: by its code where it has one (a phrase
    of lotcontrol.phrases, ``PHRASES``, or a store's error, ``ERRORS``), its values that are phrases
    said likewise; else as a sentence of the controller's (``translate``); else as it came."""
    if exc is None:
        return ""
    code = getattr(exc, "code", None) if isinstance(exc, (Phrase, LotControlError)) else None
    message = PHRASES.get(code) or ERRORS.get(code) if code else None
    if message is None:
        return translate(str(exc), gettext)
    values = {key: error(value, gettext) if isinstance(value, Phrase)
              else gettext(FIELDS[value]) if key == "field" and value in FIELDS else value
              for key, value in exc.params.items()}
    try:
        return gettext(message) % values
    except (KeyError, TypeError, ValueError):  # a translation naming a value the error lacks
        return str(exc)
