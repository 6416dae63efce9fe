"""faceres beside dlib: the 5-point template, distances and time per face (a sanity check, not the
cross-validated evaluation).

    python -m lotcontrol.bench.faceres --template     # DLIB5_TEMPLATE, measured on ../shared/faces
    python -m lotcontrol.bench.faceres [--people 60]  # same/different-person distances, ms per face

``--template``: for every frontal face of ../shared/faces, the similarity transform that puts its
ArcFace points (from dlib's 68 landmarks: eye centres, nose tip 30, mouth corners 48 and 54) on the
112-px ArcFace template is applied to its dlib 5 points; the template is their mean, printed with how
far the faces scatter about it.

The default run takes the first two photos of ``--people`` residents of ../shared/faces-lot (a fixed
seed), encodes each face with dlib and with faceres from the same 5 points, and prints, per encoder,
the same-person and different-person distances (dlib: Euclidean; faceres: cosine distance, 1 - cos)
and how well they separate (the share of same-person pairs accepted at the distance that accepts 1 %
and 0.1 % of different-person pairs, and the ROC area), then the CPU time per face of each encoder on one thread.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from lotcontrol.sim.rig import shared_folder
from lotcontrol.vision import faceres, faces


def _frontal_faces(folder: Path):
    for path in sorted(folder.glob("*/*.jpg")):
        photo = faces.read_photo(path)
        boxes = faces.detect(photo.rgb, faces.upsample_for(photo.rgb))
        if len(boxes) != 1:
            continue
        yield path, photo.rgb, boxes[0]


def measure_template(folder: Path, max_turn: float = 0.15) -> tuple[np.ndarray, np.ndarray, int]:
    """dlib's 5 points on the ArcFace 112-px frame: (mean, standard deviation, faces used)."""
    fr = faces._face_recognition()
    placed = []
    for _, rgb, box in _frontal_faces(folder):
        if faces.turn(rgb, box) > max_turn:
            continue
        (marks,) = fr.face_landmarks(rgb, [box.as_list()], model="large")
        left, right = np.mean(marks["left_eye"], axis=0), np.mean(marks["right_eye"], axis=0)
        arcface = np.array([left, right, marks["nose_bridge"][-1], marks["top_lip"][0], marks["top_lip"][6]],
                           dtype=np.float64)
        matrix = faceres.similarity(arcface, faceres.ARCFACE_TEMPLATE)
        (points,) = faces.five_points(rgb, [box])
        placed.append(points @ matrix[:, :2].T + matrix[:, 2])
    placed = np.array(placed)
    return placed.mean(axis=0), placed.std(axis=0), len(placed)


def _roc_auc(same: np.ndarray, different: np.ndarray) -> float:
    """The chance that a random same-person pair is nearer than a random different-person pair."""
    ranks = np.argsort(np.argsort(np.concatenate([same, different]))) + 1
    return float(1 - (ranks[: len(same)].sum() - len(same) * (len(same) + 1) / 2) / (len(same) * len(different)))


def measure(shared: Path, people: int, seed: int) -> None:
    residents = sorted(p for p in (shared / "faces-lot" / "residents").iterdir() if p.is_dir())
    chosen = random.Random(seed).sample(residents, people)
    encoder = faceres.encoder()
    names, dlib_vectors, faceres_vectors, dlib_cpu, faceres_cpu = [], [], [], [], []
    for person in chosen:
        for path in sorted(person.glob("*.jpg"))[:2]:
            photo = faces.read_photo(path)
            boxes = faces.detect(photo.rgb, faces.upsample_for(photo.rgb))
            if not boxes:
                continue
            box = boxes[:1]
            start = time.process_time()
            (vector,) = faces.encode(photo.rgb, box)  # 5 points and the encoding, as the gate does
            dlib_cpu.append(time.process_time() - start)
            start = time.process_time()
            points = faces.five_points(photo.rgb, box)
            embedding = encoder.embed(photo.rgb, points)[0]
            faceres_cpu.append(time.process_time() - start)
            names.append(person.name)
            dlib_vectors.append(vector)
            faceres_vectors.append(embedding)
    names = np.array(names)
    same = names[:, None] == names[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    dlib_vectors, faceres_vectors = np.array(dlib_vectors), np.array(faceres_vectors)
    tables = {
        "dlib (Euclidean)": np.linalg.norm(dlib_vectors[:, None] - dlib_vectors[None, :], axis=2),
        "faceres (1 - cos)": 1 - faceres_vectors @ faceres_vectors.T,
    }
    print(f"{len(names)} faces of {len(set(names))} faces-lot residents (seed {seed}), "
          f"{int((same & upper).sum())} same-person and {int((~same & upper).sum())} different-person pairs")
    print("| encoder | same: median | same: 90th pct | different: 1st pct | different: median | "
          "TAR at FAR 1e-2 | TAR at FAR 1e-3 | ROC area |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, distances in tables.items():
        s, d = distances[same & upper], distances[~same & upper]
        tar = [np.mean(s < np.quantile(d, far)) * 100 for far in (1e-2, 1e-3)]
        print(f"| {label} | {np.median(s):.3f} | {np.percentile(s, 90):.3f} | {np.percentile(d, 1):.3f} | "
              f"{np.median(d):.3f} | {tar[0]:.1f} % | {tar[1]:.1f} % | {_roc_auc(s, d):.4f} |")
    print(f"CPU per face, one thread: dlib 5 points + encoding {np.median(dlib_cpu) * 1000:.1f} ms (median), "
          f"faceres 5 points + align + onnxruntime {np.median(faceres_cpu) * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", action="store_true", help="measure DLIB5_TEMPLATE on ../shared/faces")
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    shared = shared_folder()
    if args.template:
        mean, spread, count = measure_template(shared / "faces")
        print(f"DLIB5_TEMPLATE from {count} frontal faces of {shared / 'faces'} (mean; standard deviation):")
        print("[" + ", ".join(f"[{x:.4f}, {y:.4f}]" for x, y in mean) + "]")
        print("spread:", ", ".join(f"({x:.2f}, {y:.2f})" for x, y in spread))
        return 0
    measure(shared, args.people, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
