"""Photos and frames in, face boxes and 128-d templates out (dlib through face_recognition).

Everything here holds the GIL for long stretches (one encoding: 120 ms on x86-64, about 1 s on a Pi),
so it runs only in the CLI, in ``enroll-folder``'s worker processes and in the vision worker; the
controller process never imports it. The model files are checked against ``models/face_models.toml``
before dlib loads them.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import tomllib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import ModelFileError, PhotoError, photo_refused, too_large_reason
from ..phrases import Phrase

MODELS_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "face_models.toml"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Photos are scaled down to this longest side before detection: bounded time and memory, and a
#: face that fills less than 1/25 of it is too small to enroll anyway.
WORK_SIDE = 1600
#: Faces are scaled to this size before the sharpness measure, so it does not depend on face size.
SHARPNESS_SIDE = 128


@dataclass(frozen=True)
class Box:
    """A face's place in an image, in pixels, face_recognition's (top, right, bottom, left) order."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        return self.right - self.left

    def scaled(self, factor: float) -> "Box":
        return Box(*(int(round(v * factor)) for v in (self.top, self.right, self.bottom, self.left)))

    def as_list(self) -> list[int]:
        return [self.top, self.right, self.bottom, self.left]


@dataclass(frozen=True)
class Face:
    """One face found in a photo: where, how large and sharp, and its template."""

    box: Box
    encoding: np.ndarray
    sharpness: float


@dataclass(frozen=True)
class Photo:
    """A photo read for face work: RGB pixels (EXIF rotation applied, scaled to at most WORK_SIDE)."""

    path: str
    sha256: str
    rgb: np.ndarray
    scale: float  # original pixels per working pixel


def verify_models(manifest: Path = MODELS_MANIFEST) -> dict[str, Path]:
    """Check every model file against its sha256; return the paths. Cached after the first call."""
    return _verified_models(manifest)


@lru_cache(maxsize=None)
def _verified_models(manifest: Path) -> dict[str, Path]:
    import face_recognition_models

    folder = Path(face_recognition_models.face_recognition_model_location()).parent
    paths = {}
    for key, entry in models_list(manifest, "files").items():
        path = folder / entry["file"]
        check_model_file(path, entry["sha256"], manifest, "reinstall face_recognition_models 0.3.0")
        paths[key] = path
    return paths


