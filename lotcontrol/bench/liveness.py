"""How well liveness tells a head from a picture: the shared real clips against synthetic attacks.

    python -m lotcontrol.bench.liveness [--attacks 40] [--limit L] [--drops 30]

Live passages are the shared real clips in ../shared/faces/clips (real people walking or turning
toward the camera). Attacks are made by ``lotcontrol.sim.attacks``: printed sheets and phone or
tablet stills of ../shared/faces photos, moved by a hand, and phones or tablets replaying a clip.

Everything goes through the gate's own pipeline (``vision.pipeline.Pipeline``: its detection schedule,
tracker and quality gate) with a gallery that accepts every face as a resident and
``vision.liveness = "enforce"`` at a limit no face reaches: each face the gate would admit without
liveness is then held for the whole window liveness judges, and its landmarks are kept. A face's
**peak** is the highest depth cue over the windows the gate judges while it holds it (the window
grows frame by frame up to ``liveness.KEEP_FRAMES``): enforce admits it at a limit L exactly when its
peak reaches L. An attack is refused when every face it showed the gate peaks below L; an attack whose
face the gate would never have admitted (too small, too blurred, gone too soon) is reported as not
seen, not counted as refused.

The limit is chosen on the *tuning* attacks (even seeds) and the live faces: the middle of the gap
between the live face with the lowest peak and the tuning attacks' value the targets need refused (the
highest once the share the targets let through is left out: 5 % of printed sheets, 10 % of screens),
or, with no gap, the lowest live peak (no live passage refused). The refusal rates are reported on the
*test* attacks (odd seeds), which the choice never saw. The live faces are very few (the clips hold
one that the gate admits): the live row is not held out, and a live passage refused on other people is
the first thing to check (docs/benchmarks.md, "Liveness").

The border and surface cues (``liveness.border``, ``liveness.surface``) are recorded for every face too.
Each one's limit sits above every live face's value (``CUE_MARGIN``); it is worth fusing into the verdict
only if, beside the depth cue at its limit, it refuses more tuning attacks: the report says whether it
does, and what both would refuse on the test attacks.

``--drops N`` plays the Hamilton clip's live face instead, N times with frames dropped in a seeded
pattern each (``dropped``: bursts of missing frames while the face is held, and the face walking out
of frame for good in every second pattern), through the gate's pipeline in ``enforce`` at the shipped
limit, and counts how each pattern's face was decided: a face lost before liveness could tell must not
be refused as not live (docs/benchmarks.md, "Liveness": a face that leaves early).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import Config
from ..sim.attacks import Attack, attacks, film
from ..sim.rig import shared_folder
from ..vision import liveness
from ..vision.matcher import GateGallery, Match
from ..vision.pipeline import Pipeline, Track
from .frames import FrameMemo

#: An attack whose face the gate never found (too small, too blurred): it never reaches liveness.
UNSEEN = -1.0
#: The issue's targets: the share of each kind of attack to refuse.
TARGETS = {"print": 0.95, "screen": 0.90}

#: The Hamilton clip's live face (Lin-Manuel Miranda): first seen at frame 84, admitted by ``enforce`` at
#: frame 99 on every frame, gone after frame 205; the audience's face after it is left out.
HAMILTON, HAMILTON_FIRST, HAMILTON_FRAMES = "short_hamilton_clip.mp4", 84, (60, 230)


@dataclass
class Face:
    """One face the gate would have admitted without liveness: the landmark frames liveness judged."""

    source: str
    fps: float
    frames: np.ndarray  # (n, points, 2), n <= KEEP_FRAMES
    looks: tuple = ()  # liveness.Look: the border and surface cues' frames

    @property
    def border(self) -> float | None:
        return liveness.border(list(self.looks))

    @property
    def surface(self) -> float | None:
        return liveness.surface(list(self.looks))

    @property
    def clipped(self) -> float | None:
        return max((x.clipped for x in self.looks), default=None)

    @property
    def curve(self) -> list[float | None]:
        """The depth cue as the gate sees it grow: over the first k frames, k = MIN_FRAMES .. n."""
        return [liveness.depth(self.frames[:k]) for k in range(liveness.MIN_FRAMES, len(self.frames) + 1)]

    @property
    def peak(self) -> float | None:
        seen = [v for v in self.curve if v is not None]
        return max(seen) if seen else None

    def frames_to(self, limit: float) -> int | None:
        """Landmark frames (every frame while the face is decided, then one every
        ``liveness.STEP_SECONDS`` while it is held) before the cue first reaches ``limit``."""
        for k, value in enumerate(self.curve, start=liveness.MIN_FRAMES):
            if value is not None and value >= limit:
                return k
        return None


class AcceptAll(GateGallery):
    """Every face is resident 1: each face the quality gate lets through would be admitted."""

    def __init__(self):
        self.space, self.dlib_only = "dlib", None  # every face on file has every encoder

    def query(self, embeddings):
        return np.zeros(128, np.float32), None

    def match_query(self, query):
        return Match(1, 1, 0.1, 0.9, 0.5, None)

    def one_to_one_limits(self, max_impostor_rate):
        return None, None  # no 1:1 calibration: no face claims anyone 1:1 here

    def claims(self, query, limits):
        return []


class _Held(Pipeline):
    """The gate's pipeline, every face accepted, liveness enforced at a limit nobody reaches."""

    def __init__(self, config: Config, source: str, fps: float):
        vision = config.vision.model_copy(update={"liveness": "enforce"})
        super().__init__(config.model_copy(update={"vision": vision}), AcceptAll())
        self.source, self.fps, self.faces = source, fps, []
        self.looks = True  # the border and surface cues too, whether fused or not

    def _watch(self, track: Track, rgb, box, now, follow: bool = False) -> None:
        track.motion.limit = math.inf
        super()._watch(track, rgb, box, now, follow)

    def _passage(self, track: Track, decided: float, final: bool = False):
        frames = track.motion.frames + track.motion.pending  # as the gate judges it between detections
        if track.verdict is not None and track.verdict.reason in ("not_live", "liveness_undecided") and frames:
            self.faces.append(Face(self.source, self.fps, np.asarray(frames), tuple(track.motion.looks)))
        return super()._passage(track, decided, final)


