"""Enrollment where the gate is: `enroll NAME --camera` on the scripted camera, `enroll NAME
--from-event ID` from a refused passage's snapshot, and the choice of frames."""

import json

import numpy as np
import pytest

from lotcontrol.config import Config, parse_config
from lotcontrol.store import Store
from lotcontrol.vision.capture import Candidate, FaceCapture, farthest_point
from lotcontrol.vision.faces import Box

from .conftest import FACES, need
from .photos import make


def lfw(person: str, *numbers: int):
    return [need(FACES / person / f"{person}_{n:04d}.jpg") for n in numbers]


def script(tmp_path, shots, fps=5) -> str:
    """A recording of the scripted camera filming ``shots`` [(photo or None, seconds)]: every frame is
    enrolled in order on the clip's clock, so the outcome does not depend on the machine's load."""
    from lotcontrol.sim.camera import film

    return str(film([(None if p is None else str(p), s) for p, s in shots], tmp_path / "camera.avi", fps=fps))


def events(run, type_=None):
    return json.loads(run("events", "--json", *(["--type", type_] if type_ else [])).output)


# --- choosing the frames ----------------------------------------------------------------------------


def candidate(encoding, turn=0.0, sharp=100.0, time=0.0):
    return Candidate(np.asarray(encoding, dtype=np.float32), Box(0, 100, 100, 0), sharp, turn, time)


def test_farthest_point_takes_one_frame_of_each_kind_first_and_starts_from_a_sharp_frontal_one():
    rng = np.random.default_rng(0)
    centres = np.eye(128)[:3]
    frames = [candidate(centres[k] + rng.normal(0, 0.01, 128), turn=(0.3 if k else 0.0) * (k - 1.5),
                        sharp=50.0 + k) for k in (0, 1, 2) for _ in range(6)]
    blurry_frontal = candidate(centres[1], turn=0.0, sharp=1.0)
    chosen = farthest_point([*frames, blurry_frontal], 3)
    kinds = [int(np.argmax(c.encoding[:3])) for c in chosen]
    assert sorted(kinds) == [0, 1, 2]  # one of each cluster, not three near-copies
    assert chosen[0] is not blurry_frontal and chosen[0].sharpness >= 50.0  # frontal among the sharp ones
    assert len(farthest_point([*frames], 5)) == 5
    assert len(farthest_point([frames[0], frames[0]], 5)) == 1  # copies are not templates twice


def test_capture_asks_for_what_it_still_needs_and_stops_at_a_second_face(faces, tmp_path):
    from lotcontrol.errors import CaptureError
    from lotcontrol.sim.camera import staged_frame

    session = FaceCapture(Config())
    assert session.feed(staged_frame(None, 640, 480), 0.0) == "step in front of the camera"
    import cv2

    far = staged_frame(None, 640, 480)  # the same scene from three times as far: a 56 px face
    far[168:312, 224:416] = cv2.resize(staged_frame(str(lfw("Tony_Blair", 2)[0]), 640, 480), (192, 144))
    assert session.feed(far, 0.1) == "come closer"
    need = session.feed(staged_frame(str(lfw("Tony_Blair", 2)[0]), 640, 480), 0.2)
    assert len(session.candidates) == 1 and need in ("turn a little left", "turn a little right",
                                                     "look straight at the camera")
    with pytest.raises(CaptureError, match="two faces in view"):
        session.feed(staged_frame(str(make("two_faces", tmp_path)), 640, 480), 0.3)


