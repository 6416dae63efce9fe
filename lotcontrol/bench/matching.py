"""Time to match one face against 1k, 10k and 100k templates (the gallery in memory).

    .venv/bin/python -m lotcontrol.bench.matching

Templates are random vectors of the real templates' scale, 2 per resident; the figure is the median
of 200 queries after warm-up, beside the naive ``numpy.linalg.norm(matrix - query)`` it replaces.
Loading a gallery also computes each resident's crowding, which grows with the square of the
templates: that time is printed for 1k and 10k (100k would take minutes; a lot has ~3k).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from lotcontrol.config import MatchConfig
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


def main() -> None:
    print(f"{'templates':>10}  {'match one':>10}  {'naive numpy':>11}  {'load gallery':>12}")
    for row in run():
        load = f"{row['load_s']:.2f} s" if row["load_s"] is not None else "not run"
        print(f"{row['templates']:>10,}  {row['gallery_ms']:>7.2f} ms  {row['naive_ms']:>8.2f} ms  {load:>12}")


if __name__ == "__main__":
    main()
