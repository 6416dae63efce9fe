"""The gate on recorded video: decision latency, CPU, an empty scene, the plain face_recognition loop
side by side, and strangers at lot scale.

    .venv/bin/python -m benchmarks.gate [--shared ../shared] [--runs 5] [--lot]

Everything runs the real controller and vision worker process (mock pins), as `lotcontrol run` does.

- latency: Lin-Manuel Miranda enrolled from his one photo; short_hamilton_clip.mp4 played at its
  own rate. From the first frame in which his face is fully visible (found offline by detecting on
  every full-size frame) to the relay switching on, in clip time. Worker and controller share
  time.monotonic(), and the worker reports when clip time 0 was shown.
- CPU per decision: worker CPU seconds on the frames from his first detection to the grant.
- empty scene: a static 640x480 video at 15 fps, played at its rate; worker CPU between heartbeats.
- plain loop: face_recognition's webcam example on the same clip (every other frame at 1/4 scale,
  encode every face, tolerance 0.6), every frame as fast as possible, in its own process; beside it
  ours, every frame as fast as possible.
- --lot: 1,400 residents of ../shared/faces-lot on file (one photo each) plus Lin; both clips; how
  many faces were granted to anyone but Lin.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lotcontrol.config import Config, prepare_data_dir
from lotcontrol.controller import Controller
from lotcontrol.messages import Heartbeat, Passage
from lotcontrol.store import Store
from lotcontrol.supervisor import VisionWorker

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class Measured:
    """One run of the controller with a real worker on a video; what happened, with times."""

    def __init__(self, data_dir: Path, video: Path, config: Config, *, fast: bool):
        from gpiozero.pins.mock import MockFactory

        self.factory = MockFactory()
        self.store = Store.in_dir(prepare_data_dir(data_dir))
        self.controller = Controller(config, self.store, pin_factory=self.factory,
                                     today=lambda: dt.date.today())
        self.controller.worker = VisionWorker(config, str(data_dir), str(video), as_fast_as_possible=fast,
                                              deliver=self._deliver)
        self.passages: list[Passage] = []
        self.beats: list[tuple[float, float]] = []  # (monotonic, worker cpu)
        self.time_base = 0.0
        self.relay_on: list[float] = []
        handle = self.controller.handle

        def timed_handle(message, now):
            was = self.controller.gate.relay.value
            handle(message, now)
            if not was and self.controller.gate.relay.value:
                self.relay_on.append(time.monotonic())
        self.controller.handle = timed_handle

    def _deliver(self, message):
        if isinstance(message, Heartbeat):
            self.time_base = message.time_base
            cpu = cpu_seconds(self.controller.worker.pid)
            if cpu is not None:
                self.beats.append((time.monotonic(), cpu))
        elif isinstance(message, Passage):
            self.passages.append(message)
        self.controller.inbox.put(message)

    def run(self) -> "Measured":
        start = time.monotonic()
        self.controller.run()
        self.wall = time.monotonic() - start
        self.events = [(e.type, e.resident, e.details) for e in self.store.events()]
        self.store.close()
        self.factory.reset()
        return self

    def steady_cpu_share(self) -> float:
        """Worker CPU per wall second between its first and last heartbeat (start-up left out)."""
        (t0, c0), (t1, c1) = self.beats[1], self.beats[-1]
        return (c1 - c0) / (t1 - t0)

    def total_cpu(self) -> float:
        return self.beats[-1][1] - self.beats[0][1]


def first_visible(video: Path, min_px: int, after: float, before: float) -> float:
    """Clip time of the first frame with a face at least ``min_px`` wide, wholly in the frame."""
    from lotcontrol.faces import detect

    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            raise RuntimeError(f"no face in {video} between {after} and {before} s")
        t = index / fps
        index += 1
        if t < after or t > before:
            continue
        h, w = image.shape[:2]
        for box in detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), 1):
            if box.width >= min_px and box.top >= 0 and box.left >= 0 and box.bottom <= h and box.right <= w:
                return t


def plain_loop(video: str, known: list, names: list, queue, scale: float = 0.25) -> None:
    """face_recognition's webcam example, frame by frame as fast as possible (runs in a child)."""
    import face_recognition

    capture = cv2.VideoCapture(video)
    fps = capture.get(cv2.CAP_PROP_FPS)
    start_cpu = time.process_time()
    index, process_this_frame, first = 0, True, {}
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if process_this_frame:
            small = cv2.resize(frame, (0, 0), fx=scale, fy=scale)
            rgb = np.ascontiguousarray(small[:, :, ::-1])
            locations = face_recognition.face_locations(rgb)
            for encoding in face_recognition.face_encodings(rgb, locations):
                matches = face_recognition.compare_faces(known, encoding, tolerance=0.6)
                for name, hit in zip(names, matches):
                    if hit:
                        first.setdefault(name, index / fps)
        process_this_frame = not process_this_frame
        index += 1
    queue.put({"cpu": time.process_time() - start_cpu, "first": first, "frames": index})


