"""Passages at lot scale: residents and strangers walking up to the gate camera, 1,400 on file.

    python -m lotcontrol.bench.passages [--shared DIR] [--passages N] [--seed S] [--protocol b|c]
                                        [--strangers N] [--enrollment camera|photo]
                                        [--encoder dlib|faceres|fused]
                                        [--workers N] [--frame-cache] [--progress FILE] [--json]

Each passage is a sequence of camera frames made with OpenCV from one faces-lot photo (LFW, about
65 px faces in 150 px thumbnails): a person walking up to the gate (the photo on the grey wall of the
scripted camera, growing from about a third to nine tenths of the frame's height, drifting sideways,
turning a few degrees in the picture plane and a little sideways by a perspective squeeze, with
Gaussian blur on moving frames, and one light per passage: gamma, contrast, brightness, slowly
drifting), then standing at the gate for a moment. 640x480 at 15 fps, 3 s. Every frame goes through
the real ``vision.pipeline.Pipeline(config, gallery)`` in frame order with frame times, exactly as
the vision worker runs it (in-process, no worker), with ``vision.liveness = "off"`` (the passages are
photos moved in the picture plane: flat pictures to liveness), and what it decides is counted.
``--encoder``: the space faces are matched in (``vision.encoder``; every template has every encoder's
embedding, as enrollment stores them):

- resident passages: a held-out photo (never an enrollment photo) of a faces-lot resident on file;
  admitted, refused, or admitted as someone else (wrong person);
- stranger passages: a faces-lot stranger not on file; any admission counts against.

On file: 1,400 people, as in protocol (b) of ``bench.accuracy``: every faces-lot resident whose first
photo enrolls, padded with strangers (picked with the seed; they never walk past) to 1,400.
``--protocol c``: residents with 4 or more photos enroll from their first 3 instead (and walk past
with one of the others). ``--enrollment photo``: one template per enrollment photo (the cached
encodings of bench.accuracy). ``--enrollment camera`` (default): gate-camera enrollment simulated:
those templates plus ``CAMERA_TEMPLATES`` frames of each enrollment photo filmed at the gate (near,
with the same kinds of pose, blur and light changes), encoded live once and cached in
~/.cache/lotcontrol-eval (the first run spends about 5 minutes on them on 2 cores).

Passages are picked with the seed (half residents, half strangers); every East Asian person of
EAST_ASIAN.txt who qualifies walks past first, so that subset is reported on its own beside the whole
set. Each passage's frames depend only on the seed and its number: the run is repeatable whatever
the number of worker processes. The stranger rate comes with its 95 % Clopper-Pearson upper bound.

``--frame-cache``: the passages' face detections and embeddings are kept in ~/.cache/lotcontrol-eval,
keyed by the frame's pixels (and the region, box and encoder), and a later run with it takes them from
there instead of computing them again (``FrameMemo``): the decisions are the same, the run is about
two to three times cheaper (HOG detection is about two thirds of a passage's CPU), e.g. the fused space
after the faceres one. The CPU per decision is then only counted on passages that took nothing from
the cache (``cpu_measured_passages``).

What it cannot show: a passage is made from one still photo, so its frames differ by the changes
applied, not by the expressions and head turns of a real walk; and the resident's probe photo was
taken on another day than their enrollment photo (LFW), as a gate-camera enrollment would not be.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import pickle
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lotcontrol.bench.accuracy import (CACHE, FULL_LOT, Person, clopper_pearson_upper, encode_photos, enrollable,
                                       load_people)
from lotcontrol.bench.frames import FrameMemo
from lotcontrol.config import Config, parse_config
from lotcontrol.files import write_atomic
from lotcontrol.sim.camera import staged_frame
from lotcontrol.sim.rig import shared_folder
from lotcontrol.vision import encoders
from lotcontrol.vision.faces import detect, read_photo
from lotcontrol.vision.matcher import GateGallery
from lotcontrol.vision.pipeline import Pipeline

FPS = 15.0
SIZE = (640, 480)
WALK_SECONDS = 2.0  # walking up to the gate
STAND_SECONDS = 1.0  # standing at the gate, facing the camera
#: Frames of the enrollment photo "filmed at the gate" added as templates with --enrollment camera.
CAMERA_TEMPLATES = 3
#: Bump when the frames or the camera templates change: the cache of camera templates is keyed by it.
#: (2: every encoder's embedding of each frame, not dlib's alone)
VERSION = 2
DEFAULT_PASSAGES = 400
TARGETS = {"resident_admitted_min": 0.90, "stranger_admitted_max": 0.005}  # issue 18's


# --- the film ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Light:
    gamma: float
    contrast: float
    brightness: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Light":
        return cls(float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))), float(rng.uniform(0.75, 1.15)),
                   float(rng.uniform(-30, 30)))


def film(rgb: np.ndarray, rng: np.random.Generator, *, heights: np.ndarray, light: Light,
         blur_chance: np.ndarray) -> list[np.ndarray]:
    """BGR frames of the photo on the grey wall, one per entry of ``heights`` (the photo's height as a
    share of the frame's), with a drifting position, roll, sideways squeeze, light and noise, and
    Gaussian blur with each frame's ``blur_chance``."""
    width, height = SIZE
    wall = staged_frame(None, width, height)
    photo = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    side = photo.shape[0]
    steps = len(heights)
    centre_x = rng.uniform(0.35, 0.65) * width + np.cumsum(rng.normal(0, 3, steps))
    roll = np.clip(rng.uniform(-4, 4) + np.cumsum(rng.normal(0, 0.8, steps)), -8, 8)  # degrees
    squeeze = np.clip(rng.uniform(-0.06, 0.06) + np.cumsum(rng.normal(0, 0.01, steps)), -0.1, 0.1)
    drift = np.cumsum(rng.normal(0, 0.01, steps))  # the light changes a little while they walk
    table_x = np.arange(256, dtype=np.float64) / 255.0
    frames = []
    for i in range(steps):
        size = heights[i] * height
        cx, cy = centre_x[i], height * 0.5
        half, k = size / 2, squeeze[i]
        corners = np.array([[-half * (1 - abs(k) / 2), -half * (1 + k)], [half * (1 - abs(k) / 2), -half * (1 - k)],
                            [half * (1 - abs(k) / 2), half * (1 - k)], [-half * (1 - abs(k) / 2), half * (1 + k)]])
        angle = math.radians(roll[i])
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        target = (corners @ rotation.T + [cx, cy]).astype(np.float32)
        source = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
        frame = wall.copy()
        cv2.warpPerspective(photo, cv2.getPerspectiveTransform(source, target), (width, height), dst=frame,
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        gamma = light.gamma * math.exp(drift[i])
        table = np.clip(255.0 * table_x ** gamma * light.contrast + light.brightness, 0, 255).astype(np.uint8)
        frame = cv2.LUT(frame, table)
        if rng.random() < blur_chance[i]:
            frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.5, 1.6)))
        noise = rng.integers(-3, 4, size=frame.shape, dtype=np.int16)
        frames.append(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames


def walk_up(rgb: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """A person walking up to the gate and standing there (FPS frames a second)."""
    walking, standing = int(WALK_SECONDS * FPS), int(STAND_SECONDS * FPS)
    near = rng.uniform(0.8, 0.95)
    heights = np.r_[np.linspace(0.33, near, walking), near + rng.normal(0, 0.01, standing)]
    blur = np.r_[np.full(walking, 0.5), np.full(standing, 0.15)]  # more motion blur while walking
    return film(rgb, rng, heights=heights, light=Light.random(rng), blur_chance=blur)


def gate_templates(path: str, seed: int, count: int = CAMERA_TEMPLATES) -> list[dict[str, np.ndarray]]:
    """Templates of one person as the gate camera would take them at enrollment: frames of their
    photo standing near, each with its own pose, light and blur, the largest face encoded by every
    encoder ({encoder: embedding}, as enrollment stores them)."""
    from lotcontrol.vision import encoders

    rgb = read_photo(path).rgb
    rng = np.random.default_rng([seed, zlib.crc32(Path(path).name.encode())])
    templates = []
    for _ in range(count):
        (frame,) = film(rgb, rng, heights=np.array([rng.uniform(0.75, 0.95)]), light=Light.random(rng),
                        blur_chance=np.array([0.3]))
        image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        boxes = detect(cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), 1)
        if boxes:
            found = encoders.embed_all(image, [boxes[0].scaled(2.0)], only=("dlib", "faceres"))
            templates.append({name: vectors[0] for name, vectors in found.items()})
    return templates


def _gate_templates_job(job: tuple[str, str, int]) -> tuple[str, list[dict[str, np.ndarray]]]:
    key, path, seed = job
    return key, gate_templates(path, seed)


def camera_templates(photos: dict[str, list[str]], seed: int, workers: int, say) -> dict[str, list[dict]]:
    """Gate-camera templates of everyone on file ({person: enrollment photos}), from the cache where
    it has them."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cache_file = CACHE / f"passages-camera-v{VERSION}-seed{seed}-k{CAMERA_TEMPLATES}.pickle"
    cache: dict[str, list[dict]] = pickle.loads(cache_file.read_bytes()) if cache_file.exists() else {}
    keys = {who: [who if i == 0 else f"{who}#{i}" for i in range(len(paths))] for who, paths in photos.items()}
    todo = [(key, path, seed) for who, paths in photos.items() for key, path in zip(keys[who], paths)
            if key not in cache]
    if todo:
        say(f"filming and encoding {len(todo) * CAMERA_TEMPLATES} gate-camera enrollment frames of {len(todo)} "
            f"photos on {workers} process(es) (cached for next time) ...")
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for done, (key, templates) in enumerate(pool.imap_unordered(_gate_templates_job, todo, chunksize=8)):
                cache[key] = templates
                if done % 200 == 199:
                    write_atomic(cache_file, pickle.dumps(cache))  # face templates: private (0600), whole
        write_atomic(cache_file, pickle.dumps(cache))
    return {who: [t for key in keys[who] for t in cache[key]] for who in photos}


# --- the frame cache (--frame-cache) ----------------------------------------------------------------


def frame_cache_file() -> Path:
    return CACHE / f"passages-frames-v{VERSION}.pickle"


def load_frame_memo() -> FrameMemo:
    path = frame_cache_file()
    return FrameMemo(pickle.loads(path.read_bytes()) if path.exists() else None)


def save_frame_memo(memo: FrameMemo) -> None:
    write_atomic(frame_cache_file(), pickle.dumps(memo.found))  # private (0600), as the encodings' cache


# --- the lot and its passages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Walk:
    """One passage to film: who, from which photo, and whom they should be admitted as (-1: nobody)."""

    number: int
    who: str
    photo: str
    truth: int
    east_asian: bool

    @property
    def stranger(self) -> bool:
        return self.truth < 0


def enrollment_photos(person: Person, several: bool) -> tuple[str, ...]:
    """The photos a person on file enrolled from: the first; with ``several``, a resident with 4 or
    more photos enrolls from the first 3 (protocol (c) of bench.accuracy). The rest may probe."""
    return person.photos[:3] if several and person.group == "residents" and len(person.photos) >= 4 \
        else person.photos[:1]


def build_lot(people: dict[str, Person], config: Config, seed: int, enrollment: str,
              workers: int, say=None, several: bool = False) -> tuple[list[str], GateGallery]:
    """Who is on file (index = resident id in the gallery) and the gallery in the space
    ``config.vision.encoder``, as protocol (b) (with ``several``: (c)). Every template has every
    encoder's embedding, as enrollment stores them."""
    current = encoders.settings()
    faceres = "faceres+mirror" if current.mirror else "faceres"
    encoded = encode_photos([x for p in people.values() if p.group in ("residents", "strangers") for x in p.photos],
                            "faces-lot")
    templates: dict[str, list[dict[str, np.ndarray]]] = {}
    used: dict[str, list[str]] = {}

    def template(photo: str) -> dict[str, np.ndarray] | None:
        found = enrollable(encoded[photo], config)  # the same checks whatever the encoder
        return None if found is None else {"dlib": found["dlib"], "faceres": found[faceres]}

    for p in people.values():
        if p.group != "residents":
            continue
        for photo in enrollment_photos(p, several):
            if (t := template(photo)) is not None:
                templates.setdefault(p.key, []).append(t)
                used.setdefault(p.key, []).append(photo)
    strangers = sorted(k for k, p in people.items() if p.group == "strangers")
    for i in np.random.default_rng((seed, 2)).permutation(len(strangers)):
        if len(templates) >= FULL_LOT:
            break
        if (t := template(people[strangers[i]].photos[0])) is not None:
            templates[strangers[i]] = [t]
            used[strangers[i]] = [people[strangers[i]].photos[0]]
    names = sorted(templates)
    if enrollment == "camera":
        extra = camera_templates({n: used[n] for n in names}, seed, workers, say or _progress)
        templates = {n: templates[n] + extra[n] for n in names}
    rows = [t for n in names for t in templates[n]]
    found = {name: np.array([t[name] for t in rows], dtype=np.float32) for name in ("dlib", "faceres")}
    ids = np.array([i for i, n in enumerate(names) for _ in templates[n]], dtype=np.int64)
    return names, GateGallery.from_embeddings(ids, found, config.match, config.vision.encoder)


def pick_walks(people: dict[str, Person], names: list[str], count: int, seed: int,
               several: bool = False, strangers: int | None = None) -> list[Walk]:
    """Resident passages (a photo of someone on file that they did not enroll from) and ``strangers``
    (default: half of ``count``) of strangers not on file; East Asian people first, then the rest at
    random."""
    stranger_count = count // 2 if strangers is None else strangers
    index = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng((seed, 3))
    held_out = {p.key: p.photos[len(enrollment_photos(p, several)):] for p in people.values()}
    residents = [p for p in people.values() if p.group == "residents" and p.key in index and held_out[p.key]]
    outsiders = [p for p in people.values() if p.group == "strangers" and p.key not in index]
    chosen: list[tuple[Person, str, int]] = []
    for pool, wanted, on_file in ((residents, count - stranger_count, True), (outsiders, stranger_count, False)):
        order = [pool[i] for i in rng.permutation(len(pool))]
        order.sort(key=lambda p: not p.east_asian)  # stable: East Asian first, each part still shuffled
        for p in order[:wanted]:
            photo = held_out[p.key][int(rng.integers(len(held_out[p.key])))] if on_file else p.photos[0]
            chosen.append((p, photo, index[p.key] if on_file else -1))
    return [Walk(n, p.key, photo, truth, p.east_asian) for n, (p, photo, truth) in enumerate(chosen)]


_LOT: dict = {}  # the config, gallery and seed, set before the worker processes fork


def run_walk(walk: Walk, lot: dict | None = None) -> dict:
    """Film one passage and run it through the pipeline: what was decided, and what it cost. ``lot``
    holds the config, gallery and seed (default: those set for the worker processes)."""
    lot = lot or _LOT
    config, gallery, seed = lot["config"], lot["gallery"], lot["seed"]
    memo: FrameMemo | None = lot.get("memo")
    frames = walk_up(read_photo(walk.photo).rgb, np.random.default_rng((seed, 4, walk.number)))
    pipeline = Pipeline(config, gallery)
    if memo is not None:
        memo.hits, memo.new = 0, {}
    started = time.process_time()
    decisions = []
    with memo.installed() if memo is not None else _nothing():
        for i, image in enumerate(frames):
            decisions += pipeline.process(image, i / FPS)
        decisions += pipeline.finish()
    cpu = time.process_time() - started
    cached = memo.hits if memo is not None else 0
    granted = {d.resident_id for d in decisions if d.outcome == "grant"}
    first = decisions[0] if decisions else None
    return {"number": walk.number, "who": walk.who, "photo": walk.photo, "stranger": walk.stranger,
            "east_asian": walk.east_asian, "admitted": walk.truth in granted,
            "admitted_anyone": bool(granted), "wrong": not walk.stranger and bool(granted - {walk.truth}),
            "granted_ids": sorted(int(g) for g in granted),  # index into who is on file
            "decided": first is not None, "first_outcome": first.outcome if first else "none",
            "first_reason": first.reason if first else None,
            "decision_cpu_s": first.cpu if first else None, "decision_encodings": first.frames if first else None,
            "decision_after_s": round(first.duration, 3) if first else None, "passage_cpu_s": round(cpu, 4),
            "cached_calls": cached,  # > 0: detections or embeddings from the frame cache, so its CPU is not the pipeline's
            "_new": memo.new if memo is not None else None}


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def run(shared: Path, *, passages: int = DEFAULT_PASSAGES, seed: int = 0, enrollment: str = "camera",
        protocol: str = "b", workers: int | None = None, config: Config | None = None, say=None,
        strangers: int | None = None, frame_cache: bool = False, progress: Path | None = None) -> dict:
    """The whole benchmark: the lot, its passages, the figures. ``progress``: a file the figures so far
    are written to every 50 passages ("complete": false until the last), for a long run."""
    if not (shared / "faces-lot" / "residents").is_dir():
        raise FileNotFoundError(f"{shared / 'faces-lot'} is absent: the passage benchmark needs it")
    config = config or Config()
    # the passages are filmed photos, flat pictures to liveness: it is off here (its refusals and its CPU
    # are bench.liveness's and bench.gate's), said explicitly whatever the default
    config = config.model_copy(update={"vision": config.vision.model_copy(update={"liveness": "off"})})
    say = say or _progress
    workers = workers or os.cpu_count() or 1
    started = time.monotonic()
    people = {k: p for k, p in load_people(shared).items() if p.group in ("residents", "strangers")}
    several = protocol == "c"
    names, gallery = build_lot(people, config, seed, enrollment, workers, say, several)
    walks = pick_walks(people, names, passages, seed, several, strangers)
    say(f"{len(names):,} on file ({len(gallery):,} templates, enrollment: {enrollment}); filming {len(walks)} "
        f"passages on {workers} process(es) ...")
    memo = load_frame_memo() if frame_cache else None
    if memo is not None:
        say(f"frame cache: {len(memo.found):,} detections and embeddings on file")
    _LOT.update(config=config, gallery=gallery, seed=seed, memo=memo)
    results = []

    def summary() -> dict:
        done = sorted(results, key=lambda r: r["number"])
        return {"on_file": len(names), "templates": len(gallery), "enrollment": enrollment, "protocol": protocol,
                "encoder": config.vision.encoder,
                "seed": seed, "cpu_s": round(sum(r["passage_cpu_s"] for r in done), 1),
                "passages": len(done), "planned": len(walks), "complete": len(done) == len(walks),
                "workers": workers, "seconds": round(time.monotonic() - started, 1),
                "frame_cache": frame_cache, "cached_calls": sum(r["cached_calls"] for r in done),
                "all": figures(done), "east_asian": figures([r for r in done if r["east_asian"]]),
                "others": figures([r for r in done if not r["east_asian"]]), "walks": done}

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for result in pool.imap(run_walk, running_order(walks), chunksize=2):
            new = result.pop("_new")
            if memo is not None:
                memo.found.update(new)
            results.append(result)
            if len(results) % 50 == 0:
                say(f"  {len(results)} of {len(walks)} passages")
                if progress is not None:
                    write_atomic(progress, json.dumps(summary(), indent=2).encode())
                if memo is not None and len(results) % 100 == 0:
                    save_frame_memo(memo)  # an interrupted run keeps what it computed
    if memo is not None:
        save_frame_memo(memo)
    if progress is not None:
        write_atomic(progress, json.dumps(summary(), indent=2).encode())
    return summary()


def running_order(walks: list[Walk]) -> list[Walk]:
    """The order the passages run in: residents' and strangers' interleaved in proportion, each kind in
    its own order (East Asian people first), so that a long run stopped part way has both in the shares
    of the whole. A passage's frames depend on its number, not on when it runs."""
    position: dict[int, float] = {}
    for stranger in (False, True):
        kind = [w for w in walks if w.stranger == stranger]
        position |= {w.number: (i + 0.5) / len(kind) for i, w in enumerate(kind)}
    return sorted(walks, key=lambda w: (position[w.number], w.stranger))


def figures(results: list[dict]) -> dict:
    residents = [r for r in results if not r["stranger"]]
    strangers = [r for r in results if r["stranger"]]
    decided = [r for r in results if r["decided"]]
    admitted = sum(r["admitted"] for r in residents)
    intruders = sum(r["admitted_anyone"] for r in strangers)
    measured = [r for r in decided if not r.get("cached_calls")]  # the frame cache's answers cost no CPU
    cpu = [r["decision_cpu_s"] for r in measured]
    encodings = [r["decision_encodings"] for r in decided]
    return {
        "resident_passages": len(residents), "residents_admitted": admitted,
        "resident_admitted_rate": admitted / len(residents) if residents else None,
        "wrong_person": sum(r["wrong"] for r in residents),
        "stranger_passages": len(strangers), "strangers_admitted": intruders,
        "stranger_admitted_rate": intruders / len(strangers) if strangers else None,
        "stranger_admitted_bound95": clopper_pearson_upper(intruders, len(strangers)) if strangers else None,
        "undecided": len(results) - len(decided),
        "cpu_per_decision_s": {"median": _median(cpu), "mean": _mean(cpu)},
        "cpu_measured_passages": len(measured),
        "encodings_per_decision": {"median": _median(encodings), "mean": _mean(encodings),
                                   "residents_mean": _mean([r["decision_encodings"] for r in residents if r["decided"]]),
                                   "strangers_mean": _mean([r["decision_encodings"] for r in strangers if r["decided"]])},
        "cpu_per_passage_s": _mean([r["passage_cpu_s"] for r in results if not r.get("cached_calls")]),
    }


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _median(values: list) -> float | None:
    return float(np.median(values)) if values else None


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def report(result: dict) -> str:
    lines = [f"passages at lot scale: {result['on_file']:,} on file ({result['templates']:,} templates, "
             f"{result['enrollment']} enrollment, protocol ({result.get('protocol', 'b')}), encoder space "
             f"{result.get('encoder', 'dlib')}), {result['passages']} "
             + ("" if result.get("complete", True) else f"of {result['planned']} planned (stopped part way) ")
             + f"passages, seed {result['seed']}, {result['seconds']} s on {result['workers']} process(es), "
             f"{result.get('cpu_s', 0):.0f} CPU s in the passages"
             + (f"; frame cache: {result.get('cached_calls', 0):,} detections and embeddings taken from it, CPU per "
                f"decision on the {result['all'].get('cpu_measured_passages')} passages that took none"
                if result.get("frame_cache") else ""),
             "| subset | resident passages admitted | wrong person | stranger passages admitted (95 % bound) "
             "| CPU per decision (median) | encodings per decision (mean: residents / strangers) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, label in (("all", "all"), ("east_asian", "East Asian"), ("others", "not East Asian")):
        f = result[key]
        enc = f["encodings_per_decision"]
        lines.append(
            f"| {label} | {f['residents_admitted']}/{f['resident_passages']} ({_pct(f['resident_admitted_rate'])}) "
            f"| {f['wrong_person']} | {f['strangers_admitted']}/{f['stranger_passages']} "
            f"({_pct(f['stranger_admitted_rate'])}; {_pct(f['stranger_admitted_bound95'])}) "
            f"| {_fmt(f['cpu_per_decision_s']['median'], 3)} s "
            f"| {_fmt(enc['mean'], 1)} ({_fmt(enc['residents_mean'], 1)} / {_fmt(enc['strangers_mean'], 1)}) |")
    f = result["all"]
    lines.append(f"targets: resident passages admitted >= {100 * TARGETS['resident_admitted_min']:g} % "
                 f"({'met' if (f['resident_admitted_rate'] or 0) >= TARGETS['resident_admitted_min'] else 'NOT met'}), "
                 f"stranger passages admitted <= {100 * TARGETS['stranger_admitted_max']:g} % (observed "
                 f"{'met' if (f['stranger_admitted_rate'] or 0) <= TARGETS['stranger_admitted_max'] else 'NOT met'}; "
                 f"95 % bound {'met' if (f['stranger_admitted_bound95'] or 1) <= TARGETS['stranger_admitted_max'] else 'NOT met'}"
                 f"), nobody taken for another ({'met' if f['wrong_person'] == 0 else 'NOT met'})")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=None, help="the shared photos (default ../shared)")
    parser.add_argument("--passages", type=int, default=DEFAULT_PASSAGES, help="passages to film, half strangers")
    parser.add_argument("--strangers", type=int, default=None,
                        help="how many of the passages are strangers' (default half; 600 or more are needed to "
                             "show a stranger rate of 0.5 %%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--enrollment", choices=("camera", "photo"), default="camera",
                        help="gate-camera enrollment simulated (default), or the enrollment photo(s) alone")
    parser.add_argument("--protocol", choices=("b", "c"), default="b",
                        help="b: everyone on file from one photo (default); c: residents with 4+ photos from 3")
    parser.add_argument("--encoder", choices=encoders.SPACES, default=None,
                        help="the space faces are matched in (vision.encoder; default: the shipped default)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--frame-cache", action="store_true",
                        help="keep the frames' detections and embeddings in ~/.cache/lotcontrol-eval and take "
                             "them from there (same decisions, cheaper; CPU per decision only where none was)")
    parser.add_argument("--progress", type=Path, default=None, metavar="FILE",
                        help="write the figures so far to FILE (JSON) every 50 passages, for a long run")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.passages < 2:
        parser.error("--passages must be at least 2")
    if args.strangers is not None and not 0 < args.strangers < args.passages:
        parser.error("--strangers must be between 0 and --passages")
    try:
        config = parse_config({"vision": {"encoder": args.encoder}} if args.encoder else {})
        result = run(args.shared or shared_folder(), passages=args.passages, seed=args.seed,
                     enrollment=args.enrollment, protocol=args.protocol, workers=args.workers, config=config,
                     strangers=args.strangers, frame_cache=args.frame_cache, progress=args.progress)
    except FileNotFoundError as exc:
        parser.exit(1, f"error: {exc} (--shared DIR, or $LOTCONTROL_SHARED)\n")
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
