"""Putting residents' faces on file: check each photo, flag look-alikes, write all or nothing.

``analyse_photos`` turns photos into faces (in parallel worker processes for a folder); ``enroll``
writes one resident's accepted faces in a single transaction, after refusing photos already on file
(the same file, or the same face: within ``enroll.duplicate_distance`` of a template on file, as a
re-encoded or resized copy is). The faces must be one person's (``SamePerson``, the rule camera
enrollment keeps: ``enroll.camera_same_person`` from the resident's templates on file and the photos
before): otherwise nothing is written unless staff confirm them as one person, which is logged.
Each face is stored with every available encoder's embedding (dlib's, and faceres's when its model is
installed: vision/encoders.py); the checks compare faces in the configured space (``vision.encoder``),
and faces on file with dlib alone on dlib.
A face near another resident's (``match.lookalike_distance``) is enrolled all the same and the pair
is flagged for staff (``residents check``): dropping one of a pair left the other on file to collect
both their faces, and the gate holds look-alikes to a stricter limit (vision.matcher).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import Config, EnrollConfig
from .errors import EventNotUsable, PhotoError, ResidentNotFound
from .phrases import Phrase
from .vision import encoders
from .vision.capture import Candidate
from .vision.faces import (PHOTO_SUFFIXES, Face, enrollment_face, faces_in_photo, load_models, read_limited,
                           read_photo)
from .vision.matcher import GateGallery, SamePerson
from .store import Resident, Store, Template, normalize_name


@dataclass(frozen=True)
class Analysed:
    """One photo after face work: its face, or why it cannot be used."""

    path: str
    sha256: str | None
    face: Face | None = None
    error: str | None = None
    #: a frame FaceCapture chose: checked as one person with the other frames and spread apart at the
    #: camera already, so only checked against the resident's templates on file here
    captured: bool = False
    #: the encoders' embeddings of the face other than dlib's (``face.encoding``): {name: vector}
    others: dict = field(default_factory=dict)

    @property
    def embeddings(self) -> dict[str, np.ndarray]:
        """Every embedding of the face: {encoder: vector}."""
        return {"dlib": self.face.encoding, **self.others}


@dataclass
class EnrollResult:
    name: str
    resident: Resident | None = None
    created: bool = False
    enrolled: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (photo, reason)
    already: list[tuple[str, str]] = field(default_factory=list)  # (photo, resident it is enrolled for)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (photo, what its face is a copy of)
    lookalikes: list[tuple[str, float]] = field(default_factory=list)  # (other resident, distance), flagged
    #: (photo, why): faces too far from the rest to be the same person; nothing was written for them
    not_one_person: list[tuple[str, str]] = field(default_factory=list)
    confirmed_same_person: bool = False  # staff confirmed faces that broke the rule as one person

    @property
    def refused(self) -> list[tuple[str, str]]:
        """Every photo not enrolled, with why, in the order: unusable, on file, copies, not one person."""
        return [*self.rejected, *((p, Phrase("photo.already", owner=o)) for p, o in self.already),
                *self.duplicates, *([] if self.confirmed_same_person else self.not_one_person)]


def analyse_photo(path: str, settings: EnrollConfig) -> Analysed:
    try:
        photo = read_photo(path, max_megapixels=settings.max_megapixels, max_mb=settings.max_file_mb)
        face = enrollment_face(photo, min_face_px=settings.min_face_px, min_sharpness=settings.min_sharpness)
    except PhotoError as exc:
        return Analysed(path, None, error=_reason(exc, path))
    found = encoders.embed_all(photo.rgb, [face.box.scaled(1 / photo.scale)], dlib=face.encoding[None])
    return Analysed(path, photo.sha256, face=face, others={k: v[0] for k, v in found.items() if k != "dlib"})


def _reason(exc: PhotoError, path: str) -> str:
    """The reason alone (a phrase: lotcontrol.phrases): the messages start with the photo's path, which
    the report shows already."""
    if exc.code == "photo.named" and exc.params.get("path") == path:
        return exc.params["reason"]
    text = str(exc)
    return text[len(path) + 2:] if text.startswith(f"{path}: ") else text


def photo_sha256(path: str, settings: EnrollConfig) -> str | None:
    """The photo file's sha256, None if it cannot be read within ``enroll.max_file_mb`` (the face work
    then says why)."""
    try:
        return hashlib.sha256(read_limited(path, settings.max_file_mb)).hexdigest()
    except PhotoError:
        return None


def _analyse_in_worker(job: tuple[str, EnrollConfig]) -> Analysed:
    return analyse_photo(*job)


def analyse_photos(paths: Iterable[str], settings: EnrollConfig, workers: int = 1) -> Iterator[Analysed]:
    """Analyse photos in order; with ``workers`` > 1 in that many processes."""
    yield from in_order(_analyse_in_worker, [(p, settings) for p in paths], workers)


def _faces_in_worker(job: tuple[str, EnrollConfig]) -> tuple[list[tuple[Face, dict]], str | None]:
    path, settings = job
    try:
        photo = read_photo(path, max_megapixels=settings.max_megapixels, max_mb=settings.max_file_mb)
    except PhotoError as exc:
        return [], _reason(exc, path)
    faces = faces_in_photo(photo)
    found = encoders.embed_all(photo.rgb, [f.box.scaled(1 / photo.scale) for f in faces],
                               dlib=np.array([f.encoding for f in faces], np.float32).reshape(-1, encoders.DLIB_DIM))
    return [(face, {name: vectors[i] for name, vectors in found.items()}) for i, face in enumerate(faces)], None


def faces_of_photos(paths: Iterable[str], settings: EnrollConfig, workers: int = 1
                    ) -> Iterator[tuple[list[tuple[Face, dict]], str | None]]:
    """Every face in each photo with every available encoder's embedding, in order (``identify``):
    ([(face, {encoder: vector}), ...], None), or ([], why it cannot be read)."""
    yield from in_order(_faces_in_worker, [(p, settings) for p in paths], workers)


def in_order(function, jobs: list, workers: int) -> Iterator:
    """The face work ``function`` over ``jobs``, results in order; with ``workers`` > 1 in that many
    processes."""
    if workers <= 1 or len(jobs) < 2:
        yield from map(function, jobs)
        return
    # The face models are checked and loaded here, once, and every worker forked below starts with them
    # (pages shared with this process) instead of reading and checking 130 MB itself: an enroll-folder
    # run of 12 photos on 2 cores took 3.8 CPU-s with each worker loading them.
    load_models()
    # fork: the workers start with this process's modules imported already (spawn took about 0.35 s
    # longer per enroll-folder run for the same work). They need no BLAS/OpenMP thread limit: dlib-bin
    # is built without BLAS (dlib.DLIB_USE_BLAS is False), and the rest (PIL, OpenCV image ops, numpy
    # element-wise) calls no BLAS, so each worker computes on one thread as it is. Were BLAS on that
    # path, OMP_NUM_THREADS and the like would have to be in the environment the workers start with
    # (spawn, as vision/supervisor.py does with ONE_THREAD): a forked worker has its BLAS loaded
    # already, and setting them in it is too late.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(function, jobs, chunksize=4)


def worker_count(settings: EnrollConfig) -> int:
    return settings.workers or os.cpu_count() or 1


def enroll(
    store: Store, gallery: GateGallery, name: str, photos: list[Analysed], config: Config, *,
    confirm_same_person: bool = False, by: str | None = None, **fields: str | None,
) -> EnrollResult:
    """Add the accepted photos to resident ``name``, creating them if new and any photo passed.

    ``fields`` (unit, phone, note, valid_from, valid_until) are set on a new resident and update an
    existing one. Nothing is written when no photo passes, or when the faces are not one person's
    (``not_one_person``) unless ``confirm_same_person``. ``by`` (the web console's user) goes into
    the events.
    """
    name = normalize_name(name)
    result = EnrollResult(name)
    settings = config.enroll
    with store.transaction():
        try:
            existing: Resident | None = store.resident(name)
        except ResidentNotFound:
            existing = None
        on_file = _on_file(gallery, existing.id if existing else None)
        owner_name = existing.name if existing else name
        seen: dict[str, str] = {}
        accepted: list[Analysed] = []
        near: dict[int, float] = {}  # another resident's id -> the nearest distance to a new face
        for photo in photos:
            if photo.error:
                result.rejected.append((photo.path, photo.error))
                continue
            owner = store.photo_owner(photo.sha256)
            if owner is not None:
                result.already.append((photo.path, owner))
                continue
            if photo.sha256 in seen:
                result.rejected.append((photo.path, Phrase("photo.same_file", other=seen[photo.sha256])))
                continue
            seen[photo.sha256] = photo.path
            copy = _copy_of(photo, gallery.space, on_file, accepted, owner_name, settings.duplicate_distance)
            if copy is not None:
                result.duplicates.append((photo.path, copy))
                continue
            other_id, distance, _ = gallery.nearest(photo.embeddings, exclude=existing.id if existing else None)
            if other_id is not None and distance <= settings.duplicate_distance:
                other = store.resident_by_id(other_id)
                result.duplicates.append((photo.path, Phrase("copy.other", name=other.name, distance=f"{distance:.2f}")))
                continue
            if other_id is not None and distance <= config.match.lookalike_distance:
                near[other_id] = min(distance, near.get(other_id, distance))
            accepted.append(photo)
        far = _not_one_person(accepted, gallery.space, on_file, owner_name, settings.camera_same_person)
        result.not_one_person = far
        if far and not confirm_same_person:
            accepted = []
        if not accepted:
            result.resident = existing
            return result
        if existing is None:
            resident = store.add_resident(name, **fields)
            result.created = True
        else:
            resident = store.update_resident(name, **fields)
        store.add_templates(resident.id, [
            Template(p.embeddings, p.sha256, p.face.box.width, p.face.sharpness) for p in accepted
        ])
        for other_id, distance in sorted(near.items(), key=lambda kv: kv[1]):
            other = store.resident_by_id(other_id)
            if other is not None:
                store.flag_lookalike(resident.id, other_id, distance)
                result.lookalikes.append((other.name, round(distance, 3)))
        store.log_event("resident.enrolled", resident.id, {
            "templates_added": len(accepted), "new_resident": result.created,
            **({"lookalikes": [n for n, _ in result.lookalikes]} if result.lookalikes else {}),
            **({"by": by} if by else {}),
        })
        if far:
            result.confirmed_same_person = True
            store.log_event("resident.same_person_confirmed", resident.id, {
                "photos": [path for path, _ in far], "limit": settings.camera_same_person, **({"by": by} if by else {})})
        result.enrolled = [p.path for p in accepted]
    result.resident = store.resident(name)
    return result


def _on_file(gallery: GateGallery, resident_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A resident's templates on file: those in the gallery's space, and those with dlib alone (dlib's)."""
    empty = gallery.main.matrix[:0].astype(np.float32), np.zeros((0, encoders.DLIB_DIM), np.float32)
    if resident_id is None:
        return empty
    return (gallery.main.templates_of(resident_id).astype(np.float32),
            gallery.dlib_only.templates_of(resident_id).astype(np.float32) if gallery.dlib_only else empty[1])


def _vector(photo: Analysed, space: str) -> np.ndarray:
    """The photo's face in ``space`` (dlib's when it lacks the space's encoders: faceres not installed)."""
    vector = encoders.face_vector(space, photo.embeddings)
    return photo.face.encoding if vector is None else vector


def _distance(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(np.linalg.norm(a - b)) if a.shape == b.shape else None


def _copy_of(photo: Analysed, space: str, on_file: tuple[np.ndarray, np.ndarray], accepted: list[Analysed],
             name: str, limit: float) -> str | None:
    """What ``photo``'s face is a copy of (within ``limit``: the same photo re-encoded, resized or
    cropped), or None. Compared in ``space`` with the faces that are in it, on dlib with the others."""
    nearest = [float(np.min(np.linalg.norm(matrix - vector, axis=1)))
               for matrix, vector in zip(on_file, (_vector(photo, space), photo.face.encoding))
               if len(matrix) and matrix.shape[1] == len(vector)]
    if nearest and min(nearest) <= limit:
        return Phrase("copy.on_file", name=name, distance=f"{min(nearest):.2f}")
    for other in ([] if photo.captured else accepted):
        distance = _distance(_vector(other, space), _vector(photo, space))
        if distance is None:
            distance = _distance(other.face.encoding, photo.face.encoding)
        if distance <= limit:
            return Phrase("copy.given", path=other.path, distance=f"{distance:.2f}")
    return None


def _not_one_person(accepted: list[Analysed], space: str, on_file: tuple[np.ndarray, np.ndarray], name: str,
                    limit: float) -> list[tuple[str, str]]:
    """The photos whose faces break the ``SamePerson`` rule after the resident's templates on file,
    with why: in ``space`` from the templates on file in it, and on dlib from those with dlib alone."""
    rule, old = SamePerson(limit, space), SamePerson(limit)
    for vector in on_file[0]:
        rule.add(vector)
    for vector in on_file[1]:
        old.add(vector)
    far = []
    for index, photo in enumerate(accepted):
        vector = _vector(photo, space)
        distance = rule.distance(vector) if photo.captured else rule.add(vector)
        broken = rule if rule.breaks(distance) else None
        if broken is None and len(on_file[1]):
            distance = old.distance(photo.face.encoding)
            broken = old if old.breaks(distance) else None
        if broken is not None:
            before = (Phrase("person.on_file", name=name) if len(on_file[0]) or len(on_file[1])
                      else accepted[0].path if index == 1 else Phrase("person.before"))
            far.append((photo.path, Phrase("person.far", distance=f"{distance:.2f}", before=before,
                                           limit=broken.described)))
    return far


def duplicate_check_gallery(store: Store, config: Config) -> GateGallery:
    """The gallery ``enroll`` checks new faces against, in the configured space: plain distances (no
    crowding limit, which costs O(templates²) to compute and would make a folder import quadratic)."""
    return GateGallery.from_store(store, config.match.model_copy(
        update={"crowding_neighbours": 0, "lookalike_distance": 0.0, "max_stranger_rate": None}),
        config.vision.encoder)


def folder_photos(folder: Path) -> tuple[dict[str, list[str]], list[str]]:
    """``folder/<resident name>/*.jpg|jpeg|png`` as {name: photos}, and the other files passed over."""
    residents: dict[str, list[str]] = {}
    ignored: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(str(entry))
            continue
        photos = []
        for item in sorted(entry.iterdir()):
            if item.is_file() and item.suffix.lower() in PHOTO_SUFFIXES:
                photos.append(str(item))
            elif not item.name.startswith("."):
                ignored.append(str(item))
        residents[entry.name] = photos
    return residents, ignored


@dataclass
class FolderSummary:
    results: list[EnrollResult] = field(default_factory=list)
    refused_names: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)
    ignored: list[str] = field(default_factory=list)

    @property
    def residents_added(self) -> int:
        return sum(r.created for r in self.results)

    @property
    def photos_enrolled(self) -> int:
        return sum(len(r.enrolled) for r in self.results)

    @property
    def photos_skipped(self) -> int:
        return sum(len(r.already) + len(r.duplicates) for r in self.results)

    @property
    def rejected(self) -> list[tuple[str, str]]:
        return [item for r in self.results for item in (*r.rejected, *r.not_one_person)]

    @property
    def not_one_person(self) -> list[EnrollResult]:
        """The residents whose folder held faces of more than one person: nothing was enrolled for them."""
        return [r for r in self.results if r.not_one_person]


def enroll_folder(store: Store, folder: Path, config: Config, *,
                  workers: int | None = None, progress=None) -> FolderSummary:
    """Enroll ``folder/<name>/*.jpg``: photos already on file are skipped without face work, the rest
    are encoded on all cores, then each resident is written in their own transaction (an
    interrupted import keeps every resident finished so far and can simply be run again).
    ``progress(n)`` is called as photos are done."""
    encoders.require(config.vision.encoder)  # a face without the space's encoder would not be matched in it
    summary = FolderSummary()
    by_name, summary.ignored = folder_photos(folder)
    todo: dict[str, list[str]] = {}
    for folder_name, paths in by_name.items():
        try:
            normalize_name(folder_name)
        except ValueError as exc:
            summary.refused_names.append((str(folder / folder_name), str(exc)))
            continue
        todo[folder_name] = paths
    known = {p: store.photo_owner(sha) for p in (p for ps in todo.values() for p in ps)
             if (sha := photo_sha256(p, config.enroll)) is not None}
    fresh = [p for ps in todo.values() for p in ps if known.get(p) is None]
    if progress:
        progress(len([p for p in known if known[p] is not None]))
    analysed: dict[str, Analysed] = {}
    for item in analyse_photos(fresh, config.enroll, workers or worker_count(config.enroll)):
        analysed[item.path] = item
        if progress:
            progress(1)
    gallery = duplicate_check_gallery(store, config)
    for folder_name, paths in todo.items():
        photos = [analysed.get(p) or Analysed(p, photo_sha256(p, config.enroll)) for p in paths]
        gallery = gallery.refreshed(store)
        result = enroll(store, gallery, folder_name, photos, config)
        summary.results.append(result)
    return summary


# Faces come from photos, from the gate camera (``camera_photos``: the templates ``vision.capture``
# chose; no photo exists) or from the snapshot of a refused passage (``event_photo``).


def camera_photos(candidates: list[Candidate]) -> list[Analysed]:
    """The frames chosen at the camera as ``enroll`` takes them: each identified by the sha256 of its
    template (no photo exists, and none is stored), named by when it was seen and how it was turned."""
    return [Analysed(f"camera frame at {c.time:.1f} s (turn {c.turn:+.2f})",
                     hashlib.sha256(b"camera:" + c.encoding.tobytes()).hexdigest(),
                     face=Face(c.box, c.encoding, c.sharpness), captured=True, others=dict(c.others))
            for c in candidates]


def event_photo(store: Store, event_id: int, settings: EnrollConfig) -> Analysed:
    """The face in the snapshot of refused passage ``event_id``, encoded again (EventNotUsable: the
    event is unknown, not a refused passage, or has no snapshot; the Analysed carries a photo error)."""
    event = store.event(event_id)
    if event is None:
        raise EventNotUsable(f"no event #{event_id} in the log (`lotcontrol events --type access.denied` lists them)")
    if event.type != "access.denied":
        raise EventNotUsable(f"event #{event_id} is {event.type}, not a refused passage (access.denied)")
    snapshot = event.details.get("snapshot")
    if not snapshot:
        raise EventNotUsable(
            f"event #{event_id} ({event.time}) has no snapshot: events.snapshots was off then, the snapshot "
            "was already used for an enrollment, or it was erased")
    path = store.snapshot_path(snapshot)
    if not path.is_file():
        raise EventNotUsable(
            f"the snapshot of event #{event_id} ({path}) is gone: snapshots are deleted after "
            "events.retention_days")
    return analyse_photo(str(path), settings)
