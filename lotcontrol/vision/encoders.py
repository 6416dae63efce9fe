"""The face encoders and the spaces the matcher compares in (issue 18).

An *encoder* makes the embedding stored for each face:

- ``dlib``: dlib's 128-d template (``faces.encode``), as it always was;
- ``faceres``: HSE's L2-normalised 1,024-d embedding (``faceres``), mirror-averaged
  (``normalize(embed(crop) + embed(flipped crop))``) when encoders.json says so.

A *space* is what the matcher compares, ``vision.encoder``: ``dlib``, ``faceres`` or ``fused``. Every
space is a plain vector compared by Euclidean distance, scaled into *dlib units* so that the distance
settings (match.accept_distance, enroll.duplicate_distance, ...) keep roughly their meaning:

- ``dlib``: the stored 128-d template;
- ``faceres``: ``scale * P(v)``, v the stored unit vector, P the optional projection (a (1024, dims)
  float32 .npy beside this module: PCA to ``dims``, then re-normalised to unit length) or the identity;
- ``fused``: ``concat(sqrt(w) * dlib, sqrt(1 - w) * faceres_space)``, w = ``dlib_weight``, so the
  squared distance is w·d_dlib² + (1−w)·d_faceres².

The numbers (scale, mirror, projection, weight, default space, the one-person factors) are
``encoders.json`` beside this module, written by the evaluation's fit; nothing in it is a photo or a
template.

The dlib units hold at one point only (equal 1:1 false-accept rate at ``encoder_fit.FAR``, 1e-3):
faceres's different-person distances are packed closer together, so at the one-person rule's limit
(``enroll.camera_same_person``, 0.6, where dlib takes about 0.5 % of different-person pairs for one
person) faceres took 2.5 times as many. ``same_person`` holds, per space, the factor that gives the
limit dlib's share of different-person pairs there (``same_person_limit``).

Importing this module loads no face model (dlib and onnxruntime load on the first ``embed_all``) nor
numpy (17 MB resident; each function that needs it imports it): the configuration reads the default
space here, and the web console, which reads the configuration, has no use for numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence

from ..errors import ModelFileError

if TYPE_CHECKING:  # numpy is imported where it is used: config reads encoders.json without it
    import numpy as np

FILE = Path(__file__).with_name("encoders.json")
SPACES = ("dlib", "faceres", "fused")
#: the encoders each space needs, in the order their parts are concatenated
SPACE_ENCODERS: dict[str, tuple[str, ...]] = {"dlib": ("dlib",), "faceres": ("faceres",), "fused": ("dlib", "faceres")}
DLIB_DIM = 128
FACERES_DIM = 1024
DLIB_VERSION = "dlib_face_recognition_resnet_model_v1"


class EncoderSettingsError(ModelFileError, ValueError):
    """encoders.json (or its projection) cannot be read or holds a value it cannot have."""


class Encoder(NamedTuple):
    dim: int
    version: str


@dataclass(frozen=True)
class Settings:
    """encoders.json, read and checked."""

    source: str
    faceres_scale: float
    mirror: bool
    projection: np.ndarray | None  # (1024, dims) float32, or None for the identity
    projection_file: str | None
    faceres_version: str
    dlib_weight: float
    default: str
    #: space -> the factor of ``enroll.camera_same_person`` in it (missing: 1, dlib's own limit)
    same_person: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def faceres_tag(self) -> str:
        """faceres's version as templates record it: the package version, ``+mirror`` when mirrored."""
        return self.faceres_version + ("+mirror" if self.mirror else "")


