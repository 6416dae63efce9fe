"""Visitor passes at the camera: how reliably and how cheaply OpenCV's QR detectors read a pass.

Each trial issues a pass (lotcontrol.passes, as `visitor add` signs it), writes its PNG as `visitor add
--png` does, and films it with the rig's scripted camera (lotcontrol.sim.camera: fitted to nine tenths
of a 640×480 frame, with sensor noise). Both of OpenCV's QR detectors read the same frames: the
classic ``cv2.QRCodeDetector`` and the ArUco-based ``cv2.QRCodeDetectorAruco`` (what the pipeline
uses). Figures: frames read (the text exactly), codes never read, the time of one scan with a code in
view and on the empty scene, and what scanning every ``visitors.scan_every_frames``-th frame costs the
pipeline on an empty scene at 15 fps (CPU, % of one core, on beside off).

    python -m lotcontrol.bench.passes [--codes 60] [--frames 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

DETECTORS = {"QRCodeDetector": cv2.QRCodeDetector, "QRCodeDetectorAruco": cv2.QRCodeDetectorAruco}
FPS = 15


def _script(folder: Path, png: Path | None) -> Path:
    shots = [{"photo": None if png is None else str(png), "seconds": 60}]
    path = folder / "camera.json"
    path.write_text(json.dumps({"fps": FPS, "size": [640, 480], "shots": shots, "unplugged": str(folder / "u"),
                                "started": str(folder / "s")}))
    return path


def detectors(codes: int, frames: int, folder: Path) -> dict:
    import segno

    from .. import passes
    from ..cli.visitors import PNG_SCALE
    from ..sim.camera import Script

    key = b"bench-key-not-a-secret-32-bytes!"
    read = {name: [] for name in DETECTORS}
    scan_ms = {name: [] for name in DETECTORS}
    made = {name: factory() for name, factory in DETECTORS.items()}
    for index in range(codes):
        visitor_pass = passes.Pass(passes.new_id(), f"Visitor {index}", None, int(time.time()) + 7200, 1)
        text = passes.sign(key, visitor_pass)
        png = folder / "pass.png"
        segno.make(text, error="m").save(str(png), kind="png", scale=PNG_SCALE, border=4)
        script = Script(f"script:{_script(folder, png)}")
        greys = [cv2.cvtColor(script.image(i), cv2.COLOR_BGR2GRAY) for i in range(frames)]
        for name, detector in made.items():
            hits = 0
            for grey in greys:
                started = time.perf_counter()
                found, _, _ = detector.detectAndDecode(grey)
                scan_ms[name].append((time.perf_counter() - started) * 1000)
                hits += found == text
            read[name].append(hits)
    empty = cv2.cvtColor(Script(f"script:{_script(folder, None)}").image(0), cv2.COLOR_BGR2GRAY)
    results = {}
    for name, detector in made.items():
        times = []
        for _ in range(20):
            started = time.perf_counter()
            detector.detectAndDecode(empty)
            times.append((time.perf_counter() - started) * 1000)
        results[name] = {"frames_read": sum(read[name]), "frames": codes * frames,
                         "codes_never_read": sum(hits == 0 for hits in read[name]), "codes": codes,
                         "scan_with_code_ms_median": round(statistics.median(scan_ms[name]), 1),
                         "scan_empty_ms_median": round(statistics.median(times), 1)}
    return results


def pipeline_cost(folder: Path, seconds: float = 20.0) -> dict:
    """CPU of the pipeline on an empty, static scene at 15 fps, scanning for passes and not."""
    from ..config import parse_config
    from ..sim.camera import Script
    from ..vision.matcher import Gallery
    from ..vision.pipeline import Pipeline

    script = Script(f"script:{_script(folder, None)}")
    images = [script.image(i) for i in range(int(seconds * FPS))]
    cost = {}
    for every in (0, 5):
        pipeline = Pipeline(parse_config({"visitors": {"scan_every_frames": every}}),
                            Gallery(np.zeros((0, 128), np.float32), np.zeros(0, np.int64)))
        pipeline.process(images[0], 0.0)  # models loaded, first frame compared with nothing
        started = time.process_time()
        for index, image in enumerate(images[1:], 1):
            pipeline.process(image, index / FPS)
        cost[f"scan_every_frames={every}"] = round(100 * (time.process_time() - started) / seconds, 1)
    return {"empty_scene_core_pct": cost}


def run(codes: int = 60, frames: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="lotcontrol-bench-passes-") as tmp:
        return {"detectors": detectors(codes, frames, Path(tmp)), **pipeline_cost(Path(tmp))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=60)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.codes, args.frames), indent=2))


if __name__ == "__main__":
    main()
