"""Measure the stranger-rate calibration that ships with lotcontrol (vision/calibration.json).

    python -m lotcontrol.bench.calibrate [--shared DIR] [--seeds N] [--encoder dlib|faceres|fused] [--one-to-one] [--write]

``--encoder`` measures the space the matcher compares in (vision/encoders.py, with the shipped
encoders.json) and writes its own file: dlib's is calibration.json, the others' calibration-<space>.json.

For each gallery size, random galleries of faces-lot people (one template each: their first photo)
are probed with the first photo of everyone else; for each accept distance the strangers accepted
under the matcher's whole rule (the shipped crowding and margin) are counted over the seeds; the rate is
(k + 1/2) / (n + 1). (A 95 % upper bound was tried: on half the people, as the cross-validation
measures it, its noise floor alone exceeded 0.5 % and every limit fell to the smallest distance.) See vision/calibration.py for how it is used.
``--one-to-one`` measures only the 1:1 table (the share of pairs of photos of two different people
within each distance: face_and_card, face_and_pin) into the shipped file, which keeps the rest.
The cross-validation (accuracy --cv) calls ``measure`` on the tuning people only, so the limits it
tests were not derived from the people it tests them on.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from ..config import Config, MatchConfig
from ..vision import calibration
from ..vision.calibration import Calibration
from . import accuracy as A

DISTANCES = tuple(np.round(np.arange(0.30, 0.6001, 0.01), 2))
SIZES = (10, 25, 75, 280, 700, 1400)
#: the matcher settings a calibration holds for (measured with them; other values make it an estimate)
RULE = ("crowding_factor", "crowding_neighbours", "margin", "lookalike_distance", "lookalike_factor")


def _pairs(encodings: np.ndarray, who: np.ndarray, mask: np.ndarray, same: bool) -> np.ndarray:
    """Distances of every pair (i < j) of the masked photos: same person, or different people."""
    index = np.flatnonzero(mask)
    out = []
    norms = np.einsum("ij,ij->i", encodings, encodings)
    for start in range(0, len(index), 512):
        rows = index[start:start + 512]
        squared = norms[rows, None] + norms[None, index] - 2.0 * encodings[rows] @ encodings[index].T
        keep = (index[None, :] > rows[:, None]) & ((who[rows][:, None] == who[index][None, :]) == same)
        out.append(np.sqrt(np.maximum(squared[keep], 0.0)))
    return np.sort(np.concatenate(out)) if out else np.zeros(0)


def _share_within(sorted_distances: np.ndarray, distances) -> np.ndarray:
    return np.searchsorted(sorted_distances, np.asarray(distances), side="right") / max(len(sorted_distances), 1)


def measure(people: list[A.Person], seen: dict, config: Config, *, seeds: int = 8, sizes=SIZES,
            distances=DISTANCES) -> Calibration:
    """The calibration, measured on ``people`` only."""
    pool = [p for p in people if p.photos and A.enrollable(seen.get(p.photos[0]), config) is not None]
    rule = config.match
    grid = tuple(MatchConfig(accept_distance=float(d), crowding_factor=rule.crowding_factor,
                             crowding_neighbours=rule.crowding_neighbours, margin=rule.margin,
                             max_stranger_rate=None) for d in distances)
    sizes = tuple(s for s in sizes if s < len(pool) - 50) or (max(1, len(pool) // 2),)
    rates = np.zeros((len(sizes), len(distances)))
    for row, size in enumerate(sizes):
        accepted, probes = np.zeros(len(distances)), 0
        for seed in range(seeds):
            order = np.random.default_rng((seed, size)).permutation(len(pool))
            gallery = {pool[i].key: [A.enrollable(seen[pool[i].photos[0]], config)] for i in order[:size]}
            trial = A.trial(gallery, [(pool[i], pool[i].photos[0], 1) for i in order[size:]], seen)
            strangers = trial.truth < 0
            accepted += (A.decisions(trial, grid)[:, strangers] >= 0).sum(axis=1)
            probes += int(strangers.sum())
        rates[row] = (accepted + 0.5) / (probes + 1)  # Jeffreys point estimate: never 0 of n = 0
    impostor_all, impostor_east, factor, refused, impostor = _pair_tables(people, seen, distances)
    source = (f"{len(pool)} people of faces-lot, galleries of {', '.join(map(str, sizes))} x {seeds} seeds; "
              f"{len(impostor_all):,} stranger pairs, {len(impostor_east):,} East Asian ones")
    return Calibration(np.asarray(distances, float), np.asarray(sizes, float), rates, factor, refused,
                       {k: getattr(rule, k) for k in RULE}, source, impostor)


def _pair_tables(people: list[A.Person], seen: dict, distances=DISTANCES):
    """From every pair of photos (their largest face): the stranger pairs (all, East Asian), the East
    Asian factor, the genuine share refused and the 1:1 impostor share within each distance."""
    encodings, who, east = [], [], []
    for person in people:
        for photo in person.photos:
            found = seen.get(photo)
            if found and found.faces:
                encodings.append(found.faces[0][2])
                who.append(person.key)
                east.append(person.east_asian)
    encodings, who, east = np.asarray(encodings, np.float32), np.asarray(who), np.asarray(east, bool)
    everyone = np.ones(len(who), bool)
    impostor_all = _pairs(encodings, who, everyone, same=False)
    impostor_east = _pairs(encodings, who, east, same=False)
    # add-one smoothing: where no East Asian pair is that near, the factor is 1/pairs-based, not 0 or inf
    within_all = (np.searchsorted(impostor_all, distances, side="right") + 1) / (len(impostor_all) + 1)
    within_east = (np.searchsorted(impostor_east, distances, side="right") + 1) / (len(impostor_east) + 1)
    factor = np.maximum(within_east / within_all, 1.0)
    refused = {"general": 1.0 - _share_within(_pairs(encodings, who, everyone, same=True), distances),
               "east_asian": 1.0 - _share_within(_pairs(encodings, who, east, same=True), distances)}
    # 1:1: the Jeffreys estimate of the share of different-person pairs within each distance
    impostor = {"general": (np.searchsorted(impostor_all, distances, side="right") + 0.5) / (len(impostor_all) + 1),
                "east_asian": (np.searchsorted(impostor_east, distances, side="right") + 0.5) / (len(impostor_east) + 1)}
    return impostor_all, impostor_east, factor, refused, impostor


def one_to_one(people: list[A.Person], seen: dict, base: Calibration) -> Calibration:
    """``base`` with its 1:1 table measured on ``people``: everything else is kept as it is."""
    impostor_all, impostor_east, _, _, impostor = _pair_tables(people, seen, base.distances)
    source = (f"{base.source}; 1:1 on {len(impostor_all):,} pairs of different people "
              f"({len(impostor_east):,} East Asian)")
    return dataclasses.replace(base, impostor=impostor, source=source)


def lot_people(shared: Path, space: str = "dlib", cached_only: bool = False) -> tuple[list[A.Person], dict]:
    people = A.load_people(shared)
    lot = [p for p in people.values() if p.group in ("residents", "strangers")]
    encoded = A.encode_photos([x for p in lot for x in p.photos], "faces-lot", cached_only=cached_only)
    return A.complete(lot, encoded), A.in_space(encoded, space)


def space_file(space: str) -> Path:
    """Where a space's calibration ships: calibration.json is dlib's."""
    return calibration.FILE if space == "dlib" else calibration.FILE.with_name(f"calibration-{space}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=None, help="the shared folder (default ../shared)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--encoder", choices=("dlib", "faceres", "fused"), default="dlib",
                        help="the encoder space to measure (default dlib)")
    parser.add_argument("--cached-only", action="store_true",
                        help="encode nothing: measure on the faces-lot people whose photos the cache already holds")
    parser.add_argument("--one-to-one", action="store_true",
                        help="measure only the 1:1 table (face_and_card, face_and_pin) into the shipped calibration")
    parser.add_argument("--write", action="store_true", help=f"write {calibration.FILE} (or calibration-<space>.json)")
    args = parser.parse_args()
    shared = args.shared or A.shared_folder()
    if shared is None or not (shared / "faces-lot").is_dir():
        raise SystemExit("needs ../shared/faces-lot (or --shared DIR)")
    people, seen = lot_people(shared, args.encoder, args.cached_only)
    if args.one_to_one:
        base = calibration.shipped(args.encoder)
        measured = one_to_one(people, seen, dataclasses.replace(base, source=base.source.split("; 1:1 on ")[0]))
        if args.cached_only:
            measured = dataclasses.replace(measured, source=measured.source + " of only the people encoded so far "
                                           "(--cached-only)")
        for population, shares in measured.impostor.items():
            print(f"1:1 {population}: " + "  ".join(f"{d:.2f} {100 * r:.3f} %" for d, r in zip(measured.distances, shares)
                                                   if round(d * 100) % 5 == 0))
        if args.write:
            import json
            path = space_file(args.encoder)
            path.write_text(json.dumps(measured.to_dict(), indent=1) + "\n", encoding="utf-8")
            print(f"wrote {path}")
        return
    measured = measure(people, seen, Config(), seeds=args.seeds)
    if args.encoder != "dlib":
        from ..vision import encoders
        from .encoder_fit import describe

        measured = dataclasses.replace(measured, source=f"{args.encoder} space ({describe(encoders.settings())}): "
                                                        + measured.source)
    if args.cached_only:
        measured = dataclasses.replace(measured, source="only the people encoded so far (--cached-only): " + measured.source)
    print(measured.source)
    for size, row in zip(measured.sizes, measured.rates):
        print(f"{int(size):>5} templates: " + "  ".join(
            f"{d:.2f} {100 * r:.2f} %" for d, r in zip(measured.distances, row) if round(d * 100) % 5 == 0))
    print("East Asian factor: " + "  ".join(f"{d:.2f} x{f:.0f}" for d, f in zip(measured.distances, measured.east_asian_factor)
                                            if round(d * 100) % 5 == 0))
    if args.write:
        import json
        path = space_file(args.encoder)
        path.write_text(json.dumps(measured.to_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
