"""What the controller, the store and enrollment say to the web page (an action's result, a refusal's
reason, why it does not answer, an enrollment's lines), in the page's language, by code.

The controller's answers carry the code and values of their phrase (lotcontrol.phrases: ``code``,
``params`` beside the English ``message`` the command line prints; ``phrases.of_answer``), and so do
enrollment's lines (``enroll --codes``, web/enrolling.py): ``PHRASES`` has the English of each, which
is the catalogue's message. The store's errors (a resident's field refused, a card on file already, the
database locked) and the control socket's (the controller not running, busy or silent) carry a stable
code and their values (``LotControlError.code``, ``.params``): ``ERRORS`` has one catalogue message per
code. ``error`` says either with its values, those that are phrases said likewise and a field's name
translated too; anything without a code is shown as it came, in English (tests/test_web_residents.py
fails on a code raised in the package that ``ERRORS`` or ``PHRASES`` lacks; tests/test_web_charging.py
drives the real controller through every command the page gives and checks each answer has a code).
"""

from __future__ import annotations

from typing import Callable

from ..errors import LotControlError
from ..phrases import N_, PHRASES, Phrase


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
    said likewise; else as it came."""
    if exc is None:
        return ""
    code = getattr(exc, "code", None) if isinstance(exc, (Phrase, LotControlError)) else None
    message = PHRASES.get(code) or ERRORS.get(code) if code else None
    if message is None:
        return str(exc)
    values = {key: error(value, gettext) if isinstance(value, Phrase)
              else gettext(FIELDS[value]) if key == "field" and value in FIELDS else value
              for key, value in exc.params.items()}
    try:
        return gettext(message) % values
    except (KeyError, TypeError, ValueError):  # a translation naming a value the error lacks
        return str(exc)
