import math

import numpy as np
import pytest

from lotcontrol.vision.matcher import Gallery, decide


@pytest.mark.parametrize("nearest, d1, d2, accepted, reason", [
    (7, 0.30, 0.60, 7, None),
    (7, 0.45, 0.80, 7, None),          # exactly at the threshold is accepted
    (7, 0.46, 0.80, None, "too_far"),
    (7, 0.30, 0.33, None, "ambiguous"),  # second resident within the margin
    (7, 0.30, 0.35, 7, None),           # exactly the margin is enough
    (7, 0.30, math.inf, 7, None),       # only one resident on file
    (None, math.inf, math.inf, None, "no_residents"),
])
def test_decide(nearest, d1, d2, accepted, reason):
    match = decide(nearest, d1, d2, limit=0.45, margin=0.05)
    assert (match.resident_id, match.reason, match.nearest_id) == (accepted, reason, nearest)
    assert match.accepted == (accepted is not None)


def brute_force(matrix, ids, query, exclude=None):
    per = {}
    for row, rid in zip(matrix, ids):
        if rid != exclude:
            per[rid] = min(per.get(rid, math.inf), float(np.linalg.norm(row - query)))
    ranked = sorted(per.items(), key=lambda kv: kv[1])
    return ranked[0][0], ranked[0][1], (ranked[1][1] if len(ranked) > 1 else math.inf)


def test_nearest_is_the_minimum_over_each_residents_templates():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(300, 128)).astype(np.float32) * 0.1
    ids = rng.integers(0, 40, size=300)  # unsorted on purpose
    gallery = Gallery(matrix, ids)
    for k in range(20):
        query = matrix[k] + rng.normal(size=128).astype(np.float32) * 0.01
        got = gallery.nearest(query)
        want = brute_force(matrix, ids, query)
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], abs=1e-4)
        got = gallery.nearest(query, exclude=want[0])
        assert got[0] == brute_force(matrix, ids, query, exclude=want[0])[0]


def test_empty_and_single_resident_galleries():
    empty = Gallery(np.zeros((0, 128)), np.zeros(0))
    assert empty.nearest(np.zeros(128)) == (None, math.inf, math.inf)
    one = Gallery(np.ones((2, 128)) * 0.1, [5, 5])
    rid, d1, d2 = one.nearest(np.ones(128) * 0.1)
    assert (rid, d2) == (5, math.inf) and d1 == pytest.approx(0, abs=1e-3)
    assert one.nearest(np.ones(128), exclude=5) == (None, math.inf, math.inf)


def test_refreshed_reloads_only_after_templates_change(tmp_path):
    from lotcontrol.store import Store, Template

    with Store(tmp_path / "lot.db") as store:
        gallery = Gallery.from_store(store)
        assert gallery.refreshed(store) is gallery
        a = store.add_resident("A")
        store.add_templates(a.id, [Template(np.ones(128, np.float32) * 0.1, "a" * 64, 100, 50.0)])
        fresh = gallery.refreshed(store)
        assert fresh is not gallery and len(fresh) == 1
        assert fresh.nearest(np.ones(128) * 0.1)[0] == a.id


def test_a_resident_in_a_crowd_needs_a_closer_match():
    """Residents 1 and 2 look alike (0.4 apart); resident 3 is far from everyone. With a crowding
    factor of 0.8, faces near 1 or 2 must be within 0.8 x 0.4 = 0.32; near 3 the plain 0.5 holds."""
    from lotcontrol.config import MatchConfig

    base = np.zeros(128, np.float32)
    one = base.copy()
    two = base.copy()
    two[0] = 0.4
    three = base.copy()
    three[1] = 2.0
    settings = MatchConfig(accept_distance=0.5, crowding_factor=0.8, crowding_neighbours=1, margin=0.0,
                           max_stranger_rate=None, lookalike_distance=0.0)
    gallery = Gallery(np.stack([one, two, three]), [1, 2, 3], settings)
    assert gallery.limits.tolist() == pytest.approx([0.32, 0.32, 0.5])
    near_one = one.copy()
    near_one[2] = 0.35
    match = gallery.match(near_one)
    assert (match.resident_id, match.reason, match.limit) == (None, "too_far", pytest.approx(0.32))
    near_three = three.copy()
    near_three[2] = 0.45
    assert gallery.match(near_three).resident_id == 3
    off = Gallery(np.stack([one, two, three]), [1, 2, 3], settings.model_copy(update={"crowding_neighbours": 0}))
    assert off.match(near_one).resident_id == 1


