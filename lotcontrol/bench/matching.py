"""Time to match one face against 1k, 10k and 100k templates (the gallery in memory).

    .venv/bin/python -m lotcontrol.bench.matching
    .venv/bin/python -m lotcontrol.bench.matching --spaces

``--spaces`` measures each face space (vision.encoder: dlib, faceres, fused), with and without a
projection of faceres (PCA to 128 or 256 dimensions; a random orthonormal one here: the figures are
speed and memory, the accuracy cost is bench.accuracy's), held as float32 or float16: one match
against 100,000 templates (target ≤ 5 ms) and the gallery's memory for 1,400 residents × 10
templates (target ≤ 32 MB: the matrix and its row norms, as ``Gallery`` holds them).

Templates are random vectors of the real templates' scale, 2 per resident; the figure is the median
of 200 queries after warm-up, beside the naive ``numpy.linalg.norm(matrix - query)`` it replaces.
Loading a gallery also computes each resident's crowding, which grows with the square of the
templates: that time is printed for 1k and 10k (100k would take minutes; a lot has ~3k).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time

import numpy as np

from lotcontrol.config import MatchConfig
from lotcontrol.vision import encoders
from lotcontrol.vision.matcher import Gallery


def median_ms(function, repeat: int = 200) -> float:
    for _ in range(5):
        function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def run() -> list[dict[str, float]]:
    rows = []
    rng = np.random.default_rng(0)
    for size in (1_000, 10_000, 100_000):
        matrix = (rng.normal(size=(size, 128)) * 0.09).astype(np.float32)
        load_s = None
        if size <= 10_000:
            start = time.perf_counter()
            Gallery(matrix, np.arange(size) // 2)
            load_s = time.perf_counter() - start
        gallery = Gallery(matrix, np.arange(size) // 2, MatchConfig(crowding_neighbours=0, lookalike_distance=0.0, max_stranger_rate=None))
        query = matrix[size // 3] + 0.01
        rows.append({
            "templates": size,
            "load_s": load_s,
            "gallery_ms": median_ms(lambda: gallery.nearest(query)),
            "naive_ms": median_ms(lambda: np.linalg.norm(matrix - query, axis=1), repeat=50),
        })
    return rows


#: (space, faceres projection dims or None) measured by ``--spaces``
SPACES = [("dlib", None), ("faceres", None), ("faceres", 256), ("faceres", 128),
          ("fused", None), ("fused", 256), ("fused", 128)]
MATCH_TEMPLATES = 100_000
MEMORY_TEMPLATES = 1_400 * 10


def space_settings(projection: int | None, rng: np.random.Generator) -> encoders.Settings:
    """encoders.json's settings with a random orthonormal (1024, dims) projection, or none."""
    matrix = None if projection is None else np.linalg.qr(rng.normal(size=(1024, projection)))[0].astype(np.float32)
    return dataclasses.replace(encoders.settings(), projection=matrix)


def random_faces(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random embeddings of each encoder, at the real ones' scale (dlib's about 0.09 per number,
    faceres's of length 1)."""
    faceres = rng.normal(size=(count, 1024)).astype(np.float32)
    faceres /= np.linalg.norm(faceres, axis=1, keepdims=True)
    return {"dlib": (rng.normal(size=(count, 128)) * 0.09).astype(np.float32), "faceres": faceres}


def run_spaces() -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    plain = MatchConfig(crowding_neighbours=0, lookalike_distance=0.0, max_stranger_rate=None)
    for space, projection in SPACES:
        current = space_settings(projection, rng)
        vectors = encoders.space_vectors(space, random_faces(MATCH_TEMPLATES, rng), current)
        query = vectors[MATCH_TEMPLATES // 3] + 0.001
        for dtype in (np.float32, np.float16):
            gallery = Gallery(vectors, np.arange(MATCH_TEMPLATES) // 10, plain, dtype=dtype)
            match_ms = median_ms(lambda: gallery.nearest(query), repeat=50)
            found = gallery.nearest(query)[0]
            del gallery
            small = Gallery(vectors[:MEMORY_TEMPLATES], np.arange(MEMORY_TEMPLATES) // 10, plain, dtype=dtype)
            rows.append({"space": space, "projection": projection, "dims": vectors.shape[1],
                         "dtype": np.dtype(dtype).name, "match_ms": match_ms, "found": found == MATCH_TEMPLATES // 3 // 10,
                         "memory_mb": (small.matrix.nbytes + small.norms.nbytes) / 2**20})
        del vectors
    return rows


def main() -> None:
    if "--spaces" in sys.argv[1:]:
        print(f"{'space':>8}  {'projection':>10}  {'dims':>5}  {'held as':>7}  {'match 100k':>10}  {'1,400 x 10':>10}")
        for row in run_spaces():
            projection = f"PCA {row['projection']}" if row["projection"] else "none"
            print(f"{row['space']:>8}  {projection:>10}  {row['dims']:>5}  {row['dtype']:>7}  "
                  f"{row['match_ms']:>7.2f} ms  {row['memory_mb']:>7.1f} MB" + ("" if row["found"] else "  (WRONG NEAREST)"))
        return
    print(f"{'templates':>10}  {'match one':>10}  {'naive numpy':>11}  {'load gallery':>12}")
    for row in run():
        load = f"{row['load_s']:.2f} s" if row["load_s"] is not None else "not run"
        print(f"{row['templates']:>10,}  {row['gallery_ms']:>7.2f} ms  {row['naive_ms']:>8.2f} ms  {load:>12}")


if __name__ == "__main__":
    main()
