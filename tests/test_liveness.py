"""Liveness's depth cue: flat things moved by a hand stay rank 2, a turning head does not."""

import contextlib

import numpy as np
import pytest

from lotcontrol.bench.frames import FrameMemo
from lotcontrol.bench.liveness import choose_limit, refused
from lotcontrol.sim.attacks import SIZE, Attack, film, rotation
from lotcontrol.vision import liveness

FOCAL = 560.0


def head(rng):
    """68 points roughly on a face: a plane's landmarks given depth (nose forward, jaw back), metres."""
    xy = rng.uniform(-0.07, 0.07, size=(68, 2))
    xy[36:42] = [-0.035, -0.02] + rng.normal(0, 0.004, (6, 2))  # one eye
    xy[42:48] = [0.035, -0.02] + rng.normal(0, 0.004, (6, 2))  # the other
    z = -0.03 * np.exp(-(xy[:, 0] ** 2 + (xy[:, 1] - 0.01) ** 2) / 0.002) + 10 * (xy[:, 0] ** 2)  # 8 cm deep
    return np.column_stack([xy, z])


def filmed(points, poses, noise, rng):
    """The points' images under a pinhole camera, one frame per (yaw, pitch, roll, distance)."""
    frames = []
    for yaw, pitch, roll, distance in poses:
        world = points @ rotation(yaw, pitch, roll).T + [0, 0, distance]
        image = world[:, :2] / world[:, 2:3] * FOCAL
        frames.append(image + rng.normal(0, noise, image.shape))
    return np.asarray(frames)


def poses(n, rng, turn):
    t = np.linspace(0, 1, n)
    return np.column_stack([turn * np.sin(6 * t + rng.uniform(0, 6)), turn / 2 * np.sin(4 * t), 2 * np.sin(3 * t),
                            3.0 - 1.8 * t])


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_picture_moved_and_turned_by_a_hand_shows_no_depth_and_a_turning_head_does(seed):
    rng = np.random.default_rng(seed)
    face = head(rng)
    flat = face * [1, 1, 0]  # the same landmarks printed on a sheet
    motion = poses(20, rng, turn=8.0)
    picture = liveness.depth(filmed(flat, motion, 0.3, rng))
    person = liveness.depth(filmed(face, motion, 0.3, rng))
    assert picture < 0.01 < 0.03 < person


def test_too_few_frames_or_no_eyes_give_no_cue():
    rng = np.random.default_rng(0)
    frames = filmed(head(rng), poses(liveness.MIN_FRAMES - 1, rng, 8.0), 0.3, rng)
    assert liveness.depth(frames) is None
    frames = filmed(head(rng), poses(10, rng, 8.0), 0.3, rng)
    frames[3, 36:48] = frames[3, 36]  # both eyes on one point
    assert liveness.depth(frames) is None


def test_the_verdict_waits_for_depth_and_refuses_only_after_a_full_window():
    rng = np.random.default_rng(1)
    face = head(rng)
    flat = filmed(face * [1, 1, 0], poses(liveness.KEEP_FRAMES, rng, 8.0), 0.3, rng)
    motion = liveness.FaceMotion(limit=0.03)
    for index, points in enumerate(flat):
        motion.add(points)
        verdict = motion.verdict()
        if index + 1 < liveness.KEEP_FRAMES:
            assert verdict.live is None
    assert verdict.live is False and verdict.frames == liveness.KEEP_FRAMES
    short = liveness.FaceMotion(limit=0.03)
    for points in flat[:8]:
        short.add(points)
    assert short.verdict().live is None and short.verdict(final=True).live is None  # gone early: undecided
    person = liveness.FaceMotion(limit=0.03)
    for points in filmed(face, poses(12, rng, 8.0), 0.3, rng):
        person.add(points)
    assert person.verdict().live is True and person.verdict().details()["depth"] > 0.03


def test_the_limit_is_chosen_between_what_the_targets_need_refused_and_live_faces_never_above_a_live_one():
    # 95 % of 20 prints: one may pass (the 0.09); 90 % of 10 screens: one may pass (the 0.05), the 0.02s not
    tuning = {"print": [0.01] * 19 + [0.09], "screen": [0.02] * 9 + [0.05]}
    assert choose_limit(tuning, [0.04, 0.08]) == pytest.approx(0.03)
    assert choose_limit({"print": [0.05] * 20}, [0.04, 0.08]) == 0.04  # overlap: no live face refused
    assert refused([None, 0.01, 0.03, 0.05], 0.03) == 2


