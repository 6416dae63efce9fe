"""What the pipeline computed on frames, remembered: face detections and embeddings by the pixels (and
region, box and encoder) they were computed from, so that a later run on the same frames takes them
instead of computing them again. The pipeline runs unchanged; its decisions are the same.
bench.passages keeps them on disk (``--frame-cache``); bench.liveness's drop patterns and the liveness
tests run one clip several times and share its detections in memory.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np

from lotcontrol.vision import encoders
from lotcontrol.vision import pipeline as pipeline_module
from lotcontrol.vision.faces import detect

_EMBED_ALL = encoders.embed_all


def _digest(*parts) -> bytes:
    """A key for the pixels and arguments of one call (arrays by their bytes, shape and type)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(repr((part.shape, part.dtype.str)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.digest()


class FrameMemo:
    """The detections and embeddings the pipeline computes on frames, remembered by what
    they were computed from (the pixels, the region, the box, the encoder and its settings), so that a
    later run on the same frames takes them instead of computing them again. The pipeline runs
    unchanged: ``installed()`` puts these two functions in the place of the ones it calls. ``new``
    holds what this process computed (a worker hands it back to be kept); ``hits`` counts the calls
    answered from memory, per passage (``run_walk`` resets it)."""

    def __init__(self, found: dict | None = None):
        self.found: dict[bytes, object] = dict(found or {})
        self.new: dict[bytes, object] = {}
        self.hits = 0
        self._detect, self._embed_all = detect, _EMBED_ALL  # the real ones, whatever is installed now

    def _keep(self, key: bytes, value) -> None:
        self.found[key] = self.new[key] = value

    def detect(self, image: np.ndarray, upsample: int = 1):
        key = _digest("detect", image, upsample)
        if key in self.found:
            self.hits += 1
            return list(self.found[key])
        boxes = self._detect(image, upsample)
        self._keep(key, tuple(boxes))
        return boxes

    def embed_all(self, rgb: np.ndarray, boxes: list, landmarks=None, current=None, *, only=None, dlib=None):
        if current is not None or dlib is not None or only is None:
            return self._embed_all(rgb, boxes, landmarks, current, only=only, dlib=dlib)  # not the pipeline's call
        frame = _digest(rgb, [(b.top, b.right, b.bottom, b.left) for b in boxes], landmarks is None or [np.asarray(p) for p in landmarks],
                        repr(encoders.settings()))
        keys = {name: _digest("embed", frame, name) for name in only}
        missing = tuple(name for name in only if keys[name] not in self.found)
        found = self._embed_all(rgb, boxes, landmarks, only=missing) if missing else {}
        for name in missing:
            self._keep(keys[name], found[name])
        self.hits += len(only) - len(missing)
        return {name: found[name] if name in found else self.found[keys[name]].copy() for name in only}

    @contextlib.contextmanager
    def installed(self, embeddings: bool = True):
        """A context in which the pipeline detects, and embeds (``embeddings``), through this memory
        (without: through whatever encoders.embed_all is, a stand-in say); what was there before is
        put back after it."""
        before = pipeline_module.detect, encoders.embed_all
        pipeline_module.detect = self.detect
        if embeddings:
            encoders.embed_all = self.embed_all
        try:
            yield self
        finally:
            pipeline_module.detect, encoders.embed_all = before