def static_scene(path: Path, seconds: int = 20, fps: int = 15) -> None:
    ramp = np.linspace(60, 190, 640, dtype=np.uint8)[None, :]
    frame = np.dstack([np.repeat(ramp, 480, axis=0)] * 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for _ in range(seconds * fps):
        writer.write(frame)
    writer.release()


def enroll(data_dir: Path, name: str, photo: Path) -> None:
    from click.testing import CliRunner

    from lotcontrol.cli import cli

    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "enroll", name, str(photo)])
    assert result.exit_code == 0, result.output


def measure(shared: Path, runs: int, lot: bool) -> dict:
    faces = shared / "faces"
    clip = faces / "clips" / "short_hamilton_clip.mp4"
    lin = faces / "lin_manuel_miranda" / "lin-manuel-miranda.png"
    config = Config()
    results: dict = {"machine": f"{os.uname().machine}, {os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enroll(tmp / "lin", "Lin-Manuel Miranda", lin)
        t0 = first_visible(clip, config.vision.min_face_px, 2.0, 7.5)
        latencies, cpus = [], []
        for run in range(runs):
            shutil_copy(tmp / "lin", tmp / f"run{run}")
            m = Measured(tmp / f"run{run}", clip, config, fast=False).run()
            grants = [p for p in m.passages if p.outcome == "grant"]
            if m.relay_on and grants:
                latencies.append(m.relay_on[0] - m.time_base - t0)
                cpus.append(grants[0].cpu)
        results["latency"] = {"first_visible_s": round(t0, 3), "runs": len(latencies),
                              "median_s": round(statistics.median(latencies), 3) if latencies else None,
                              "all_s": [round(x, 3) for x in latencies],
                              "cpu_per_decision_s": round(statistics.median(cpus), 3) if cpus else None}
        shutil_copy(tmp / "lin", tmp / "fast")
        fast = Measured(tmp / "fast", clip, config, fast=True).run()
        ours_grants = [p for p in fast.passages if p.outcome == "grant"]
        known = _encodings_of(lin)
        results["clip"] = {"ours_cpu_s": round(fast.total_cpu(), 2),
                           "ours_decided_at_s": round(ours_grants[0].decided, 3) if ours_grants else None}
        for label, scale in (("plain", 0.25), ("plain_half_scale", 0.5)):
            queue = multiprocessing.get_context("spawn").Queue()
            child = multiprocessing.get_context("spawn").Process(
                target=plain_loop, args=(str(clip), known, ["Lin-Manuel Miranda"], queue, scale))
            child.start()
            plain = queue.get()
            child.join()
            results["clip"][f"{label}_cpu_s"] = round(plain["cpu"], 2)
            results["clip"][f"{label}_cpu_ratio"] = round(fast.total_cpu() / plain["cpu"], 3)
            decided = plain["first"].get("Lin-Manuel Miranda")
            results["clip"][f"{label}_decided_at_s"] = round(decided, 3) if decided is not None else None
        from lotcontrol.demo import film

        film(tmp / "demo.mp4")
        enroll(tmp / "demo", "Eileen Collins", _demo_photo(tmp))
        demo_t0 = first_visible(tmp / "demo.mp4", config.vision.min_face_px, 0.0, 4.5)
        demo_latencies = []
        for run in range(runs):
            shutil_copy(tmp / "demo", tmp / f"demo{run}")
            m = Measured(tmp / f"demo{run}", tmp / "demo.mp4", config, fast=False).run()
            if m.relay_on:
                demo_latencies.append(m.relay_on[0] - m.time_base - demo_t0)
        results["demo_latency"] = {"first_visible_s": round(demo_t0, 3),
                                   "median_s": round(statistics.median(demo_latencies), 3) if demo_latencies else None,
                                   "all_s": [round(x, 3) for x in demo_latencies]}
        static_scene(tmp / "static.mp4")
        empty = Measured(tmp / "empty", tmp / "static.mp4", config, fast=False).run()
        results["empty_scene"] = {"fps": 15, "cpu_share_of_one_core": round(empty.steady_cpu_share(), 4)}
        if lot:
            results["lot"] = lot_scale(shared, tmp, lin, config)
    return results


def _demo_photo(folder: Path) -> Path:
    from lotcontrol.demo import enrollment_photo

    return enrollment_photo(folder)


def _encodings_of(photo: Path) -> list:
    from lotcontrol.faces import faces_in_photo, read_photo

    return [f.encoding.astype(np.float64) for f in faces_in_photo(read_photo(photo))][:1]


def shutil_copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target)