def held_faces(frames: list[np.ndarray], fps: float, config: Config, source: str) -> tuple[list[Face], float]:
    """The faces the gate would admit without liveness in ``frames``, and the CPU seconds it took."""
    pipeline = _Held(config, source, fps)
    started = time.process_time()
    for index, image in enumerate(frames):
        pipeline.process(image, index / fps)
    pipeline.finish()
    return pipeline.faces, time.process_time() - started


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


def needed(values: list[float], share: float) -> float:
    """The highest of ``values`` that must be refused for ``share`` of them to be refused."""
    ordered = sorted(values)
    passing = math.floor((1 - share) * len(ordered) + 1e-9)
    return ordered[len(ordered) - passing - 1] if len(ordered) > passing else 0.0


def choose_limit(tuning: dict[str, list[float]], live: list[float], targets: dict[str, float] = TARGETS) -> float:
    """Between what the targets need refused of the tuning attacks and the lowest live face; the
    lowest live one if they overlap (no live face refused)."""
    highest = max((needed(values, targets[kind]) for kind, values in tuning.items() if values), default=0.0)
    lowest = min(live)
    return (highest + lowest) / 2 if highest < lowest else lowest


def refused(values: list[float | None], limit: float) -> int:
    """Attacks (or live faces) that would be refused: no depth seen, or less than the limit."""
    return sum(1 for v in values if v is None or v < limit)


