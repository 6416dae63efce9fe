"""The controller's policy as two pure functions: who may enter, and what every output does.

Neither reads a clock, a pin, a camera or the database: the controller passes in the state it
holds, and tests call them directly.

Admission, highest precedence first: a fire alarm (nobody is let in towards a fire) > a full lot
(``bays.lot_full``: refuse, or admit and say so) > the resident's record (removed, suspended, not
yet or no longer valid) > the face. Validity dates are judged only when the wall clock is synchronised
(``today`` None: it is not): a Pi without a real-time clock boots in 1970 or in the past, and a
resident is never refused for a date they meet; a suspended resident is refused regardless. Free bays that cannot be known never refuse anyone: parking is
not a safety hazard, a resident locked out is.

At the card reader (``credential_admission``): the card names the resident (its digest looked up
in the reader's thread) and their access mode decides which factors must come; a PIN is verified
against the resident the card named (or, in ``face_and_pin``, against the residents the face is
within the 1:1 limit of), never used to search everyone.

The "and" modes are 1:1 (``face_and_card``, ``face_and_pin``): the card or the PIN names the
resident, and the face must be within the **1:1 limit** of that resident (``Passage.claims``: the
vision worker's residents within the limit ``access.max_impostor_rate`` gives from the 1:1
calibration), not accepted by the gallery's 1:N rule. The controller pairs the factors in either
order within ``access.factor_window_seconds``; ``one_to_one`` decides once it has them. Every
refusal names the factor: ``card_missing``, ``pin_missing``, ``face_missing`` (the window ended
without it), ``face_mismatch`` (a face came, not within the 1:1 limit of the named resident),
``lookalike`` (the named resident is one of a flagged look-alike pair and the face is not nearer them
than the other of the pair by ``access.lookalike_margin``: ``nearer_lookalike``; a relative with the
other's card or PIN), ``pin_wrong``, ``pin_not_set``, ``card_unknown``, ``keypad_locked``, ``face_only``.

A look-alike pair (flagged at enrollment, lotcontrol.store ``lookalikes``) is let in by
``face_and_pin`` by default once either of them has a PIN (``mode_of``'s ``lookalike_pin``), where
the site's mode lets the face alone name a resident (``face``, ``face_or_card``); a mode staff set
for the resident stands.

Schedules and anti-passback (``Rules``, judged in ``_admit`` after the resident's record, for a face
and a credential alike): a resident in access groups enters only while a window of one of them is
open on the lot's local time (lotcontrol.schedule; refused ``schedule``). Before NTP has set the
clock the local time is not known and a resident in groups is refused (``schedule``, with
``clock_unsynced``): a schedule is a restriction staff chose, and a wall clock that may be hours or
years off cannot say it is met (unlike validity dates, where nobody is refused on a date they meet:
those lock out for months, this until NTP answers, usually within a minute of boot). Residents in no
group are not affected. Anti-passback (``access.antipassback`` or the resident's own): a resident the
lot counts inside (lotcontrol.site.presence) is refused ``antipassback`` in ``enforce``, and admitted
with ``antipassback`` in the event's notes in ``log``. Leaving is never refused: the exit button and a
fire alarm's release open the gate whatever the schedule.

A visitor's pass (``pass_admission``) takes the same precedence: a fire alarm, then a full lot, then
the pass itself (its signature, lot, time, uses and revocation, judged by lotcontrol.passes.check).

Outputs: an alarm in any zone cuts charging everywhere, sounds the siren and releases the gate,
held open for egress until staff reset the alarm; a pre-alarm or (with ``fire.fault_cuts_power``)
a fault cuts charging in its own zone; the door buzzer sounds while the door is held open, except
while the fire release holds it open on purpose. Until the inputs have been read once, every output
stays in its safe state.

Charging ports (``port_switches``): each port's relay follows the same rule as its zone's contactor
(an alarm anywhere cuts every port, a pre-alarm or fault cuts the ports of its zone, nothing before
the inputs were read, a zone not known is cut), and within that, what the port's own charging logic
wants (lotcontrol.charging.sessions: enabled, not stopped, its meter answering). The contactor stays
as the second line behind the ports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping

from .schedule import Group, allowed
from .store import Resident

from .site.bays import FREE, FULL, UNKNOWN  # noqa: F401  (the lot's availability)


@dataclass(frozen=True)
class Admission:
    grant: bool
    reason: str | None = None  # why refused
    notes: dict[str, Any] = field(default_factory=dict)  # said in the event: lot_full, bays_unknown


#: How a resident may enter (access.mode, or their own): face alone, face or a card, card and PIN,
#: and the 1:1 modes: a card and the card's resident's face, a PIN and the PIN's resident's face.
FACE, FACE_OR_CARD, CARD_AND_PIN = "face", "face_or_card", "card_and_pin"
FACE_AND_CARD, FACE_AND_PIN = "face_and_card", "face_and_pin"
MODES = (FACE, FACE_OR_CARD, CARD_AND_PIN, FACE_AND_CARD, FACE_AND_PIN)
ONE_TO_ONE = (FACE_AND_CARD, FACE_AND_PIN)  # a card or PIN names the resident; the face is checked 1:1
FACE_NAMES = (FACE, FACE_OR_CARD)  # the face alone names the resident (1:N)


@dataclass(frozen=True)
class Rules:
    """What schedules and anti-passback judge by, from the controller: the configured groups, the lot's
    local time (None: the clock is not synchronised), the site's anti-passback and whom it counts inside."""

    groups: dict[str, Group] = field(default_factory=dict)
    local: dt.datetime | None = None
    antipassback: str = "off"
    inside: frozenset[int] = frozenset()


