"""Enrollment with every encoder (issue 18) on ../shared/faces photos: each face stored with every
available encoder's embedding, the copy and one-person checks in the configured space, and
``residents check`` listing who lacks faceres."""

import dataclasses
import json

import pytest
from PIL import Image

from lotcontrol.store import Store
from lotcontrol.vision import calibration, encoders

from .conftest import FACES, need


@pytest.fixture(autouse=True)
def _faceres_and_faces(monkeypatch):
    need(FACES)
    if not encoders.faceres_available():
        pytest.skip("the faceres model is not installed (make install; models/build)")
    # the faceres and fused calibrations and scale are the evaluation's: stand-ins in dlib units
    dlib = calibration.shipped("dlib")
    monkeypatch.setattr(calibration, "shipped", lambda space="dlib": dlib)
    monkeypatch.setattr(calibration, "shipped_file", lambda space="dlib": calibration.FILE)
    fitted = dataclasses.replace(encoders.settings(), faceres_scale=0.65)
    monkeypatch.setattr(encoders, "settings", lambda: fitted)


def photo(person, number):
    return FACES / person / f"{person}_{number:04d}.jpg"


def configured(tmp_path, data_dir, space):
    from click.testing import CliRunner

    from lotcontrol.cli import cli

    config = tmp_path / "lot.toml"
    config.write_text(f'[vision]\nencoder = "{space}"\n')
    return lambda *args: CliRunner().invoke(cli, ["--config", str(config), "--data-dir", str(data_dir),
                                                  *map(str, args)], catch_exceptions=False)


def test_each_face_is_stored_with_every_encoder_and_checked_in_the_fused_space(tmp_path, data_dir):
    run = configured(tmp_path, data_dir, "fused")
    laura = [photo("Laura_Bush", 1), photo("Laura_Bush", 5)]
    result = run("enroll", "Laura Bush", *laura)
    assert result.exit_code == 0, result.output
    with Store.in_dir(data_dir) as store:
        faces = store.templates_of(store.resident("Laura Bush").id)
        assert [set(t.embeddings) for t in faces] == [{"dlib", "faceres"}] * 2
        assert faces[1].embeddings["faceres"].version == encoders.ENCODERS["faceres"].version
    # a copy of a photo on file (re-encoded as PNG: another file, the same face) is refused
    copy = tmp_path / "copy.png"
    Image.open(laura[0]).save(copy)
    result = run("enroll", "Laura Bush", copy)
    assert result.exit_code == 1 and "the same face as a photo already enrolled for 'Laura Bush' (distance 0.00)" in result.output
    # two people are not one: Laura Bush and Hugo Chavez in the fused space
    result = run("enroll", "Mixed", photo("Laura_Bush", 12), photo("Hugo_Chavez", 1))
    assert result.exit_code == 1 and "not the same person?" in result.output
    assert run("residents", "--json").output.count('"name"') == 1


def test_residents_check_lists_who_lacks_faceres(tmp_path, data_dir):
    run = configured(tmp_path, data_dir, "dlib")
    assert run("enroll", "Laura Bush", photo("Laura_Bush", 1), photo("Laura_Bush", 5)).exit_code == 0
    assert run("enroll", "Hugo Chavez", photo("Hugo_Chavez", 1)).exit_code == 0
    with Store.in_dir(data_dir) as store:  # Laura's first face as if enrolled before faceres
        first = store.db.execute("SELECT min(id) FROM templates").fetchone()[0]
        store.db.execute("DELETE FROM embeddings WHERE template_id = ? AND encoder = 'faceres'", [first])
    check = json.loads(run("residents", "check", "--json").output)
    assert check["without_faceres"] == [{"resident": "Laura Bush", "without_faceres": 1, "faces": 2}]
    assert check["without_faceres_summary"] == {"residents": 1, "faces": 1, "residents_on_file": 2}
    text = run("residents", "check").output
    assert "no faceres  'Laura Bush': 1 of 2 face(s) lack it (matched on dlib alone)" in text
    assert "faceres: 1 of 2 resident(s) with faces on file need new photos or a camera enrollment" in text
    # in the fused space, Laura's old face is matched in the dlib-only gallery
    run = configured(tmp_path, data_dir, "fused")
    check = json.loads(run("residents", "check", "--json").output)
    assert check["gallery"]["space"] == "fused" and check["gallery"]["templates"] == 2
    assert check["gallery"]["dlib_only"]["templates"] == 1


