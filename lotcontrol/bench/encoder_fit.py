"""Fit the numbers of vision/encoders.json on tuning people only: faceres's scale into dlib units, its
mirror averaging, its projection and the fused space's dlib weight (issue 18 item 3).

    python -m lotcontrol.bench.encoder_fit [--shared DIR] [--seed 0]            # print the fit
    python -m lotcontrol.bench.encoder_fit --write --default dlib|faceres|fused  # and write encoders.json
    python -m lotcontrol.bench.encoder_fit --cpu                                # CPU per face, per encoder

The shipped fit uses the tuning half of split 0 of ../shared/faces-lot (``accuracy.split_by_person``
with seed (seed, 0, 0), as ``accuracy --cv`` splits it); ``accuracy --cv --encoder`` fits again on each
split's tuning people, so every figure it reports is on people no number was fitted on. ``fit`` is
given the tuning people alone: it cannot see a test person.

THE FIT (``fit``), each step on the tuning people's photos (largest face of each):

1. ``scale``: the different-person pair distance at a 1:1 false-accept rate of ``FAR`` (1e-3), dlib's
   divided by faceres's: a faceres distance times ``scale`` is in dlib units there.
2. ``mirror``: on only if the mirror-averaged embedding (a second inference per face) refuses at least
   ``MIRROR_GAIN`` fewer genuine probes at ``STRANGER_RATE`` (``refused``) than the plain one AND its
   CPU per face (5 points, alignment, two inferences; measured in the encoding pass on the tuning
   photos) stays within issue 18's target, ``MAX_CPU_VS_DLIB`` of one dlib encoding: a gain in accuracy
   does not silently spend the CPU target.
3. ``projection``: PCA of the tuning faces' faceres vectors to each of ``DIMS``; the smallest whose
   refusals are at most ``PROJECTION_COST`` above the full 1,024-d vector's, else none. The scale is
   fitted again on the projected vectors.
4. ``dlib_weight``: of ``WEIGHTS``, the one of the fused space refusing the fewest (ties: more dlib).
5. ``same_person``: for faceres and fused, the factor of ``enroll.camera_same_person`` (its default,
   ``SAME_PERSON``) that makes the space take the share of different-person pairs for one person that
   dlib takes at it (the dlib units of step 1 hold at FAR only; faceres's different-person distances
   are packed closer, so 0.6 in its space let two different people enroll as one).

``refused`` is a 1:N measure: the tuning residents (people with two photos or more) are halved; one
half enrolls from its first photo and probes with the rest, every photo of the other half and every
tuning stranger probes as a stranger; then the halves swap. The accept distance is the one accepting
``STRANGER_RATE`` of the stranger probes (plain nearest neighbour), and a genuine probe is refused
when its nearest template is further, or someone else's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..vision import encoders
from . import accuracy as A
from .calibrate import _pairs

FAR = 1e-3
STRANGER_RATE = 0.005
MIRROR_GAIN = 0.02
#: issue 18's target: an encoder's CPU per face at most this share of one dlib encoding
MAX_CPU_VS_DLIB = 0.25
DIMS = (128, 256)
PROJECTION_COST = 0.01
WEIGHTS = tuple(round(w, 1) for w in np.arange(0.1, 0.91, 0.1))
PROJECTION_FILE = "faceres_projection.npy"
#: enroll.camera_same_person's default, the limit step 5 carries into the other spaces
SAME_PERSON = 0.6


@dataclass
class TuningFaces:
    """The largest face of every photo of the tuning people, with every encoder's embedding."""

    who: np.ndarray  # person key per face
    resident: np.ndarray  # bool: the person has 2+ photos with a face (can enroll and probe)
    first: np.ndarray  # bool: the person's first photo with a face
    embeddings: dict[str, np.ndarray]  # accuracy.EMBEDDINGS -> (n, dim) float32


def tuning_faces(people: list[A.Person], encoded: dict[str, A.Encoded | None]) -> TuningFaces:
    who, first, vectors = [], [], {name: [] for name in A.EMBEDDINGS}
    for person in sorted(people, key=lambda p: p.key):
        found = [e.faces[0][2] for e in (encoded.get(x) for x in person.photos) if e is not None and e.faces]
        for i, embedding in enumerate(found):
            who.append(person.key)
            first.append(i == 0)
            for name in A.EMBEDDINGS:
                vectors[name].append(embedding[name])
    who = np.asarray(who)
    keys, count = np.unique(who, return_counts=True)
    several = dict(zip(keys, count >= 2))
    resident = np.array([several[w] and not w.startswith("strangers/") for w in who], dtype=bool)
    return TuningFaces(who, resident, np.asarray(first, bool),
                       {k: np.asarray(v, np.float32).reshape(len(who), -1) for k, v in vectors.items()})


