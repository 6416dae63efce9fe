"""The 1:1 access modes (issue 20, item 3): face_and_card and face_and_pin.

The card or the PIN names the resident; the face must be within the 1:1 limit of that resident
(``Passage.claims``, from the vision worker), in either order within access.factor_window_seconds,
on the simulated clock. A look-alike pair defaults to face_and_pin once either has a PIN. Every
refusal names the factor."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from lotcontrol import policy
from lotcontrol.credentials import card_digest, hash_pin
from lotcontrol.messages import Passage
from lotcontrol.site.wiegand import Card, card_frame
from lotcontrol.store import Resident

from . import test_wiegand as W
from .lots import RecordingLink

BO_CARD = Card(26, 0x0BCDEF)  # made up


# --- the policy ---------------------------------------------------------------------------------


def resident(mode=None, rid=7):
    return Resident(rid, "A", None, None, None, "active", None, None, "", "", 0, mode)


COMMON = dict(fire_alarm=False, bays=policy.FREE, lot_full="refuse", today=dt.date(2026, 1, 1))


def test_face_and_card_wants_the_card_and_a_face_within_the_one_to_one_limit():
    def decide(card, face, pin=None):
        return policy.credential_admission(card, pin, resident=resident("face_and_card"), site_mode="face",
                                           face=face, **COMMON)
    assert decide("known", None) is None  # the face may still come
    assert decide("known", True).grant
    assert decide("known", False).reason == "face_mismatch"
    assert decide("unknown", True).reason == "card_unknown"
    assert policy.missing_factor("face_and_card", card="known", pin=None, face=False) == "face_missing"
    assert policy.missing_factor("face_and_card", card=None, pin=None, face=True) == "card_missing"
    alone = policy.admission("grant", None, resident=resident("face_and_card"), site_mode="face", **COMMON)
    assert alone.reason == "card_missing"  # a face alone, even one the gallery accepts


def test_face_and_pin_wants_the_pin_of_the_resident_and_their_face():
    def decide(card, pin, face):
        return policy.credential_admission(card, pin, resident=resident("face_and_pin"), site_mode="face",
                                           face=face, **COMMON)
    assert decide(None, "ok", None) is None  # the PIN matched a face's claim... the face decides
    assert decide(None, "ok", True).grant
    assert decide(None, "ok", False).reason == "face_mismatch"
    assert decide(None, "wrong", True).reason == "pin_wrong"
    assert decide("known", None, True) is None  # a card may name them; the PIN must still come
    assert decide("known", "ok", True).grant
    assert decide("known", "not_set", True).reason == "pin_not_set"
    assert decide(None, "entered", None) is None
    assert policy.missing_factor("face_and_pin", card=None, pin="entered", face=False) == "face_missing"
    assert policy.missing_factor("face_and_pin", card=None, pin=None, face=True) == "pin_missing"
    alone = policy.admission("grant", None, resident=resident("face_and_pin"), site_mode="face", **COMMON)
    assert alone.reason == "pin_missing"
    fire = policy.credential_admission(None, "ok", resident=resident("face_and_pin"), site_mode="face", face=True,
                                       **{**COMMON, "fire_alarm": True})
    assert fire.reason == "fire_alarm"


def test_a_lookalike_defaults_to_face_and_pin_where_the_face_alone_names_residents_unless_staff_chose():
    assert policy.mode_of(resident(), "face", lookalike_pin=True) == "face_and_pin"
    assert policy.mode_of(resident(), "face_or_card", lookalike_pin=True) == "face_and_pin"
    assert policy.mode_of(resident(), "card_and_pin", lookalike_pin=True) == "card_and_pin"  # a card names them
    assert policy.mode_of(resident("face"), "face", lookalike_pin=True) == "face"  # staff set it
    assert policy.mode_of(resident(), "face", lookalike_pin=False) == "face"


def test_a_lookalike_must_be_nearer_the_named_one_than_the_other_of_the_pair():
    claims = ((1, 0.30), (2, 0.33))  # the face of 1, within the 1:1 limit of both
    assert not policy.nearer_lookalike(1, claims, {2}, 0.0)  # nearer 1: it is 1
    assert policy.nearer_lookalike(2, claims, {1}, 0.0)  # 2 named (their card or PIN), but the face is nearer 1
    assert policy.nearer_lookalike(2, ((1, 0.3), (2, 0.3)), {1}, 0.0)  # a tie shows neither
    assert not policy.nearer_lookalike(1, claims, {2}, 0.02)  # nearer by 0.03, more than the margin
    assert policy.nearer_lookalike(1, claims, {2}, 0.04)  # ... not more than 0.04
    assert not policy.nearer_lookalike(2, claims, {3}, 0.0)  # 1 is no look-alike of 2: nothing to tell apart
    assert not policy.nearer_lookalike(2, ((1, 0.3),), {1}, 0.0)  # 2 not claimed: that is face_mismatch
    assert not policy.nearer_lookalike(1, ((1, 0.3),), {2}, 0.1)  # 2 beyond the 1:1 limit
    for mode, card, pin in (("face_and_pin", None, "ok"), ("face_and_card", "known", None)):
        refused = policy.credential_admission(card, pin, resident=resident(mode), site_mode="face", face=True,
                                              lookalike=True, **COMMON)
        assert (refused.grant, refused.reason) == (False, "lookalike")
        fire = policy.credential_admission(card, pin, resident=resident(mode), site_mode="face", face=True,
                                           lookalike=True, **{**COMMON, "fire_alarm": True})
        assert fire.reason == "fire_alarm"
    # the face within the 1:1 limit of nobody named stays face_mismatch
    assert policy.credential_admission(None, "ok", resident=resident("face_and_pin"), site_mode="face", face=False,
                                       lookalike=True, **COMMON).reason == "face_mismatch"


def test_the_one_to_one_modes_keep_schedules_and_anti_passback_after_the_factors():
    from zoneinfo import ZoneInfo

    from lotcontrol.schedule import group

    day = {"day": group("day", ["mon-fri 06:00-23:00"], [])}
    night = dt.datetime(2026, 12, 4, 3, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Friday, 03:00
    worker = Resident(7, "A", None, None, None, "active", None, None, "", "", 0, "face_and_pin", "day")
    kwargs = dict(resident=worker, site_mode="face", **COMMON)
    assert policy.credential_admission(None, "ok", face=True, rules=policy.Rules(day, night),
                                       **kwargs).reason == "schedule"
    assert policy.credential_admission(None, "ok", face=True, rules=policy.Rules(day, night.replace(hour=9)),
                                       **kwargs).grant
    inside = policy.Rules(day, night.replace(hour=9), "enforce", frozenset({7}))
    assert policy.credential_admission(None, "ok", face=True, rules=inside, **kwargs).reason == "antipassback"
    # the factors first: a face of the other of a look-alike pair is refused as such, whatever the hour
    assert policy.credential_admission(None, "ok", face=True, lookalike=True, rules=policy.Rules(day, night),
                                       **kwargs).reason == "lookalike"


def test_one_to_one_limit_follows_the_impostor_table_and_claims_are_within_it():
    from lotcontrol.config import MatchConfig
    from lotcontrol.vision.calibration import Calibration, MissingCalibration
    from lotcontrol.vision.matcher import Gallery

    distances = np.array([0.3, 0.4, 0.5, 0.6])
    cal = Calibration(distances, np.array([10.0]), np.full((1, 4), 1e-4), np.ones(4), {"general": np.zeros(4)},
                      {}, "test", {"general": np.array([1e-5, 5e-4, 2e-3, 1e-2]), "east_asian": np.full(4, 0.5)})
    assert cal.one_to_one_limit(1e-3) == 0.4
    assert cal.one_to_one_limit(1e-3, "east_asian") == 0.3  # none meets it: the smallest distance
    with pytest.raises(MissingCalibration, match="one-to-one"):
        Calibration(distances, np.array([10.0]), np.full((1, 4), 1e-4), np.ones(4), {}, {}, "old").one_to_one_limit(1e-3)
    matrix = np.zeros((3, 128), np.float32)
    matrix[1, 0], matrix[2, 0] = 0.35, 0.9
    gallery = Gallery(matrix, np.array([1, 2, 3]), MatchConfig(max_stranger_rate=None), calibration=cal)
    probe = np.zeros(128, np.float32)
    probe[0] = 0.1
    assert gallery.claims(probe, 0.4) == [(1, 0.1), (2, 0.25)]  # nearest first; 3 is beyond the limit
    assert gallery.claims(probe, 0.2) == [(1, 0.1)]
    assert gallery.one_to_one_limit(1e-3) == 0.4


def test_the_shipped_calibrations_have_a_one_to_one_table():
    from lotcontrol.vision.calibration import shipped

    for space in ("dlib", "faceres", "fused"):
        cal = shipped(space)
        limit = cal.one_to_one_limit(0.001)
        assert cal.distances[0] <= limit <= cal.distances[-1]
        assert cal.impostor_rate(limit) <= 0.001


# --- through the controller, on the simulated clock ----------------------------------------------


def with_bo(pin=None, card=True, lookalike=False):
    def add(s):
        s.bo = s.store.add_resident("Bo")
        if card:
            s.store.add_card("Bo", card_digest(s.store.card_key(), BO_CARD))
        if pin:
            s.store.set_pin("Bo", hash_pin(pin))
        if lookalike:
            s.store.flag_lookalike(s.ann.id, s.bo.id, 0.38)
    return add


def face(s, who, granted=True, track=1):
    """A face at the gate as the vision worker says it: granted 1:N (or not), and its 1:1 claims."""
    rid = who.id if who is not None else None
    claims = ((rid, 0.31),) if rid is not None else ()
    s.c.handle(Passage(track, "grant" if granted and rid else "unknown", rid if granted else None,
                       None if granted and rid else "no_match", 0.31, 3, 0.0, 0.2, claims=claims), s.clock.now())
    s.c.step(s.clock.now())


def decisions(s):
    return [(t, r, d.get("reason"), d.get("by")) for t, r, d in s.events() if t.startswith("access")]


@pytest.fixture
def site(tmp_path):
    made = []

    def make(**kwargs):
        made.append(W.Site(tmp_path / str(len(made)), **kwargs))
        return made[-1]
    yield make
    for s in made:
        s.close()


@pytest.fixture(autouse=True)
def _folders(tmp_path):
    for i in range(3):
        (tmp_path / str(i)).mkdir()


def test_face_and_card_card_then_face_opens(site):
    s = site(mode="face_and_card", window=20.0)
    s.send(card_frame(W.CARD.number))
    assert s.relay() == [False] and decisions(s) == []  # the face may still come
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] == "face"
    s.wait(5.0)
    face(s, s.ann, granted=False)  # the gallery (1:N) refused it; 1:1 it is within the limit of Ann
    assert s.relay() == [False, True]
    assert decisions(s) == [("access.granted", "Ann", None, "card+face")]
    assert s.events()[-1][2]["distance"] == 0.31


def test_face_and_card_a_track_seen_twice_while_held_for_a_re_read_is_let_in_once(site):
    """The worker looks at a face again; both looks wait for the writer to read a resident the face also
    claims (enrolled a moment ago). The first look is let in with the card; the second is that same
    passage, not a face alone without its card."""
    s = site(mode="face_and_card", window=20.0)
    s.send(card_frame(W.CARD.number))  # Ann's card waits for her face
    cy = s.store.add_resident("Cy")  # in the worker's gallery already, not yet in the loop's copy
    for _ in range(2):
        s.c.handle(Passage(1, "grant", s.ann.id, None, 0.31, 3, 0.0, 0.2, claims=((s.ann.id, 0.31), (cy.id, 0.45))),
                   s.clock.now())
    assert s.c.faces_held == 2
    s.c.writer.write_due()  # the writer reads the residents again
    s.wait(0.05)
    assert s.c.faces_held == 0 and s.relay() == [False, True]
    s.wait(21.0)  # past the factor window: a second look left waiting for a card would be refused by now
    assert decisions(s) == [("access.granted", "Ann", None, "card+face")]


def test_face_and_card_face_then_card_opens(site):
    s = site(mode="face_and_card", window=20.0)
    face(s, s.ann)
    assert s.relay() == [False] and decisions(s) == []  # granted 1:N, but the card must come
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] == "card"
    s.wait(10.0)
    s.send(card_frame(W.CARD.number))
    assert s.relay() == [False, True]
    assert decisions(s) == [("access.granted", "Ann", None, "card+face")]


def test_face_and_card_each_factor_alone_is_refused_when_the_window_ends(site):
    s = site(mode="face_and_card", window=20.0)
    s.send(card_frame(W.CARD.number))
    s.wait(19.9)
    assert decisions(s) == []
    s.wait(0.2)
    face(s, s.ann)
    s.wait(20.1)
    assert s.relay() == [False]
    assert decisions(s) == [("access.denied", "Ann", "face_missing", "card"),
                            ("access.denied", "Ann", "card_missing", "face")]
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] is None


def test_face_and_card_refuses_someone_elses_face_for_the_card(site):
    s = site(mode="face_and_card", before=with_bo())
    s.send(card_frame(W.CARD.number))  # Ann's card...
    face(s, s.bo)  # ...and Bo's face (granted 1:N as Bo, not within the 1:1 limit of Ann)
    s.wait(40.0)
    assert s.relay() == [False]
    assert decisions(s) == [("access.denied", "Ann", "face_mismatch", "card+face")]


def test_face_and_card_a_stranger_face_is_decided_at_once_not_held(site):
    s = site(mode="face_and_card")
    face(s, None)
    assert decisions(s) == [("access.denied", None, "no_match", None)]


def test_face_and_pin_pin_then_face_and_face_then_pin_open(site):
    s = site(mode="face_and_pin", window=20.0)
    s.keys("4711#")
    assert decisions(s) == []
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] == "face"
    face(s, s.ann, granted=False)
    assert decisions(s) == []  # the PIN is checked in the reader's thread, never in the loop
    s.settle()
    assert decisions(s) == [("access.granted", "Ann", None, "pin+face")]
    s.wait(30.0)
    face(s, s.ann, track=2)
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] == "pin"
    s.wait(5.0)
    s.keys("4711#")
    s.settle()
    assert s.relay() == [False, True, False, True]
    assert decisions(s)[1:] == [("access.granted", "Ann", None, "pin+face")]


def test_face_and_pin_refuses_a_wrong_pin_a_missing_pin_and_a_pin_without_a_face(site):
    s = site(mode="face_and_pin", window=20.0)
    face(s, s.ann)
    s.keys("1234#")
    s.settle()
    s.wait(30.0)
    face(s, s.ann, track=2)
    s.wait(20.1)  # no PIN
    s.keys("4711#")
    s.wait(20.1)  # no face
    assert s.relay() == [False]
    assert decisions(s) == [("access.denied", None, "pin_wrong", "pin+face"),
                            ("access.denied", "Ann", "pin_missing", "face"),  # granted 1:N as Ann
                            ("access.denied", None, "face_missing", "pin")]


def test_face_and_pin_the_pin_names_who_among_the_faces_claims(site):
    """Two look-alikes both within the 1:1 limit of the face: the PIN says which of them it is."""
    s = site(mode="face_and_pin", before=with_bo(pin="2580"))
    rid = s.bo.id
    s.c.handle(Passage(1, "unknown", None, "no_match", 0.3, 3, 0.0, 0.2,
                       claims=((s.ann.id, 0.30), (rid, 0.33))), s.clock.now())
    s.keys("2580#")
    s.settle()
    assert decisions(s) == [("access.granted", "Bo", None, "pin+face")]
    assert s.events()[-1][2]["distance"] == 0.33


def test_a_lookalike_pair_is_held_to_face_and_pin_once_either_has_a_pin(site):
    s = site(mode="face", before=with_bo(lookalike=True))  # Ann has a PIN, Bo none
    face(s, s.ann)  # granted 1:N: not enough for a look-alike
    s.keys("4711#")
    s.settle()
    face(s, s.bo, track=2)
    s.wait(31.0)
    assert decisions(s) == [("access.granted", "Ann", None, "pin+face"),
                            ("access.denied", "Bo", "pin_missing", "face")]


def test_a_pair_without_any_pin_stays_on_the_face(site, tmp_path):
    def add(s):
        with_bo(lookalike=True)(s)
        s.store.db.execute("DELETE FROM pins")  # nobody of the pair has a PIN
    s = site(mode="face", before=add)
    face(s, s.bo)
    assert decisions(s) == [("access.granted", "Bo", None, None)]


def test_a_refusal_names_the_factor_on_mqtt_and_in_status_without_the_card_or_pin(site):
    from lotcontrol.fleet.publish import LotPublisher

    link = RecordingLink()
    heard = link.heard
    s = site(mode="face_and_card", before=with_bo(pin="2580"))
    LotPublisher(link, s.c).attach()
    s.send(card_frame(W.CARD.number))
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] == "face"
    face(s, s.bo)
    access = [p for t, p in heard if t == "lotcontrol/lot/access"]
    assert [(a["event_type"], a["resident"], a["reason"], a["by"]) for a in access] == [
        ("denied", "Ann", "face_mismatch", "card+face")]
    text = repr(heard) + repr(s.events())
    for secret in (str(W.CARD.number), card_digest(s.store.card_key(), W.CARD), "4711", "2580"):
        assert secret not in text


def test_the_worker_says_each_faces_one_to_one_claims_from_its_frames_taken_together():
    from lotcontrol.config import Config
    from lotcontrol.vision.calibration import shipped
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.matcher import Gallery
    from lotcontrol.vision.pipeline import Pipeline, Track
    from lotcontrol.vision.verdict import Observation, Verdict

    config = Config()
    limit = shipped("dlib").one_to_one_limit(config.access.max_impostor_rate)
    matrix = np.zeros((2, 128), np.float32)
    matrix[1, 0] = 1.0  # resident 2 is far from resident 1
    pipeline = Pipeline(config, Gallery(matrix, np.array([1, 2]), config.match))
    assert pipeline.summary()["one_to_one_limit"] == round(limit, 3)
    track = Track(1, Box(0, 10, 10, 0), 0.0, 0.2)
    near, far = np.zeros(128, np.float32), np.zeros(128, np.float32)
    near[1], far[1] = limit - 0.1, limit + 0.3  # one frame within the limit of 1, one beyond
    track.queries = [(near, None), (far, None)]
    track.observations = [Observation(None, 1, limit - 0.1), Observation(None, 1, limit + 0.3)]
    track.verdict = Verdict("unknown", None, "no_match")
    passage = pipeline._passage(track, 0.2)
    # the mean of the two frames is (limit + 0.1) from resident 1: beyond the limit, so no claim
    assert passage.claims == ()
    track.queries = [(near, None), (near, None)]
    assert pipeline._passage(track, 0.2).claims == ((1, round(float(limit - 0.1), 4)),)


def test_face_and_pin_a_face_within_the_one_to_one_limit_of_nobody_is_a_face_mismatch(site):
    s = site(mode="face_and_pin")
    s.c.handle(Passage(1, "grant", s.ann.id, None, 0.545, 3, 0.0, 0.2, claims=()), s.clock.now())  # 1:N yes, 1:1 no
    s.keys("4711#")
    assert s.relay() == [False]
    assert decisions(s) == [("access.denied", None, "face_mismatch", "pin+face")]
    s.keys("4711#")  # and a PIN first, then such a face
    s.c.handle(Passage(2, "grant", s.ann.id, None, 0.545, 3, 0.0, 0.2, claims=()), s.clock.now())
    assert decisions(s)[1:] == [("access.denied", None, "face_mismatch", "pin+face")]


def test_a_pin_typed_at_a_face_waiting_for_its_card_does_not_use_the_face(site):
    s = site(mode="face_and_card")
    face(s, s.ann)  # waits for Ann's card
    s.keys("4711#")  # a PIN: not this face's factor
    assert decisions(s) == []
    s.send(card_frame(W.CARD.number))
    assert decisions(s) == [("access.granted", "Ann", None, "card+pin+face")]


def test_the_lookalike_benchmark_counts_each_pair_members_probes():
    from lotcontrol.bench import accuracy as A
    from lotcontrol.bench.modes import judge_pairs
    from lotcontrol.config import Config

    def vec(x, y=0.0):
        v = np.zeros(128, np.float32)
        v[0], v[1] = x, y
        return v
    # a and b 0.3 apart (a look-alike pair); c far away; each of a and b probes with a photo 0.1 from itself
    t = A.Trial({"a": [vec(0.0)], "b": [vec(0.3)], "c": [vec(3.0)]}, ["a", "b", "c"], ["pa", "pb", "pc"],
                [vec(-0.1), vec(0.4), None], [1, 1, 1], [False, False, False])
    counts = judge_pairs(t, 0.45, Config())
    assert (counts.pairs, counts.probes) == (1, 2)
    assert counts.taken_for_other == 0 and counts.genuine_refused == 0
    assert counts.other_pin_accepted == 2  # each photo is 0.4 from the other of the pair: within 0.45
    assert counts.nearer_other_accepted == 0 and counts.nearer_refused == 0  # each is nearer itself
    assert (counts.face_wrong, counts.face_refused) == (0, 0)  # 0.1 is within half the pair's distance
    margins = judge_pairs(t, 0.45, Config(), margins=(0.0, 0.25, 0.35)).by_margin
    # each photo is 0.1 from itself, 0.4 from the other: nearer itself by 0.3; the other's PIN is refused
    assert margins == {0.0: [0, 0], 0.25: [0, 0], 0.35: [2, 0]}  # ... and by 0.35 its own is too
    strict = judge_pairs(t, 0.05, Config())  # a 1:1 limit below their photos' distance from themselves
    assert (strict.genuine_refused, strict.other_pin_accepted) == (2, 0)


def test_the_lookalike_margin_is_chosen_on_the_tuning_part_by_the_rule():
    from lotcontrol.bench.modes import Counts, choose_margin

    margins = (0.0, 0.02, 0.08, 0.1)
    # margin -> [own PIN refused, the other's PIN accepted] on the tuning part
    tuning = Counts(probes=10, by_margin={0.0: [1, 3], 0.02: [1, 2], 0.08: [2, 0], 0.1: [4, 0]})
    assert choose_margin(tuning, margins, 0.02) == 0.08  # none let in as the other, then fewest refused
    tuning.by_margin[0.1] = [2, 0]
    assert choose_margin(tuning, margins, 0.02) == 0.1  # a tie: the most guarded at no measured cost
    assert choose_margin(Counts(probes=0, by_margin={m: [0, 0] for m in margins}), margins, 0.02) == 0.02  # no evidence


def lookalike_face(s, nearest, other, track=1, by=0.15):
    """A face within the 1:1 limit of both of a look-alike pair, nearer ``nearest`` (by 0.15: more than
    access.lookalike_margin's default, 0.1)."""
    s.c.handle(Passage(track, "unknown", None, "no_match", 0.3, 3, 0.0, 0.2,
                       claims=((nearest.id, 0.30), (other.id, 0.30 + by))), s.clock.now())
    s.c.step(s.clock.now())


def test_a_lookalike_who_types_the_others_pin_is_refused_and_their_own_pin_opens(site):
    """Ann and Bo are flagged look-alikes with PINs: Ann's face with Bo's PIN (she knows it) is refused as
    lookalike in either order, naming nobody let in; Bo's face with his own PIN opens for Bo."""
    s = site(mode="face_and_pin", before=with_bo(pin="2580", lookalike=True))
    lookalike_face(s, s.ann, s.bo)
    s.keys("2580#")  # Bo's PIN at Ann's face
    s.settle()
    s.wait(31.0)
    s.keys("2580#")  # PIN first, then Ann's face again
    lookalike_face(s, s.ann, s.bo, track=2)
    s.settle()
    s.wait(31.0)
    lookalike_face(s, s.bo, s.ann, track=3)  # Bo himself
    s.keys("2580#")
    s.settle()
    assert decisions(s) == [("access.denied", "Bo", "lookalike", "pin+face"),
                            ("access.denied", "Bo", "lookalike", "pin+face"),
                            ("access.granted", "Bo", None, "pin+face")]
    assert s.relay() == [False, True]  # the gate opened once: for Bo


def test_a_lookalikes_card_at_the_others_face_is_refused_and_the_margin_applies(site):
    s = site(mode="face_and_card", before=with_bo(lookalike=True), access={"lookalike_margin": 0.05})
    s.send(card_frame(BO_CARD.number))  # Bo's card ...
    lookalike_face(s, s.ann, s.bo)  # ... at Ann's face
    s.wait(31.0)
    s.send(card_frame(BO_CARD.number))
    lookalike_face(s, s.bo, s.ann, track=2, by=0.03)  # Bo's face, nearer him by 0.03: not by the margin of 0.05
    assert decisions(s) == [("access.denied", "Bo", "lookalike", "card+face"),
                            ("access.denied", "Bo", "lookalike", "card+face")]


def test_the_default_margin_refuses_a_lookalikes_own_pin_on_a_face_not_nearer_them_by_0_1(site):
    """access.lookalike_margin's default (0.1, chosen by bench.modes on the tuning parts): Bo's face
    nearer him than Ann by 0.06 is not enough; by 0.15 it is."""
    s = site(mode="face_and_pin", before=with_bo(pin="2580", lookalike=True))
    assert s.c.config.access.lookalike_margin == 0.1
    lookalike_face(s, s.bo, s.ann, by=0.06)
    s.keys("2580#")
    s.settle()
    s.wait(31.0)
    lookalike_face(s, s.bo, s.ann, track=2, by=0.15)
    s.keys("2580#")
    s.settle()
    assert decisions(s) == [("access.denied", "Bo", "lookalike", "pin+face"),
                            ("access.granted", "Bo", None, "pin+face")]