@pytest.mark.parametrize("attack", [Attack("print", 3, bend=0.02, hand=True, seconds=0.4),
                                    Attack("screen", 4, device="phone", seconds=0.4)])
def test_attacks_are_filmed_frames_of_the_camera_size_and_the_same_for_the_same_seed(attack):
    photo = np.random.default_rng(0).integers(0, 255, (250, 250, 3), dtype=np.uint8)
    frames = film(attack, photo)
    assert len(frames) == int(attack.seconds * attack.fps)
    assert frames[0].shape == (SIZE[1], SIZE[0], 3) and frames[0].dtype == np.uint8
    assert np.array_equal(film(attack, photo)[-1], frames[-1])
    assert not np.array_equal(frames[0], frames[-1])  # it moves


# --- liveness at the gate: the pipeline (vision.liveness off, log, enforce) -----------------------

def _gate(monkeypatch, mode, marks, present=1000):
    """A pipeline in ``mode`` whose one face is the resident on file (encodings faked, clear after
    two frames) and whose landmarks are ``marks`` frame by frame; the face is in view for ``present``
    frames. Returns the pipeline, the passages per frame, and how many frames were encoded."""
    import lotcontrol.vision.pipeline as vision
    from lotcontrol.config import parse_config
    from lotcontrol.vision import faces
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.matcher import Gallery

    box = Box(100, 200, 200, 100)
    resident = np.zeros(128, np.float32)
    encoded, looked, detections = [], [], []
    monkeypatch.setattr(faces, "encode", lambda rgb, boxes: encoded.append(1) or [resident + 0.01])
    monkeypatch.setattr(vision.Pipeline, "_detect",
                        lambda self, rgb, t: detections.append(t) or ([box] if t * 15 < present - 0.5 else []))
    monkeypatch.setattr(vision.Pipeline, "_good_enough", lambda self, rgb, b: True)

    def fake_landmarks(rgb, boxes):
        looked.append(1)
        return [marks[min(len(looked), len(marks)) - 1]]

    monkeypatch.setattr(liveness, "landmarks", fake_landmarks)
    pipeline = vision.Pipeline(parse_config({"vision": {"liveness": mode}}), Gallery(resident[None, :], np.array([1])))
    frame = np.zeros((480, 640, 3), np.uint8)
    decided = []
    for index in range(len(marks) + 20):
        frame[0, 0] = index % 256
        decided.append(pipeline.process(frame, index / 15))
    decided.append(pipeline.finish())
    _gate.logged, _gate.detections = pipeline.take_logged(), detections
    return decided, len(encoded), len(looked)


def _sequences(frames=liveness.KEEP_FRAMES + 5):
    rng = np.random.default_rng(3)
    face = head(rng)
    motion = poses(frames, rng, turn=30.0)  # the head turns enough to pass liveness.LIMIT within the window
    return filmed(face * [1, 1, 0], motion, 0.3, rng), filmed(face, motion, 0.3, rng)


def test_liveness_off_and_log_decide_as_before_and_log_records_what_liveness_said(monkeypatch):
    flat, _ = _sequences()
    off, _, looked_off = _gate(monkeypatch, "off", flat)
    log, _, looked_log = _gate(monkeypatch, "log", flat)
    first = lambda d: next((i, p) for i, ps in enumerate(d) for p in ps)  # noqa: E731
    (at_off, p_off), (at_log, p_log) = first(off), first(log)
    assert at_off == at_log == 1 and p_off.outcome == p_log.outcome == "grant"  # log never delays or refuses
    assert p_off.liveness is None and looked_off == 0  # off: no landmarks at all
    # too soon to tell; log records the border and surface cues too (a blank frame: no border, no pattern)
    assert p_log.liveness == {"mode": "log", "live": None, "depth": None, "frames": 2, "border": None, "surface": 0.0}
    # then the face is followed until liveness can tell (a window: 30 frames), and that is handed out
    (logged,) = _gate.logged
    assert (logged.track, logged.resident_id, logged.outcome) == (1, 1, "grant")
    assert logged.liveness["live"] is False and logged.liveness["frames"] == liveness.KEEP_FRAMES
    assert looked_log == liveness.KEEP_FRAMES
    _, person = _sequences()
    _gate(monkeypatch, "log", person)
    assert [x.liveness["live"] for x in _gate.logged] == [True]
    # gone before liveness could tell: said at the end that it could not (live None), on the frames a
    # detection confirmed (the landmarks followed after the last look that found the face are not counted)
    _gate(monkeypatch, "log", flat[:10], present=8)
    assert [x.liveness["live"] for x in _gate.logged] == [None]
    assert liveness.MIN_FRAMES <= _gate.logged[0].liveness["frames"] < 8


