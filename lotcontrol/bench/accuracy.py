"""How often the matcher accepts a stranger or refuses a resident: 1:N on real labeled photos.

    .venv/bin/python -m lotcontrol.bench.accuracy [--shared ../shared] [--sweep]

Two sets, both outside the repository (../shared):

- faces/: enroll up to 3 photos of each person with 6 or more, probe with the rest; the people
  held out (every 4th such person, and everyone with fewer photos) probe as strangers.
- faces-lot/: 805 residents enrolled from one photo and probed with their other; 595 of the
  1,518 strangers enrolled as well to make the 1,400 residents of a full lot, the other 923 probe
  as strangers. Also the 805-resident gallery probed by all 1,518 strangers.

Enrollment photos pass the same checks as `lotcontrol enroll` (one face, size, sharpness);
probes are identified like `lotcontrol identify` (the largest face, no quality gate), one photo
per decision. Encodings are cached in ~/.cache/lotcontrol-eval so a sweep reruns in seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lotcontrol.config import Config, MatchConfig
from lotcontrol.errors import PhotoError
from lotcontrol.vision.faces import PHOTO_SUFFIXES, faces_in_photo, read_photo
from lotcontrol.vision.matcher import Gallery
from lotcontrol.sim.rig import shared_folder

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lotcontrol-eval"


@dataclass(frozen=True)
class Seen:
    """Every face in one photo: (width in px, sharpness, encoding), largest first."""

    faces: list[tuple[int, float, np.ndarray]]


def _encode(path: str) -> tuple[str, Seen | None]:
    try:
        photo = read_photo(path)
    except PhotoError:
        return path, None
    return path, Seen([(f.box.width, f.sharpness, f.encoding) for f in faces_in_photo(photo)])


class _Unpickler(pickle.Unpickler):
    """Finds Seen whether the cache was written by `python -m lotcontrol.bench.accuracy` or an import."""

    def find_class(self, module, name):
        if name == "Seen":
            return Seen
        return super().find_class(module, name)


def _load(path: Path) -> dict:
    with path.open("rb") as file:
        return _Unpickler(file).load()


def encode_all(paths: list[str], name: str) -> dict[str, Seen | None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    cache_file = CACHE / f"{name}.pickle"
    cache: dict[str, Seen | None] = _load(cache_file) if cache_file.exists() else {}
    todo = [p for p in paths if p not in cache]
    if todo:
        print(f"encoding {len(todo)} photos of {name} on {os.cpu_count()} cores ...", flush=True)
        with multiprocessing.get_context("fork").Pool() as pool:
            for path, seen in pool.imap_unordered(_encode, todo, chunksize=8):
                cache[path] = seen
        cache_file.write_bytes(pickle.dumps(cache))
    return {p: cache[p] for p in paths}


def photos(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def enrollable(seen: Seen | None, config: Config) -> np.ndarray | None:
    """The template `lotcontrol enroll` would store for this photo, or None if it would refuse it."""
    if seen is None:
        return None
    large = [f for f in seen.faces if f[0] >= config.enroll.min_face_px]
    if len(large) != 1 or large[0][1] < config.enroll.min_sharpness:
        return None
    return large[0][2]


@dataclass
class Split:
    gallery: dict[str, list[np.ndarray]]
    genuine: list[tuple[str, np.ndarray | None]]  # (true identity, probe encoding or None: no face)
    strangers: list[np.ndarray | None]


def build_split(enroll: dict[str, list[Seen | None]], probes: dict[str, list[Seen | None]],
                strangers: list[Seen | None], config: Config) -> Split:
    gallery = {}
    for who, seens in enroll.items():
        templates = [t for t in (enrollable(s, config) for s in seens) if t is not None]
        if templates:
            gallery[who] = templates
    largest = lambda s: s.faces[0][2] if s and s.faces else None  # noqa: E731
    genuine = [(who, largest(s)) for who, seens in probes.items() if who in gallery for s in seens]
    return Split(gallery, genuine, [largest(s) for s in strangers])


def evaluate(split: Split, settings: MatchConfig) -> dict[str, float]:
    names = sorted(split.gallery)
    ids = {n: i for i, n in enumerate(names)}
    matrix = np.array([t for n in names for t in split.gallery[n]], dtype=np.float32)
    labels = np.array([ids[n] for n in names for _ in split.gallery[n]])
    gallery = Gallery(matrix, labels, settings)
    ok = refused = wrong = 0
    for who, encoding in split.genuine:
        if encoding is None:
            refused += 1
            continue
        m = gallery.match(encoding)
        if m.resident_id is None:
            refused += 1
        elif m.resident_id == ids[who]:
            ok += 1
        else:
            wrong += 1
    accepted = sum(1 for e in split.strangers if e is not None
                   and gallery.match(e).accepted)
    return {"residents": len(names), "genuine": len(split.genuine), "refused": refused, "wrong": wrong,
            "strangers": len(split.strangers), "stranger_accepted": accepted,
            "refused_pct": 100 * refused / max(len(split.genuine), 1),
            "stranger_pct": 100 * accepted / max(len(split.strangers), 1)}


def faces_split(shared: Path, config: Config) -> Split:
    root = shared / "faces"
    people = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in ("misc", "clips"))
    lists = {p: photos(root / p) for p in people}
    seen = encode_all([x for ps in lists.values() for x in ps], "faces")
    big = [p for p in people if len(lists[p]) >= 6]
    held_out = set(big[3::4]) | {p for p in people if len(lists[p]) < 6}
    enrolled = [p for p in people if p not in held_out]
    return build_split(
        {p: [seen[x] for x in lists[p][:3]] for p in enrolled},
        {p: [seen[x] for x in lists[p][3:]] for p in enrolled},
        [seen[x] for p in sorted(held_out) for x in lists[p]], config)


def lot_split(shared: Path, config: Config, full_lot: bool) -> Split:
    root = shared / "faces-lot"
    residents = sorted(p.name for p in (root / "residents").iterdir())
    strangers = sorted(p.name for p in (root / "strangers").iterdir())
    res_photos = {r: photos(root / "residents" / r) for r in residents}
    str_photos = {s: photos(root / "strangers" / s) for s in strangers}
    seen = encode_all([x for ps in (*res_photos.values(), *str_photos.values()) for x in ps], "faces-lot")
    padding = strangers[::2][:595] if full_lot else []
    probing = [s for s in strangers if s not in set(padding)]
    enroll = {r: [seen[res_photos[r][0]]] for r in residents}
    enroll.update({s: [seen[str_photos[s][0]]] for s in padding})
    return build_split(enroll, {r: [seen[res_photos[r][1]]] for r in residents},
                       [seen[str_photos[s][0]] for s in probing], config)


def line(label: str, r: dict[str, float]) -> str:
    return (f"{label:<42} residents {r['residents']:>5}  genuine refused {r['refused']:>4}/{r['genuine']:<4} "
            f"({r['refused_pct']:5.1f} %)  wrong person {r['wrong']:>2}  strangers accepted "
            f"{r['stranger_accepted']:>3}/{r['strangers']:<4} ({r['stranger_pct']:5.2f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=shared_folder())
    parser.add_argument("--sweep", action="store_true", help="Also print a grid of thresholds and margins.")
    args = parser.parse_args()
    config = Config()
    splits = {"faces (3 enrolled per person)": faces_split(args.shared, config)}
    if (args.shared / "faces-lot").is_dir():
        splits["faces-lot, 805 on file, 1,518 strangers"] = lot_split(args.shared, config, False)
        splits["faces-lot, 1,400 on file, 923 strangers"] = lot_split(args.shared, config, True)
    m = config.match
    print(f"\ndefaults: accept_distance {m.accept_distance}, crowding {m.crowding_factor} x "
          f"{m.crowding_neighbours} nearest, margin {m.margin}, min_face_px {config.enroll.min_face_px}, "
          f"min_sharpness {config.enroll.min_sharpness}")
    for label, split in splits.items():
        print(line(label, evaluate(split, m)))
    if args.sweep:
        for label, split in splits.items():
            print(f"\n{label}")
            for accept in (0.40, 0.45, 0.50, 0.55, 0.60):
                for factor, neighbours in ((0.8, 0), (0.75, 3), (0.8, 3), (0.85, 3)):
                    for margin in (0.0, 0.05):
                        settings = MatchConfig(accept_distance=accept, crowding_factor=factor,
                                               crowding_neighbours=neighbours, margin=margin)
                        crowd = f"crowding {factor:.2f}" if neighbours else "no crowding "
                        print(line(f"  {accept:.2f} {crowd} margin {margin:.2f}", evaluate(split, settings)))

if __name__ == "__main__":
    main()