def test_capture_searches_at_the_gates_scale_and_for_small_faces_once_a_second(faces, monkeypatch):
    """The search for small faces (DETECT_WIDTH, four times the cost) runs on the first frame, where the
    gate's scale finds no face, every FULL_SEARCH_SECONDS and on the frame that completes the capture: a
    bystander too small for the gate's scale is still refused, within a second or at the end."""
    import cv2

    import lotcontrol.vision.capture as capture_module
    from lotcontrol.errors import CaptureError
    from lotcontrol.sim.camera import staged_frame

    searched: list[int] = []  # the width of each search
    real = capture_module.detect
    monkeypatch.setattr(capture_module, "detect", lambda rgb, upsample: searched.append(rgb.shape[1]) or real(rgb, upsample))
    session = FaceCapture(Config())
    near = staged_frame(str(lfw("Tony_Blair", 2)[0]), 640, 480)
    for index in range(7):  # 1.2 s at 5 frames a second
        session.feed(near, index / 5)
    assert searched == [640, 320, 320, 320, 320, 640, 320]
    assert len(session.candidates) == 7
    # someone else steps in behind him at 1.4 s: a 62 px face in the corner, which only the search at
    # DETECT_WIDTH finds (the gate's scale finds her from about 70 px)
    bystander = near.copy()
    bystander[:150, :200] = cv2.resize(staged_frame(str(lfw("Serena_Williams", 1)[0]), 640, 480), (200, 150))
    assert capture_module.FULL_SEARCH_SECONDS == 1.0
    with pytest.raises(CaptureError, match="two faces in view") as refused:
        for index in range(7, 30):
            session.feed(bystander, index / 5)
    assert "at 2.0 s" in str(refused.value)  # at the next search for small faces, a second after the last
    # the frame that completes a capture is searched for small faces too: the bystander is refused there
    session = FaceCapture(Config(), templates=1)
    monkeypatch.setattr(FaceCapture, "_missing_turns", lambda self: [])  # one frame completes it
    searched.clear()
    session.feed(staged_frame(None, 640, 480), 0.0)  # nobody yet
    with pytest.raises(CaptureError, match="two faces in view at 0.2 s"):
        session.feed(bystander, 0.2)
    assert searched == [640, 320, 640]
    # a gate scale as wide as the frame's: one search a frame, at DETECT_WIDTH
    session, searched[:] = FaceCapture(parse_config({"vision": {"detect_width": 640}})), []
    for index in range(3):
        session.feed(near, index / 5)
    assert searched == [640, 640, 640]


def test_turning_the_image_over_turns_the_head_the_other_way(faces):
    from lotcontrol.vision.faces import detect, read_photo, signed_turn, turn

    rgb = read_photo(lfw("Tony_Blair", 1)[0]).rgb
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    here, there = signed_turn(rgb, detect(rgb, 1)[0]), signed_turn(mirrored, detect(mirrored, 1)[0])
    assert abs(here) > 0.15 and np.sign(here) == -np.sign(there) and abs(here + there) < 0.1
    assert turn(rgb, detect(rgb, 1)[0]) == abs(here)


def test_a_recording_is_captured_frame_by_frame_on_its_own_clock_however_slow_the_machine():
    from lotcontrol.vision.camera import Frame, FrameSource
    from lotcontrol.vision.capture import capture

    class Recording(FrameSource):
        live = False

        def __init__(self):
            self.frames = iter(Frame(np.zeros((4, 4, 3), np.uint8), i / 10, i) for i in range(100))

        def read(self, timeout=1.0):
            return next(self.frames, None)

    class Session:
        complete = False
        fed: list[float] = []

        def feed(self, image, now):
            self.fed.append(now)
            return "hold still"

        def chosen(self):
            return self.fed

    busy = iter(range(0, 10_000, 60)).__next__  # a minute of wall clock per call: a loaded machine
    fed = capture(Recording(), Session(), 2.0, clock=busy)
    assert fed == [i / 10 for i in range(20)]  # every frame of the clip's first 2 s, at clip time


# --- enroll --camera on a recording of the scripted camera ---------------------------------------------------------


