"""Who a face is: the gallery of templates in memory, and the accept/refuse rule for one face.

The gallery is one float32 matrix, rows grouped by resident, so a query is one matrix-vector product
and one ``minimum.reduceat`` (100,000 templates in about 2 ms here; see benchmarks). A face matches
a resident when the nearest resident (the minimum over that resident's templates) is within
``accept_distance`` and the second-nearest resident is at least ``margin`` further away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .store import ENCODING_DIM, Store


@dataclass(frozen=True)
class Match:
    """The verdict on one face. ``resident_id`` is set only when the face is accepted."""

    resident_id: int | None
    nearest_id: int | None
    distance: float
    second_distance: float
    reason: str | None  # why it was refused: "no_residents", "too_far" or "ambiguous"

    @property
    def accepted(self) -> bool:
        return self.resident_id is not None


def decide(nearest_id: int | None, distance: float, second_distance: float, *,
           accept_distance: float, margin: float) -> Match:
    """Accept the nearest resident only when near enough and clearly nearer than anyone else."""
    if nearest_id is None:
        reason = "no_residents"
    elif distance > accept_distance:
        reason = "too_far"
    elif second_distance - distance < margin - 1e-9:  # float noise must not refuse an exact margin
        reason = "ambiguous"
    else:
        return Match(nearest_id, nearest_id, distance, second_distance, None)
    return Match(None, nearest_id, distance, second_distance, reason)


class Gallery:
    """Every resident's templates, loaded once and reloaded when the store's templates change."""

    def __init__(self, matrix: np.ndarray, resident_ids: np.ndarray, version: int = -1):
        matrix = np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1, ENCODING_DIM)
        resident_ids = np.asarray(resident_ids, dtype=np.int64)
        order = np.argsort(resident_ids, kind="stable")
        self.matrix = matrix[order]
        ids = resident_ids[order]
        self.norms = np.einsum("ij,ij->i", self.matrix, self.matrix)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
        self.starts = starts
        self.residents = ids[starts]
        self.version = version

    @classmethod
    def from_store(cls, store: Store) -> "Gallery":
        version = store.gallery_version()
        matrix, ids = store.templates_matrix()
        return cls(matrix, ids, version)

    def refreshed(self, store: Store) -> "Gallery":
        """This gallery, or a new one if the store's templates changed since it was loaded."""
        return self if store.gallery_version() == self.version else Gallery.from_store(store)

    def __len__(self) -> int:
        return len(self.matrix)

    def nearest(self, encoding: np.ndarray, exclude: int | None = None) -> tuple[int | None, float, float]:
        """The nearest resident, their distance and the second-nearest resident's distance."""
        if len(self.residents) == 0:
            return None, math.inf, math.inf
        query = np.asarray(encoding, dtype=np.float32)
        squared = self.norms - 2.0 * (self.matrix @ query) + float(query @ query)
        per_resident = np.minimum.reduceat(squared, self.starts)
        if exclude is not None:
            per_resident[self.residents == exclude] = np.inf
        if len(per_resident) == 1:
            best, second = 0, None
        else:
            two = np.argpartition(per_resident, 1)[:2]
            best, second = (two[0], two[1]) if per_resident[two[0]] <= per_resident[two[1]] else (two[1], two[0])
        d1 = float(per_resident[best])
        if not math.isfinite(d1):
            return None, math.inf, math.inf
        d2 = math.inf if second is None else float(per_resident[second])
        return int(self.residents[best]), math.sqrt(max(d1, 0.0)), math.sqrt(max(d2, 0.0))

    def match(self, encoding: np.ndarray, *, accept_distance: float, margin: float) -> Match:
        nearest_id, distance, second = self.nearest(encoding)
        return decide(nearest_id, distance, second, accept_distance=accept_distance, margin=margin)