def test_enforce_refuses_a_flat_picture_after_a_window_of_frames_and_stops_encoding_it(monkeypatch):
    flat, _ = _sequences()
    decided, encodings, _ = _gate(monkeypatch, "enforce", flat)
    passages = [(i, p) for i, ps in enumerate(decided) for p in ps]
    assert len(passages) == 1  # refused once, and not looked at again while it stays
    index, passage = passages[0]
    assert index == liveness.KEEP_FRAMES - 1
    assert (passage.outcome, passage.reason, passage.resident_id) == ("unknown", "not_live", 1)
    assert passage.liveness["live"] is False and passage.liveness["depth"] < liveness.LIMIT
    assert passage.liveness["frames"] == liveness.KEEP_FRAMES
    assert encodings == 2  # the frames granted on the second encoding; liveness alone was waited for


def test_enforce_admits_a_turning_head_once_its_depth_shows(monkeypatch):
    _, person = _sequences()
    decided, encodings, looked = _gate(monkeypatch, "enforce", person)
    passages = [(i, p) for i, ps in enumerate(decided) for p in ps]
    index, passage = passages[0]
    assert len(passages) == 1 and passage.outcome == "grant" and passage.resident_id == 1
    assert liveness.MIN_FRAMES - 1 <= index < liveness.KEEP_FRAMES - 1
    assert passage.liveness["live"] is True and passage.liveness["depth"] >= liveness.LIMIT
    # held, the face is followed by its landmarks on every frame (15 fps: every step), detected only at
    # the looks every follow_seconds (0.25 s) that find newcomers: not on every frame as while deciding
    held = [t for t in _gate.detections if 2 / 15 - 1e-6 < t <= index / 15 + 1e-6]
    assert looked >= index + 1 and 1 <= len(held) <= index * (1 / 15) / 0.25 + 1


def test_landmarks_followed_between_detections_count_once_a_detection_finds_the_face_again():
    rng = np.random.default_rng(4)
    face = head(rng)
    frames = filmed(face, poses(12, rng, 8.0), 0.3, rng)
    motion = liveness.FaceMotion(limit=0.03)
    for points in frames[:3]:
        motion.add(points)  # on detected boxes
    for points in frames[3:]:
        motion.add(points, provisional=True)  # followed by the landmarks alone
    assert motion.verdict().live is True  # the gate may admit on them once a detection confirms the face
    assert motion.verdict(final=True).live is None and motion.verdict(final=True).frames == 3  # not at the end
    motion.add(frames[-1])  # a detection found it: the followed frames count, before it
    assert motion.verdict(final=True).live is True and motion.verdict(final=True).frames == 13


def test_enforce_never_admits_a_picture_taken_away_whose_background_landmarks_look_deep(monkeypatch):
    """Between looks a held face is followed by its landmarks; a picture taken away leaves them on the
    background, which may look like depth: the gate admits only where a detection finds the face, and
    at the end judges the frames detections confirmed."""
    rng = np.random.default_rng(5)
    face, motion = head(rng), poses(liveness.KEEP_FRAMES + 5, rng, turn=30.0)
    flat, deep = filmed(face * [1, 1, 0], motion, 0.3, rng), filmed(face * [1, 1, 4], motion, 0.3, rng)
    assert liveness.depth(np.concatenate([flat[:10], deep[10:16]])) > liveness.LIMIT
    marks = np.concatenate([flat[:10], deep[10:]])  # the picture for 10 frames, then "depth" from the background
    decided, _, _ = _gate(monkeypatch, "enforce", marks, present=10)
    passages = [p for ps in decided for p in ps]
    # gone after 10 frames: refused, liveness undecided on the confirmed frames (not live needs a full window)
    assert [(p.outcome, p.reason) for p in passages] == [("unknown", "liveness_undecided")]
    assert passages[0].liveness["live"] is None and passages[0].liveness["depth"] < liveness.LIMIT


