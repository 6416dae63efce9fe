"""The controller's policy as pure functions: who may enter (and in which order the reasons count),
and what every output does in every safety state."""

import datetime as dt
import itertools

import pytest

from lotcontrol.policy import FREE, FULL, UNKNOWN, Outputs, SafetyState, admission, outputs
from lotcontrol.store import Resident

TODAY = dt.date(2026, 11, 28)


def resident(**fields):
    base = dict(id=1, name="A", unit=None, phone=None, note=None, status="active", valid_from=None,
                valid_until=None, created="", updated="")
    return Resident(**{**base, **fields})


def admit(outcome="grant", face_reason=None, *, fire_alarm=False, bays=FREE, lot_full="refuse", who=None):
    return admission(outcome, face_reason, fire_alarm=fire_alarm, bays=bays, lot_full=lot_full,
                     resident=resident() if who is None else who, today=TODAY)


@pytest.mark.parametrize("fields, refusal", [
    ({}, None),
    ({"status": "suspended"}, "suspended"),
    ({"valid_until": "2026-11-27"}, "expired"),
    ({"valid_from": "2026-11-29"}, "not_yet_valid"),
    ({"valid_from": "2026-11-28", "valid_until": "2026-11-28"}, None),
])
def test_the_residents_record(fields, refusal):
    decision = admit(who=resident(**fields))
    assert (decision.grant, decision.reason) == (refusal is None, refusal)


def test_a_resident_removed_meanwhile_is_refused():
    decision = admission("grant", None, fire_alarm=False, bays=FREE, lot_full="refuse", resident=None, today=TODAY)
    assert (decision.grant, decision.reason) == (False, "resident_removed")


def test_precedence_fire_then_lot_full_then_the_record_then_the_face():
    suspended = resident(status="suspended")
    assert admit(fire_alarm=True, bays=FULL, who=suspended).reason == "fire_alarm"
    assert admit("unknown", "no_match", fire_alarm=True).reason == "fire_alarm"
    assert admit(bays=FULL, who=suspended).reason == "lot_full"
    assert admit(who=suspended).reason == "suspended"
    assert admit("unknown", "frames_disagree").reason == "frames_disagree"
    assert admit("unknown", None).reason == "unknown"


def test_free_bays_that_cannot_be_known_never_lock_a_resident_out():
    decision = admit(bays=UNKNOWN)
    assert (decision.grant, decision.notes) == (True, {"bays_unknown": True})
    decision = admit(bays=FULL, lot_full="warn")
    assert (decision.grant, decision.notes) == (True, {"lot_full": True})
    assert admit(bays=FULL).grant is False


@pytest.mark.parametrize("inputs_read, alarm, east, west, held", list(itertools.product([False, True], repeat=5)))
def test_every_output_in_every_safety_state(inputs_read, alarm, east, west, held):
    out = outputs(SafetyState(inputs_read, alarm, {"east": east, "west": west}, held))
    if not inputs_read:  # before the inputs were read once, everything stays safe
        assert out == Outputs({"east": False, "west": False}, False, False, False)
        return
    assert out.chargers == {"east": east and not alarm, "west": west and not alarm}
    assert out.siren is alarm and out.gate_hold is alarm
    assert out.buzzer is (held and not alarm)  # the fire release holds the door open on purpose