def models_list(manifest: Path, table: str) -> dict:
    """A table of models/face_models.toml (``files``: face_recognition_models's, ``converted``,
    ``npm``); ModelFileError if the list cannot be read."""
    try:
        return tomllib.loads(manifest.read_text(encoding="utf-8")).get(table, {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelFileError(f"model list {manifest} cannot be read: {exc}") from None


def check_model_file(path: Path, sha256: str, manifest: Path, fix: str) -> None:
    """ModelFileError naming ``path`` if it cannot be read or is not the file ``manifest`` pins."""
    try:
        digest = file_sha256(path)  # 100 MB files: read in chunks, at once they doubled the peak memory
    except OSError as exc:
        raise ModelFileError(f"face model {path} cannot be read: {exc.strerror}") from None
    if digest != sha256:
        raise ModelFileError(f"face model {path} has sha256 {digest}, expected {sha256} ({manifest}); {fix}")


def load_models() -> None:
    """Check and load the face models now rather than at the first face: in a process about to fork
    workers for face work, which then start with them. ModelFileError if one is missing or damaged."""
    _face_recognition()


@lru_cache(maxsize=None)
def _face_recognition():
    """face_recognition, imported (which loads its models) only after they are verified."""
    verify_models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation noise from face_recognition_models
        import face_recognition
    # face_recognition sets this at import, which makes PIL fill a truncated JPEG with grey instead
    # of saying it is damaged; a damaged enrollment photo must be refused, not enrolled.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return face_recognition


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256, read in chunks (OSError if it cannot be read)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


#: The image formats enrollment and ``identify`` take, as PIL names them (by content, not by suffix).
PHOTO_FORMATS = ("JPEG", "PNG")


def read_photo(path: str | os.PathLike, *, max_megapixels: float = 60.0, max_mb: float = 100.0) -> Photo:
    """Read a JPEG or PNG as RGB, honouring EXIF rotation; PhotoError says what is wrong with it.

    At most ``max_mb`` MB are read (``enroll.max_file_mb``), and only from a regular file; its size in
    pixels is checked against ``max_megapixels`` (``enroll.max_megapixels``) from the header, before
    any pixel is decoded."""
    name = str(path)
    data = read_limited(path, max_mb)
    try:
        with _our_pixel_limit():
            image = Image.open(io.BytesIO(data))  # only the header is read here
        if image.format not in PHOTO_FORMATS:
            raise photo_refused(name, Phrase("photo.format", format=image.format))
        pixels = image.width * image.height
        if pixels > max_megapixels * 1e6:
            raise photo_refused(name, Phrase("photo.megapixels", width=image.width, height=image.height,
                                             megapixels=f"{pixels / 1e6:.3g}", limit=f"{max_megapixels:g}"))
        original_width = image.width
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation: turned 90 degrees
            original_width = image.height
        if image.format == "JPEG":
            image.draft("RGB", (WORK_SIDE, WORK_SIDE))  # decode at 1/2, 1/4 or 1/8 scale: fast
        image.load()
        image = ImageOps.exif_transpose(image)
    except PhotoError:
        raise
    except UnidentifiedImageError:
        raise photo_refused(name, Phrase("photo.not_image")) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise photo_refused(name, Phrase("photo.damaged", error=exc)) from None
    rgb = _to_rgb(image)
    longest = max(rgb.shape[:2])
    if longest > WORK_SIDE:
        factor = WORK_SIDE / longest
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    scale = original_width / rgb.shape[1]
    return Photo(name, _sha256(data), np.ascontiguousarray(rgb), scale)


_PIXEL_LIMIT_LOCK = threading.Lock()


@contextmanager
def _our_pixel_limit():
    """PIL's own decompression-bomb limit (89 megapixels, checked by ``Image.open`` as it reads the
    header) off while a photo's header is read: ``enroll.max_megapixels``, checked in ``read_photo``
    right after the header and before decoding, is the one limit. PIL's limit is module-wide, so
    threads take turns for the header alone (milliseconds, never a decode), and it is back after."""
    with _PIXEL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def read_limited(path: str | os.PathLike, max_mb: float) -> bytes:
    """The bytes of a regular file of at most ``max_mb`` MB, or PhotoError naming the file: a device
    (/dev/zero), FIFO or socket is refused without opening it for reading, a larger file without
    reading it, and never more than the limit is read."""
    name, limit = str(path), int(max_mb * 1e6)
    try:
        info = os.stat(path)
        _check_file(name, info, limit)
        # O_NONBLOCK: were a FIFO swapped in after the stat, opening it must not wait for a writer
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            _check_file(name, os.fstat(file.fileno()), limit)
            data = file.read(limit + 1)
    except OSError as exc:
        raise photo_refused(name, Phrase("photo.unreadable", error=exc.strerror)) from None
    if len(data) > limit:  # it grew after the stat
        raise photo_refused(name, too_large_reason(None, max_mb))
    if not data:
        raise photo_refused(name, Phrase("photo.empty"))
    return data


def _check_file(name: str, info: os.stat_result, limit: int) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise photo_refused(name, Phrase("photo.folder"))
    if not stat.S_ISREG(info.st_mode):
        raise photo_refused(name, Phrase("photo.not_file"))
    if info.st_size > limit:
        raise photo_refused(name, too_large_reason(info.st_size, limit / 1e6))


def _to_rgb(image: Image.Image) -> np.ndarray:
    """8-bit RGB from any mode PIL reads: 16-bit, grayscale, palette, CMYK, with or without alpha."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array * (255.0 / top), 0, 255).astype(np.uint8)
        return np.stack([gray] * 3, axis=-1)
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.stack([gray] * 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))  # neutral grey behind transparency
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def sharpness(rgb: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the face, scaled to SHARPNESS_SIDE: blur gives a low number."""
    height, width = rgb.shape[:2]
    crop = rgb[max(box.top, 0):min(box.bottom, height), max(box.left, 0):min(box.right, width)]
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def detect(rgb: np.ndarray, upsample: int = 1) -> list[Box]:
    """Faces found by dlib's HOG detector, largest first."""
    boxes = [Box(*loc) for loc in _face_recognition().face_locations(rgb, upsample, model="hog")]
    return sorted(boxes, key=lambda b: -b.width)


def encode(rgb: np.ndarray, boxes: list[Box], num_jitters: int = 1) -> list[np.ndarray]:
    """The 128-d template of each face (5-point alignment), as float32."""
    if not boxes:
        return []
    fr = _face_recognition()
    encodings = fr.face_encodings(rgb, [b.as_list() for b in boxes], num_jitters=num_jitters, model="small")
    return [np.asarray(e, dtype=np.float32) for e in encodings]


def upsample_for(rgb: np.ndarray) -> int:
    """HOG finds faces of 80 px and up; one upsample (4x the work) finds 40 px faces in small photos."""
    return 1 if max(rgb.shape[:2]) <= 800 else 0


def faces_in_photo(photo: Photo) -> list[Face]:
    """Every face in a photo with its template, largest first; boxes in the photo's own pixels."""
    boxes = detect(photo.rgb, upsample_for(photo.rgb))
    return [
        Face(box.scaled(photo.scale), encoding, sharpness(photo.rgb, box))
        for box, encoding in zip(boxes, encode(photo.rgb, boxes))
    ]


def enrollment_face(photo: Photo, *, min_face_px: int, min_sharpness: float) -> Face:
    """The one face of an enrollment photo, or PhotoError saying why the photo cannot be used."""
    boxes = detect(photo.rgb, upsample_for(photo.rgb))
    if not boxes:
        raise photo_refused(photo.path, Phrase("photo.no_face"))
    large = [b for b in boxes if b.width * photo.scale >= min_face_px]
    if not large:
        raise photo_refused(photo.path, Phrase("photo.too_small", width=f"{boxes[0].width * photo.scale:.0f}",
                                               needed=min_face_px))
    if len(large) > 1:
        raise photo_refused(photo.path, Phrase("photo.faces", count=len(large)))
    box = large[0]
    sharp = sharpness(photo.rgb, box)
    if sharp < min_sharpness:
        raise photo_refused(photo.path, Phrase("photo.blurry", sharpness=f"{sharp:.0f}", needed=f"{min_sharpness:g}"))
    (encoding,) = encode(photo.rgb, [box])
    return Face(box.scaled(photo.scale), encoding, sharp)


def turn(rgb: np.ndarray, box: Box, points: np.ndarray | None = None) -> float:
    """How far a face is turned sideways: the nose tip's offset from the point between the eyes, as a
    fraction of the distance between the eyes (0 frontal, about 0.5 and more in profile)."""
    return abs(signed_turn(rgb, box, points))


def signed_turn(rgb: np.ndarray, box: Box, points: np.ndarray | None = None) -> float:
    """``turn`` with its side: positive when the nose points to the right of the image, which, for a
    person facing the camera, is a turn to their own left (negative: to their right; inf: no eyes
    found). Mirroring the image changes the sign. ``points``: the face's ``five_points`` when the
    caller has them already (faceres aligns with them: no second landmark call)."""
    if points is None:
        found = five_points(rgb, [box])
        if not found:
            return float("inf")
        points = found[0]
    right = np.mean(points[0:2], axis=0)
    left = np.mean(points[2:4], axis=0)
    nose = np.asarray(points[4], dtype=float)
    eyes = right - left
    span = float(np.hypot(*eyes))
    if span < 1.0:
        return float("inf")
    middle = (left + right) / 2.0
    across = eyes / span if eyes[0] >= 0 else -eyes / span  # along the eyes, towards the image's right
    # the nose's offset along the line between the eyes
    return float(np.dot(nose - middle, across)) / span


def five_points(rgb: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
    """dlib's 5-point landmarks of each face (the ones ``encode`` aligns with), as float (5, 2) x, y
    arrays in dlib's order: the image-right eye's outer and inner corner, the image-left eye's outer
    and inner corner, the base of the nose."""
    if not boxes:
        return []
    marks = _face_recognition().face_landmarks(rgb, [b.as_list() for b in boxes], model="small")
    return [
        np.array([*m["right_eye"], *m["left_eye"], m["nose_tip"][0]], dtype=np.float64) for m in marks
    ]