def test_the_gate_finds_each_face_s_landmarks_once_for_its_turn_and_faceres(monkeypatch):
    """vision.encoder = fused: a good face costs one 5-point landmark call (the turn and faceres's
    alignment share it), and the turn is what the landmark call alone gives."""
    import cv2
    import numpy as np

    from lotcontrol.config import parse_config
    from lotcontrol.vision import faces
    from lotcontrol.vision.matcher import GateGallery
    from lotcontrol.vision.pipeline import Pipeline

    rgb = faces.read_photo(photo("Laura_Bush", 1)).rgb
    rgb = np.ascontiguousarray(cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))  # over min_face_px
    box = faces.detect(rgb, 0)[0]
    points = faces.five_points(rgb, [box])[0]
    marks = faces._face_recognition().face_landmarks(rgb, [box.as_list()], model="small")[0]
    left, right = np.mean(marks["left_eye"], axis=0), np.mean(marks["right_eye"], axis=0)
    across = (right - left) / np.hypot(*(right - left))
    expected = float(np.dot(np.asarray(marks["nose_tip"][0]) - (left + right) / 2, across)) / np.hypot(*(right - left))
    assert faces.signed_turn(rgb, box, points) == pytest.approx(expected) == faces.signed_turn(rgb, box)

    fr = faces._face_recognition()
    calls = []
    landmarks = fr.face_landmarks
    # the 5-point calls only: liveness (vision.liveness, on by default in log) takes its own 68 points
    monkeypatch.setattr(fr, "face_landmarks",
                        lambda *a, **k: (k.get("model") != "large" and calls.append(1)) or landmarks(*a, **k))
    ids = np.array([1])
    found = {"dlib": np.zeros((1, 128), np.float32), "faceres": np.full((1, 1024), 1 / 32, np.float32)}
    pipeline = Pipeline(parse_config({"vision": {"encoder": "fused"}}), GateGallery.from_embeddings(ids, found, space="fused"))
    monkeypatch.setattr(Pipeline, "_detect", lambda self, frame, now: [box])
    pipeline.process(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 0.0)
    [track] = pipeline.tracker.tracks.values()
    assert len(track.observations) == 1 and len(calls) == 1


def test_the_gate_in_the_faceres_space_encodes_with_dlib_only_for_faces_on_file_with_dlib_alone(monkeypatch):
    """vision.encoder = faceres: a face costs faceres's inference, not dlib's encoding as well (4 times
    faceres's CPU), unless faces on file with dlib alone must be matched on dlib too."""
    import cv2
    import numpy as np

    from lotcontrol.config import parse_config
    from lotcontrol.vision import faces
    from lotcontrol.vision.matcher import GateGallery
    from lotcontrol.vision.pipeline import Pipeline

    rgb = faces.read_photo(photo("Laura_Bush", 1)).rgb
    rgb = np.ascontiguousarray(cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))  # over min_face_px
    box = faces.detect(rgb, 0)[0]
    encode = faces.encode
    calls = []
    monkeypatch.setattr(faces, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    monkeypatch.setattr(Pipeline, "_detect", lambda self, frame, now: [box])
    config = parse_config({"vision": {"encoder": "faceres"}})
    both = {"dlib": np.zeros((1, 128), np.float32), "faceres": np.full((1, 1024), 1 / 32, np.float32)}
    dlib_alone = {"dlib": np.zeros((2, 128), np.float32),
                  "faceres": np.r_[both["faceres"], np.full((1, 1024), np.nan, np.float32)]}
    for found, ids, encodings in ((both, np.array([1]), 0), (dlib_alone, np.array([1, 2]), 1)):
        calls.clear()
        pipeline = Pipeline(config, GateGallery.from_embeddings(ids, found, space="faceres"))
        pipeline.process(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 0.0)
        [track] = pipeline.tracker.tracks.values()
        assert len(track.observations) == 1 and len(calls) == encodings
        assert (track.queries[0][1] is None) == (encodings == 0)  # dlib's vector only for the dlib-only gallery


def test_identify_matches_in_the_configured_space(tmp_path, data_dir):
    run = configured(tmp_path, data_dir, "fused")
    assert run("enroll", "Laura Bush", photo("Laura_Bush", 1), photo("Laura_Bush", 5)).exit_code == 0
    [seen] = json.loads(run("identify", "--json", photo("Laura_Bush", 12)).output)
    [face] = seen["faces"]
    assert face["resident"] == "Laura Bush" and face["distance"] < 0.55