@pytest.mark.slow  # face encoding of every frame
def test_camera_enrollment_keeps_a_spread_of_good_frames_and_no_photo(run, tmp_path, data_dir):
    photos = lfw("Tony_Blair", 1, 2, 4, 5)
    camera = script(tmp_path, [(None, 0.5)] + [(p, 1.0) for p in photos])
    result = run("enroll", "Tony Blair", "--camera", camera, "--seconds", "5", "--unit", "4B")
    assert result.exit_code == 0, result.output
    assert "step in front of the camera" in result.stderr  # the empty gate first, said live
    assert result.stdout.count("enrolled camera frame at") == 5
    assert "added resident 'Tony Blair': 5 camera frame(s) enrolled, 5 template(s) on file" in result.stdout
    with Store.in_dir(data_dir) as store:
        matrix, _ = store.templates_matrix()
        shas = [row[0] for row in store.db.execute("SELECT photo_sha256 FROM templates")]
    distances = np.linalg.norm(matrix[:, None] - matrix[None], axis=2)[np.triu_indices(5, 1)]
    assert distances.min() > 0.05  # five different frames, not one still frame five times
    from lotcontrol.vision.faces import file_sha256
    assert not {file_sha256(p) for p in photos} & set(shas)
    assert not list(data_dir.rglob("*.jpg")) and not list(data_dir.rglob("*.png"))  # no photo kept
    [event] = events(run, "resident.enrolled")
    assert event["details"]["templates_added"] == 5
    who = json.loads(run("identify", "--json", *lfw("Tony_Blair", 7)).output)
    assert who[0]["faces"][0]["resident"] == "Tony Blair"


@pytest.mark.slow
def test_camera_enrollment_refuses_a_face_that_changes_person_and_changes_nothing(run, tmp_path):
    # Serena Williams is 0.82 / 0.77 / 0.79 from him in the dlib / faceres / fused spaces. (George W
    # Bush's photo 4, used before, is 0.71 in dlib but 0.57 in faceres, his nearest different person
    # there, under the faceres space's limit 0.58: one of the 0.64 % of different-person pairs the
    # rule lets through, docs/configuration.md.)
    camera = script(tmp_path, [(lfw("Tony_Blair", 2)[0], 1.2), (lfw("Serena_Williams", 1)[0], 3.0)])
    result = run("enroll", "Tony Blair", "--camera", camera, "--seconds", "4")
    assert result.exit_code == 1
    assert "Error: the face changed person at" in result.output and "nothing was enrolled" in result.output
    assert json.loads(run("residents", "--json").output) == [] and events(run) == []


@pytest.mark.slow
def test_camera_enrollment_refuses_two_faces_in_view(run, tmp_path):
    need(FACES)
    camera = script(tmp_path, [(make("two_faces", tmp_path), 3.0)])
    result = run("enroll", "Tony Blair", "--camera", camera, "--seconds", "3")
    assert result.exit_code == 1
    assert "Error: two faces in view" in result.output
    assert json.loads(run("residents", "--json").output) == [] and events(run) == []


@pytest.mark.slow
def test_camera_enrollment_needs_a_face_a_camera_and_its_own_camera(run, tmp_path, monkeypatch):
    empty = script(tmp_path, [(None, 1.0)])
    result = run("enroll", "Tony Blair", "--camera", empty, "--seconds", "3")
    assert result.exit_code == 1
    assert "Error: only 0 good frame(s) of the face" in result.output and "'step in front of the camera'" in result.output
    result = run("enroll", "Tony Blair", "--camera", str(tmp_path / "gone.mp4"))
    assert result.exit_code == 1 and f"video file {tmp_path / 'gone.mp4'} does not exist" in result.output

    import lotcontrol.control_socket as control_socket

    monkeypatch.setattr(control_socket, "request", lambda data_dir, command, **args: {"ok": True, "status": {}})
    monkeypatch.setattr("lotcontrol.cli.residents.TAP_WAIT", 0.0)  # no vision worker will open its tap here
    result = run("enroll", "Tony Blair", "--camera")  # camera.source, which the running controller owns
    assert result.exit_code == 1
    assert "owns camera '/dev/video0'" in result.output and "--from-event" in result.output
    assert json.loads(run("residents", "--json").output) == []


