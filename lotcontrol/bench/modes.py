"""Look-alike pairs under face_and_pin: the 1:1 limit on the cross-validation's look-alike pairs.

    .venv/bin/python -m lotcontrol.bench.modes [--shared ../shared] [--splits 20] [--seed 0]
                                               [--max-impostor-rate 0.001] [--encoder dlib|faceres|fused]
                                               [--margins 0,0.01,...,0.1,0.15,0.2] [--json]

In each random split by person of protocol (b) of the cross-validation (bench.accuracy: 1,400 on file
from one photo each, faces-lot; the same splits, seed and strata), the 1:1 calibration is measured on
the split's tuning people only (bench.calibrate.one_to_one: the share of pairs of photos of two
different people within each distance) and gives the 1:1 limit for ``--max-impostor-rate``. The
gallery's look-alike pairs are the pairs ``Gallery.lookalikes`` flags (templates within
``match.lookalike_distance``), as `enroll` and `residents check` flag them. Each test-part probe
photo of a member of a pair is then judged:

- under face_and_pin, typing their own PIN (the PIN names them among the face's claims, as
  lotcontrol.site.reader does it): admitted when the face is within the 1:1 limit of them, refused
  otherwise (``genuine refused``); taken for the other: when the other's PIN were the same;
  ``taken for the other`` counts a probe whose face is within the limit of the other *and* whose PIN
  would name the other, which distinct PINs never do (reported, not assumed: the claims are checked);
- the other of the pair typing this one's PIN (a relative who knows it): ``other's PIN accepted``
  when the face is within the 1:1 limit of the one the PIN names;
- the look-alike rule (``access.lookalike_margin``, lotcontrol.policy.nearer_lookalike): the same
  with the face also required to be nearer the named one than the other of the pair by a margin
  (``nearer_*`` at margin 0; ``by_margin``: each ``--margins`` value);
- for comparison, face alone (1:N, the shipped rule and its risk limit on the whole gallery, in-sample):
  accepted as the other of the pair (``wrong``), and refused.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..policy import nearer_lookalike
from ..vision.calibration import shipped
from . import accuracy as A
from .calibrate import one_to_one


@dataclass
class Counts:
    pairs: int = 0
    probes: int = 0  # test-part probe photos of a member of a flagged pair
    genuine_refused: int = 0  # own PIN, face not within the 1:1 limit of them
    taken_for_other: int = 0  # own PIN, yet admitted as the other
    other_pin_accepted: int = 0  # the other's PIN, face within the 1:1 limit of the other
    nearer_refused: int = 0  # own PIN, with "nearer them than the other of the pair" added: refused
    nearer_other_accepted: int = 0  # the other's PIN under that added rule: accepted
    # the same per margin: margin -> [own PIN refused, the other's PIN accepted]
    by_margin: dict[float, list[int]] = field(default_factory=dict)
    face_wrong: int = 0  # face alone, 1:N: accepted as the other of the pair (or anyone else)
    face_refused: int = 0  # face alone, 1:N: refused
    limits: list[float] = field(default_factory=list)

    def add(self, other: "Counts") -> None:
        for name in ("pairs", "probes", "genuine_refused", "taken_for_other", "other_pin_accepted",
                     "nearer_refused", "nearer_other_accepted", "face_wrong", "face_refused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.limits += other.limits
        for margin, (refused, accepted) in other.by_margin.items():
            mine = self.by_margin.setdefault(margin, [0, 0])
            mine[0] += refused
            mine[1] += accepted


def judge_pairs(t: A.Trial, limit: float, config: Config, part: int = 1,
                margins: tuple[float, ...] = (0.0,)) -> Counts:
    """One split's trial: its flagged pairs, each member's probes of ``part`` under face_and_pin at the
    1:1 ``limit``, with the look-alike rule at each of ``margins``, and, for comparison, under the face
    alone (1:N)."""
    gallery = A._gallery(t, config.match)
    pairs = gallery.lookalikes()  # (label, label, distance): labels index t.names
    counts = Counts(pairs=len(pairs), limits=[limit], by_margin={m: [0, 0] for m in margins})
    if not pairs:
        return counts
    face = np.array([e is not None for e in t.encoding])
    one_to_n = A.decisions(t, (config.match,), gallery.calibration)[0]
    pins = {label: label for pair in pairs for label in pair[:2]}  # distinct PINs: each their own
    for first, second, _ in pairs:
        for me, other in ((first, second), (second, first)):
            for i in np.flatnonzero((t.truth == me) & (t.part == part)):
                counts.probes += 1
                if not face[i]:  # no face found: refused whatever the mode
                    counts.genuine_refused += 1
                    counts.nearer_refused += 1
                    counts.face_refused += 1
                    for m in margins:
                        counts.by_margin[m][0] += 1
                    continue
                probe = np.asarray(t.encoding[i], np.float32)
                claims = dict(gallery.claims(probe, limit, count=len(gallery.residents)))
                # own PIN: checked against the face's claims; it names the claim whose PIN it is
                named = [rid for rid in claims if pins.get(rid) == pins[me]]
                if me not in named:
                    counts.genuine_refused += 1
                # the look-alike rule: also wanting the face nearer the named one than the other of the
                # pair by the margin, as lotcontrol.policy.nearer_lookalike judges it on the claims
                near = dict(gallery.claims(probe, np.inf, count=len(gallery.residents)))
                counts.nearer_refused += int(me not in named or near[me] >= near[other])
                counts.nearer_other_accepted += int(other in claims and near[other] < near[me])
                for m in margins:
                    counts.by_margin[m][0] += int(me not in named or nearer_lookalike(me, claims, {other}, m))
                    counts.by_margin[m][1] += int(other in claims
                                                  and not nearer_lookalike(other, claims, {me}, m))
                if any(rid != me for rid in named):
                    counts.taken_for_other += 1
                # the other's PIN (known to this one): admitted as the other if within their 1:1 limit
                if other in claims:
                    counts.other_pin_accepted += 1
                counts.face_wrong += int(one_to_n[i] >= 0 and one_to_n[i] != me)
                counts.face_refused += int(one_to_n[i] < 0)
    return counts


def choose_margin(tuning: Counts, margins: tuple[float, ...], default: float) -> float:
    """THE RULE for the look-alike margin, from one split's tuning part only: the margins at which the
    fewest of the pairs' members with the other's PIN are let in as the other (the target: none), of
    those the ones refusing the fewest of their own PINs, of those the largest (the most guarded that
    costs nothing measured: a tuning part where no relative got in at any margin says nothing for a
    small margin). A tuning part without a probe of a flagged pair says nothing: ``default``
    (access.lookalike_margin's)."""
    if not tuning.probes:
        return default
    best = min(tuning.by_margin[m][1] for m in margins)
    fewest = min(tuning.by_margin[m][0] for m in margins if tuning.by_margin[m][1] == best)
    return max(m for m in margins if tuning.by_margin[m] == [fewest, best])


def run(shared: Path, splits: int, seed: int, rate: float, space: str = "dlib",
        config: Config | None = None, margins: tuple[float, ...] = (0.0,)) -> dict:
    config = config or Config()
    margins = tuple(sorted({*margins, config.access.lookalike_margin}))
    people = A.load_people(shared)
    lot_paths = [x for p in people.values() if p.group != "faces" for x in p.photos]
    encoded = A.encode_photos(lot_paths, "faces-lot")
    seen = A.in_space(encoded, space)
    lot = {k: p for k, p in people.items() if p.group in ("residents", "strangers")}
    base = shipped(space)
    total, tuned = Counts(), Counts()
    per_split = []
    for split in range(splits):
        tuning, _ = A.split_by_person(lot, (seed, split, 0), A._strata(lot))
        calibration = one_to_one([lot[k] for k in tuning], seen, base)
        limit = calibration.one_to_one_limit(rate, config.match.population)
        trial = A.full_lot_trials(lot, seen, config, seed, split, several=False)[0]
        counts = judge_pairs(trial, limit, config, margins=margins)
        on_tuning = judge_pairs(trial, limit, config, part=0, margins=margins)
        chosen = choose_margin(on_tuning, margins, config.access.lookalike_margin)
        refused, accepted = counts.by_margin[chosen]
        per_split.append({"split": split, "limit": limit, "chosen_margin": chosen,
                          "tuning_probes": on_tuning.probes, "test_at_chosen": {
                              "probes": counts.probes, "own_pin_refused": refused, "other_pin_accepted": accepted},
                          **{k: v for k, v in vars(counts).items() if k not in ("limits", "by_margin")}})
        total.add(counts)
        tuned.add(on_tuning)
    n = total.probes
    chosen_rows = [row["test_at_chosen"] for row in per_split]
    accepted = sum(r["other_pin_accepted"] for r in chosen_rows)
    refused = sum(r["own_pin_refused"] for r in chosen_rows)
    worst = max((r["other_pin_accepted"] / r["probes"] for r in chosen_rows if r["probes"]), default=0.0)
    worst_refused = max((r["own_pin_refused"] / r["probes"] for r in chosen_rows if r["probes"]), default=0.0)
    return {"space": space, "splits": splits, "seed": seed, "max_impostor_rate": rate,
            "limit_mean": round(float(np.mean(total.limits)), 3),
            "limit_range": [min(total.limits), max(total.limits)],
            "total": {k: v for k, v in vars(total).items() if k not in ("limits", "by_margin")},
            "by_margin": [{"margin": m, "own_pin_refused": r, "other_pin_accepted": a}
                          for m, (r, a) in sorted(total.by_margin.items())],
            "tuning_by_margin": [{"margin": m, "own_pin_refused": r, "other_pin_accepted": a}
                                 for m, (r, a) in sorted(tuned.by_margin.items())],
            "tuning_probes": tuned.probes,
            "chosen": {"margins": sorted(row["chosen_margin"] for row in per_split),
                       "splits_with_tuning_probes": sum(1 for row in per_split if row["tuning_probes"]),
                       "other_pin_accepted": accepted, "own_pin_refused": refused, "probes": n,
                       "other_pin_accepted_worst_split": round(worst, 4),
                       "other_pin_accepted_bound": round(A.clopper_pearson_upper(accepted, n), 4),
                       "own_pin_refused_worst_split": round(worst_refused, 4),
                       "own_pin_refused_bound": round(A.clopper_pearson_upper(refused, n), 4)},
            "per_split": per_split}


def report(result: dict) -> str:
    t = result["total"]
    n = max(t["probes"], 1)
    c = result["chosen"]
    margins = c["margins"]
    common = max(set(margins), key=margins.count) if margins else None
    return "\n".join([
        f"face_and_pin on the look-alike pairs of protocol (b) ({result['space']} space), {result['splits']} splits "
        f"(seed {result['seed']}), 1:1 limit for {100 * result['max_impostor_rate']:g} % impostors, measured on "
        f"each split's tuning people: mean {result['limit_mean']:.2f} (range {result['limit_range'][0]:.2f}-"
        f"{result['limit_range'][1]:.2f})",
        f"  flagged pairs (summed over splits): {t['pairs']}; test probes of their members: {t['probes']} "
        f"(tuning probes: {result['tuning_probes']})",
        f"  own PIN:       taken for the other {t['taken_for_other']}/{t['probes']}; "
        f"genuine refused {t['genuine_refused']}/{t['probes']} ({100 * t['genuine_refused'] / n:.1f} %)",
        f"  other's PIN:   accepted as the other {t['other_pin_accepted']}/{t['probes']} "
        f"({100 * t['other_pin_accepted'] / n:.1f} %): a relative who knows the other's PIN",
        "  look-alike rule on the test parts at each margin (for context; tuning parts in brackets):",
        *(f"    margin {row['margin']:g}: own PIN refused {row['own_pin_refused']}/{t['probes']} "
          f"({100 * row['own_pin_refused'] / n:.1f} %), other's PIN accepted {row['other_pin_accepted']}/{t['probes']} "
          f"({100 * row['other_pin_accepted'] / n:.1f} %)   [{tune['own_pin_refused']} / {tune['other_pin_accepted']} "
          f"of {result['tuning_probes']}]"
          for row, tune in zip(result["by_margin"], result["tuning_by_margin"])),
        f"  margin chosen on each split's tuning part (choose_margin): {', '.join(f'{m:g}' for m in margins)} "
        f"(most often {common:g}; {c['splits_with_tuning_probes']} of {result['splits']} tuning parts had a probe of a "
        f"flagged pair, the others keep the default)" if margins else "  no margin chosen",
        f"  test parts at the chosen margins: other's PIN accepted {c['other_pin_accepted']}/{c['probes']} "
        f"(worst split {100 * c['other_pin_accepted_worst_split']:.1f} %, 95 % bound "
        f"{100 * c['other_pin_accepted_bound']:.1f} %); own PIN refused {c['own_pin_refused']}/{c['probes']} "
        f"(worst split {100 * c['own_pin_refused_worst_split']:.1f} %, 95 % bound {100 * c['own_pin_refused_bound']:.1f} %)",
        f"  face alone (1:N, shipped rule): taken for someone else {t['face_wrong']}/{t['probes']}; "
        f"refused {t['face_refused']}/{t['probes']} ({100 * t['face_refused'] / n:.1f} %)",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=A.shared_folder())
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-impostor-rate", type=float, default=Config().access.max_impostor_rate)
    parser.add_argument("--encoder", choices=("dlib", "faceres", "fused"), default=Config().vision.encoder,
                        help="the space faces are compared in (default: vision.encoder's, %(default)s)")
    parser.add_argument("--margins", default="0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09,0.1,0.15,0.2",
                        help="the look-alike rule's margins to measure, comma-separated (default %(default)s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.shared / "faces-lot").is_dir():
        parser.error(f"needs {args.shared / 'faces-lot'}")
    try:
        margins = tuple(sorted({float(m) for m in args.margins.split(",")}))
    except ValueError:
        parser.error(f"--margins: numbers separated by commas, not {args.margins!r}")
    result = run(args.shared, args.splits, args.seed, args.max_impostor_rate, args.encoder, margins=margins)
    print(json.dumps(result, indent=1) if args.json else report(result))


if __name__ == "__main__":
    main()