def load(path: Path = FILE, projection: bool = True) -> Settings:
    """encoders.json at ``path``, checked; EncoderSettingsError naming the file and the key at fault.
    ``projection=False``: without reading its projection matrix (``projection`` None, ``projection_file``
    still named), for what needs only the numbers (``numbers``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EncoderSettingsError(f"encoder settings {path} cannot be read: {exc}") from None

    def get(section: str | None, key: str, kind: type | tuple):
        where = data if section is None else data.get(section)
        if not isinstance(where, dict) or key not in where:
            raise EncoderSettingsError(f"encoder settings {path}: {section + '.' if section else ''}{key} is missing")
        value = where[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise EncoderSettingsError(f"encoder settings {path}: {section + '.' if section else ''}{key} has a wrong type ({value!r})")
        return value

    if not isinstance(data, dict):
        raise EncoderSettingsError(f"encoder settings {path}: expected a JSON object")
    scale = float(get("faceres", "scale", (int, float)))
    if not (math.isfinite(scale) and scale > 0):
        raise EncoderSettingsError(f"encoder settings {path}: faceres.scale must be a positive number, got {scale}")
    weight = float(get("fused", "dlib_weight", (int, float)))
    if not 0.0 <= weight <= 1.0:
        raise EncoderSettingsError(f"encoder settings {path}: fused.dlib_weight must be within 0..1, got {weight}")
    default = get(None, "default", str)
    if default not in SPACES:
        raise EncoderSettingsError(f"encoder settings {path}: default must be one of {', '.join(SPACES)}, got {default!r}")
    same_person = data.get("same_person", {})
    if not isinstance(same_person, dict) or not all(
            k in SPACES and isinstance(v, (int, float)) and not isinstance(v, bool) and 0.5 <= v <= 2.0
            for k, v in same_person.items()):
        raise EncoderSettingsError(
            f"encoder settings {path}: same_person must map spaces ({', '.join(SPACES)}) to factors within 0.5..2, "
            f"got {same_person!r}")
    projection_file = get("faceres", "projection", (str, type(None)))
    matrix = None if projection_file is None or not projection else _projection(path.parent / projection_file)
    return Settings(source=get(None, "source", str), faceres_scale=scale, mirror=get("faceres", "mirror", bool),
                    projection=matrix, projection_file=projection_file,
                    faceres_version=get("faceres", "version", str), dlib_weight=weight, default=default,
                    same_person={k: float(v) for k, v in same_person.items()})


def _projection(path: Path) -> np.ndarray:
    import numpy as np

    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EncoderSettingsError(f"faceres projection {path} cannot be read: {exc}") from None
    if matrix.ndim != 2 or matrix.shape[0] != FACERES_DIM or not 1 <= matrix.shape[1] <= FACERES_DIM \
            or not np.all(np.isfinite(matrix)):
        raise EncoderSettingsError(
            f"faceres projection {path} must be a finite ({FACERES_DIM}, dims) matrix, got shape {matrix.shape}")
    return np.ascontiguousarray(matrix, dtype=np.float32)


@lru_cache(maxsize=None)
def settings() -> Settings:
    """The shipped encoders.json, read once per process."""
    return load()


@lru_cache(maxsize=None)
def numbers() -> Settings:
    """The shipped encoders.json without its projection matrix: the default space and the encoders'
    versions, which the configuration and ``ENCODERS`` need, read without numpy."""
    return load(projection=False)


def encoders(current: Settings | None = None) -> dict[str, Encoder]:
    """Encoder name -> its dimension and the version string a template records."""
    current = current or numbers()
    return {"dlib": Encoder(DLIB_DIM, DLIB_VERSION), "faceres": Encoder(FACERES_DIM, current.faceres_tag)}


ENCODERS: dict[str, Encoder] = encoders()


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown encoder space {space!r}: one of {', '.join(SPACES)}")
    return space


def same_person_limit(space: str, limit: float, current: Settings | None = None) -> float:
    """``enroll.camera_same_person`` (``limit``, dlib units) as compared in ``space``: the distance at
    which the space takes as many different-person pairs for one person as dlib does at ``limit``."""
    current = current or settings()
    return limit * current.same_person.get(check_space(space), 1.0)


def faceres_space_dim(current: Settings | None = None) -> int:
    current = current or settings()
    return FACERES_DIM if current.projection is None else int(current.projection.shape[1])


def space_dim(space: str, current: Settings | None = None) -> int:
    """The length of a vector in ``space``."""
    check_space(space)
    return {"dlib": DLIB_DIM, "faceres": faceres_space_dim(current),
            "fused": DLIB_DIM + faceres_space_dim(current)}[space]


def _rows(values, n: int | None, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An encoder's embeddings as an (n, dim) float32 matrix and a mask of the rows present; ``values``
    is an (n, dim) array or a sequence of vectors and Nones."""
    import numpy as np

    if isinstance(values, np.ndarray) and values.dtype != object:
        matrix = np.asarray(values, dtype=np.float32).reshape(-1, dim) if values.size else np.zeros((0, dim), np.float32)
        present = np.isfinite(matrix).all(axis=1)
    else:
        rows = list(values)
        present = np.array([v is not None for v in rows], dtype=bool)
        matrix = np.zeros((len(rows), dim), dtype=np.float32)
        for i, vector in enumerate(rows):
            if vector is not None:
                vector = np.asarray(vector, dtype=np.float32).reshape(-1)
                if vector.shape != (dim,):
                    raise ValueError(f"a {name} embedding has {dim} numbers, got {vector.shape[0]}")
                matrix[i] = vector
        present &= np.isfinite(matrix).all(axis=1)
    if n is not None and len(matrix) != n:
        raise ValueError(f"{name} has {len(matrix)} embeddings, the others {n}")
    return matrix, present


def faceres_space(vectors: np.ndarray, current: Settings | None = None) -> np.ndarray:
    """Unit faceres embeddings (n, 1024) as faceres-space vectors: projected, re-normalised, scaled."""
    import numpy as np

    current = current or settings()
    vectors = np.asarray(vectors, dtype=np.float32)
    if current.projection is not None:
        vectors = vectors @ current.projection
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return (current.faceres_scale * vectors).astype(np.float32)


