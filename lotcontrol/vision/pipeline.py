"""The vision pipeline: frames in, one decision per face that comes to the gate out.

It runs in the vision worker process (worker.py; started by supervisor.py), because dlib's encoder
holds the GIL for 120 ms per face here and about a second on a Pi. Work per frame, cheapest first:

1. a change check on a 160 px thumbnail, so an empty, static scene costs almost nothing;
2. face detection (HOG) on a frame scaled to ``vision.detect_width``: every frame while a face is
   being decided, every ``search_seconds`` while nobody is in view or a refused face waits for its
   next encoding, every ``follow_seconds`` while everyone in view is already admitted (or held for
   liveness, or too small to encode yet); while faces are followed, a look every ``search_seconds``
   covers the whole frame (for newcomers) and the others only the surroundings of those faces
   (intervals in seconds, not frames, so a 15 fps camera is not searched half as often as a 30 fps one);
3. a tracker that follows each face from frame to frame (box overlap);
4. a quality gate: size, sharpness, and how far the face is turned;
5. encoding (every encoder the space ``vision.encoder`` needs, and dlib's for the faces on file with
   dlib alone) and matching (matcher.GateGallery), only for faces that passed and are not decided yet;
6. the decision over the track's frames, each and taken together (verdict.judge_track: sequential,
   so a clear resident or a clear stranger is decided in fewer encodings), sent once per track,
   with its 1:1 claims: the residents the frames taken together are within the 1:1 limit of
   (``access.max_impostor_rate``), for the modes where a card or PIN names the resident
   (face_and_card, face_and_pin: the controller pairs them; lotcontrol.policy).
   "Taken together" pools the *frames* (the mean of their vectors in the space: verdict.Fused);
   it has nothing to do with the ``fused`` encoder space, which joins two *encoders*.
7. liveness (``vision.liveness``, liveness.py): unless ``off``, each track's 68 landmarks on every
   frame it is looked at, from the first frame its face is ``min_face_px`` wide and whole in the
   frame (turned and blurred frames too); the passage carries the verdict and its cues. With ``log``,
   a face decided before liveness could tell (the usual case) is followed frame by frame after its
   decision until liveness can (or it leaves), and the verdict is handed out then (``take_logged``:
   a ``LivenessLogged`` message, the controller's ``vision.liveness`` event); the gate never waits.
   With ``enforce``, a face the frames grant is held (no more encodings) until liveness says live
   (granted then) or not live (refused, ``not_live``, with the resident it looked like) after
   ``liveness.KEEP_FRAMES`` frames without depth; a face that leaves before liveness could tell is
   refused ``liveness_undecided`` (liveness did not decide: not an attack).

A face refused as unknown stays watched: while it is in view it is encoded again after
``vision.retry_seconds``, then after twice that and so on up to ``vision.retry_max_seconds``, and
admitted if its latest frames agree after all (not one refused as ``not_live``: that is final for
its track, or a picture would get a new chance at each look) (a resident who looked down at first is not locked out
until they walk away; a stranger who lingers costs less and less). A face still being decided goes
first: while one is in view, refused faces wait. The refusal is logged once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..config import Config
from ..messages import LivenessLogged, Passage, PassShown
from . import blazeface, encoders, liveness
from .faces import Box, detect, encode, five_points, sharpness, turn
from .matcher import Gallery, GateGallery
from .verdict import PENDING, Fused, Observation, Verdict, judge_track

log = logging.getLogger(__name__)

THUMB_WIDTH = 160
PIXEL_CHANGE = 12  # grey levels; smaller changes are sensor noise
IOU_SAME_FACE = 0.3
TIME_SLACK = 0.002  # seconds: frame times are not exact multiples of the frame interval


@dataclass
class Track:
    id: int
    box: Box
    first_seen: float
    last_seen: float
    seen: int = 1
    observations: list[Observation] = field(default_factory=list)
    queries: list[tuple] = field(default_factory=list)  # the observations' vectors (GateGallery.query), in order
    verdict: Verdict | None = None
    snapshot: bytes | None = None
    last_encoded: float = float("-inf")
    retries: int = 0  # looks at this face since it was refused
    cpu: float = 0.0  # worker CPU seconds spent on the frames this face was in
    motion: liveness.FaceMotion = field(default_factory=liveness.FaceMotion)  # its landmarks, for liveness
    held: Verdict | None = None  # liveness enforced: the frames' grant, waiting for liveness to say live
    logging: bool = False  # liveness logged: decided before liveness could tell; followed until it can
    watched: float | None = None  # the frame time of its last landmarks
    anchor: tuple | None = None  # where its last detected box sat on its landmarks (liveness.anchor)
    looked: float = float("-inf")  # the frame time of its last look for the border and surface cues

    @property
    def granted(self) -> bool:
        return self.verdict is not None and self.verdict.outcome == "grant"

    @property
    def denied(self) -> bool:
        return self.verdict is not None and self.verdict.outcome == "unknown"


def same_face_score(a: Box, b: Box) -> float:
    """How likely two boxes in nearby frames are one face (0: not at all): their overlap (IoU) when
    at least IOU_SAME_FACE, or, for a face of similar size that moved further between two looks, up
    to 0.5 while the centres are less than a face width apart (dlib's boxes jump by half a width
    between frames of a moving head, and faces are looked for only every few frames)."""
    overlap = iou(a, b)
    if overlap >= IOU_SAME_FACE:
        return overlap
    dy = (a.top + a.bottom - b.top - b.bottom) / 2
    dx = (a.left + a.right - b.left - b.right) / 2
    reach = max(a.width, b.width)
    near = 1.0 - (dx * dx + dy * dy) ** 0.5 / reach if reach else 0.0
    similar = 0.67 <= a.width / max(b.width, 1) <= 1.5
    return 0.5 * near if near > 0 and similar else 0.0


def iou(a: Box, b: Box) -> float:
    top, bottom = max(a.top, b.top), min(a.bottom, b.bottom)
    left, right = max(a.left, b.left), min(a.right, b.right)
    inter = max(0, bottom - top) * max(0, right - left)
    union = a.width * (a.bottom - a.top) + b.width * (b.bottom - b.top) - inter
    return inter / union if union > 0 else 0.0


class Tracker:
    """Follows faces across frames by box overlap; a face unseen for ``timeout`` seconds has left."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.tracks: dict[int, Track] = {}
        self._next = 1

    def update(self, boxes: list[Box], now: float) -> tuple[list[tuple[Track, Box]], list[Track]]:
        pairs = sorted(((same_face_score(t.box, b), t.id, i) for t in self.tracks.values()
                        for i, b in enumerate(boxes)), reverse=True)
        matched: list[tuple[Track, Box]] = []
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for score, track_id, index in pairs:
            if score <= 0.0:
                break
            if track_id in used_tracks or index in used_boxes:
                continue
            track = self.tracks[track_id]
            track.box, track.last_seen = boxes[index], now
            track.seen += 1
            matched.append((track, boxes[index]))
            used_tracks.add(track_id)
            used_boxes.add(index)
        for index, box in enumerate(boxes):
            if index not in used_boxes:
                track = Track(self._next, box, now, now)
                self._next += 1
                self.tracks[track.id] = track
                matched.append((track, box))
        ended = [t for t in self.tracks.values() if now - t.last_seen > self.timeout]
        for track in ended:
            del self.tracks[track.id]
        return matched, ended

    def end_all(self) -> list[Track]:
        ended = list(self.tracks.values())
        self.tracks.clear()
        return ended


