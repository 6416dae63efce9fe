"""Who a face is: the gallery of templates in memory, and the accept/refuse rule for one face.

The gallery is one float32 matrix, rows grouped by resident, so a query is one matrix-vector product
and one ``minimum.reduceat`` (100,000 templates in about 2 ms here; see benchmarks). A face matches
the nearest resident (the minimum over that resident's templates) when

- the distance is within that resident's limit: ``accept_distance``, tightened in crowded parts of
  face space to ``crowding_factor`` × the mean distance from the resident to their
  ``crowding_neighbours`` nearest other residents (a resident who looks like several others needs a
  closer match: measured at lot scale, this halves the strangers let in for the same refusals), and
- the second-nearest resident is at least ``margin`` further away.

Faces are compared in the configured space (``vision.encoder``, vision/encoders.py), every space in
dlib units. ``GateGallery`` is what the gate matches against: the gallery of the faces that have the
space's encoders, and, for faces on file with dlib alone (enrolled or received from the hub before
faceres), a second gallery in dlib's space with dlib's calibration. The stranger risk
``match.max_stranger_rate`` is split between the two in proportion to their templates; a face
accepted as two different residents by the two is refused as ambiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import MatchConfig
from ..store import Store
from . import encoders
from .calibration import Calibration, shipped as shipped_calibration

#: Rows of the template matrix per block when the crowding is computed (bounded memory).
_BLOCK = 1024


#: The most residents a face's 1:1 claims name (``Gallery.claims``): the nearest within the 1:1 limit.
CLAIMS = 3

#: How many first faces make the reference the others must stay near (``SamePerson``).
REFERENCE_FACES = 3


class SamePerson:
    """The rule that the faces enrolled as one resident are one person (``enroll.camera_same_person``):
    each face must be within ``limit`` of the mean of the reference, the first REFERENCE_FACES faces
    that kept to the rule. Camera capture (the frames in the order seen), photo enrollment (the
    resident's templates on file, then the photos in the order given) and ``residents check`` (each
    resident's templates in the order enrolled) all apply it through this class."""

    def __init__(self, limit: float, space: str = "dlib"):
        """``limit``: ``enroll.camera_same_person`` (dlib units); the faces are compared in ``space``,
        at the limit that takes as many different people for one there (``encoders.same_person_limit``)."""
        self.setting, self.space = limit, space
        self.limit = encoders.same_person_limit(space, limit)
        self._reference: list[np.ndarray] = []

    @property
    def described(self) -> str:
        """The limit as staff set it, and as compared in the space when that differs."""
        said = f"enroll.camera_same_person = {self.setting:g}"
        return said if self.limit == self.setting else f"{said} ({self.limit:.2f} in the {self.space} space)"

    def distance(self, encoding: np.ndarray) -> float | None:
        """``encoding``'s distance from the reference (None while there is none)."""
        if not self._reference:
            return None
        return float(np.linalg.norm(np.asarray(encoding, np.float64) - np.mean(self._reference, axis=0)))

    def add(self, encoding: np.ndarray) -> float | None:
        """``distance``, then a face within the limit joins the reference while it is short of
        REFERENCE_FACES."""
        distance = self.distance(encoding)
        if not self.breaks(distance) and len(self._reference) < REFERENCE_FACES:
            self._reference.append(np.asarray(encoding, np.float64))
        return distance

    def breaks(self, distance: float | None) -> bool:
        return distance is not None and distance > self.limit


@dataclass(frozen=True)
class Match:
    """The verdict on one face. ``resident_id`` is set only when the face is accepted."""

    resident_id: int | None
    nearest_id: int | None
    distance: float
    second_distance: float
    limit: float  # the nearest resident's accept limit
    reason: str | None  # why it was refused: "no_residents", "too_far" or "ambiguous"

    @property
    def accepted(self) -> bool:
        return self.resident_id is not None


def decide(nearest_id: int | None, distance: float, second_distance: float, *,
           limit: float, margin: float) -> Match:
    """Accept the nearest resident only when within their limit and clearly nearer than anyone else."""
    if nearest_id is None:
        reason = "no_residents"
    elif distance > limit:
        reason = "too_far"
    elif second_distance - distance < margin - 1e-9:  # float noise must not refuse an exact margin
        reason = "ambiguous"
    else:
        return Match(nearest_id, nearest_id, distance, second_distance, limit, None)
    return Match(None, nearest_id, distance, second_distance, limit, reason)


class Gallery:
    """Every resident's templates, loaded once and reloaded when the store's templates change."""

    def __init__(self, matrix: np.ndarray, resident_ids: np.ndarray, settings: MatchConfig | None = None,
                 version: int = -1, calibration: Calibration | None = None, *, risk_share: float = 1.0,
                 dtype: type = np.float32):
        """``matrix``: one row per template, in the space's dlib units (encoders.DLIB_DIM columns unless
        2-d); ``risk_share``: the share of ``match.max_stranger_rate`` this gallery may take;
        ``dtype``: how the matrix is held (float16 halves the memory; distances are computed in float32)."""
        self.settings = settings or MatchConfig()
        matrix = np.asarray(matrix, dtype=np.float32)
        matrix = np.ascontiguousarray(matrix.reshape(-1, matrix.shape[1] if matrix.ndim == 2 else encoders.DLIB_DIM))
        resident_ids = np.asarray(resident_ids, dtype=np.int64)
        order = np.argsort(resident_ids, kind="stable")
        self.matrix = matrix[order].astype(dtype)
        ids = resident_ids[order]
        self.norms = np.einsum("ij,ij->i", self.matrix, self.matrix, dtype=np.float32)
        self.risk_share = risk_share
        self.starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
        self.residents = ids[self.starts]
        self.version = version
        settings = self.settings
        self.calibration = calibration or shipped_calibration()
        self.accept_limit = settings.accept_distance
        if settings.max_stranger_rate is not None and len(self.matrix):
            self.accept_limit = min(self.accept_limit, self.calibration.limit(
                settings.max_stranger_rate * risk_share, len(self.matrix), settings.population))
        crowding, self.nearest_other = self._crowding()
        self.limits = np.minimum(self.accept_limit, settings.crowding_factor * crowding)
        # a look-alike pair: a probe must be nearer one of them than lookalike_factor x their distance
        lookalike = self.nearest_other <= settings.lookalike_distance
        self.limits[lookalike] = np.minimum(self.limits[lookalike],
                                            settings.lookalike_factor * self.nearest_other[lookalike])

    @classmethod
    def from_store(cls, store: Store, settings: MatchConfig | None = None) -> "Gallery":
        version = store.gallery_version()
        matrix, ids = store.templates_matrix()
        return cls(matrix, ids, settings, version)

    def refreshed(self, store: Store) -> "Gallery":
        """This gallery, or a new one if the store's templates changed since it was loaded."""
        return self if store.gallery_version() == self.version else Gallery.from_store(store, self.settings)

    def __len__(self) -> int:
        return len(self.matrix)

    def _crowding(self) -> tuple[np.ndarray, np.ndarray]:
        """Per resident: mean distance to their ``crowding_neighbours`` nearest other residents, and
        the distance to the nearest one (both inf with nobody else)."""
        count, k = len(self.residents), max(self.settings.crowding_neighbours, 1)
        crowding, nearest_other = np.full(count, np.inf), np.full(count, np.inf)
        self.nearest_other_index = np.full(count, -1, dtype=np.int64)
        if count < 2 or (self.settings.crowding_neighbours == 0 and self.settings.lookalike_distance == 0):
            return crowding, nearest_other  # neither is asked for: skip the O(templates^2) work
        k = min(k, count - 1)
        ends = np.r_[self.starts[1:], len(self.matrix)]
        first = 0
        while first < count:  # blocks of whole residents, about _BLOCK templates each
            last = int(np.searchsorted(self.starts, self.starts[first] + _BLOCK, side="left"))
            last = max(last, first + 1)
            rows = slice(self.starts[first], ends[last - 1])
            squared = np.matmul(self.matrix[rows], self.matrix.T, dtype=np.float32)  # in place from here
            squared *= -2.0
            squared += self.norms[None, :]
            per_template = np.minimum.reduceat(squared, self.starts, axis=1)
            per_template += self.norms[rows, None]
            per_resident = np.minimum.reduceat(per_template, self.starts[first:last] - self.starts[first], axis=0)
            per_resident[np.arange(last - first), np.arange(first, last)] = np.inf  # not oneself
            nearest = np.sqrt(np.maximum(np.partition(per_resident, k - 1, axis=1)[:, :k], 0.0))
            crowding[first:last] = nearest.mean(axis=1)
            nearest_other[first:last] = nearest.min(axis=1)
            self.nearest_other_index[first:last] = per_resident.argmin(axis=1)
            first = last
        if self.settings.crowding_neighbours == 0:
            crowding[:] = np.inf
        return crowding, nearest_other

    def lookalikes(self) -> list[tuple[int, int, float]]:
        """Pairs of residents whose nearest templates are within ``lookalike_distance``:
        (resident id, the other's id, distance), each pair once."""
        pairs = set()
        for index in np.flatnonzero(self.nearest_other <= self.settings.lookalike_distance):
            other = int(self.residents[self.nearest_other_index[index]])
            pairs.add((*sorted((int(self.residents[index]), other)), round(float(self.nearest_other[index]), 4)))
        return sorted(pairs)

    def magnets(self, min_hits: int = 2) -> list[tuple[int, int]]:
        """Residents with a template that many *other* residents' faces land on (within its owner's
        limit): the faces of strangers land on it too. (resident id, how many others), most first."""
        count = len(self.residents)
        if count < 2:
            return []
        owner = np.repeat(np.arange(count), np.diff(np.r_[self.starts, len(self.matrix)]))
        hits = np.zeros(len(self.matrix), np.int64)
        for first in range(0, len(self.matrix), _BLOCK):
            rows = slice(first, min(first + _BLOCK, len(self.matrix)))
            squared = self.norms[rows, None] - 2.0 * np.matmul(self.matrix[rows], self.matrix.T, dtype=np.float32) \
                + self.norms[None, :]
            per_resident = np.minimum.reduceat(squared, self.starts, axis=1)  # [template, other resident]
            per_resident[np.arange(rows.stop - rows.start), owner[rows]] = np.inf
            limit = self.limits[owner[rows]]
            hits[rows] = (np.sqrt(np.maximum(per_resident, 0.0)) <= limit[:, None]).sum(axis=1)
        worst = np.maximum.reduceat(hits, self.starts)
        found = [(int(self.residents[i]), int(worst[i])) for i in np.flatnonzero(worst >= min_hits)]
        return sorted(found, key=lambda item: -item[1])

    def summary(self) -> dict:
        """What a status report says of this gallery: its size, the limit the risk gave and the risk."""
        settings, cal = self.settings, self.calibration
        templates = len(self.matrix)
        expected = cal.stranger_rate(self.accept_limit, templates, settings.population)
        wanted = None if settings.max_stranger_rate is None else float(settings.max_stranger_rate * self.risk_share)
        return {"residents": len(self.residents), "templates": templates,
                "accept_limit": round(self.accept_limit, 3), "max_stranger_rate": wanted,
                "population": settings.population,
                "expected_stranger_rate": round(expected, 5),
                "risk_met": bool(wanted is None or expected <= wanted),
                # each resident at their own limit (crowding and look-alike limits included)
                "expected_refused": round(float(np.mean([cal.refused_at(float(limit), settings.population)
                                                         for limit in self.limits])) if len(self.limits) else 0.0, 3),
                "lookalikes": int((self.nearest_other <= settings.lookalike_distance).sum())}

    def templates_of(self, resident_id: int) -> np.ndarray:
        """One resident's templates, in the order they were enrolled (none: an empty matrix)."""
        index = np.flatnonzero(self.residents == resident_id)
        if not len(index):
            return self.matrix[:0]
        start = self.starts[index[0]]
        end = self.starts[index[0] + 1] if index[0] + 1 < len(self.starts) else len(self.matrix)
        return self.matrix[start:end]

    def not_one_person(self, limit: float, space: str = "dlib") -> list[tuple[int, float]]:
        """Residents whose own templates break the ``SamePerson`` rule at ``limit`` in ``space`` (the
        space of this gallery's vectors; two people enrolled as one?): (resident id, the largest
        distance from the reference), largest first."""
        found = []
        for resident_id in self.residents:
            rule = SamePerson(limit, space)
            worst = max((d for d in map(rule.add, self.templates_of(int(resident_id))) if rule.breaks(d)), default=None)
            if worst is not None:
                found.append((int(resident_id), round(worst, 4)))
        return sorted(found, key=lambda item: -item[1])

    def nearest(self, encoding: np.ndarray, exclude: int | None = None) -> tuple[int | None, float, float]:
        """The nearest resident, their distance and the second-nearest resident's distance."""
        index, d1, d2 = self._nearest(encoding, exclude)
        return (None if index is None else int(self.residents[index])), d1, d2

    def _nearest(self, encoding: np.ndarray, exclude: int | None) -> tuple[int | None, float, float]:
        if len(self.residents) == 0:
            return None, math.inf, math.inf
        query = np.asarray(encoding, dtype=np.float32)
        squared = self.norms - 2.0 * np.matmul(self.matrix, query.astype(self.matrix.dtype), dtype=np.float32) \
            + float(query @ query)
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
        return int(best), math.sqrt(max(d1, 0.0)), math.sqrt(max(d2, 0.0))

    def one_to_one_limit(self, max_impostor_rate: float) -> float | None:
        """The 1:1 accept limit (``access.max_impostor_rate``) from this gallery's calibration; None when
        the calibration has no 1:1 table."""
        try:
            return self.calibration.one_to_one_limit(max_impostor_rate, self.settings.population)
        except LookupError:
            return None

    def claims(self, encoding: np.ndarray, limit: float, count: int = CLAIMS) -> list[tuple[int, float]]:
        """1:1: the residents (at most ``count``, nearest first) whose nearest template is within
        ``limit`` of this face, with the distance. Neither the gallery's crowding and look-alike limits
        nor the margin apply: a card or PIN says who is claimed, the face need only be theirs."""
        if len(self.residents) == 0 or not np.isfinite(encoding).all():
            return []
        query = np.asarray(encoding, dtype=np.float32)
        squared = self.norms - 2.0 * np.matmul(self.matrix, query.astype(self.matrix.dtype), dtype=np.float32) \
            + float(query @ query)
        distances = np.sqrt(np.maximum(np.minimum.reduceat(squared, self.starts), 0.0))
        within = np.flatnonzero(distances <= limit)
        within = within[np.argsort(distances[within], kind="stable")][:count]
        return [(int(self.residents[i]), round(float(distances[i]), 4)) for i in within]

    def match(self, encoding: np.ndarray) -> Match:
        index, distance, second = self._nearest(encoding, None)
        if index is None:
            return decide(None, distance, second, limit=self.settings.accept_distance, margin=self.settings.margin)
        return decide(int(self.residents[index]), distance, second, limit=float(self.limits[index]),
                      margin=self.settings.margin)


class GateGallery:
    """What a face at the gate is matched against: the faces that have the configured space's
    encoders (``main``), and the faces on file with dlib alone (``dlib_only``: records from before
    faceres), in dlib's space with dlib's calibration. Each takes the share of the stranger risk its
    templates are of all templates. In the dlib space every face is in ``main``."""

    def __init__(self, space: str, main: Gallery, dlib_only: Gallery | None, version: int = -1):
        self.space, self.main, self.dlib_only, self.version = space, main, dlib_only, version
        self.settings = main.settings

    @classmethod
    def from_store(cls, store: Store, settings: MatchConfig | None = None, space: str = "dlib", *,
                   dtype: type = np.float32) -> "GateGallery":
        version = store.gallery_version()
        ids, found = store.face_embeddings()
        return cls.from_embeddings(ids, found, settings, space, version=version, dtype=dtype)

    @classmethod
    def from_embeddings(cls, ids: np.ndarray, found: dict[str, np.ndarray], settings: MatchConfig | None = None,
                        space: str = "dlib", *, version: int = -1, dtype: type = np.float32) -> "GateGallery":
        """From each encoder's (N, dim) embeddings (NaN rows: a face without it) of faces of ``ids``."""
        from .calibration import shipped

        vectors = encoders.space_vectors(space, found)
        inside = encoders.in_space(vectors)
        outside = ~inside & np.isfinite(found["dlib"]).all(axis=1) if space != "dlib" else np.zeros(len(ids), bool)
        total = int(inside.sum() + outside.sum())
        share = float(inside.sum() / total) if total else 1.0
        main = Gallery(vectors[inside], ids[inside], settings, version, shipped(space), risk_share=share, dtype=dtype)
        dlib_only = (Gallery(found["dlib"][outside], ids[outside], settings, version, shipped("dlib"),
                             risk_share=1.0 - share, dtype=dtype) if outside.any() else None)
        return cls(space, main, dlib_only, version)

    def refreshed(self, store: Store) -> "GateGallery":
        """This gallery, or a new one if the store's templates changed since it was loaded."""
        if store.gallery_version() == self.version:
            return self
        return GateGallery.from_store(store, self.settings, self.space, dtype=self.main.matrix.dtype.type)

    def __len__(self) -> int:
        return len(self.main) + (len(self.dlib_only) if self.dlib_only is not None else 0)

    def query(self, embeddings: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """One face's vectors for each gallery: in the space, and in dlib's (None without a dlib-only
        gallery). ``embeddings``: encoder name -> that face's embedding."""
        vector = encoders.face_vector(self.space, embeddings)
        vector = np.full(self.main.matrix.shape[1], np.nan, np.float32) if vector is None else vector
        dlib = np.asarray(embeddings["dlib"], np.float32) if self.dlib_only is not None else None
        return vector, dlib

    def match(self, embeddings: dict[str, np.ndarray]) -> Match:
        return self.match_query(self.query(embeddings))

    def match_query(self, query: tuple[np.ndarray, np.ndarray | None]) -> Match:
        """The verdict of both galleries: the one that accepts; refused as ambiguous when they accept
        two different residents; when neither accepts, the refusal of the one that has residents and
        came nearer its limit."""
        main = self.main.match(query[0]) if np.isfinite(query[0]).all() else \
            decide(None, math.inf, math.inf, limit=self.settings.accept_distance, margin=self.settings.margin)
        if self.dlib_only is None:
            return main
        other = self.dlib_only.match(query[1])
        if main.accepted and other.accepted and main.resident_id != other.resident_id:
            return Match(None, main.nearest_id, main.distance, other.distance, main.limit, "ambiguous")
        if main.accepted or other.accepted:
            return main if main.accepted else other
        if main.nearest_id is None:
            return other
        return main if main.distance / main.limit <= other.distance / other.limit else other

    def nearest(self, embeddings: dict[str, np.ndarray], exclude: int | None = None) -> tuple[int | None, float, float]:
        """The nearest resident over both galleries (both in dlib units), their distance and the
        second-nearest resident's distance."""
        first, second = self.query(embeddings)
        found = [self.main.nearest(first, exclude)] if np.isfinite(first).all() else []
        if self.dlib_only is not None:
            found.append(self.dlib_only.nearest(second, exclude))
        found = [f for f in found if f[0] is not None]
        if not found:
            return None, math.inf, math.inf
        found.sort(key=lambda f: f[1])
        best = found[0]
        others = [f[1] for f in found[1:] if f[0] != best[0]] + [f[2] for f in found]
        return best[0], best[1], min(others)

    def one_to_one_limits(self, max_impostor_rate: float) -> tuple[float | None, float | None]:
        """The 1:1 limit of each gallery (main, dlib-only), each from its own space's calibration."""
        return (self.main.one_to_one_limit(max_impostor_rate),
                None if self.dlib_only is None else self.dlib_only.one_to_one_limit(max_impostor_rate))

    def claims(self, query: tuple[np.ndarray, np.ndarray | None], limits: tuple[float | None, float | None],
               count: int = CLAIMS) -> list[tuple[int, float]]:
        """1:1 (``Gallery.claims``) over both galleries, each at its own limit: nearest first."""
        found = [] if limits[0] is None else self.main.claims(query[0], limits[0], count)
        if self.dlib_only is not None and limits[1] is not None and query[1] is not None:
            found += self.dlib_only.claims(query[1], limits[1], count)
        best: dict[int, float] = {}
        for resident_id, distance in found:
            best[resident_id] = min(distance, best.get(resident_id, distance))
        return sorted(best.items(), key=lambda item: item[1])[:count]

    def summary(self) -> dict:
        """The main gallery's summary with the space and, if any, the dlib-only gallery's."""
        summary = {**self.main.summary(), "space": self.space}
        if self.dlib_only is not None:
            summary["dlib_only"] = self.dlib_only.summary()
            summary["risk_met"] = summary["risk_met"] and summary["dlib_only"]["risk_met"]
        return summary
