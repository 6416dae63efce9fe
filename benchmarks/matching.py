"""Time to match one face against 1k, 10k and 100k templates (the gallery in memory).

    .venv/bin/python -m benchmarks.matching

Templates are random unit-scale vectors in groups of 2 per resident; the figure is the median of
200 queries after warm-up, beside the naive ``numpy.linalg.norm(matrix - query)`` it replaces.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from lotcontrol.matcher import Gallery


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
        gallery = Gallery(matrix, np.arange(size) // 2)
        query = matrix[size // 3] + 0.01
        rows.append({
            "templates": size,
            "gallery_ms": median_ms(lambda: gallery.nearest(query)),
            "naive_ms": median_ms(lambda: np.linalg.norm(matrix - query, axis=1), repeat=50),
        })
    return rows


def main() -> None:
    print(f"{'templates':>10}  {'lotcontrol':>11}  {'naive numpy':>11}")
    for row in run():
        print(f"{row['templates']:>10,}  {row['gallery_ms']:>8.2f} ms  {row['naive_ms']:>8.2f} ms")


if __name__ == "__main__":
    main()