def distance_at_far(vectors: np.ndarray, who: np.ndarray, far: float = FAR) -> float:
    """The different-person pair distance accepting `far` of the pairs (1:1)."""
    different = _pairs(np.asarray(vectors, np.float32), who, np.ones(len(who), bool), same=False)
    return float(np.quantile(different, far))


def scale_to_dlib(dlib: np.ndarray | float, other: np.ndarray, who: np.ndarray, far: float = FAR) -> float:
    """The factor that makes `other`'s distance at `far` equal to dlib's (`dlib`: its vectors, or
    that distance already measured)."""
    reference = dlib if np.isscalar(dlib) else distance_at_far(dlib, who, far)
    return float(reference) / distance_at_far(other, who, far)


def refused(vectors: np.ndarray, faces: TuningFaces, rate: float = STRANGER_RATE) -> float:
    """The share of genuine probes not admitted as themselves at the distance accepting `rate` of the
    stranger probes (1:N; see the module's docstring)."""
    residents = np.unique(faces.who[faces.resident])
    half = {key: i % 2 for i, key in enumerate(residents)}
    side = np.array([half.get(w, -1) for w in faces.who])
    genuine_out, genuine_n, stranger_d = 0, 0, []
    outcomes = []
    for enrolled in (0, 1):
        gallery = np.flatnonzero((side == enrolled) & faces.first)
        genuine = np.flatnonzero((side == enrolled) & ~faces.first)
        strangers = np.flatnonzero(side != enrolled)
        g = vectors[gallery]
        norms = np.einsum("ij,ij->i", g, g)

        def nearest(rows):
            q = vectors[rows]
            squared = norms[None, :] - 2.0 * q @ g.T + np.einsum("ij,ij->i", q, q)[:, None]
            best = np.argmin(squared, axis=1)
            return np.sqrt(np.maximum(squared[np.arange(len(rows)), best], 0.0)), faces.who[gallery][best]

        d, who = nearest(genuine)
        outcomes.append((d, who == faces.who[genuine]))
        stranger_d.append(nearest(strangers)[0])
    stranger_d = np.sort(np.concatenate(stranger_d))
    k = int(rate * len(stranger_d))  # accept below the (k+1)-th nearest stranger: at most k accepted
    limit = stranger_d[k] if k < len(stranger_d) else np.inf
    for d, right in outcomes:
        genuine_out += int((~((d < limit) & right)).sum())
        genuine_n += len(d)
    return genuine_out / max(genuine_n, 1)


def pca(vectors: np.ndarray, dims: int | tuple[int, ...]) -> np.ndarray | dict[int, np.ndarray]:
    """The (1024, dims) float32 projection on the first `dims` principal axes of `vectors` (a tuple of
    dims: {dims: projection}, from one decomposition)."""
    centred = (vectors - vectors.mean(axis=0)).astype(np.float64)
    variance, axes = np.linalg.eigh(centred.T @ centred)  # ascending
    axes = axes[:, np.argsort(variance)[::-1]]
    out = {d: np.ascontiguousarray(axes[:, :d], dtype=np.float32) for d in np.atleast_1d(dims).tolist()}
    return out if isinstance(dims, tuple) else out[dims]


@dataclass
class Fit:
    settings: encoders.Settings
    table: dict  # what each choice was weighed on (refused shares, scales)