def test_enforce_refuses_a_face_gone_before_liveness_could_tell_as_undecided_not_as_not_live(monkeypatch):
    """A resident who looks straight at the camera and walks out of frame (or turns away) before a
    window of frames has shown depth was not judged by liveness: not admitted, but not an attack."""
    flat, _ = _sequences()
    decided, _, _ = _gate(monkeypatch, "enforce", flat[:10], present=8)
    passages = [p for ps in decided for p in ps]
    assert [(p.outcome, p.reason, p.resident_id) for p in passages] == [("unknown", "liveness_undecided", 1)]
    assert passages[0].liveness["live"] is None and liveness.MIN_FRAMES <= passages[0].liveness["frames"] < 8
    assert passages[0].liveness["depth"] < liveness.LIMIT
    # a full window without depth is still not live, whether the face stays or leaves just after
    decided, _, _ = _gate(monkeypatch, "enforce", flat[:liveness.KEEP_FRAMES], present=liveness.KEEP_FRAMES)
    assert [p.reason for ps in decided for p in ps] == ["not_live"]


def test_a_photo_held_beside_a_real_head_is_judged_on_its_own_landmarks(monkeypatch):
    """Several faces in one passage: each track's liveness is its own. A photo of the resident held
    up beside a turning head does not borrow the head's depth: the photo is refused as not live, the
    head admitted, in the same frames."""
    import lotcontrol.vision.pipeline as vision
    from lotcontrol.config import parse_config
    from lotcontrol.vision import faces
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.matcher import Gallery

    flat, person = _sequences()
    photo, head_ = Box(100, 200, 200, 100), Box(100, 420, 200, 320)  # side by side, 2.2 face widths apart
    resident = np.zeros(128, np.float32)
    monkeypatch.setattr(faces, "encode", lambda rgb, boxes: [resident + 0.01 for _ in boxes])
    monkeypatch.setattr(vision.Pipeline, "_detect", lambda self, rgb, t: [photo, head_])
    monkeypatch.setattr(vision.Pipeline, "_good_enough", lambda self, rgb, b: True)
    monkeypatch.setattr(vision.Pipeline, "_face_at", lambda self, rgb, b: True)
    looked = {"photo": 0, "head": 0}

    def fake_landmarks(rgb, boxes):  # each face's own landmarks, wherever its box is followed to
        (box,) = boxes
        which = "photo" if (box.left + box.right) / 2 < 260 else "head"
        looked[which] += 1
        marks = flat if which == "photo" else person
        return [marks[min(looked[which], len(marks)) - 1] + [(box.left + box.right) / 2, 150]]

    monkeypatch.setattr(liveness, "landmarks", fake_landmarks)
    pipeline = vision.Pipeline(parse_config({"vision": {"liveness": "enforce"}}), Gallery(resident[None, :], np.array([1])))
    frame = np.zeros((480, 640, 3), np.uint8)
    passages = []
    for index in range(len(flat) + 20):
        frame[0, 0] = index % 256
        passages += pipeline.process(frame, index / 15)
    passages += pipeline.finish()
    by_track = {p.track: p for p in passages}
    assert len(passages) == 2 and len(by_track) == 2  # one decision per face
    photo_passage = by_track[1] if by_track[1].outcome != "grant" else by_track[2]
    head_passage = by_track[2] if photo_passage is by_track[1] else by_track[1]
    assert (photo_passage.outcome, photo_passage.reason, photo_passage.resident_id) == ("unknown", "not_live", 1)
    assert photo_passage.liveness["depth"] < liveness.LIMIT <= head_passage.liveness["depth"]
    assert head_passage.outcome == "grant" and head_passage.liveness["live"] is True
    assert looked["photo"] >= liveness.KEEP_FRAMES and looked["head"] >= liveness.MIN_FRAMES


def test_a_second_camera_overrides_the_rgb_cues(monkeypatch):
    """The hook for an IR or depth camera: its verdict, where it has one, is the one enforced."""
    import lotcontrol.vision.pipeline as vision

    class Infrared:
        def __init__(self):
            self.seen, self.gone = [], []

        def observe(self, track, box, time):
            self.seen.append(track)

        def verdict(self, track):
            return True if len(self.seen) >= 3 else None

        def forget(self, track):
            self.gone.append(track)

    infrared = Infrared()
    original = vision.Pipeline.__init__
    monkeypatch.setattr(vision.Pipeline, "__init__",
                        lambda self, config, gallery, second=None: original(self, config, gallery, infrared))
    flat, _ = _sequences()
    decided, _, _ = _gate(monkeypatch, "enforce", flat)  # flat to RGB, live to the second camera
    passages = [(i, p) for i, ps in enumerate(decided) for p in ps]
    # live to the second camera on frame 2, between looks: admitted at the next look that finds the face
    assert [(i, p.outcome, p.liveness["second"]) for i, p in passages] == [(5, "grant", True)]
    assert infrared.gone == [1]