def lot_scale(shared: Path, tmp: Path, lin: Path, config: Config) -> dict:
    """1,400 faces-lot residents (one photo each, encodings from benchmarks.accuracy's cache) + Lin."""
    from benchmarks.accuracy import encode_all, enrollable, photos
    from lotcontrol.store import Template

    root = shared / "faces-lot"
    residents = sorted(p.name for p in (root / "residents").iterdir())
    strangers = sorted(p.name for p in (root / "strangers").iterdir())
    chosen = [(r, photos(root / "residents" / r)[0]) for r in residents]
    chosen += [(s, photos(root / "strangers" / s)[0]) for s in strangers[::2][:595]]
    seen = encode_all([p for _, p in chosen], "faces-lot")
    data = tmp / "lot"
    enroll(data, "Lin-Manuel Miranda", lin)
    with Store.in_dir(data) as store:
        with store.transaction():
            for name, photo in chosen:
                encoding = enrollable(seen[photo], config)
                if encoding is not None:
                    resident = store.add_resident(name)
                    store.add_templates(resident.id, [Template(encoding, f"lot:{photo}", 60, 50.0)])
        on_file = len(store.residents())
    report = {"residents_on_file": on_file}
    for label, video, width in (("hamilton", shared / "faces" / "clips" / "short_hamilton_clip.mp4", 320),
                                ("walking", shared / "faces" / "clips" / "people_walking_toward_camera.mp4", 960)):
        shutil_copy(data, tmp / f"lot-{label}")
        settings = config.model_copy(update={"vision": config.vision.model_copy(update={"detect_width": width})})
        m = Measured(tmp / f"lot-{label}", video, settings, fast=True).run()
        granted = [e[1] for e in m.events if e[0] == "access.granted"]
        report[label] = {"faces_decided": len(m.passages), "granted": granted,
                         "granted_to_others": len([g for g in granted if g != "Lin-Manuel Miranda"]),
                         "denied": len([e for e in m.events if e[0] == "access.denied"])}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lot", action="store_true", help="Also the 1,400-resident stranger test on video.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.shared, args.runs, args.lot)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    lat, clip, empty = results["latency"], results["clip"], results["empty_scene"]
    print(f"machine: {results['machine']}")
    print(f"decision latency, clip at its own rate: median {lat['median_s']} s over {lat['runs']} runs "
          f"{lat['all_s']} (his face fully visible from {lat['first_visible_s']} s)")
    print(f"CPU per decision (worker, first detection to grant): {lat['cpu_per_decision_s']} s")
    demo = results["demo_latency"]
    print(f"decision latency, the demo scene (Eileen Collins): median {demo['median_s']} s {demo['all_s']}")
    print(f"whole clip, every frame: ours {clip['ours_cpu_s']} CPU s, decided at {clip['ours_decided_at_s']} s")
    print(f"  plain face_recognition loop (1/4 scale): {clip['plain_cpu_s']} CPU s (ours/plain "
          f"{clip['plain_cpu_ratio']}), decided at {clip['plain_decided_at_s']} s")
    print(f"  the same loop at 1/2 scale: {clip['plain_half_scale_cpu_s']} CPU s (ours/plain "
          f"{clip['plain_half_scale_cpu_ratio']}), decided at {clip['plain_half_scale_decided_at_s']} s")
    print(f"empty static scene, 15 fps: {100 * empty['cpu_share_of_one_core']:.1f} % of one core")
    if "lot" in results:
        lot = results["lot"]
        print(f"lot scale: {lot['residents_on_file']} residents on file")
        for label in ("hamilton", "walking"):
            r = lot[label]
            print(f"  {label}: {r['faces_decided']} faces decided, granted {r['granted']}, "
                  f"{r['granted_to_others']} granted to anyone but Lin, {r['denied']} denied")


if __name__ == "__main__":
    main()