def antipassback_of(resident: Resident | None, site: str) -> str:
    """The resident's own anti-passback, else the site's."""
    return (resident.antipassback if resident is not None else None) or site


def mode_of(resident: Resident | None, site_mode: str, lookalike_pin: bool = False) -> str:
    """The resident's own access mode; else face_and_pin for one of a look-alike pair of whom either
    has a PIN (``lookalike_pin``) where the site lets the face alone name a resident; else the site's."""
    if resident is not None and resident.access_mode:
        return resident.access_mode
    if resident is not None and lookalike_pin and site_mode in FACE_NAMES:
        return FACE_AND_PIN
    return site_mode


def admission(outcome: str, face_reason: str | None, *, fire_alarm: bool, bays: str, lot_full: str,
              resident: Resident | None, today: dt.date | None, site_mode: str = FACE,
              lookalike_pin: bool = False, rules: Rules | None = None) -> Admission:
    """Whether a face the vision worker judged (``outcome`` "grant" for ``resident``, or not, with
    ``face_reason``) may enter now, alone. ``bays`` is FULL, FREE or UNKNOWN; ``lot_full`` the setting;
    ``today`` None when the clock is not synchronised (validity dates not judged, said in the notes). A
    resident whose mode wants a card or a PIN is not let in by a face alone: the factor that did not
    come is the reason (card_missing, pin_missing)."""
    if fire_alarm:
        return Admission(False, "fire_alarm")
    if outcome != "grant":
        return Admission(False, face_reason or "unknown")
    mode = mode_of(resident, site_mode, lookalike_pin)
    if resident is not None and mode not in FACE_NAMES:
        return Admission(False, "pin_missing" if mode == FACE_AND_PIN else "card_missing")
    return _admit(resident, bays=bays, lot_full=lot_full, today=today, rules=rules)