def fit(people: list[A.Person], encoded: dict[str, A.Encoded | None], base: encoders.Settings | None = None) -> Fit:
    """THE FIT, on `people` alone (the tuning people of a split)."""
    base = base or encoders.settings()
    faces = tuning_faces(people, encoded)
    who = faces.who
    dlib = distance_at_far(faces.embeddings["dlib"], who)  # dlib's distance at FAR, the unit
    table: dict = {"faces": int(len(who)), "people": int(len(np.unique(who))), "dlib_refused": refused(faces.embeddings["dlib"], faces)}
    plain = {}
    for mirror in (False, True):
        unit = faces.embeddings["faceres+mirror" if mirror else "faceres"]
        plain[mirror] = {"scale": scale_to_dlib(dlib, unit, who), "refused": refused(unit, faces)}
    cpu = cpu_per_face({x: encoded.get(x) for p in people for x in p.photos})
    table["cpu_vs_dlib"] = {k: cpu[k] / cpu["dlib"] for k in ("faceres", "faceres+mirror")} if cpu else {}
    affordable = bool(cpu) and cpu["faceres+mirror"] <= MAX_CPU_VS_DLIB * cpu["dlib"]
    mirror = plain[True]["refused"] <= plain[False]["refused"] - MIRROR_GAIN and affordable
    table["mirror"] = {str(k).lower(): v for k, v in plain.items()}
    unit = faces.embeddings["faceres+mirror" if mirror else "faceres"]
    projections = {None: (None, plain[mirror]["scale"], plain[mirror]["refused"])}
    axes = pca(unit, DIMS)
    for dims in DIMS:
        matrix = axes[dims]
        projected = encoders.faceres_space(unit, dataclasses.replace(base, projection=matrix, faceres_scale=1.0))
        projections[dims] = (matrix, scale_to_dlib(dlib, projected, who), refused(projected, faces))
    table["projection"] = {str(k): {"scale": v[1], "refused": v[2]} for k, v in projections.items()}
    cheap = [d for d in DIMS if projections[d][2] <= projections[None][2] + PROJECTION_COST]
    dims = min(cheap) if cheap else None
    matrix, scale, _ = projections[dims]
    chosen = dataclasses.replace(base, faceres_scale=scale, mirror=mirror, projection=matrix,
                                 projection_file=None if matrix is None else PROJECTION_FILE)
    space = {"dlib": faces.embeddings["dlib"], "faceres": unit}
    weights = {}
    for w in WEIGHTS:
        weights[w] = refused(encoders.space_vectors("fused", space, dataclasses.replace(chosen, dlib_weight=w)), faces)
    table["dlib_weight"] = {str(w): r for w, r in weights.items()}
    table["faceres_refused"] = projections[dims][2]
    weight = min(WEIGHTS, key=lambda w: (round(weights[w], 9), -w))
    chosen = dataclasses.replace(chosen, dlib_weight=weight)
    table["same_person"] = same_person_factors(space, who, chosen)
    factors = {name: v["factor"] for name, v in table["same_person"].items() if name != "dlib"}
    return Fit(dataclasses.replace(chosen, same_person=factors), table)


def same_person_factors(embeddings: dict[str, np.ndarray], who: np.ndarray, settings: encoders.Settings) -> dict:
    """Step 5: per space, the share of different-person pairs within SAME_PERSON (dlib) and the factor
    that gives the space that share, with its limit."""
    different = _pairs(np.asarray(embeddings["dlib"], np.float32), who, np.ones(len(who), bool), same=False)
    share = float(np.mean(different <= SAME_PERSON))
    out = {"dlib": {"different_within": share, "factor": 1.0, "limit": SAME_PERSON}}
    for name in ("faceres", "fused"):
        limit = distance_at_far(encoders.space_vectors(name, embeddings, settings), who, share)
        out[name] = {"different_within_before": float(np.mean(
            _pairs(encoders.space_vectors(name, embeddings, settings), who, np.ones(len(who), bool), same=False)
            <= SAME_PERSON)), "factor": round(limit / SAME_PERSON, 3), "limit": limit}
    return out


def held_out(people: list[A.Person], encoded: dict, settings: encoders.Settings) -> dict[str, float]:
    """`refused` in each space with the fitted `settings`, on other people (a split's test half): a
    quick held-out comparison, not the protocols of `accuracy --cv`."""
    faces = tuning_faces(people, encoded)
    unit = faces.embeddings["faceres+mirror" if settings.mirror else "faceres"]
    space = {"dlib": faces.embeddings["dlib"], "faceres": unit}
    return {name: refused(encoders.space_vectors(name, space, settings), faces) for name in encoders.SPACES} | {
        "people": len(np.unique(faces.who)), "faces": len(faces.who)}


def describe(settings: encoders.Settings) -> str:
    dims = "none" if settings.projection is None else f"PCA to {settings.projection.shape[1]}"
    return (f"faceres scale {settings.faceres_scale:.3f}, mirror {'on' if settings.mirror else 'off'}, "
            f"projection {dims}, fused dlib_weight {settings.dlib_weight:.1f}")


