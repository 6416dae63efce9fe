"""Photos made for tests from the shared face photos: every format and fault a staff member meets."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .conftest import FACES

#: A 250x250 LFW original with one frontal face about 108 px wide.
PORTRAIT = FACES / "George_W_Bush" / "George_W_Bush_0004.jpg"


def portrait() -> Image.Image:
    return Image.open(PORTRAIT).convert("RGB")


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def make(kind: str, folder: Path) -> Path:
    """Write one test photo of ``kind`` into ``folder`` and return its path."""
    p = portrait()
    if kind == "gray":
        return save(p.convert("L"), folder / "gray.jpg")
    if kind == "png16":
        array = (np.asarray(p.convert("L"), dtype=np.uint16) * 257)
        return save(Image.fromarray(array), folder / "png16.png")
    if kind == "alpha":
        rgba = p.convert("RGBA")
        rgba.putalpha(255)
        return save(rgba, folder / "alpha.png")
    if kind == "cmyk":
        return save(p.convert("CMYK"), folder / "cmyk.jpg")
    if kind == "exif_rotated":
        # Pixels stored sideways, with the EXIF tag that says how to turn them upright.
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        return save(p.transpose(Image.Transpose.ROTATE_90), folder / "rotated.jpg", exif=exif)
    if kind == "empty":
        return save_bytes(folder / "empty.jpg", b"")
    if kind == "text":
        return save_bytes(folder / "notes.jpg", b"this is not a photo\n")
    if kind == "truncated":
        data = PORTRAIT.read_bytes()
        return save_bytes(folder / "truncated.jpg", data[: len(data) // 2])
    if kind == "no_face":
        return save(Image.new("RGB", (300, 300), (90, 120, 150)), folder / "wall.jpg")
    if kind == "two_faces":
        both = Image.new("RGB", (500, 250))
        both.paste(p, (0, 0))
        both.paste(Image.open(FACES / "Tony_Blair" / "Tony_Blair_0001.jpg").convert("RGB"), (250, 0))
        return save(both, folder / "two.jpg")
    if kind == "tiny":
        return save(p.resize((100, 100)), folder / "tiny.jpg")
    if kind == "blurry":
        return save(p.filter(ImageFilter.GaussianBlur(2)), folder / "blurry.jpg")
    if kind == "huge":  # 50 megapixels, the face in the middle
        big = Image.new("RGB", (8660, 5774), (200, 200, 200))
        big.paste(p.resize((2000, 2000)), (3330, 1887))
        return save(big, folder / "huge.jpg", quality=80)
    raise ValueError(kind)


def save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
