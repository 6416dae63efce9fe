"""BlazeFace beside dlib's HOG detector: faces found, CPU per frame, and the effect on decisions.

    python -m lotcontrol.bench.detector [--people 300] [--photos 0] [--tiles 1 2]

1. **Clips** (every frame of every clip in ../shared/faces/clips): HOG as the pipeline's whole-frame
   search runs it (``Pipeline._detect_in``: the frame scaled to ``vision.detect_width``, one upsample)
   and on the frame at 1/2 scale with one upsample (``bench.gate``'s plain loop at 1/2 scale; the same
   as the pipeline's for a 640-px frame), and BlazeFace (the whole frame letterboxed to 128 px, and
   with ``--tiles`` n x n tiles as well): faces per frame, frames with a face, how many of the
   half-scale HOG's faces each also finds (IoU >= 0.3) and how many it finds that HOG does not, and
   CPU per frame.
2. **faces-lot photos** (every photo, or ``--photos`` of them): the share where each finds a face, CPU
   per photo (HOG as enrollment and the benchmarks run it: ``faces.upsample_for``).
3. **Decisions**: ``--people`` residents of faces-lot (seed 0), enrolled from their first photo with
   HOG as today, probed with their second photo found by HOG, by BlazeFace's box as it is, and by
   BlazeFace's box mapped to where HOG would put it (a scale and offset fitted, by least squares, on
   the even-numbered half of the people and measured on the odd half), each the largest face not cut
   by the photo's edge (as the pipeline's quality gate keeps them): dlib's 5 points from that box,
   how far they are from the HOG box's points (in eye distances), the genuine distance, and whether
   the nearest enrolled resident is the right one.

All CPU figures are process CPU time (``time.process_time``) with one thread (onnxruntime, OpenCV and
OpenMP held to 1), not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lotcontrol.config import Config
from lotcontrol.sim.rig import shared_folder
from lotcontrol.vision import blazeface, faces
from lotcontrol.vision.faces import Box
from lotcontrol.vision.pipeline import Pipeline, iou

MATCH_IOU = 0.3


def _timed(function, *args):
    start = time.process_time()
    result = function(*args)
    return result, time.process_time() - start


def _frames(path: Path):
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _agreement(reference: list[Box], other: list[Box]) -> tuple[int, int, list[float]]:
    """(reference boxes the other also has, other boxes the reference lacks, IoUs of the pairs)."""
    matched, ious = set(), []
    for box in reference:
        scores = [(iou(box, o), i) for i, o in enumerate(other) if i not in matched]
        best = max(scores, default=(0.0, -1))
        if best[0] >= MATCH_IOU:
            matched.add(best[1])
            ious.append(best[0])
    return len(matched), len(other) - len(matched), ious


def _hog_half(rgb: np.ndarray) -> list[Box]:
    """HOG with one upsample on the frame at half its size (the plain loop's 1/2 scale in bench.gate)."""
    small = cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    return [box.scaled(2) for box in faces.detect(small, 1)]


def clips(shared: Path, tiles: list[int]) -> None:
    hog = Pipeline(Config(), None)  # the pipeline's own whole-frame look (no gallery needed for it)
    detectors = {f"BlazeFace, {n}x{n} tiles + whole" if n > 1 else "BlazeFace, whole frame": blazeface.BlazeFaceDetector(tiles=n)
                 for n in tiles}
    print("\n## Clips: every frame\n")
    print("| clip | detector | frames | with a face | faces | half-scale HOG's faces also found | faces it lacks | "
          "IoU with its box (median) | CPU per frame (median) | CPU per frame (mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for clip in sorted((shared / "faces" / "clips").glob("*.mp4")):
        rows = {"HOG (pipeline)": [], "HOG, frame at 1/2 scale": [], **{name: [] for name in detectors}}
        hog_boxes = []
        size = None
        for rgb in _frames(clip):
            size = f"{rgb.shape[1]}x{rgb.shape[0]}"
            boxes, cpu = _timed(hog._detect_in, rgb, 0, 0)
            rows["HOG (pipeline)"].append((boxes, cpu))
            half = _timed(_hog_half, rgb)
            rows["HOG, frame at 1/2 scale"].append(half)
            hog_boxes.append(half[0])
            for name, detector in detectors.items():
                rows[name].append(_timed(detector.detect, rgb))
        for name, frames in rows.items():
            found = [len(b) for b, _ in frames]
            cpu = np.array([c for _, c in frames]) * 1000
            agree = [_agreement(h, b) for h, (b, _) in zip(hog_boxes, frames)]
            also = sum(a for a, _, _ in agree)
            extra = sum(e for _, e, _ in agree)
            ious = [x for _, _, i in agree for x in i]
            hog_total = sum(len(h) for h in hog_boxes)
            print(f"| {clip.name} ({size}) | {name} | {len(frames)} | {sum(1 for f in found if f)} | {sum(found)} | "
                  f"{also}/{hog_total} | {extra} | {np.median(ious) if ious else float('nan'):.2f} | "
                  f"{np.median(cpu):.1f} ms | {cpu.mean():.1f} ms |")


def photos(shared: Path, detector: blazeface.BlazeFaceDetector, limit: int) -> None:
    paths = sorted((shared / "faces-lot").glob("*/*/*.jpg"))
    if limit:
        paths = random.Random(0).sample(paths, min(limit, len(paths)))
    found = {"HOG": 0, "BlazeFace": 0, "both": 0}
    cpu = {"HOG": [], "BlazeFace": []}
    for path in paths:
        rgb = faces.read_photo(path).rgb
        hog, hog_cpu = _timed(faces.detect, rgb, faces.upsample_for(rgb))
        blaze, blaze_cpu = _timed(detector.detect, rgb)
        cpu["HOG"].append(hog_cpu)
        cpu["BlazeFace"].append(blaze_cpu)
        found["HOG"] += bool(hog)
        found["BlazeFace"] += bool(blaze)
        found["both"] += bool(hog) and bool(blaze)
    print(f"\n## faces-lot: {len(paths)} photos (150x150, faces about 65 px)\n")
    print("| detector | photos with a face | CPU per photo (median) | CPU per photo (mean) |")
    print("| --- | --- | --- | --- |")
    for name in ("HOG", "BlazeFace"):
        c = np.array(cpu[name]) * 1000
        print(f"| {name} | {found[name] / len(paths) * 100:.1f} % | {np.median(c):.1f} ms | {c.mean():.1f} ms |")
    print(f"\nBoth find a face in {found['both'] / len(paths) * 100:.1f} % of the photos.")


def _box_frame(box: Box) -> np.ndarray:
    """centre x, centre y, width, height."""
    return np.array([(box.left + box.right) / 2, (box.top + box.bottom) / 2, box.right - box.left,
                     box.bottom - box.top], dtype=np.float64)


def fit_mapping(pairs: list[tuple[Box, Box]]) -> np.ndarray:
    """(dx, dy, scale): HOG's centre = BlazeFace's centre + (dx, dy) x its width; HOG's width = scale x
    its width; least squares over (blazeface, hog) box pairs."""
    blaze = np.array([_box_frame(b) for b, _ in pairs])
    hog = np.array([_box_frame(h) for _, h in pairs])
    width = blaze[:, 2]
    dx = np.sum((hog[:, 0] - blaze[:, 0]) * width) / np.sum(width ** 2)
    dy = np.sum((hog[:, 1] - blaze[:, 1]) * width) / np.sum(width ** 2)
    scale = np.sum(hog[:, 2] * width) / np.sum(width ** 2)
    return np.array([dx, dy, scale])


def mapped(box: Box, mapping: np.ndarray) -> Box:
    cx, cy, width, _ = _box_frame(box)
    dx, dy, scale = mapping
    cx, cy, half = cx + dx * width, cy + dy * width, scale * width / 2
    return Box(int(round(cy - half)), int(round(cx + half)), int(round(cy + half)), int(round(cx - half)))


def _whole_faces(boxes: list[Box], rgb: np.ndarray) -> list[Box]:
    """The boxes not cut by the photo's edge, as the pipeline's quality gate keeps them (LFW photos show
    parts of neighbours' faces, which BlazeFace finds and HOG does not)."""
    height, width = rgb.shape[:2]
    return [b for b in boxes if b.top >= 0 and b.left >= 0 and b.bottom <= height and b.right <= width]


def decisions(shared: Path, detector: blazeface.BlazeFaceDetector, people: int, seed: int) -> None:
    residents = sorted(p for p in (shared / "faces-lot" / "residents").iterdir() if p.is_dir())
    chosen = random.Random(seed).sample(residents, min(people, len(residents)))
    enrolled, probes = [], []  # probes: (index of the person, rgb, HOG box or None, BlazeFace box or None)
    for person in chosen:
        first, second = sorted(person.glob("*.jpg"))[:2]
        rgb = faces.read_photo(first).rgb
        boxes = faces.detect(rgb, faces.upsample_for(rgb))
        if not boxes:
            continue
        enrolled.append(faces.encode(rgb, boxes[:1])[0])
        rgb = faces.read_photo(second).rgb
        hog = _whole_faces(faces.detect(rgb, faces.upsample_for(rgb)), rgb)
        blaze = _whole_faces(detector.detect(rgb), rgb)
        probes.append((len(enrolled) - 1, rgb, hog[0] if hog else None, blaze[0] if blaze else None))
    gallery = np.array(enrolled)
    pairs = [(b, h) for i, _, h, b in probes if h is not None and b is not None and i % 2 == 0 and iou(h, b) >= MATCH_IOU]
    mapping = fit_mapping(pairs)
    test = [p for p in probes if p[0] % 2 == 1]
    print(f"\n## Decisions: {len(gallery)} faces-lot residents enrolled from their first photo with HOG (seed {seed}), "
          f"probed with their second\n")
    print(f"BlazeFace box -> HOG box, fitted on {len(pairs)} photos of the even half: centre + "
          f"({mapping[0]:+.3f}, {mapping[1]:+.3f}) x width, width x {mapping[2]:.3f}. Measured on the odd half "
          f"({len(test)} probes):\n")
    other = sum(1 for _, _, h, b in test if h is not None and b is not None and iou(h, b) < MATCH_IOU)
    print(f"(the probe's largest face not cut by the photo's edge; BlazeFace's is another face than HOG's in {other})\n")
    print("| probe box | probes with a face | 5 points from HOG's (median, eye distances) | genuine distance "
          "(median) | genuine distance (90th pct) | genuine distance minus HOG's, same probe (mean; median) | "
          "nearest is the right resident | within 0.5 of the right one |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    hog_genuine = {}
    ways = {"HOG (as today)": lambda h, b: h, "BlazeFace as found": lambda h, b: b,
            "BlazeFace mapped to HOG's frame": lambda h, b: mapped(b, mapping) if b is not None else None}
    hog_points = {}
    for index, rgb, h, b in test:
        if h is not None:
            hog_points[index] = faces.five_points(rgb, [h])[0]
    for name, choose in ways.items():
        shifts, genuine, change, right, near = [], [], [], 0, 0
        found = 0
        for index, rgb, h, b in test:
            box = choose(h, b)
            if box is None:
                continue
            found += 1
            (points,) = faces.five_points(rgb, [box])
            if index in hog_points:
                reference = hog_points[index]
                eyes = np.linalg.norm(reference[0:2].mean(axis=0) - reference[2:4].mean(axis=0))
                shifts.append(np.linalg.norm(points - reference, axis=1).mean() / eyes)
            (encoding,) = faces.encode(rgb, [box])
            distances = np.linalg.norm(gallery - encoding, axis=1)
            genuine.append(distances[index])
            if name.startswith("HOG"):
                hog_genuine[index] = distances[index]
            elif index in hog_genuine:
                change.append(distances[index] - hog_genuine[index])
            right += int(np.argmin(distances) == index)
            near += int(distances[index] <= 0.5)
        print(f"| {name} | {found}/{len(test)} | {np.median(shifts):.3f} | {np.median(genuine):.3f} | "
              f"{np.percentile(genuine, 90):.3f} | "
              f"{f'{np.mean(change):+.4f}; {np.median(change):+.4f}' if change else '-'} | "
              f"{right}/{len(test)} | {near}/{len(test)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300, help="faces-lot residents for the decisions (default 300)")
    parser.add_argument("--photos", type=int, default=0, help="faces-lot photos to detect in (default 0: all)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 2], help="BlazeFace tilings on the clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("clips", "photos", "decisions"), help="one part only")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    shared = shared_folder()
    if not (shared / "faces").is_dir():
        print(f"Error: {shared / 'faces'} is absent: the benchmark needs the shared face photos", file=sys.stderr)
        return 1
    detector = blazeface.BlazeFaceDetector(threads=1)
    blank = np.zeros((120, 160, 3), np.uint8)
    faces.detect(blank, 0), detector.detect(blank)  # models checked and loaded before any CPU is counted
    if args.only in (None, "clips"):
        clips(shared, args.tiles)
    if args.only in (None, "photos"):
        photos(shared, detector, args.photos)
    if args.only in (None, "decisions"):
        decisions(shared, detector, args.people, args.seed)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