def shipped_split(shared: Path, seed: int = 0, cached_only: bool = False) -> tuple[list, list, dict]:
    """The tuning and test halves of split 0 of faces-lot (as `accuracy --cv` splits it) and every photo's
    embeddings (`cached_only`: the people whose photos the cache holds; the split is the same)."""
    people = A.load_people(shared)
    lot = {k: p for k, p in people.items() if p.group in ("residents", "strangers")}
    tuning, test = A.split_by_person(lot, (seed, 0, 0), A._strata(lot))
    encoded = A.encode_photos([x for p in lot.values() for x in p.photos], "faces-lot", cached_only=cached_only)
    return A.complete([lot[k] for k in tuning], encoded), A.complete([lot[k] for k in test], encoded), encoded


def write(settings: encoders.Settings, default: str, source: str, path: Path = encoders.FILE) -> None:
    data = {"source": source,
            "faceres": {"scale": round(settings.faceres_scale, 4), "mirror": settings.mirror,
                        "projection": settings.projection_file, "version": settings.faceres_version},
            "fused": {"dlib_weight": settings.dlib_weight},
            "same_person": {k: round(v, 3) for k, v in settings.same_person.items()}, "default": default}
    if settings.projection is not None:
        np.save(path.with_name(PROJECTION_FILE), settings.projection.astype(np.float32), allow_pickle=False)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def cpu_per_face(encoded: dict[str, A.Encoded | None]) -> dict[str, float]:
    """Median process CPU seconds per face of each encoder, over the photos with exactly one face
    (empty if there is none)."""
    one = [e.cpu for e in encoded.values() if e is not None and len(e.faces) == 1 and e.cpu]
    if not one:
        return {}
    step = {k: np.array([c[k] for c in one]) for k in A.STEPS}
    return {"photos": len(one), "detect": float(np.median(step["detect"])),
            "dlib": float(np.median(step["dlib"])),
            "faceres": float(np.median(step["five_points"] + step["faceres"])),
            "faceres+mirror": float(np.median(step["five_points"] + step["faceres+mirror"])),
            "fused": float(np.median(step["dlib"] + step["five_points"] + step["faceres"])),
            "fused+mirror": float(np.median(step["dlib"] + step["five_points"] + step["faceres+mirror"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=None, help="the shared folder (default ../shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help=f"write {encoders.FILE}")
    parser.add_argument("--default", choices=encoders.SPACES, help="with --write: the default space")
    parser.add_argument("--cpu", action="store_true", help="print the CPU per face of each encoder and stop")
    parser.add_argument("--cached-only", action="store_true",
                        help="encode nothing: fit on the tuning people whose photos the cache already holds")
    args = parser.parse_args()
    shared = args.shared or A.shared_folder()
    if shared is None or not (shared / "faces-lot").is_dir():
        raise SystemExit("needs ../shared/faces-lot (or --shared DIR)")
    if args.write and not args.default:
        parser.error("--write needs --default: the space chosen from the --cv report against the targets")
    people, test, encoded = shipped_split(shared, args.seed, args.cached_only)
    if args.cpu:
        cpu = cpu_per_face(encoded)
        print(f"CPU per face, one thread, median of {cpu['photos']} one-face photos of faces-lot: "
              + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in cpu.items() if k != "photos")
              + ", i.e. " + ", ".join(f"{k} {v / cpu['dlib']:.2f}" for k, v in cpu.items()
                                     if k not in ("photos", "detect")) + " dlib encodings")
        return
    result = fit(people, encoded)
    print(json.dumps(result.table, indent=1))
    print(describe(result.settings))
    check = held_out(test, encoded, result.settings)
    print(f"held out (split 0's test half, {check['people']} people, {check['faces']} faces): refused at "
          f"{100 * STRANGER_RATE:g} % strangers: " + ", ".join(f"{k} {100 * check[k]:.1f} %" for k in encoders.SPACES))
    if args.write:
        t = result.table
        half = "the part of the tuning half encoded so far" if args.cached_only else "the tuning half"
        source = (f"fitted by lotcontrol.bench.encoder_fit on {half} of split 0 (seed {args.seed}) of "
                  f"../shared/faces-lot only: {t['people']} people, {t['faces']} faces (docs/benchmarks.md)")
        write(result.settings, args.default, source)
        print(f"wrote {encoders.FILE}")


if __name__ == "__main__":
    main()