def credential_admission(card: str | None, pin: str | None, *, fire_alarm: bool, bays: str, lot_full: str,
                         resident: Resident | None, today: dt.date | None, site_mode: str,
                         face: bool | None = None, lookalike_pin: bool = False,
                         rules: Rules | None = None, lookalike: bool = False) -> Admission | None:
    """Whether a credential at the reader (lotcontrol.messages.Credential: ``card`` and ``pin`` as it
    says them) lets ``resident`` (the card's, or the PIN's among a face's claims) in now; None while
    another factor may still come (a card without its PIN, a PIN without a card, a card or PIN whose
    mode wants a face). ``face``: for the 1:1 modes, whether a face within the 1:1 limit of
    ``resident`` came (None: no face yet); ``lookalike``: that face is not nearer them than their
    flagged look-alike (``nearer_lookalike``). Refusals name the factor: card_unknown, pin_wrong,
    pin_not_set, keypad_locked, face_only (their mode takes no card), face_mismatch, lookalike."""
    if fire_alarm:
        return Admission(False, "fire_alarm")
    if pin == "locked":
        return Admission(False, "keypad_locked")
    if card == "unknown":
        return Admission(False, "card_unknown")
    if card is None:
        if pin in ("wrong", "not_set"):  # checked against the residents a face claims (face_and_pin)
            return Admission(False, "pin_wrong")
        if pin != "ok":
            return None  # a PIN alone: it names nobody; a card or a face must come within the window
    if resident is None:
        return Admission(False, "resident_removed")
    mode = mode_of(resident, site_mode, lookalike_pin)
    if mode in ONE_TO_ONE:
        return one_to_one(mode, card, pin, face, bays=bays, lot_full=lot_full, resident=resident, today=today,
                          rules=rules, lookalike=lookalike)
    if card is None:
        return Admission(False, "card_missing")  # a PIN found by a face, for a mode that wants a card
    if mode == FACE:
        return Admission(False, "face_only")
    if mode == CARD_AND_PIN:
        if pin is None or pin == "entered":
            return None
        if pin != "ok":
            return Admission(False, "pin_wrong" if pin == "wrong" else "pin_not_set")
    return _admit(resident, bays=bays, lot_full=lot_full, today=today, rules=rules)


def one_to_one(mode: str, card: str | None, pin: str | None, face: bool | None, *, bays: str, lot_full: str,
               resident: Resident, today: dt.date | None, rules: Rules | None = None,
               lookalike: bool = False) -> Admission | None:
    """face_and_card or face_and_pin, for the resident the card or PIN named: None while a factor may
    still come. face_and_card wants the card; face_and_pin the PIN (``ok``: checked against the
    resident; a card may name them before it); both a face within the 1:1 limit of them."""
    if mode == FACE_AND_CARD and card != "known":
        return None
    if mode == FACE_AND_PIN:
        if pin is None or pin == "entered":
            return None
        if pin != "ok":
            return Admission(False, "pin_wrong" if pin == "wrong" else "pin_not_set")
    if face is None:
        return None
    if not face:
        return Admission(False, "face_mismatch")
    if lookalike:  # the face is not shown nearer them than their flagged look-alike (nearer_lookalike)
        return Admission(False, "lookalike")
    return _admit(resident, bays=bays, lot_full=lot_full, today=today, rules=rules)


def nearer_lookalike(resident_id: int | None, claims: Mapping[int, float] | Iterable[tuple[int, float]],
                     lookalikes: Collection[int], margin: float) -> bool:
    """Whether a face's 1:1 ``claims`` (resident id: distance, lotcontrol.messages.Passage.claims) put
    one of ``lookalikes`` (the residents flagged as look-alikes of ``resident_id``) as near the face as
    the named resident, or nearer, or within ``margin`` of it: then the card or PIN names someone the
    face is not shown to be rather than their look-alike (refused ``lookalike``). A look-alike not in
    the claims is beyond the 1:1 limit, or beyond the nearest the worker sends (three): farther than the
    named one. False when the named resident is not claimed at all (that is ``face_mismatch``)."""
    distances = dict(claims)
    named = distances.get(resident_id) if resident_id is not None else None
    if named is None:
        return False
    return any(other != resident_id and other in distances and distances[other] <= named + margin
               for other in lookalikes)


def missing_factor(mode: str, *, card: str | None, pin: str | None, face: bool) -> str:
    """The refusal when the factor window ends: the factor ``mode`` wants that did not come (``card``
    and ``pin`` as the reader said them, ``face``: whether a face came)."""
    if mode == FACE_AND_CARD:
        return "face_missing" if card is not None else "card_missing"
    if mode == FACE_AND_PIN:
        return "face_missing" if pin is not None and not face else "pin_missing"
    return "pin_missing" if card is not None else "card_missing"