def test_enroll_takes_exactly_one_source_of_faces(run, tmp_path):
    photo = lfw("Tony_Blair", 1)[0]
    for args in ([], [photo, "--camera"], [photo, "--from-event", "1"], ["--camera", "x", "--from-event", "1"]):
        result = run("enroll", "Tony Blair", *args)
        assert result.exit_code == 2 and "exactly one of them" in result.output, args
    result = run("enroll", "Tony Blair", photo, "--seconds", "3")
    assert result.exit_code == 2 and "--seconds goes with --camera" in result.output


# --- enroll --from-event ----------------------------------------------------------------------------


def refused_passage(data_dir, photo=None, *, snapshot=True, type_="access.denied") -> int:
    """An event as the controller writes it for a refused face, with its snapshot file."""
    from lotcontrol.config import prepare_data_dir
    from lotcontrol.vision.faces import detect, read_photo
    from lotcontrol.vision.pipeline import face_jpeg

    prepare_data_dir(data_dir)
    details = {"reason": "no_match", "distance": 0.61, "frames": 12, "track": 3}
    with Store.in_dir(data_dir) as store:
        if snapshot:
            rgb = read_photo(photo).rgb
            (data_dir / "snapshots").mkdir(mode=0o700, exist_ok=True)
            name = f"{len(store.events())}-denied-3.jpg"
            (data_dir / "snapshots" / name).write_bytes(face_jpeg(rgb, detect(rgb, 1)[0]))
            details["snapshot"] = f"snapshots/{name}"
        store.log_event(type_, None, details)
        return store.events()[-1].id


def test_a_refused_passage_is_enrolled_from_its_snapshot_which_is_then_erased(run, data_dir):
    event_id = refused_passage(data_dir, lfw("Tony_Blair", 2)[0])
    listed = run("events", "--type", "access.denied").output
    assert listed.startswith(f"#{event_id} ") and "access.denied" in listed
    snapshot = data_dir / events(run)[0]["details"]["snapshot"]
    assert snapshot.is_file()
    result = run("enroll", "Tony Blair", "--from-event", str(event_id))
    assert result.exit_code == 0, result.output
    assert "added resident 'Tony Blair': 1 snapshot(s) enrolled, 1 template(s) on file" in result.stdout
    assert f"erased the snapshot of event #{event_id}" in result.stdout
    assert not snapshot.exists()
    denied, enrolled, used = events(run)
    assert "snapshot" not in denied["details"] and denied["details"]["reason"] == "no_match"
    assert (used["type"], used["resident"], used["details"]) == ("snapshot.enrolled", "Tony Blair", {"event": event_id})
    assert run("events", "verify").exit_code == 0  # the chain leaves the snapshot's name out
    who = json.loads(run("identify", "--json", *lfw("Tony_Blair", 4)).output)
    assert who[0]["faces"][0]["resident"] == "Tony Blair"
    again = run("enroll", "Tony Blair", "--from-event", str(event_id))
    assert again.exit_code == 1 and f"event #{event_id}" in again.output and "has no snapshot" in again.output


def test_from_event_says_why_an_event_gives_no_face_and_changes_nothing(run, data_dir):
    photo = lfw("Tony_Blair", 2)[0]
    granted = refused_passage(data_dir, photo, type_="access.granted")
    bare = refused_passage(data_dir, snapshot=False)
    gone = refused_passage(data_dir, photo)
    (data_dir / events(run)[-1]["details"]["snapshot"]).unlink()
    cases = {"99": "no event #99 in the log",
             str(granted): f"event #{granted} is access.granted, not a refused passage (access.denied)",
             str(bare): f"event #{bare}",
             str(gone): "is gone: snapshots are deleted after events.retention_days"}
    for event_id, message in cases.items():
        result = run("enroll", "Tony Blair", "--from-event", event_id)
        assert result.exit_code == 1 and message in result.output, (event_id, result.output)
        assert "Traceback" not in result.output
    assert "has no snapshot" in run("enroll", "Tony Blair", "--from-event", str(bare)).output
    assert json.loads(run("residents", "--json").output) == []
    assert [e["type"] for e in events(run)] == ["access.granted", "access.denied", "access.denied"]
