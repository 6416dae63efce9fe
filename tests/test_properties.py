"""Property-based tests (hypothesis) for the configuration loader and the decision functions."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lotcontrol.config import Config, parse_config
from lotcontrol.vision.verdict import Observation, judge_track
from lotcontrol.errors import ConfigError
from lotcontrol.vision.matcher import decide

values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=20), st.lists(st.integers(-5, 40), max_size=4))
sections = st.sampled_from(["match", "enroll", "camera", "vision", "gate", "events", "fire", "bays", "bogus"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(sections, st.dictionaries(st.text(min_size=1, max_size=25), values, max_size=3), max_size=3))
def test_the_loader_either_accepts_or_names_what_is_wrong(document):
    """Whatever the file holds: a valid Config, or a ConfigError naming the source — never a crash."""
    try:
        config = parse_config(document, source="lot.toml")
    except ConfigError as error:
        assert str(error).startswith("lot.toml: ")
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Config.model_fields)), st.text(max_size=10))
def test_an_unknown_key_in_any_section_is_refused(section, key):
    if key in Config.model_fields[section].annotation.model_fields:
        return
    try:
        parse_config({section: {key: 1}})
    except ConfigError as error:
        assert f"unknown key {section}.{key} (allowed here: " in str(error)
    else:
        raise AssertionError("an unknown key was accepted")


observations = st.lists(st.builds(Observation, st.one_of(st.none(), st.integers(1, 3)),
                                  st.integers(1, 3), st.floats(0, 2)), max_size=15)


@given(observations, st.integers(1, 6), st.integers(1, 15), st.booleans())
def test_a_grant_needs_enough_agreeing_frames_and_no_dissent(frames, confirm, max_encodings, ended):
    verdict = judge_track(frames, confirm_frames=confirm, max_encodings=max_encodings, ended=ended)
    named = {o.resident_id for o in frames if o.resident_id is not None}
    if verdict.outcome == "grant":
        assert named == {verdict.resident_id}
        assert sum(o.resident_id == verdict.resident_id for o in frames) >= confirm
    if len(named) > 1:
        assert verdict.outcome == "unknown" and verdict.reason == "frames_disagree"
    if verdict.outcome == "none":
        assert ended and not frames


@given(st.one_of(st.none(), st.integers(1, 9)), st.floats(0, 3), st.floats(0, 3), st.floats(0.01, 1), st.floats(0, 0.5))
def test_an_accepted_face_is_within_its_limit_and_clear_of_the_next(nearest, d1, d2, limit, margin):
    d2 = max(d1, d2)
    match = decide(nearest, d1 if nearest else math.inf, d2 if nearest else math.inf, limit=limit, margin=margin)
    if match.accepted:
        assert match.distance <= limit and match.second_distance - match.distance >= margin - 1e-9
    else:
        assert match.reason in ("no_residents", "too_far", "ambiguous")