def pass_admission(refusal: str | None, *, fire_alarm: bool, bays: str, lot_full: str) -> Admission:
    """Whether a visitor's pass (checked by lotcontrol.passes.check: ``refusal`` None, or why not) lets
    them in now. A fire alarm refuses it as it refuses everyone (the gate is held open for egress
    anyway: a pass changes nothing in the fire watch); a full lot as it does residents."""
    if fire_alarm:
        return Admission(False, "fire_alarm")
    full = _bays(bays, lot_full)
    if full is not None:
        return full
    if refusal is not None:
        return Admission(False, refusal)
    return Admission(True, None, _notes(bays))


def _bays(bays: str, lot_full: str) -> Admission | None:
    """The refusal a full lot makes (lot_full = "refuse"), else None."""
    return Admission(False, "lot_full") if bays == FULL and lot_full == "refuse" else None


def _notes(bays: str) -> dict[str, Any]:
    return {"lot_full": True} if bays == FULL else {"bays_unknown": True} if bays == UNKNOWN else {}


def _admit(resident: Resident | None, *, bays: str, lot_full: str, today: dt.date | None,
           rules: Rules | None = None) -> Admission:
    """A resident named by a face or a card: the lot's bays, then their record, their schedule and
    anti-passback."""
    full = _bays(bays, lot_full)
    if full is not None:
        return full
    notes = _notes(bays)
    if resident is None:
        return Admission(False, "resident_removed", notes)  # removed between the match and now
    refusal = resident.refusal(today)
    if refusal is not None:
        return Admission(False, refusal, notes)
    if today is None and resident.dated:
        notes["validity_not_judged"] = True
    if rules is None:  # not asked (a caller that judges neither schedules nor anti-passback)
        return Admission(True, None, notes)
    open_now, unknown = allowed(rules.groups, resident.groups, rules.local)
    if unknown:
        notes["unknown_groups"] = unknown  # named by the resident, not configured here: no window
    if not open_now:
        return Admission(False, "schedule", {**notes, **({"clock_unsynced": True} if rules.local is None else {})})
    antipassback = antipassback_of(resident, rules.antipassback)
    if antipassback != "off" and resident.id in rules.inside:
        if antipassback == "enforce":
            return Admission(False, "antipassback", notes)
        notes["antipassback"] = True  # log: admitted, and said
    return Admission(True, None, notes)


@dataclass(frozen=True)
class SafetyState:
    inputs_read: bool  # the inputs have been read once (before that nothing may come on)
    fire_alarm: bool  # an alarm stands (latched) in some zone
    zones_may_charge: dict[str, bool]  # each zone's own state (pre-alarm, fault) allows charging
    door_held_open: bool  # the held-open alarm stands


@dataclass(frozen=True)
class Outputs:
    chargers: dict[str, bool]  # zone -> contactor energized (charging power on)
    siren: bool
    gate_hold: bool  # the gate released and held open for egress
    buzzer: bool


def outputs(state: SafetyState) -> Outputs:
    """What every safety-related output does in this state."""
    if not state.inputs_read:
        return Outputs({zone: False for zone in state.zones_may_charge}, False, False, False)
    alarm = state.fire_alarm
    return Outputs(
        chargers={zone: may and not alarm for zone, may in state.zones_may_charge.items()},
        siren=alarm,
        gate_hold=alarm,
        buzzer=state.door_held_open and not alarm,
    )


def zone_may_charge(state: SafetyState, zone: str) -> bool:
    """Whether the fire watch lets power into ``zone`` now (a zone it does not know: no)."""
    return state.inputs_read and not state.fire_alarm and state.zones_may_charge.get(zone, False)


def port_switches(state: SafetyState, ports: dict[str, tuple[str, bool]]) -> dict[str, bool]:
    """Each charging port's relay: ``ports`` maps a port to (its fire zone, whether its charging logic
    wants it on); on only when both the fire watch and the charging logic allow it."""
    allowed = {zone: zone_may_charge(state, zone) for zone in {zone for zone, _ in ports.values()}}
    return {port: wants and allowed[zone] for port, (zone, wants) in ports.items()}
