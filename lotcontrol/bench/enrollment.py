"""Enrollment throughput: `lotcontrol enroll-folder` on all cores beside face_recognition's own way.

    .venv/bin/python -m lotcontrol.bench.enrollment

The photos: the first two of each person in ../shared/faces (LFW thumbnails and full-size press
photos), or without ../shared 32 variants of the demo portrait. Ours is the real command in a fresh
process (models loaded, every photo read, checked, encoded and written to the database);
face_recognition's is ``face_encodings(load_image_file(path))`` one photo after the other in a fresh
process (its import loads the models), nothing stored. Photos per second of wall time, start-up
included on both sides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lotcontrol.vision.faces import PHOTO_SUFFIXES
from lotcontrol.sim.rig import shared_folder


def sample(shared: Path, folder: Path) -> list[Path]:
    """Copies of the photos in ``folder/<person>/``, the layout enroll-folder reads."""
    faces = shared / "faces"
    people = {}
    if faces.is_dir():
        for person in sorted(p for p in faces.iterdir() if p.is_dir() and p.name not in ("clips", "misc")):
            people[person.name] = sorted(p for p in person.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)[:2]
    else:
        people["Eileen Collins"] = _demo_variants(folder.parent / "variants")  # outside the folder enrolled
    copies = []
    for name, photos in people.items():
        (folder / name).mkdir(parents=True)
        for photo in photos:
            copies.append(folder / name / photo.name)
            shutil.copyfile(photo, copies[-1])
    return copies


def _demo_variants(folder: Path) -> list[Path]:
    from PIL import Image, ImageOps

    from lotcontrol.demo import enrollment_photo

    folder.mkdir(parents=True)
    base = Image.open(enrollment_photo(folder)).convert("RGB")
    variants = []
    for i, scale in enumerate((0.8, 1.0, 1.25, 1.5)):
        image = base.resize((int(base.width * scale), int(base.height * scale)))
        for j, brightness in enumerate((0.8, 0.9, 1.0, 1.1)):
            lit = image.point(lambda v: min(255, int(v * brightness)))  # noqa: B023
            for flipped in (False, True):
                path = folder / f"variant{i}{j}{'m' if flipped else ''}.jpg"
                (ImageOps.mirror(lit) if flipped else lit).save(path, quality=92)
                variants.append(path)
    return variants


def ours(folder: Path, data_dir: Path) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "lotcontrol", "--data-dir", str(data_dir), "enroll-folder", str(folder)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def _plain_loop(photos: list[Path]) -> None:  # runs in a fresh process
    import face_recognition

    for photo in photos:
        face_recognition.face_encodings(face_recognition.load_image_file(photo))


def plain(photos: list[Path]) -> float:
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_plain_loop, args=(photos,))
    start = time.monotonic()
    child.start()
    child.join()
    return time.monotonic() - start


def measure(shared: Path, tmp: Path) -> dict:
    photos = sample(shared, tmp / "photos")
    ours_s = ours(tmp / "photos", tmp / "data")
    plain_s = plain(photos)
    return {"photos": len(photos), "cores": os.cpu_count(),
            "ours_photos_per_s": round(len(photos) / ours_s, 2), "plain_photos_per_s": round(len(photos) / plain_s, 2)}


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = measure(shared_folder(), Path(tmp))
    print(f"{result['photos']} photos: enroll-folder on {result['cores']} cores {result['ours_photos_per_s']} "
          f"photos/s; face_recognition one by one {result['plain_photos_per_s']} photos/s")


if __name__ == "__main__":
    main()