def space_vectors(space: str, embeddings: Mapping[str, np.ndarray | Sequence[np.ndarray | None]],
                  current: Settings | None = None) -> np.ndarray:
    """The faces' vectors in ``space``: (n, space_dim) float32, one row per face.

    ``embeddings`` maps an encoder name to its embeddings of the n faces, an (n, dim) array (a row of
    NaN: not encoded) or a sequence of vectors and Nones. A face that lacks an encoder the space needs
    (a None or NaN row, or the encoder missing from ``embeddings``) is not in the space: its row is NaN;
    ``in_space`` gives the mask."""
    import numpy as np

    current = current or settings()
    needed = SPACE_ENCODERS[check_space(space)]
    known = {name: encoders(current)[name].dim for name in needed}
    n = len(next(iter(embeddings.values()))) if embeddings else 0
    parts, mask = [], np.ones(n, dtype=bool)
    for name in needed:
        if name in embeddings:
            matrix, present = _rows(embeddings[name], n, known[name], name)
        else:
            matrix, present = np.zeros((n, known[name]), np.float32), np.zeros(n, dtype=bool)
        mask &= present
        part = faceres_space(matrix, current) if name == "faceres" else matrix
        if space == "fused":
            part = part * np.float32(math.sqrt(current.dlib_weight if name == "dlib" else 1.0 - current.dlib_weight))
        parts.append(part)
    vectors = np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((n, 0), np.float32)
    vectors[~mask] = np.nan
    return vectors


def face_vector(space: str, embeddings: Mapping[str, np.ndarray], current: Settings | None = None) -> np.ndarray | None:
    """One face's vector in ``space`` from its embeddings ({encoder: vector}); None when it lacks an
    encoder the space needs."""
    import numpy as np

    vector = space_vectors(space, {k: np.asarray(v, np.float32)[None] for k, v in embeddings.items()}, current)[0]
    return vector if np.isfinite(vector).all() else None


def in_space(vectors: np.ndarray) -> np.ndarray:
    """The mask of the rows of ``space_vectors`` that are in the space."""
    import numpy as np

    return np.isfinite(vectors).all(axis=1)


# --- computing embeddings (the vision worker and the CLI only) ---


def faceres_available() -> bool:
    """Whether the installed faceres model loads (checked against its sha256)."""
    try:
        faceres_encoder()
    except ModelFileError:
        return False
    return True


def faceres_encoder():
    """The installed faceres, loaded once (ModelFileError saying what is wrong and how to fix it)."""
    from . import faceres

    return faceres.encoder()


def require(space: str) -> None:
    """ModelFileError if ``space`` needs a model that is missing or damaged."""
    if "faceres" in SPACE_ENCODERS[check_space(space)]:
        faceres_encoder()


def embed_faceres(rgb: np.ndarray, landmarks: Sequence[np.ndarray], current: Settings | None = None) -> np.ndarray:
    """faceres's stored embeddings (n, 1024) of the faces whose dlib 5 points are ``landmarks``:
    mirror-averaged when encoders.json says so (the flipped crop is the mirror's alignment)."""
    import numpy as np

    from . import faceres

    current = current or settings()
    model = faceres_encoder()
    crops = [faceres.align(rgb, points) for points in landmarks]
    vectors = model.embed_aligned(crops)
    if current.mirror and len(crops):
        vectors = vectors + model.embed_aligned([crop[:, ::-1] for crop in crops])
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32)


def embed_all(rgb: np.ndarray, boxes: list, landmarks: Sequence[np.ndarray] | None = None,
              current: Settings | None = None, *, only: Sequence[str] | None = None,
              dlib: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every available encoder's embeddings of the faces in ``boxes``: {name: (n, dim) float32}.

    dlib always; faceres when its model loads (unavailable: dlib only). ``only``: just these encoders
    (the gate in the faceres space does not pay for dlib's encoding), and a ModelFileError if one of
    them cannot be loaded. ``landmarks`` are dlib's 5 points (``faces.five_points``) and ``dlib`` the
    (n, 128) dlib embeddings when the caller already has them."""
    import numpy as np

    from . import faces

    found = {}
    if only is None or "dlib" in only:
        dlib = faces.encode(rgb, boxes) if dlib is None else dlib
        found["dlib"] = np.asarray(dlib, dtype=np.float32).reshape(len(boxes), DLIB_DIM)
    wanted = faceres_available() if only is None else "faceres" in only
    if wanted:
        if not boxes:
            found["faceres"] = np.zeros((0, FACERES_DIM), dtype=np.float32)
        else:
            points = landmarks if landmarks is not None else faces.five_points(rgb, boxes)
            found["faceres"] = embed_faceres(rgb, points, current)
    return found
