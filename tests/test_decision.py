
import pytest

from lotcontrol.vision.verdict import Fused, Observation, Verdict, judge_track


def obs(*accepted):
    """Observations from resident ids (None: the frame matched nobody)."""
    return [Observation(r, r if r is not None else 9, 0.3 if r is not None else 0.7) for r in accepted]


@pytest.mark.parametrize("frames, ended, verdict", [
    (obs(), False, Verdict("pending")),
    (obs(1, 1), False, Verdict("pending")),                         # K=3: two frames are not enough
    (obs(1, 1, 1), False, Verdict("grant", 1)),
    (obs(1, None, 1, None, 1), False, Verdict("grant", 1)),         # refusals in between do not reset
    (obs(1, 2), False, Verdict("unknown", None, "frames_disagree")),  # a tie is never resolved
    (obs(1, 1, 1, 2), False, Verdict("unknown", None, "frames_disagree")),
    (obs(None, None, None, None, None), False, Verdict("unknown", None, "no_match")),  # max_encodings 5
    (obs(1, None, None, None, None), False, Verdict("unknown", None, "not_confirmed")),
    (obs(None), True, Verdict("unknown", None, "no_match")),      # left before deciding
    (obs(1, 1), True, Verdict("unknown", None, "not_confirmed")),
    (obs(), True, Verdict("none")),                                # never good enough to encode
])
def test_judge_track(frames, ended, verdict):
    assert judge_track(frames, confirm_frames=3, max_encodings=5, ended=ended) == verdict


def test_never_a_grant_on_a_single_frame_even_with_k_1_frames_disagreeing():
    assert judge_track(obs(1), confirm_frames=1, max_encodings=5) == Verdict("grant", 1)
    assert judge_track(obs(2, 1), confirm_frames=1, max_encodings=5).outcome == "unknown"


def test_tracker_follows_a_face_that_moved_between_looks_and_tells_two_faces_apart():
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.pipeline import Tracker

    tracker = Tracker(timeout=1.0)
    [(first, _)], _ = tracker.update([Box(100, 200, 200, 100)], 0.0)
    # moved 40 px right (IoU 0.43) and then 45 px more (IoU < 0.3, centres less than a width apart)
    [(again, _)], _ = tracker.update([Box(100, 240, 200, 140)], 0.1)
    [(still, _)], _ = tracker.update([Box(105, 285, 205, 185)], 0.2)
    assert first.id == again.id == still.id and still.seen == 3
    # a second face far away is a new track; the first one times out
    matched, ended = tracker.update([Box(100, 700, 200, 600)], 1.5)
    assert matched[0][0].id != first.id and [t.id for t in ended] == [first.id]
    # a face of very different size at the same place is not the same face
    tracker2 = Tracker(timeout=1.0)
    [(a, _)], _ = tracker2.update([Box(100, 200, 200, 100)], 0.0)
    [(b, _)], _ = tracker2.update([Box(0, 330, 330, 0)], 0.1)
    assert a.id != b.id