def run(shared: Path, per_kind: int, config: Config, limit: float | None = None) -> dict:
    clips = sorted((shared / "faces" / "clips").glob("*.mp4"))
    photos = sorted((shared / "faces").glob("*/*.jpg"))
    live: list[Face] = []
    spent = 0.0
    for clip in clips:
        frames, fps = read_clip(clip)
        faces, seconds = held_faces(frames, fps, config, clip.name)
        live, spent = live + faces, spent + seconds
    replay_video = _replayed(shared)
    results: dict[str, list[tuple[Attack, float | None]]] = {}
    shown: dict[str, list[tuple[Attack, list[Face]]]] = {}
    for kind in ("print", "screen", "replay"):
        for attack in attacks(per_kind if kind != "replay" else max(2, per_kind // 4), kind, seed=7):
            photo = cv2.imread(str(photos[attack.seed % len(photos)])) if photos else None
            faces, seconds = held_faces(film(attack, photo, replay_video), attack.fps, config, attack.name)
            spent += seconds
            # refused only if every face it showed is; one the gate would never have admitted is not counted
            peaks = [f.peak or 0.0 for f in faces]
            results.setdefault(kind, []).append((attack, max(peaks) if faces else UNSEEN))
            shown.setdefault(kind, []).append((attack, faces))
    tuning = {kind: [d for a, d in results[kind] if a.seed % 2 == 0 and d != UNSEEN] for kind in TARGETS}
    live_peaks = [f.peak for f in live if f.peak is not None]
    chosen = limit if limit is not None else choose_limit(tuning, live_peaks or [math.inf])
    return {"live": live, "attacks": results, "faces": shown, "limit": chosen, "cpu_s": spent,
            "cues": cue_limits(live, shown, chosen)}


#: The border and surface cues: each limit sits above every live face's value (the border's by one
#: more line kept, the surface's by half again), and is fused only if, beside the depth cue at its
#: limit, it refuses more of the tuning attacks.
CUE_MARGIN = {"border": lambda v: v + 1, "surface": lambda v: 1.5 * v}


def refused_by(faces: list[Face], depth_limit: float, cues: dict[str, float | None]) -> bool:
    """An attack is refused when every face it showed is: below the depth limit, or at a fused cue's limit."""
    def out(face: Face) -> bool:
        fired = any(limit is not None and getattr(face, cue) is not None and getattr(face, cue) >= limit
                    for cue, limit in cues.items())
        return fired or face.peak is None or face.peak < depth_limit
    return all(out(f) for f in faces)


def cue_limits(live: list[Face], shown: dict, depth_limit: float) -> dict:
    """Each cue's limit over the live faces, and the tuning attacks refused with and without it."""
    out = {}
    for cue, margin in CUE_MARGIN.items():
        values = [getattr(f, cue) for f in live if getattr(f, cue) is not None]
        limit = margin(max(values)) if values else None
        tuning = [faces for kind in TARGETS for a, faces in shown.get(kind, []) if a.seed % 2 == 0 and faces]
        before = sum(refused_by(f, depth_limit, {}) for f in tuning)
        after = sum(refused_by(f, depth_limit, {cue: limit}) for f in tuning) if limit is not None else before
        out[cue] = {"limit": limit, "live": values, "tuning_refused": (before, after, len(tuning)),
                    "fused": limit is not None and after > before}
    return out


def _replayed(shared: Path) -> list[np.ndarray]:
    """What a replay shows: the Hamilton clip's live face as a phone would have recorded it, the
    frames it is in view (from ``HAMILTON_FIRST``, 4 s) at the attacks' 15 fps, cropped around the
    head (the face about a third of the picture's width)."""
    path = shared / "faces" / "clips" / HAMILTON
    if not path.exists():
        return []
    frames, fps = read_clip(path)
    every = max(1, round(fps / 15))
    return [f[10:190, 130:370] for f in frames[HAMILTON_FIRST:HAMILTON_FIRST + 4 * round(fps):every]]


def report(result: dict) -> str:
    limit = result["limit"]
    live = [f.peak for f in result["live"]]
    lines = [f"liveness depth cue, limit {limit:.4f} (chosen on even-seed attacks and the live faces)",
             f"live faces the gate admits in the shared clips: {len(live)}, refused {refused(live, limit)}; "
             f"peak {_spread(live)}"]
    for face in result["live"]:
        wait = face.frames_to(limit)
        lines.append(f"  {face.source}: {len(face.frames)} landmark frames, peak {face.peak:.4f}, live after "
                     + (f"{wait} landmark frames" if wait is not None else "never (refused)"))
    for kind, items in result["attacks"].items():
        for half, parity in (("tuning", 0), ("test", 1)):
            values = [d for a, d in items if a.seed % 2 == parity and d != UNSEEN]
            unseen = sum(1 for a, d in items if a.seed % 2 == parity and d == UNSEEN)
            # refused before a full window of landmark frames: enforce says liveness_undecided, not not_live
            early = sum(1 for a, faces in result["faces"][kind] if a.seed % 2 == parity and faces
                        and refused_by(faces, limit, {}) and any(len(f.frames) < liveness.KEEP_FRAMES for f in faces))
            if values:
                lines.append(f"{kind:7} {half:6}: {len(values):3} attacks, refused {refused(values, limit):3} "
                             f"({100 * refused(values, limit) / len(values):5.1f} %; {early} gone before a full "
                             f"window: liveness_undecided); peak {_spread(values)}"
                             f"; {unseen} the gate would not have admitted")
            elif unseen:
                lines.append(f"{kind:7} {half:6}: none the gate would have admitted ({unseen} attacks)")
    fused = {cue: c["limit"] for cue, c in result["cues"].items() if c["fused"]}
    for cue, c in result["cues"].items():
        before, after, total = c["tuning_refused"]
        lines.append(f"{cue} cue: live faces {[round(v, 1) for v in c['live']]}, limit {c['limit']}; tuning attacks "
                     f"refused {before} of {total} by depth alone, {after} with it: "
                     + ("fused" if c["fused"] else "not fused (recorded in log only)"))
    for kind, items in result["faces"].items():
        for half, parity in (("tuning", 0), ("test", 1)):
            seen = [faces for a, faces in items if a.seed % 2 == parity and faces]
            if not seen:
                continue
            values = {cue: _spread([max((getattr(f, cue) or 0.0) for f in faces) for faces in seen])
                      for cue in ("border", "surface", "clipped")}
            lines.append(f"{kind:7} {half:6}: " + "; ".join(f"{cue} {v}" for cue, v in values.items())
                         + f"; refused with the fused cues {sum(refused_by(f, limit, fused) for f in seen)} of {len(seen)}")
    for face in result["live"]:
        lines.append(f"  live {face.source}: border {face.border}, surface {face.surface}, clipped {face.clipped}")
    lines.append(f"pipeline CPU, all passages: {result['cpu_s']:.0f} s")
    return "\n".join(lines)


def _spread(values: list[float | None]) -> str:
    seen = sorted(v for v in values if v is not None)
    if not seen:
        return "none measured"
    return f"min {seen[0]:.4f}, median {seen[len(seen) // 2]:.4f}, max {seen[-1]:.4f} ({len(values) - len(seen)} without)"


def dropped(frames: int, first: int, seed: int, reach: int = 30) -> list[int]:
    """The indices of ``frames`` a gate would see with frames dropped in pattern ``seed``: one to three
    bursts of 3 to 45 frames missing (a head turned away, detections that miss, the worker behind), each
    starting within ``reach`` frames after ``first`` (where the face is held for liveness); with every
    odd seed, also nothing after a frame in that span (the face walked out of frame)."""
    rng = np.random.default_rng(seed)
    missing: set[int] = set()
    for _ in range(int(rng.integers(1, 4))):
        start = first + int(rng.integers(1, reach))
        missing.update(range(start, start + int(rng.integers(3, 46))))
    end = first + int(rng.integers(3, reach)) if seed % 2 else frames
    return [i for i in range(min(end, frames)) if i not in missing]


def drops(shared: Path, patterns: int, config: Config) -> list[list]:
    """Each drop pattern's passages (the decisions on the Hamilton clip's live face) in ``enforce``."""
    from ..vision import encoders

    frames, fps = read_clip(shared / "faces" / "clips" / HAMILTON)
    start, stop = HAMILTON_FRAMES
    vision = config.vision.model_copy(update={"liveness": "enforce"})
    config = config.model_copy(update={"vision": vision})
    embed, encoders.embed_all = encoders.embed_all, \
        lambda rgb, boxes, points=None, only=None, **k: {"dlib": np.zeros((len(boxes), 128), np.float32)}
    try:
        out = []
        with FrameMemo().installed(embeddings=False):  # the patterns share the clip's frames: each detected once
            for seed in range(patterns):
                pipeline = Pipeline(config, AcceptAll())  # every face is the resident: only liveness refuses
                decided = [p for i in dropped(stop, HAMILTON_FIRST, seed) if i >= start
                           for p in pipeline.process(frames[i], i / fps)] + pipeline.finish()
                out.append(decided)
        return out
    finally:
        encoders.embed_all = embed


def drops_report(decided: list[list]) -> str:
    counted = [Counter(p.outcome if p.outcome == "grant" else p.reason for p in passages) for passages in decided]
    total = sum(counted, Counter())
    admitted = sum(1 for c in counted if c["grant"])
    lines = [f"{len(counted)} drop patterns on the Hamilton clip's live face, enforce at limit {liveness.LIMIT}: "
             f"admitted in {admitted}; refused not_live in {sum(1 for c in counted if c['not_live'])} "
             f"(never admitted after: {sum(1 for c in counted if c['not_live'] and not c['grant'])}); "
             f"liveness_undecided in {sum(1 for c in counted if c['liveness_undecided'])}",
             "decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items()))]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", type=int, default=40, help="attacks of each kind (print, screen); replays a quarter")
    parser.add_argument("--limit", type=float, default=None, help="judge at this limit instead of choosing one")
    parser.add_argument("--drops", type=int, default=None, metavar="N",
                        help="instead: the Hamilton clip's live face with frames dropped in N seeded patterns, in enforce")
    args = parser.parse_args()
    shared = shared_folder()
    if not (shared / "faces" / "clips").is_dir():
        raise SystemExit(f"{shared / 'faces' / 'clips'} is missing: the liveness bench needs the shared clips")
    started = time.monotonic()
    if args.drops is not None:
        print(drops_report(drops(shared, args.drops, Config())))
    else:
        print(report(run(shared, args.attacks, Config(), args.limit)))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