# --- the synthetic print and the shared clips through the real pipeline ---------------------------


def _anyone(monkeypatch):
    """A gallery that accepts every face as resident 1 (bench.liveness's), with encodings skipped:
    every face track the quality gate lets through would be admitted without liveness."""
    from lotcontrol.bench.liveness import AcceptAll
    from lotcontrol.vision import encoders

    monkeypatch.setattr(encoders, "embed_all", lambda rgb, boxes, points=None, only=None, **k:
                        {"dlib": np.zeros((len(boxes), 128), np.float32)})
    return AcceptAll()


def _decisions(monkeypatch, frames, fps, mode, memo=None):
    """The passages the pipeline decides on ``frames``; with ``memo`` (bench.frames.FrameMemo), the
    detections of frames a run before it saw are taken from it (the same pixels: the same boxes)."""
    from lotcontrol.config import parse_config
    from lotcontrol.vision.pipeline import Pipeline

    pipeline = Pipeline(parse_config({"vision": {"liveness": mode}}), _anyone(monkeypatch))
    with memo.installed(embeddings=False) if memo is not None else contextlib.nullcontext():
        out = [p for i, f in enumerate(frames) for p in pipeline.process(f, i / fps)]
        return out + pipeline.finish()


def test_a_printed_photo_moved_toward_the_camera_is_refused_in_enforce(monkeypatch):
    import cv2
    from PIL import Image

    from .conftest import demo_portrait

    photo = cv2.cvtColor(np.asarray(Image.open(demo_portrait()).convert("RGB"))[:300, 100:400], cv2.COLOR_RGB2BGR)
    frames = film(Attack("print", 1003, bend=0.01, hand=True, seconds=5.0), photo)
    memo = FrameMemo()  # the second run, on the first 3 s, takes their detections from the first
    enforced = _decisions(monkeypatch, frames, 15.0, "enforce", memo)
    # not_live: the frames granted it (only a face the frames grant is judged), liveness refused it
    # after a full window of frames without depth
    assert enforced and all(p.outcome == "unknown" and p.reason == "not_live" for p in enforced)
    assert all(p.liveness["live"] is False and p.liveness["frames"] == liveness.KEEP_FRAMES for p in enforced)
    # taken away after 3 s, before a full window, it is refused all the same, as undecided
    shown = _decisions(monkeypatch, frames[:45], 15.0, "enforce", memo)
    assert shown and all((p.outcome, p.reason) == ("unknown", "liveness_undecided") for p in shown)


@pytest.mark.slow
def test_every_face_the_shared_clips_would_admit_is_still_admitted_in_enforce(monkeypatch, faces):
    from lotcontrol.bench.liveness import read_clip

    for clip in sorted((faces / "clips").glob("*.mp4")):
        frames, fps = read_clip(clip)
        memo = FrameMemo()  # the clip's frames are detected once, for both runs
        admitted = {p.track for p in _decisions(monkeypatch, frames, fps, "off", memo) if p.outcome == "grant"}
        enforced = _decisions(monkeypatch, frames, fps, "enforce", memo)
        assert {p.track for p in enforced if p.outcome == "grant"} == admitted, clip.name
        assert not [p for p in enforced if p.reason == "not_live"], clip.name


@pytest.mark.slow
def test_the_hamilton_face_lost_before_liveness_could_tell_is_never_refused_not_live(faces):
    """The live face of the shared clips with frames dropped in seeded patterns (bursts of missing
    frames; the face walking out of frame in every odd pattern): a face gone before a full window is
    refused ``liveness_undecided``, never ``not_live``, and one that stays is admitted or judged on a
    full window."""
    from lotcontrol.bench.liveness import drops
    from lotcontrol.config import Config

    decided = drops(faces.parent, 8, Config())
    reasons = [[p.outcome if p.outcome == "grant" else p.reason for p in passages] for passages in decided]
    assert all(len(p) == 1 for p in reasons), reasons  # one decision per face, each pattern
    for passages in decided:
        assert all(p.liveness["frames"] == liveness.KEEP_FRAMES for p in passages if p.reason == "not_live")
    assert sum(r == ["liveness_undecided"] for r in reasons[1::2]) >= 3  # the faces that walked out early
    assert all(r == ["grant"] for r in reasons[0::2] if "not_live" not in r)


