"""How well liveness tells a head from a picture: the shared real clips against synthetic attacks.

    python -m lotcontrol.bench.liveness [--attacks 20] [--limit L]

Live passages are every face track in ../shared/faces/clips (the people there are real and walk
toward the camera). Attacks are made by ``lotcontrol.sim.attacks``: printed sheets and phone or
tablet stills of ../shared/faces photos, moved by a hand, and phones or tablets replaying the clips.
Faces are found as the gate finds them (HOG at ``vision.detect_width``, followed by the pipeline's
tracker), and a frame counts for liveness when the face is at least ``vision.min_face_px`` wide.

The limit is chosen on the *tuning* attacks (even seeds) and the live tracks: the middle of the gap
between the highest tuning attack and the lowest live track, or, with no gap, the lowest live track's
value (no live passage refused). The refusal rates are then reported on the *test* attacks (odd
seeds), which the choice never saw. The live tracks are few (a handful per clip), so the choice uses
all of them: a live passage refused on other people is the first thing to check (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import Config
from ..sim.attacks import Attack, attacks, film
from ..sim.rig import shared_folder
from ..vision import liveness
from ..vision.faces import Box, detect
from ..vision.pipeline import Tracker


#: An attack whose face the gate never found (too small, too blurred): it never reaches liveness.
UNSEEN = -1.0


@dataclass
class TrackCue:
    source: str
    frames: int
    depth: float | None


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def face_tracks(frames: list[np.ndarray], fps: float, config: Config, source: str) -> tuple[list[TrackCue], float, int]:
    """Each face track's depth cue; the CPU seconds spent on landmarks and how many were found."""
    vision = config.vision
    tracker = Tracker(vision.track_timeout_seconds)
    motion: dict[int, liveness.FaceMotion] = {}
    done: list[TrackCue] = []
    spent, count = 0.0, 0

    def close(track_ids):
        for track_id in track_ids:
            face = motion.pop(track_id, None)
            if face is not None and face.frames:
                done.append(TrackCue(source, len(face.frames), liveness.depth(np.asarray(face.frames))))

    for index, image in enumerate(frames):
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        factor = min(1.0, vision.detect_width / rgb.shape[1])
        small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else rgb
        boxes = [b.scaled(1 / factor) for b in detect(small, 1)]
        matched, ended = tracker.update(boxes, index / fps)
        close([t.id for t in ended])
        height, width = rgb.shape[:2]
        big = [(t, b) for t, b in matched if b.width >= vision.min_face_px and b.top >= 0 and b.left >= 0
               and b.bottom <= height and b.right <= width]
        started = cpu()
        points = liveness.landmarks(rgb, [b for _, b in big])
        spent += cpu() - started
        count += len(points)
        for (track, _), marks in zip(big, points):
            motion.setdefault(track.id, liveness.FaceMotion(limit=0.0)).add(marks)
    close([t.id for t in tracker.end_all()])
    return [t for t in done if t.frames >= liveness.MIN_FRAMES], spent, count


def read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if frame.shape[1] > 960:  # a 1080p clip filmed by a 960-px gate camera
            frame = cv2.resize(frame, (960, frame.shape[0] * 960 // frame.shape[1]), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    capture.release()
    return frames, fps


def choose_limit(tuning_attacks: list[float], live: list[float]) -> float:
    """Between the highest tuning attack and the lowest live track; the lowest live one if they overlap."""
    highest, lowest = max(tuning_attacks, default=0.0), min(live)
    return (highest + lowest) / 2 if highest < lowest else lowest


def refused(values: list[float | None], limit: float) -> int:
    """Attacks (or live tracks) that would be refused: no depth seen, or less than the limit."""
    return sum(1 for v in values if v is None or v < limit)


def run(shared: Path, per_kind: int, config: Config, limit: float | None = None) -> dict:
    clips = sorted((shared / "faces" / "clips").glob("*.mp4"))
    photos = sorted((shared / "faces").glob("*/*.jpg"))
    live: list[TrackCue] = []
    spent = found = 0
    for clip in clips:
        frames, fps = read_clip(clip)
        cues, seconds, count = face_tracks(frames, fps, config, clip.name)
        live += cues
        spent, found = spent + seconds, found + count
    replay_video = read_clip(clips[-1])[0] if clips else []
    results: dict[str, list[tuple[Attack, float | None]]] = {}
    for kind in ("print", "screen", "replay"):
        for attack in attacks(per_kind if kind != "replay" else max(2, per_kind // 4), kind, seed=7):
            photo = cv2.imread(str(photos[attack.seed % len(photos)])) if photos else None
            cues, seconds, count = face_tracks(film(attack, photo, _crop(replay_video)), attack.fps, config, attack.name)
            spent, found = spent + seconds, found + count
            # an attack is refused only if every face track it made is; one the gate never saw is not counted
            seen = max((c.depth or 0.0 for c in cues), default=None)
            results.setdefault(kind, []).append((attack, seen if cues else UNSEEN))
    live_depths = [c.depth for c in live if c.depth is not None]
    tuning = [d for kind in ("print", "screen") for a, d in results[kind] if a.seed % 2 == 0 and d not in (None, UNSEEN)]
    chosen = limit if limit is not None else choose_limit(tuning, live_depths)
    return {"live": live, "attacks": results, "limit": chosen, "landmark_ms": 1000 * spent / max(found, 1)}


def _crop(frames: list[np.ndarray]) -> list[np.ndarray]:
    """A replay shows the person's face large: the clip's middle, where its walkers come closer."""
    if not frames:
        return frames
    height, width = frames[0].shape[:2]
    return [f[height // 10:height * 7 // 10, width // 3:width * 5 // 6] for f in frames]


def report(result: dict) -> str:
    limit = result["limit"]
    live = [c.depth for c in result["live"]]
    lines = [f"liveness depth cue, limit {limit:.4f} (chosen on even-seed attacks and the live tracks)",
             f"landmarks: {result['landmark_ms']:.1f} ms CPU per face",
             f"live tracks of the shared clips: {len(live)}, refused {refused(live, limit)}; depth "
             f"{_spread(live)}"]
    for kind, items in result["attacks"].items():
        for half, parity in (("tuning", 0), ("test", 1)):
            values = [d for a, d in items if a.seed % 2 == parity and d != UNSEEN]
            unseen = sum(1 for a, d in items if a.seed % 2 == parity and d == UNSEEN)
            if values:
                lines.append(f"{kind:7} {half:6}: {len(values):3} attacks, refused {refused(values, limit):3} "
                             f"({100 * refused(values, limit) / len(values):5.1f} %); depth {_spread(values)}"
                             f"; {unseen} not seen by the gate")
    return "\n".join(lines)


def _spread(values: list[float | None]) -> str:
    seen = sorted(v for v in values if v is not None)
    if not seen:
        return "none measured"
    return f"min {seen[0]:.4f}, median {seen[len(seen) // 2]:.4f}, max {seen[-1]:.4f} ({len(values) - len(seen)} without)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", type=int, default=20, help="attacks of each kind (print, screen); replays a quarter")
    parser.add_argument("--limit", type=float, default=None, help="judge at this limit instead of choosing one")
    args = parser.parse_args()
    shared = shared_folder()
    if not (shared / "faces" / "clips").is_dir():
        raise SystemExit(f"{shared / 'faces' / 'clips'} is missing: the liveness bench needs the shared clips")
    started = time.monotonic()
    print(report(run(shared, args.attacks, Config(), args.limit)))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