def test_crowding_uses_the_nearest_template_of_each_other_resident():
    """Block boundaries and several templates per resident must not change the crowding."""
    from lotcontrol.config import MatchConfig
    import lotcontrol.vision.matcher as matcher

    rng = np.random.default_rng(5)
    matrix = (rng.normal(size=(400, 128)) * 0.1).astype(np.float32)
    ids = rng.integers(0, 90, size=400)
    settings = MatchConfig(crowding_factor=1.0, accept_distance=0.99, crowding_neighbours=3, max_stranger_rate=None,
                           lookalike_distance=0.0)
    want = {}
    for rid in np.unique(ids):
        others = {o: min(float(np.linalg.norm(a - b)) for a in matrix[ids == rid] for b in matrix[ids == o])
                  for o in np.unique(ids) if o != rid}
        want[rid] = min(0.99, float(np.mean(sorted(others.values())[:3])))
    old_block = matcher._BLOCK
    try:
        matcher._BLOCK = 7
        small_blocks = Gallery(matrix, ids, settings)
    finally:
        matcher._BLOCK = old_block
    for gallery in (Gallery(matrix, ids, settings), small_blocks):
        got = dict(zip(gallery.residents.tolist(), gallery.limits.tolist()))
        assert got == pytest.approx(want, abs=1e-4)


def test_a_look_alike_pair_is_held_to_half_their_distance():
    from lotcontrol.config import MatchConfig

    rng = np.random.default_rng(7)
    one = rng.normal(size=128).astype(np.float32)
    one /= np.linalg.norm(one) * 2
    twin = one.copy()
    twin[0] += 0.3  # 0.30 apart: within lookalike_distance 0.45
    far = -one
    settings = MatchConfig(accept_distance=0.55, crowding_neighbours=0, margin=0.0, max_stranger_rate=None)
    gallery = Gallery(np.stack([one, twin, far]), [1, 2, 3], settings)
    assert gallery.limits.tolist() == pytest.approx([0.15, 0.15, 0.55], abs=1e-6)
    assert gallery.lookalikes() == [(1, 2, pytest.approx(0.3, abs=1e-4))]
    probe = one.copy()
    probe[1] += 0.2  # 0.2 from one, away from the twin (0.36 from her)
    off = Gallery(np.stack([one, twin, far]), [1, 2, 3], settings.model_copy(update={"lookalike_distance": 0.0}))
    assert off.limits.tolist() == pytest.approx([0.55, 0.55, 0.55]) and off.lookalikes() == []
    assert off.match(probe).resident_id == 1  # the plain rule takes it for one
    assert gallery.match(probe).resident_id is None  # the pair's rule: not near enough to tell them apart
    probe[1] = one[1] + 0.1
    assert gallery.match(probe).resident_id == 1  # nearer than half-way: never nearer the twin


def test_the_limit_follows_the_gallery_and_the_risk():
    from lotcontrol.config import MatchConfig
    from lotcontrol.vision.calibration import shipped

    cal = shipped()
    # the risk the site chose holds at the limit it gives, for any gallery size; a lower risk never
    # gives a higher limit
    for templates in (3, 25, 280, 1400, 5000):
        for risk in (0.001, 0.005, 0.01):
            limit = cal.limit(risk, templates)
            assert cal.stranger_rate(limit, templates) <= risk or limit == cal.distances[0]
            assert cal.limit(risk / 2, templates) <= limit
    assert cal.limit(0.005, 1400, "east_asian") < cal.limit(0.005, 1400)
    settings = MatchConfig(max_stranger_rate=0.002)
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(300, 128)).astype(np.float32)
    gallery = Gallery(matrix, np.arange(300), settings)
    assert gallery.accept_limit == cal.limit(0.002, 300) < settings.accept_distance
    assert (gallery.limits <= gallery.accept_limit).all()
    summary = gallery.summary()
    assert summary["templates"] == 300 and summary["accept_limit"] == round(gallery.accept_limit, 3)
    assert summary["expected_stranger_rate"] <= 0.002 and summary["risk_met"] is True
    east = Gallery(matrix, np.arange(300), settings.model_copy(update={"population": "east_asian"})).summary()
    assert east["risk_met"] is False and east["accept_limit"] == cal.distances[0]  # no limit keeps 0.2 %
    loose = Gallery(matrix, np.arange(300), settings.model_copy(update={"max_stranger_rate": None}))
    assert loose.accept_limit == settings.accept_distance
