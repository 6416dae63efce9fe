"""The accept rule's defaults hold their promise on real photos (../shared/faces).

Enroll up to 3 photos of each person, probe with the rest and with people never enrolled:
no stranger and no wrong person accepted, at most 15 % of genuine photos refused.
"""

import pytest

from lotcontrol.config import Config

from .conftest import FACES, need

pytestmark = pytest.mark.slow  # encodes every photo of ../shared/faces (about 12 s)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    need(FACES)
    import lotcontrol.bench.accuracy as accuracy

    accuracy.CACHE = tmp_path_factory.mktemp("eval-cache")
    return accuracy, accuracy.faces_split(FACES.parent, Config())


def test_defaults_accept_no_stranger_and_few_refusals(split):
    accuracy, data = split
    result = accuracy.evaluate(data, Config().match)
    assert result["strangers"] >= 50 and result["genuine"] >= 100
    assert result["stranger_accepted"] == 0
    assert result["wrong"] == 0
    assert result["refused_pct"] <= 15


def test_face_recognitions_default_tolerance_would_admit_strangers(split):
    """The reason for our defaults: 0.6 with no margin lets strangers in on this very set."""
    accuracy, data = split
    from lotcontrol.config import MatchConfig

    plain = MatchConfig(accept_distance=0.6, crowding_neighbours=0, margin=0.0, max_stranger_rate=None, lookalike_distance=0.0)
    assert accuracy.evaluate(data, plain)["stranger_accepted"] > 0