# --- the controller: the refusal's event and the spoof alarm, on the simulated clock --------------


@pytest.fixture
def factory():
    from lotcontrol.sim.pins import simulated_factory

    factory = simulated_factory()
    yield factory
    factory.reset()


def _lot(tmp_path, factory):
    from lotcontrol.config import parse_config
    from lotcontrol.store import Store

    from .lots import pump, sim_lot

    store = Store(tmp_path / "lot.db")
    c = sim_lot(parse_config({}), store, factory).controller
    anna = store.add_resident("Anna")
    pump(c, 0.1)
    return c, anna


def _refusal(resident_id, track, live=False):
    from lotcontrol.messages import Passage

    said = {"mode": "enforce", "live": live, "depth": 0.012, "frames": 30}
    return Passage(track, "unknown", resident_id, "not_live", 0.2, 2, 0.0, 2.0, liveness=said)


def test_three_not_live_refusals_of_one_face_within_a_minute_raise_a_spoof_alarm(tmp_path, factory):
    from lotcontrol.alerts import alert, severity

    from .lots import pump, written

    c, anna = _lot(tmp_path, factory)
    for track, at in ((1, 1.0), (2, 30.0), (3, 70.0)):  # the first is more than a minute before the third
        c.handle(_refusal(anna.id, track), at)
        pump(c, at)
    assert "gate.spoof_attempt" not in [e.type for e in written(c)]
    c.handle(_refusal(None, 9), 71.0)  # a face like nobody on file is another face
    c.handle(_refusal(anna.id, 4), 75.0)  # the third of Anna's face within a minute (30, 70, 75 s)
    pump(c, 75.0)
    events = written(c)
    denied = [e for e in events if e.type == "access.denied"]
    assert len(denied) == 5 and all(e.details["reason"] == "not_live" for e in denied)
    assert denied[0].resident == "Anna" and denied[0].details["liveness"]["live"] is False
    spoof = [e for e in events if e.type == "gate.spoof_attempt"]
    assert len(spoof) == 1 and spoof[0].resident == "Anna"
    assert spoof[0].details == {"refusals": 3, "within": 45.0, "track": 4}
    assert severity("gate.spoof_attempt") == "critical"  # alarm-class: notify, MQTT alerts, Home Assistant
    assert alert("gate.spoof_attempt", spoof[0].details, c.clock.wall())["severity"] == "critical"
    assert factory.pin(17).state == 0  # the gate never opened
    c.handle(_refusal(anna.id, 5), 76.0)  # the count starts again after an alarm
    pump(c, 76.0)
    assert [e.type for e in written(c)].count("gate.spoof_attempt") == 1


def test_a_face_liveness_could_not_judge_is_refused_but_never_counted_as_a_spoof_attempt(tmp_path, factory):
    from lotcontrol.messages import Passage

    from .lots import pump, written

    c, anna = _lot(tmp_path, factory)
    said = {"mode": "enforce", "live": None, "depth": 0.04, "frames": 7}
    for track, at in ((1, 1.0), (2, 5.0), (3, 9.0), (4, 13.0)):  # Anna walks out early four times in a minute
        c.handle(Passage(track, "unknown", anna.id, "liveness_undecided", 0.2, 2, at - 1, at, liveness=said), at)
        pump(c, at)
    events = written(c)
    denied = [e for e in events if e.type == "access.denied"]
    assert [e.details["reason"] for e in denied] == ["liveness_undecided"] * 4
    assert denied[0].resident == "Anna" and denied[0].details["liveness"]["live"] is None
    assert "gate.spoof_attempt" not in [e.type for e in events]  # not an attack: liveness did not decide
    assert factory.pin(17).state == 0
    for track, at in ((5, 14.0), (6, 15.0)):  # nor do they add to the not_live refusals toward the alarm
        c.handle(_refusal(anna.id, track), at)
        pump(c, at)
    assert "gate.spoof_attempt" not in [e.type for e in written(c)]