class Pipeline:
    """One frame at a time; returns the passages decided on that frame. Owns its state: no locks."""

    def __init__(self, config: Config, gallery: GateGallery | Gallery, second: liveness.SecondStream | None = None):
        """``gallery``: what faces are matched against; a bare ``Gallery`` holds dlib-space vectors.
        ``second``: a second camera's liveness (IR, depth: liveness.SecondStream), where there is one."""
        self.config = config
        self.vision = config.vision
        self.liveness = config.vision.liveness
        self.second = second
        self.gallery = gallery if isinstance(gallery, GateGallery) else GateGallery("dlib", gallery, None, gallery.version)
        self.tracker = Tracker(self.vision.track_timeout_seconds)
        self._previous: np.ndarray | None = None
        self._unsearched_change = False  # a change seen on a frame that was not searched
        self._last_look = self._last_search = float("-inf")  # frame times of the last detection, whole frame
        self._frame_started = 0.0
        self._points: tuple[Box, np.ndarray] | None = None  # the last face's five_points, for its encoding
        self._stepped = False  # liveness's landmarks were taken on this frame between looks
        # the border and surface cues: recorded in log, and computed in enforce only where fused
        self.looks = self.liveness == "log" or (self.liveness == "enforce" and (
            liveness.BORDER_LIMIT is not None or liveness.SURFACE_LIMIT is not None))
        self.logged: list[LivenessLogged] = []  # log: liveness's verdicts said after the decision (take_logged)
        self.frames = 0
        self.detections = 0
        self.qr_scans = 0
        self._qr: cv2.QRCodeDetectorAruco | None = None
        self._passes_seen: dict[str, float] = {}  # a QR code's text -> the frame time it was last read
        if self.vision.detector == "blazeface":
            blazeface.detector()  # checked and loaded now (ModelFileError if missing), not at the first face

    def one_to_one_limits(self) -> tuple[float | None, float | None]:
        """The 1:1 limits of the gallery in use (main, dlib-only), computed once per gallery."""
        if getattr(self, "_limits_of", None) is not self.gallery:
            self._limits_of = self.gallery
            self._limits = self.gallery.one_to_one_limits(self.config.access.max_impostor_rate)
        return self._limits

    def summary(self) -> dict:
        """The gallery's summary (GalleryLoaded) with the 1:1 limit (None: no 1:1 calibration)."""
        limit = self.one_to_one_limits()[0]
        return {**self.gallery.summary(), "one_to_one_limit": None if limit is None else round(limit, 3)}

    def changed(self, image: np.ndarray) -> bool:
        """Whether enough of the scene changed since the last frame to look for faces."""
        height, width = image.shape[:2]
        thumb = cv2.resize(image, (THUMB_WIDTH, max(1, height * THUMB_WIDTH // width)), interpolation=cv2.INTER_AREA)
        thumb = cv2.GaussianBlur(cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        previous, self._previous = self._previous, thumb
        if previous is None or previous.shape != thumb.shape:
            return True
        moving = np.count_nonzero(cv2.absdiff(previous, thumb) > PIXEL_CHANGE)
        return moving >= self.vision.motion_threshold * thumb.size

    def process(self, image: np.ndarray, now: float) -> list[Passage | PassShown]:
        started = self._frame_started = time.process_time()
        self.frames += 1
        shown = self._pass(image, now)
        if shown is not None:
            return [shown, *self._faces_in(image, now, started)]
        return self._faces_in(image, now, started)

    def _pass(self, image: np.ndarray, now: float) -> PassShown | None:
        """A visitor pass's QR code, looked for in every ``visitors.scan_every_frames``-th frame while
        no face is being decided (a face first: a pass waits a few frames). Sent once per showing: a
        text read again within ``seen_again_seconds`` of its last reading is the same showing."""
        every = self.config.visitors.scan_every_frames
        if not every or self.frames % every or any(t.verdict is None for t in self.tracker.tracks.values()):
            return None
        self.qr_scans += 1
        if self._qr is None:
            # OpenCV's ArUco-based QR detector, not the classic QRCodeDetector (same interface): on the
            # scripted camera's frames of 60 passes it read every frame where the classic one missed whole
            # passes, and it looks at an empty scene 30 times faster (docs/benchmarks.md, lotcontrol.bench.passes)
            self._qr = cv2.QRCodeDetectorAruco()
        try:
            text, _, _ = self._qr.detectAndDecode(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        except cv2.error:
            return None  # a frame OpenCV's detector trips over: no pass in it
        gap = self.config.visitors.seen_again_seconds
        self._passes_seen = {t: seen for t, seen in self._passes_seen.items() if now - seen <= gap}
        if not text:
            return None
        again = text in self._passes_seen
        self._passes_seen[text] = now
        return None if again else PassShown(text, now)

    def _faces_in(self, image: np.ndarray, now: float, started: float) -> list[Passage]:
        # The change check only matters while nobody is followed and no change waits to be searched.
        # A change is searched on the next searched frame even if the scene is still by then: a
        # resident who stepped in on a skipped frame and then stands still is still looked for.
        if not self.tracker.tracks and not self._unsearched_change:
            self._unsearched_change = self.changed(image)
            if not self._unsearched_change:
                return []
        if now - self._last_look < self._look_interval() - TIME_SLACK:
            passages = self._follow_liveness(image, now)
            if not passages and not self._stepped:
                return passages
        else:
            self._last_look = now
            self._unsearched_change = False
            passages = self._faces(image, now)
        spent = time.process_time() - started
        for track in self.tracker.tracks.values():
            track.cpu += spent
        return passages

    def _look_interval(self) -> float:
        """Look for faces on every frame while a face is being decided; less often otherwise. Faces
        admitted, held for liveness or too small to encode yet are only followed, every
        ``follow_seconds`` (liveness follows the held faces and the admitted ones it logs by their
        landmarks between looks). A refused face is looked for as an empty scene is, every
        ``search_seconds`` (a newcomer behind it is found as soon as in an empty lot), and on the frame
        its next encoding is due (``retry_seconds``); one that could not be encoded when it was due
        (turned away, say) is tried again at each of those looks, not on every frame."""
        tracks = self.tracker.tracks.values()
        if not tracks:
            return self.vision.search_seconds
        interval = self.vision.follow_seconds
        for t in tracks:
            if self._deciding(t, t.box):
                return 0.0
            if t.denied:
                interval = min(interval, self.vision.search_seconds)
                due = t.last_encoded + self._retry_wait(t)
                if t.verdict.reason != "not_live" and due > self._last_look:  # a picture is not encoded again
                    interval = min(interval, due - self._last_look)
        return max(0.0, interval)

    def _deciding(self, track: Track, box: Box) -> bool:
        """Whether the face is being decided: not decided yet, not held for liveness, and big enough to
        encode (a face too small is only followed until it comes closer)."""
        return track.verdict is None and track.held is None and box.width >= self.vision.min_face_px

    def _faces(self, image: np.ndarray, now: float) -> list[Passage]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        boxes = self._detect(rgb, now)
        matched, ended = self.tracker.update(boxes, now)
        passages = [p for t in ended if (p := self._end(t)) is not None]
        deciding = any(self._deciding(t, box) for t, box in matched)
        for track, box in matched:
            if track.logging:
                self._watch(track, rgb, box, now)
                self._log_liveness(track)
            if track.denied and (track.verdict.reason == "not_live" or deciding
                                 or now - track.last_encoded < self._retry_wait(track) - TIME_SLACK):
                continue  # a picture refused as not live is not looked at again: a retry is a new chance for it
            if not track.granted:
                passage = self._observe(track, rgb, box, now)
                if passage is not None:
                    passages.append(passage)
        return passages

    def finish(self) -> list[Passage]:
        """The end of the video: every face still in view has left."""
        return [p for t in self.tracker.end_all() if (p := self._end(t)) is not None]

    def _detect(self, rgb: np.ndarray, now: float) -> list[Box]:
        """Faces in the whole frame every ``search_seconds`` (or when nobody is in view); in
        between only around the faces already followed, at a fifth of the cost."""
        self.detections += 1
        tracks = list(self.tracker.tracks.values())
        if not tracks or now - self._last_search >= self.vision.search_seconds - TIME_SLACK:
            self._last_search = now
            return self._detect_in(rgb, 0, 0)
        height, width = rgb.shape[:2]
        boxes: list[Box] = []
        for track in tracks:
            box, reach = track.box, track.box.width
            top, left = max(0, box.top - reach), max(0, box.left - reach)
            region = rgb[top:min(height, box.bottom + reach), left:min(width, box.right + reach)]
            found = self._detect_in(np.ascontiguousarray(region), top, left, width)
            boxes += [b for b in found if all(iou(b, other) < 0.5 for other in boxes)]
        return boxes

    def _detect_in(self, rgb: np.ndarray, top: int, left: int, frame_width: int | None = None) -> list[Box]:
        """HOG at the scale ``detect_width`` sets for the whole frame (or BlazeFace, which letterboxes
        what it is given, per ``vision.detector``); boxes in frame pixels."""
        if self.vision.detector == "blazeface":
            return [Box(b.top + top, b.right + left, b.bottom + top, b.left + left)
                    for b in blazeface.detector().detect(rgb)]
        factor = min(1.0, self.vision.detect_width / (frame_width or rgb.shape[1]))
        small = rgb if factor == 1.0 else cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return [Box(b.top + top, b.right + left, b.bottom + top, b.left + left)
                for b in (found.scaled(1 / factor) for found in detect(small, 1))]

    def _good_enough(self, rgb: np.ndarray, box: Box) -> bool:
        height, width = rgb.shape[:2]
        if box.width < self.vision.min_face_px:
            return False
        if box.top < 0 or box.left < 0 or box.bottom > height or box.right > width:
            return False  # cut by the frame's edge: wait until the whole face is in view
        if sharpness(rgb, box) < self.vision.min_sharpness:
            return False
        found = five_points(rgb, [box])
        self._points = (box, found[0]) if found else None  # faceres aligns with them: one landmark call
        return turn(rgb, box, self._points[1] if found else None) <= self.vision.max_turn

    def _retry_wait(self, track: Track) -> float:
        first = self.vision.retry_seconds
        return max(first, min(first * 2 ** min(track.retries, 16), self.vision.retry_max_seconds))

    def _watch(self, track: Track, rgb: np.ndarray, box: Box, now: float, follow: bool = False) -> None:
        """Liveness's landmarks of this face on this frame (a face big enough and whole in the frame).
        ``follow``: no detection on this frame; the landmarks are taken from the face's last box and
        move it (``liveness.followed``); a jump is not believed and the frame is skipped."""
        if self.liveness == "off" or track.watched == now:
            return
        track.watched = now
        height, width = rgb.shape[:2]
        if box.width < self.vision.min_face_px or box.top < 0 or box.left < 0 or box.bottom > height \
                or box.right > width:
            return
        if follow and (track.anchor is None or track.motion.latest is None):
            return
        points = liveness.landmarks(rgb, [box])
        if not points:
            return
        if follow:
            moved = liveness.followed(track.anchor, track.motion.latest, points[0])
            if moved is None:
                return
            track.box = box = moved
        else:
            track.anchor = liveness.anchor(box, points[0])
            if self.looks and now - track.looked >= liveness.LOOK_SECONDS - TIME_SLACK:
                track.looked = now
                track.motion.looks.append(liveness.look(rgb, box))
                del track.motion.looks[1:-liveness.KEEP_LOOKS + 1]  # the first and the latest: border compares them
        track.motion.add(points[0], provisional=follow)
        if self.second is not None:
            self.second.observe(track.id, box, now)

    def _follow_liveness(self, image: np.ndarray, now: float) -> list[Passage]:
        """Between looks, the faces liveness alone still watches (held by ``enforce``, followed after
        their decision by ``log``): their landmarks every ``liveness.STEP_SECONDS`` from their last box,
        without a detection (the looks every ``follow_seconds`` still find newcomers and end the faces
        that left, and a face judged live here is admitted only if a detection around it finds it)."""
        self._stepped = False
        due = [t for t in self.tracker.tracks.values() if (t.held is not None or t.logging)
               and (t.watched is None or now - t.watched >= liveness.STEP_SECONDS - TIME_SLACK)]
        if not due:
            return []
        self._stepped = True
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        passages = []
        for track in due:
            self._watch(track, rgb, track.box, now, follow=True)
            if track.logging:
                self._log_liveness(track)
            elif track.held is not None and (passage := self._release(track, rgb, now, confirm=True)) is not None:
                passages.append(passage)
        return passages

    def _release(self, track: Track, rgb: np.ndarray, now: float, confirm: bool = False) -> Passage | None:
        """A face the frames granted, held for liveness: its passage once liveness tells (``confirm``:
        on a frame without detection, a grant only if a detection around the face finds it)."""
        verdict = self._enforced(track, track.held)
        if verdict is PENDING:
            return None
        if confirm and verdict.outcome == "grant":
            if not self._face_at(rgb, track.box):
                return None  # the next look says whether the face is still there
            track.motion.confirm()
        track.held, track.verdict = None, verdict
        return self._passage(track, now)

    def _face_at(self, rgb: np.ndarray, box: Box) -> bool:
        """Whether a detection finds a face on ``box``: HOG on a crop around it scaled to about 100 px
        of face (no upsample), about 2 ms against 6 for the area a look searches around a face."""
        pad = box.width // 3
        height, width = rgb.shape[:2]
        top, left = max(0, box.top - pad), max(0, box.left - pad)
        crop = rgb[top:min(height, box.bottom + pad), left:min(width, box.right + pad)]
        factor = 100 / max(box.width, 1)
        crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        found = [Box(b.top + top, b.right + left, b.bottom + top, b.left + left)
                 for b in (f.scaled(1 / factor) for f in detect(np.ascontiguousarray(crop), 0))]
        return any(iou(b, box) >= IOU_SAME_FACE for b in found)

    def _alive(self, track: Track, final: bool = False) -> liveness.Liveness:
        said = track.motion.verdict(final=final)
        if self.second is not None:
            said.second = self.second.verdict(track.id)
            if said.second is not None:
                said.live = said.second
        return said

    def _enforced(self, track: Track, verdict: Verdict, final: bool = False) -> Verdict:
        """The frames' verdict with liveness enforced: a grant only for a live face; PENDING while
        liveness cannot tell yet; ``not_live`` (naming the resident it looked like) when it is not;
        ``liveness_undecided`` when the face left (``final``) before liveness could tell."""
        if self.liveness != "enforce" or verdict.outcome != "grant":
            return verdict
        live = self._alive(track, final).live
        if live is True:
            return verdict
        if live is False:
            return Verdict("unknown", verdict.resident_id, "not_live")
        return Verdict("unknown", verdict.resident_id, "liveness_undecided") if final else PENDING

    def _observe(self, track: Track, rgb: np.ndarray, box: Box, now: float) -> Passage | None:
        self._watch(track, rgb, box, now)
        if track.held is not None:  # the frames granted it: only liveness is still to say
            return self._release(track, rgb, now)
        if not self._good_enough(rgb, box):
            return None
        points = [self._points[1]] if self._points is not None and self._points[0] == box else None
        found = encoders.embed_all(rgb, [box], points, only=self._encoders())
        if track.denied:
            track.retries += 1
        track.last_encoded = now
        query = self.gallery.query({name: vectors[0] for name, vectors in found.items()})
        match = self.gallery.match_query(query)
        track.observations.append(Observation(match.resident_id, match.nearest_id, match.distance))
        track.queries.append(query)
        del track.observations[:-self.vision.max_encodings], track.queries[:-self.vision.max_encodings]
        if self.config.events.snapshots and track.snapshot is None:
            track.snapshot = face_jpeg(rgb, box)
        judged = self._judge(track)
        verdict = self._enforced(track, judged)
        if verdict is PENDING and judged.outcome == "grant":
            track.held = judged  # no more encodings: liveness decides
            return None
        if verdict.outcome == "grant" or (verdict.outcome == "unknown" and not track.denied):
            track.verdict = verdict
            return self._passage(track, now)
        return None

    def _encoders(self) -> tuple[str, ...]:
        """The encoders a face is encoded with: the space's, and dlib's only while faces on file with
        dlib alone are matched too (in the faceres space dlib's encoding would cost 4 faceres ones)."""
        needed = encoders.SPACE_ENCODERS[self.gallery.space]
        return needed if self.gallery.dlib_only is None or "dlib" in needed else ("dlib", *needed)

    def _judge(self, track: Track, ended: bool = False) -> Verdict:
        """The verdict on the track's latest ``max_encodings`` frames, each and taken together."""
        window = slice(-self.vision.max_encodings, None)
        return judge_track(track.observations[window], confirm_frames=self.vision.confirm_frames,
                           max_encodings=self.vision.max_encodings, ended=ended,
                           fused=self._frames_together(track.queries[window]), clear_margin=self.vision.clear_margin)

    def _frames_together(self, queries: list[tuple]) -> Fused | None:
        """The frames taken together: the match of the mean of their vectors (in each gallery's
        space), and their spread in the configured space."""
        if len(queries) < 2:
            return None
        stacked = np.asarray([q[0] for q in queries], dtype=np.float32)
        mean = stacked.mean(axis=0)
        dlib = None if queries[0][1] is None else np.mean([q[1] for q in queries], axis=0, dtype=np.float32)
        match = self.gallery.match_query((mean, dlib))
        spread = float(np.linalg.norm(stacked - mean, axis=1).mean())
        return Fused(match.resident_id, match.nearest_id, match.distance, match.limit, spread)

    def take_logged(self) -> list[LivenessLogged]:
        """``log``: liveness's verdicts on faces decided before it could tell, said since the last call."""
        logged, self.logged = self.logged, []
        return logged

    def _log_liveness(self, track: Track, final: bool = False) -> None:
        """``log``: once liveness can tell, or once the face has left (``final``: then ``live`` may be
        None, liveness could not tell), what it says of a decided face."""
        said = self._alive(track, final)
        if said.live is None and not final:
            return
        track.logging = False
        self.logged.append(LivenessLogged(track.id, track.verdict.resident_id, track.verdict.outcome,
                                          {"mode": self.liveness, **said.details()}))

    def _end(self, track: Track) -> Passage | None:
        if track.logging:
            self._log_liveness(track, final=True)
        if self.second is not None:
            self.second.forget(track.id)
        if track.granted or track.denied:
            return None
        judged = track.held if track.held is not None else self._judge(track, ended=True)
        track.held, track.verdict = None, self._enforced(track, judged, final=True)
        return self._passage(track, track.last_seen, final=True) if track.granted or track.denied else None

    def _passage(self, track: Track, decided: float, final: bool = False) -> Passage:
        window = track.observations[-self.vision.max_encodings:]
        distances = [o.distance for o in window if np.isfinite(o.distance)]
        said = None if self.liveness == "off" else self._alive(track, final)
        track.logging = self.liveness == "log" and said.live is None
        queries = track.queries[-self.vision.max_encodings:]
        claims: list[tuple[int, float]] = []
        if queries:  # 1:1, on the frames taken together (their mean, as verdict.Fused)
            mean = np.asarray([q[0] for q in queries], dtype=np.float32).mean(axis=0)
            dlib = None if queries[0][1] is None else np.mean([q[1] for q in queries], axis=0, dtype=np.float32)
            claims = self.gallery.claims((mean, dlib), self.one_to_one_limits())
        return Passage(
            track=track.id, outcome=track.verdict.outcome, resident_id=track.verdict.resident_id,
            reason=track.verdict.reason, distance=round(min(distances), 4) if distances else None,
            frames=len(window), first_seen=track.first_seen, decided=decided,
            cpu=round(track.cpu + time.process_time() - self._frame_started, 4), snapshot=track.snapshot,
            liveness=None if said is None else {"mode": self.liveness, **said.details()},
            claims=tuple(claims),
        )


def warm_up() -> None:
    """Verify and load the face models, and run each step once on a blank image. Liveness's look
    (border and surface cues) too: its first call costs about 10 ms more than the next ones (numpy's
    FFT module and OpenCV's edge and line code load then), which ``log`` charged to the first face's
    decision (docs/benchmarks.md, "What it costs at the gate"); a ring of edges around the blank's
    middle makes it find lines as a frame at the gate would."""
    blank = np.zeros((120, 120, 3), np.uint8)
    detect(blank, 0)
    encode(blank, [Box(10, 110, 110, 10)])
    cv2.rectangle(blank, (10, 10), (110, 110), (255, 255, 255), 2)
    liveness.look(blank, Box(40, 80, 80, 40))


def face_jpeg(rgb: np.ndarray, box: Box) -> bytes:
    """The face with a quarter of its width around it, as JPEG."""
    pad = box.width // 4
    height, width = rgb.shape[:2]
    crop = rgb[max(0, box.top - pad):min(height, box.bottom + pad), max(0, box.left - pad):min(width, box.right + pad)]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes() if ok else b""