def test_camera_health_reports_a_loss_only_after_the_grace_and_backs_off():
    from lotcontrol.vision.worker import CameraHealth

    health = CameraHealth(lost_after=3.0, first_wait=2.0)
    assert health.failed(10.0, "no frame") is None  # a hiccup is not news
    assert health.delivered("/dev/video0") is None  # and no "restored" for what was never lost
    assert health.failed(20.0, "no frame") is None
    assert [health.backoff() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    lost = health.failed(23.0, "camera '/dev/video0' cannot be opened")
    assert (lost.ok, lost.detail) == (False, "camera '/dev/video0' cannot be opened")
    assert health.failed(60.0, "still") is None  # reported once
    back = health.delivered("/dev/video0")
    assert back.ok and back.detail == "camera '/dev/video0' delivers frames again"
    assert health.backoff() == 2.0  # the back-off starts over


def test_the_worker_survives_a_camera_that_fails_to_open_and_drops_out(tmp_path, monkeypatch):
    """run_worker with a live camera that cannot be opened at first, then delivers, then drops out,
    then comes back: it reports lost/restored, keeps going, and never dies."""
    import numpy as np

    import lotcontrol.vision.worker as vision
    from lotcontrol.vision.camera import Frame, FrameSource, SourceError
    from lotcontrol.config import parse_config, prepare_data_dir
    from lotcontrol.messages import CameraStatus, SourceEnded

    class Scripted(FrameSource):
        def __init__(self, frames, then):
            self.frames, self.then, self.index = frames, then, 0

        def read(self, timeout=1.0):
            if self.index < self.frames:
                self.index += 1
                return Frame(np.zeros((120, 160, 3), np.uint8), float(self.index), self.index)
            if self.then == "fail":
                raise SourceError("no frame from the camera")
            return None  # ends the run (as a video file would)

    opens = iter([SourceError("camera '/dev/video9' cannot be opened"), Scripted(3, "fail"), Scripted(2, "end")])

    def fake_open(spec, as_fast_as_possible=False):
        item = next(opens)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(vision, "open_source", fake_open)
    sent = []

    class Pipe:
        def send(self, message):
            sent.append(message)

    config = parse_config({"camera": {"lost_after_seconds": 0, "reconnect_seconds": 0.01}})
    vision.run_worker(Pipe(), config, str(prepare_data_dir(tmp_path / "data")), "/dev/video9", False)
    statuses = [(m.ok, m.detail) for m in sent if isinstance(m, CameraStatus)]
    assert statuses == [
        (False, "camera '/dev/video9' cannot be opened"),
        (True, "camera '/dev/video9' delivers frames again"),
        (False, "no frame from the camera"),
        (True, "camera '/dev/video9' delivers frames again"),
    ]
    assert isinstance(sent[-1], SourceEnded) and sent[-1].frames == 5


def test_a_face_that_appeared_on_a_skipped_frame_and_then_stands_still_is_still_looked_for():
    """The change check skips a static scene, and an empty scene is searched every search_seconds
    (0.1: every 3rd frame at 30 fps): a change on a frame that was not searched must still be
    searched on the next frame that is."""
    import cv2
    import numpy as np
    from PIL import Image

    from lotcontrol.config import Config
    from .conftest import demo_portrait
    from lotcontrol.vision.matcher import Gallery
    from lotcontrol.vision.pipeline import Pipeline

    face = cv2.cvtColor(np.asarray(Image.open(demo_portrait()).convert("RGB"))[:320, :512], cv2.COLOR_RGB2BGR)
    empty = np.full_like(face, 128)
    pipeline = Pipeline(Config(), Gallery(np.zeros((0, 128), np.float32), np.zeros(0, np.int64)))
    # the face arrives on frame 2 (not searched: too soon after frame 1), then stands still
    for index, image in enumerate((empty, face, face, face)):
        pipeline.process(image, index / 30)
    assert pipeline.detections == 2  # frames 1 and 4
    assert len(pipeline.tracker.tracks) == 1


def test_a_refused_face_is_looked_at_less_and_less_and_after_any_face_being_decided(monkeypatch):
    """Encodings of a stranger who stays: refused after max_encodings, then re-checked after 0.25,
    0.5, 1 and 2 s (retry_max_seconds), not while a newcomer's face is being decided."""
    import numpy as np

    import lotcontrol.vision.pipeline as vision
    from lotcontrol.config import parse_config
    from lotcontrol.vision import faces
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.matcher import Gallery

    stranger, newcomer = Box(100, 200, 200, 100), Box(100, 500, 200, 400)
    in_view = {"boxes": [stranger]}
    encoded: list[tuple[float, int]] = []  # (frame time, which face: its left edge)

    def fake_encode(rgb, boxes):
        encoded.append((round(now, 3), boxes[0].left))
        return [np.full(128, 0.5, np.float32)]  # far from the one resident on file

    monkeypatch.setattr(faces, "encode", fake_encode)
    looks: list[float] = []
    monkeypatch.setattr(vision.Pipeline, "_detect", lambda self, rgb, t: looks.append(t) or list(in_view["boxes"]))
    monkeypatch.setattr(vision.Pipeline, "_good_enough", lambda self, rgb, box: True)
    # clear_margin off: the stranger is refused on max_encodings, as a near one would be
    config = parse_config({"vision": {"max_encodings": 3, "confirm_frames": 2, "clear_margin": None}})
    pipeline = vision.Pipeline(config, Gallery(np.zeros((1, 128), np.float32), np.array([1])))
    frame = np.zeros((480, 640, 3), np.uint8)
    denied = []
    for index in range(int(6.5 * 30)):
        now = index / 30
        if index == 174:  # at 5.8 s, just before the stranger's next look is due (5.833 s)
            in_view["boxes"] = [stranger, newcomer]  # someone else walks up while the stranger stays
        frame[0, 0] = index % 256  # a changing scene
        denied += [p.track for p in pipeline.process(frame, now) if p.outcome == "unknown"]
    stranger_looks = [t for t, left in encoded if left == 100]
    assert stranger_looks[:3] == [0.0, 0.033, 0.067]  # max_encodings 3: refused on the third
    assert denied == [1, 2]  # one refusal each, logged once
    # waits 0.25, 0.5, 1, 2, then 2 again, but not while the newcomer is being decided (5.833-5.9 s):
    # overdue then, at the next look (search_seconds after the last)
    assert stranger_looks[3:] == [0.333, 0.833, 1.833, 3.833, 6.0]
    newcomer_looks = [t for t, left in encoded if left == 400]
    # found as soon as in an empty scene (search_seconds, 0.1 s), refused on the third, re-checked after 0.25 s
    assert newcomer_looks == [5.833, 5.867, 5.9, 6.167]
    # between its encodings the refused stranger is looked for every search_seconds, not on every frame
    assert sum(1 for t in looks if 1.0 <= t < 5.8) == 48  # 4.8 s at 0.1 s (its encodings fall on such frames), not 144


def test_a_refused_face_turned_away_or_beside_a_small_face_is_still_looked_for_every_search_seconds(monkeypatch):
    """A refused face whose encoding is due but cannot be had (turned away) is tried at each look every
    search_seconds, not on every frame; and a face too small to encode, which is not being decided,
    does not hold back the refused face's retries."""
    import numpy as np

    import lotcontrol.vision.pipeline as vision
    from lotcontrol.config import parse_config
    from lotcontrol.vision import faces
    from lotcontrol.vision.faces import Box

    from lotcontrol.vision.matcher import Gallery

    stranger, small = Box(100, 200, 200, 100), Box(300, 530, 340, 490)  # 100 px and 40 px wide
    scene = {"boxes": [stranger], "turned": False}
    looks, encoded = [], []

    def fake_encode(rgb, boxes):
        encoded.append(round(now, 3))
        return [np.full(128, 0.5, np.float32)]  # far from the one resident on file

    monkeypatch.setattr(faces, "encode", fake_encode)
    monkeypatch.setattr(vision.Pipeline, "_detect", lambda self, rgb, t: looks.append(round(t, 3)) or list(scene["boxes"]))
    monkeypatch.setattr(vision.Pipeline, "_good_enough", lambda self, rgb, box: box.width >= 60 and not scene["turned"])
    config = parse_config({"vision": {"max_encodings": 2, "confirm_frames": 2, "clear_margin": None}})
    pipeline = vision.Pipeline(config, Gallery(np.zeros((1, 128), np.float32), np.array([1])))
    frame = np.zeros((480, 640, 3), np.uint8)
    for index in range(int(3 * 30)):
        now = index / 30
        scene["turned"] = 0.2 <= now < 1.0  # refused at 0.033, then turned away when its retry is due (0.283)
        scene["boxes"] = [stranger, small] if now >= 1.5 else [stranger]  # someone far behind from 1.5 s
        frame[0, 0] = index % 256
        pipeline.process(frame, now)
    assert encoded[:2] == [0.0, 0.033]  # refused on the second
    assert encoded[2:] == [1.0, 1.5, 2.5]  # at the first look facing again; waits 0.5 and 1 s, the small face or not
    assert len([t for t in looks if 0.2 <= t < 1.0]) == 8  # turned away: every search_seconds, not 24 frames
    assert len([t for t in looks if 1.5 <= t < 3.0]) == 15  # the small face in view changes nothing


def fused(resident_id, distance, limit=0.5, spread=0.1):
    return Fused(resident_id, resident_id if resident_id is not None else 9, distance, limit, spread)


@pytest.mark.parametrize("frames, together, verdict", [
    # a clear resident: two agreeing frames whose mean is well inside the limit (0.5 - 0.08)
    (obs(1, 1), fused(1, 0.40), Verdict("grant", 1)),
    (obs(1), fused(1, 0.30), Verdict("pending")),                   # never on one frame
    (obs(1, 1), fused(1, 0.45), Verdict("pending")),                # not clear: wait for the third
    (obs(1, None), fused(1, 0.35), Verdict("pending")),             # a frame that matched nobody
    (obs(1, 1), fused(1, 0.35, spread=0.4), Verdict("pending")),    # frames far apart: two faces?
    (obs(1, 1, 1), fused(None, 0.52), Verdict("pending")),          # the frames together say no
    (obs(1, 1, 1), fused(2, 0.30), Verdict("pending")),             # ... or someone else
    (obs(1, 1, 1), fused(1, 0.47), Verdict("grant", 1)),
    # a clear stranger stops costing encodings; a near one is looked at again
    (obs(None, None), fused(None, 0.60), Verdict("unknown", None, "no_match")),
    (obs(None, None), fused(None, 0.55), Verdict("pending")),
    (obs(1, None), fused(None, 0.70), Verdict("pending")),           # one frame did match: not clear
    (obs(1, 2), fused(1, 0.30), Verdict("unknown", None, "frames_disagree")),
])
def test_the_frames_together_decide_early_when_clear(frames, together, verdict):
    assert judge_track(frames, confirm_frames=3, max_encodings=5, fused=together, clear_margin=0.08) == verdict


def test_without_a_clear_margin_the_frames_together_only_veto():
    assert judge_track(obs(1, 1), confirm_frames=3, max_encodings=5, fused=fused(1, 0.2)) == Verdict("pending")
    assert judge_track(obs(None, None), confirm_frames=3, max_encodings=5, fused=fused(None, 0.9)) == Verdict("pending")
    assert judge_track(obs(1, 1, 1), confirm_frames=3, max_encodings=5, fused=fused(None, 0.6)) == Verdict("pending")


def test_a_clear_stranger_is_refused_on_the_second_encoding_and_a_clear_resident_admitted(monkeypatch):
    import numpy as np

    import lotcontrol.vision.pipeline as vision
    from lotcontrol.config import Config
    from lotcontrol.vision import faces
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.matcher import Gallery

    resident = np.zeros(128, np.float32)
    face = {"encoding": np.full(128, 0.5, np.float32)}  # 5.7 from the resident: a clear stranger
    monkeypatch.setattr(faces, "encode", lambda rgb, boxes: [face["encoding"]])
    monkeypatch.setattr(vision.Pipeline, "_detect", lambda self, rgb, t: [Box(100, 200, 200, 100)])
    monkeypatch.setattr(vision.Pipeline, "_good_enough", lambda self, rgb, box: True)
    pipeline = vision.Pipeline(Config(), Gallery(resident[None, :], np.array([1])))
    frame = np.zeros((480, 640, 3), np.uint8)
    decided = [p for i in range(3) for p in pipeline.process(frame, i / 30)]
    assert [(p.outcome, p.reason, p.frames) for p in decided] == [("unknown", "no_match", 2)]
    face["encoding"] = resident + 0.01  # 0.11 from the resident: clear
    pipeline = vision.Pipeline(Config(), Gallery(resident[None, :], np.array([1])))
    decided = [p for i in range(3) for p in pipeline.process(frame, i / 30)]
    assert [(p.outcome, p.resident_id, p.frames) for p in decided] == [("grant", 1, 2)]  # never on one