def test_what_liveness_said_after_the_decision_is_a_vision_liveness_event(tmp_path, factory):
    from lotcontrol.messages import LivenessLogged

    from .lots import pump, written

    c, anna = _lot(tmp_path, factory)
    said = {"mode": "log", "live": False, "depth": 0.02, "frames": 30}
    c.handle(LivenessLogged(4, anna.id, "grant", said), 2.0)
    pump(c, 2.0)
    (event,) = [e for e in written(c) if e.type == "vision.liveness"]
    assert event.resident == "Anna" and event.details == {"track": 4, "outcome": "grant", "liveness": said}
    assert factory.pin(17).state == 0  # nothing at the gate changes for it


def test_a_granted_passage_records_what_liveness_said_in_log(tmp_path, factory):
    from lotcontrol.messages import Passage

    from .lots import pump, written

    c, anna = _lot(tmp_path, factory)
    said = {"mode": "log", "live": False, "depth": 0.02, "frames": 9}
    c.handle(Passage(1, "grant", anna.id, None, 0.2, 3, 0.0, 0.4, liveness=said), 1.0)
    pump(c, 1.0)
    granted = [e for e in written(c) if e.type == "access.granted"]
    assert len(granted) == 1 and granted[0].details["liveness"] == said


# --- the presentation border and the screen and print cues ----------------------------------------


def _scene(face_at, frame_line_x=None):
    """A grey frame with a textured 'face' box at ``face_at`` (left, top; 80 px), a dark sheet's edge
    (a rectangle 200 x 200 around the face, moving with it), and optionally a wall's vertical edge
    that stays at ``frame_line_x``."""
    import cv2

    from lotcontrol.vision.faces import Box

    rng = np.random.default_rng(0)
    image = np.full((480, 640, 3), 90, np.uint8)
    if frame_line_x is not None:
        image[:, frame_line_x:] = 170  # the room's own edge, fixed in the frame
    left, top = face_at
    if frame_line_x is None:
        cv2.rectangle(image, (left - 60, top - 60), (left + 140, top + 140), (235, 235, 230), -1)  # the sheet
    image[top:top + 80, left:left + 80] = rng.integers(60, 200, (80, 80, 3))
    return image, Box(top, left + 80, top + 80, left)


def test_the_border_cue_counts_edges_that_move_with_the_face_and_not_the_rooms():
    sheet = [liveness.look(*_scene((200 + 12 * i, 150 + 4 * i))) for i in range(4)]
    room = [liveness.look(*_scene((200 + 12 * i, 150 + 4 * i), frame_line_x=360)) for i in range(4)]
    still = [liveness.look(*_scene((200, 150))) for _ in range(4)]
    assert liveness.border(sheet) >= 2  # the sheet's edges kept their place against the face
    assert liveness.border(room) == 0  # the wall's edge kept its place in the frame
    assert liveness.border(still) is None  # the face did not move against the room: it cannot tell


def test_the_surface_cue_sees_a_screens_regular_pattern_and_not_a_skins_texture():
    from lotcontrol.vision.faces import Box

    rng = np.random.default_rng(1)
    skin = np.clip(rng.normal(150, 12, (200, 200, 3)), 0, 255).astype(np.uint8)
    rows, cols = np.mgrid[0:200, 0:200]
    grid = 1 + 0.1 * np.sin(2 * np.pi * (cols * 0.8 + rows * 0.6) / 3.2)  # a pixel grid beating with the camera's
    screen = np.clip(skin * grid[..., None], 0, 255).astype(np.uint8)
    box = Box(40, 160, 160, 40)
    assert liveness.surface([liveness.look(screen, box)]) > 5 * liveness.surface([liveness.look(skin, box)])
    assert liveness.surface([]) is None


def test_warm_up_looks_once_so_the_first_face_does_not_pay_the_looks_start_up(monkeypatch):
    """``log`` looks at the first face's border and surface: the look's one-time start-up (numpy's FFT,
    OpenCV's edges and lines) is paid by ``warm_up``, before the first frame, on a ring of edges that
    makes the line finder run (an empty ring would skip it)."""
    from lotcontrol.vision import pipeline

    looked = []
    original = liveness.look
    monkeypatch.setattr(liveness, "look", lambda rgb, box: looked.append(original(rgb, box)) or looked[-1])
    pipeline.warm_up()
    assert len(looked) == 1 and len(looked[0].lines) > 0
