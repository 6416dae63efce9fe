"""The cross-validated accuracy evaluation (`python -m lotcontrol.bench.accuracy --cv`).

Its statistics, its split by person and its selection rule, on synthetic encodings: none of these
tests needs ../shared, except the last, which only checks that the shared sets load as described.
"""

import math

import numpy as np
import pytest

from lotcontrol.bench.accuracy import (
    Target, Trial, choose, clopper_pearson_upper, counts, decisions, load_people, split_by_person,
)
from lotcontrol.config import MatchConfig
from lotcontrol.vision.matcher import Gallery

from .conftest import FACES_LOT, need


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                        + j * math.log(p) + (n - j) * math.log1p(-p)) for j in range(k + 1))


# --- Clopper-Pearson -------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n, expected", [(0, 100, 0.0295), (1, 10, 0.394), (0, 10, 0.259),
                                            (3, 100, 0.0757), (0, 1000, 0.002991)])
def test_clopper_pearson_known_values(k, n, expected):
    assert clopper_pearson_upper(k, n) == pytest.approx(expected, rel=2e-3)


def test_none_seen_is_never_a_zero_rate():
    for n in (1, 10, 923, 20_000):
        assert clopper_pearson_upper(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
        assert clopper_pearson_upper(0, n) > 0


@pytest.mark.parametrize("n", [10, 57, 400, 9000])
def test_the_bound_leaves_five_percent_below_it(n):
    """At the bound, seeing k or fewer has probability 5 % (the definition, via math only)."""
    for k in sorted({1, 2, n // 10, n // 2, n - 1}):
        assert binomial_cdf(k, n, clopper_pearson_upper(k, n)) == pytest.approx(0.05, abs=1e-6)


def test_the_bound_rises_with_k_and_falls_with_n():
    bounds = [clopper_pearson_upper(k, 200) for k in range(201)]
    assert all(a < b for a, b in zip(bounds, bounds[1:]))
    assert bounds[-1] == 1.0
    assert clopper_pearson_upper(5, 100) > clopper_pearson_upper(5, 1000) > 5 / 1000
    assert clopper_pearson_upper(2.5, 50) == pytest.approx(  # fractional counts (photos counted once)
        (clopper_pearson_upper(2, 50) + clopper_pearson_upper(3, 50)) / 2, rel=0.1)


def test_the_bound_agrees_with_scipys_beta_quantile():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed; the other tests check the bound")
    for k, n in ((1, 10), (7, 923), (40, 9000), (2.4, 91.5), (120, 130)):
        assert clopper_pearson_upper(k, n) == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), rel=1e-7)


# --- split by person ------------------------------------------------------------------------------

PEOPLE = [f"residents/r{i}" for i in range(101)] + [f"strangers/s{i}" for i in range(57)]


def test_split_puts_each_person_in_exactly_one_part():
    tune, test = split_by_person(PEOPLE, 3)
    assert not set(tune) & set(test)
    assert set(tune) | set(test) == set(PEOPLE)
    assert len(tune) + len(test) == len(PEOPLE)
    assert abs(len(tune) - len(test)) <= 1


def test_split_is_the_same_for_a_seed_and_differs_between_seeds():
    assert split_by_person(PEOPLE, (0, 5)) == split_by_person(list(reversed(PEOPLE)), (0, 5))
    assert split_by_person(PEOPLE, (0, 5)) != split_by_person(PEOPLE, (0, 6))


def test_split_halves_each_stratum():
    group = lambda p: p.split("/")[0]  # noqa: E731
    for seed in range(10):
        tune, test = split_by_person(PEOPLE, seed, strata=group)
        assert sum(p.startswith("strangers") for p in tune) in (28, 29)
        assert sum(p.startswith("residents") for p in tune) in (50, 51)
        assert not set(tune) & set(test) and set(tune) | set(test) == set(PEOPLE)


# --- synthetic encodings: clusters of random vectors ----------------------------------------------

def clusters(seed=0, residents=30, strangers=60, photos=4):
    """Residents' photos scattered about 0.4 from their own centre; centres about 0.8 apart."""
    rng = np.random.default_rng(seed)
    centre = lambda: rng.normal(0, 0.05, 128)  # noqa: E731
    photo = lambda c: (c + rng.normal(0, 0.025, 128)).astype(np.float32)  # noqa: E731
    gallery, who, encodings, part = {}, [], [], []
    for r in range(residents):
        c = centre()
        gallery[f"r{r}"] = [photo(c)]
        for _ in range(photos - 1):
            who.append(f"r{r}"), encodings.append(photo(c)), part.append(r % 2)
    for s in range(strangers):
        who.append(f"s{s}"), encodings.append(photo(centre())), part.append(s % 2)
    encodings[3] = None  # no face found: a refusal
    return Trial(gallery, who, [f"{w}/{i}" for i, w in enumerate(who)], encodings, np.array(part),
                 np.zeros(len(who), dtype=bool))


#: the accept distance alone: no limit from the stranger risk, no look-alike limit
PLAIN = {"max_stranger_rate": None, "lookalike_distance": 0.0}


def test_batch_decisions_are_gallery_match():
    t = clusters()
    grid = [MatchConfig(accept_distance=a, crowding_neighbours=k, crowding_factor=f, margin=m, **PLAIN)
            for a, k, f, m in ((0.45, 0, 0.8, 0.0), (0.6, 3, 0.8, 0.05), (0.9, 0, 0.8, 0.0), (0.9, 3, 1.0, 0.1))]
    out = decisions(t, grid)
    matrix = np.array([t.gallery[n][0] for n in t.names])
    for s, settings in enumerate(grid):
        gallery = Gallery(matrix, np.arange(len(t.names)), settings)
        expected = [-1 if e is None else (gallery.match(e).resident_id if gallery.match(e).accepted else -1)
                    for e in t.encoding]
        assert out[s].tolist() == expected
    assert (out[2] >= 0).sum() > (out[0] >= 0).sum()  # the grid really differs


def test_counts_split_genuine_and_strangers():
    t = clusters()
    accepted = np.full(len(t.who), -1)
    c = counts(t, accepted, t.part == 0)
    assert c["refused"] == c["genuine"] and c["stranger_accepted"] == 0 and c["strangers"] == 30
    wrong = np.where(t.truth >= 0, (t.truth + 1) % len(t.names), 0)
    wrong[3] = -1  # as `decisions` does with the probe where no face was found
    c = counts(t, wrong, np.ones(len(t.who), dtype=bool))
    assert c["wrong"] == c["genuine"] - 1 == 89 and c["refused"] == 1
    assert c["stranger_accepted"] == 60


def test_the_rule_never_chooses_a_setting_that_lets_in_too_many_strangers_on_the_tuning_part():
    t = clusters()
    grid = [MatchConfig(accept_distance=0.3, crowding_neighbours=0, margin=0.0, **PLAIN),   # refuses residents
            MatchConfig(accept_distance=0.42, crowding_neighbours=0, margin=0.0, **PLAIN),  # refuses a few
            MatchConfig(accept_distance=0.95, crowding_neighbours=0, margin=0.0, **PLAIN)]  # lets strangers in
    out = decisions(t, grid)
    tuning = [counts(t, out[s], t.part == 0) for s in range(len(grid))]
    assert tuning[0]["refused"] > tuning[1]["refused"] > tuning[2]["refused"]  # the loose one refuses fewest
    assert tuning[2]["stranger_accepted"] > 5 and tuning[1]["stranger_accepted"] == 0
    assert choose(tuning, Target(1.0, 0, 15.0)) == 1
    # With a target that even the loose setting meets, fewest refusals wins.
    assert choose(tuning, Target(100.0, 1000, 100.0)) == 2


def test_the_rule_counts_wrong_persons_and_falls_back_to_the_fewest_strangers():
    c = lambda refused, wrong, accepted: {"genuine": 100, "refused": refused, "wrong": wrong,  # noqa: E731
                                          "strangers": 1000, "stranger_accepted": accepted}
    target = Target(0.5, 0, 40.0)
    assert choose([c(30, 0, 5), c(10, 1, 2), c(20, 0, 6)], target) == 0  # 1 took someone for another; 2: 0.6 %
    assert choose([c(10, 0, 9), c(30, 0, 7), c(5, 2, 7)], target) == 1  # none qualifies: fewest strangers
    assert choose([c(20, 0, 5), c(20, 0, 3)], target) == 1  # a tie on refusals: fewer strangers


# --- the shared sets (skipped where they are absent) ----------------------------------------------

def test_the_shared_sets_load_as_described():
    need(FACES_LOT)
    people = load_people(FACES_LOT.parent)
    groups = [p.group for p in people.values()]
    assert groups.count("residents") == 805 and groups.count("strangers") == 1518
    listed = [line for line in (FACES_LOT / "EAST_ASIAN.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert all(people[key].east_asian for key in listed)  # every listed name is found
    assert sum(p.east_asian for p in people.values() if p.group != "faces") == len(listed) == 49
    assert "faces/clips" not in people and "faces/misc" not in people


def test_the_risk_rule_is_counted_with_each_split_s_own_calibration_and_tabled():
    from lotcontrol.bench.accuracy import Target, cross_validate, markdown
    from lotcontrol.vision.calibration import Calibration

    distances = np.round(np.arange(0.30, 0.605, 0.01), 2)
    rates = np.where(distances <= 0.42, 0.0, 0.5)  # any limit above 0.42 lets half the strangers in
    zeros = np.zeros(len(distances))
    strict = Calibration(distances, np.array([10.0, 100.0]), np.vstack([rates, rates]), np.ones(len(distances)),
                         {"general": zeros, "east_asian": zeros}, {}, "test")
    asked = []

    def calibrate(split):
        asked.append(split)
        return strict
    result = cross_validate(lambda split: [clusters(seed=split)], 2, 0, Target(1.0, 0, 15.0),
                            grid=[MatchConfig(**PLAIN)], calibrate_split=calibrate)
    assert asked == [0, 1]  # one calibration per split, as measured on its tuning people
    assert [s["derived_limit"] for s in result["per_split"]] == [0.42, 0.42]
    assert result["derived"]["setting"].endswith("limit 0.42-0.42")
    text = markdown({"a": result})
    assert "*the risk rule (" in text and text.count("| strangers accepted | ≤ 1 % |") == 2
