"""The encoders wired through the gate (issue 18): the mixed gallery, a missing model, check-config."""

import numpy as np
import pytest

from lotcontrol.config import MatchConfig, parse_config
from lotcontrol.vision import calibration, encoders, faceres
from lotcontrol.vision.matcher import GateGallery


@pytest.fixture
def calibrated(monkeypatch):
    """Every space calibrated as dlib is (the faceres and fused calibrations are the evaluation's)."""
    dlib = calibration.shipped("dlib")
    monkeypatch.setattr(calibration, "shipped", lambda space="dlib": dlib)
    monkeypatch.setattr(calibration, "shipped_file", lambda space="dlib": calibration.FILE)


@pytest.fixture
def no_faceres(tmp_path, monkeypatch):
    """The faceres model file is not installed."""
    monkeypatch.setattr(faceres, "BUILD_DIR", tmp_path / "build")
    faceres.encoder.cache_clear()
    yield tmp_path / "build"
    faceres.encoder.cache_clear()


def unit(seed, dim=1024):
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def dlib(seed):
    return np.random.default_rng(seed).normal(0, 0.1, 128).astype(np.float32)


def faces(rows):
    """(ids, embeddings) from rows of (resident id, dlib vector, faceres vector or None)."""
    ids = np.array([r[0] for r in rows])
    found = {"dlib": np.stack([r[1] for r in rows]),
             "faceres": np.stack([r[2] if r[2] is not None else np.full(1024, np.nan, np.float32) for r in rows])}
    return ids, found


LOOSE = MatchConfig(crowding_neighbours=0, lookalike_distance=0.0, max_stranger_rate=None, margin=0.0)


def test_faces_with_dlib_alone_are_matched_in_a_second_gallery_on_dlib(calibrated):
    ids, found = faces([(1, dlib(1), unit(1)), (1, dlib(2), None), (2, dlib(3), None)])
    gallery = GateGallery.from_embeddings(ids, found, LOOSE, "faceres")
    assert (len(gallery.main), len(gallery.dlib_only), len(gallery)) == (1, 2, 3)
    assert gallery.main.matrix.shape[1] == encoders.space_dim("faceres")  # the shipped projection's width
    # a new face of resident 1: faceres finds them in the main gallery
    assert gallery.match({"dlib": dlib(99), "faceres": unit(1)}).resident_id == 1
    # resident 2, on file from before faceres: found on dlib alone
    assert gallery.match({"dlib": dlib(3) + 0.001, "faceres": unit(50)}).resident_id == 2
    # in the dlib space there is one gallery of every face
    whole = GateGallery.from_embeddings(ids, found, LOOSE, "dlib")
    assert whole.dlib_only is None and len(whole.main) == 3


def test_a_face_accepted_as_two_residents_by_the_two_galleries_is_ambiguous(calibrated):
    ids, found = faces([(1, dlib(1), unit(1)), (2, dlib(3), None)])
    gallery = GateGallery.from_embeddings(ids, found, LOOSE, "faceres")
    match = gallery.match({"dlib": dlib(3), "faceres": unit(1)})  # faceres says 1, dlib says 2
    assert not match.accepted and match.reason == "ambiguous"
    # the same resident by both: accepted
    ids, found = faces([(1, dlib(1), unit(1)), (1, dlib(3), None)])
    gallery = GateGallery.from_embeddings(ids, found, LOOSE, "faceres")
    assert gallery.match({"dlib": dlib(3), "faceres": unit(1)}).resident_id == 1


def test_the_stranger_risk_is_split_in_proportion_to_the_templates(calibrated):
    rows = [(i, dlib(i), unit(i)) for i in range(30)] + [(100 + i, dlib(100 + i), None) for i in range(10)]
    ids, found = faces(rows)
    settings = MatchConfig(max_stranger_rate=0.004)
    gallery = GateGallery.from_embeddings(ids, found, settings, "fused")
    assert gallery.main.risk_share == pytest.approx(0.75) and gallery.dlib_only.risk_share == pytest.approx(0.25)
    cal = calibration.shipped("dlib")
    assert gallery.main.accept_limit == min(settings.accept_distance, cal.limit(0.003, 30, "general"))
    assert gallery.dlib_only.accept_limit == min(settings.accept_distance, cal.limit(0.001, 10, "general"))
    summary = gallery.summary()
    assert summary["space"] == "fused" and summary["max_stranger_rate"] == pytest.approx(0.003)
    assert summary["dlib_only"]["max_stranger_rate"] == pytest.approx(0.001)


def test_a_space_without_a_shipped_calibration_cannot_be_configured(monkeypatch, tmp_path):
    from lotcontrol.errors import ConfigError

    shipped = calibration.shipped_file
    monkeypatch.setattr(calibration, "shipped_file",
                        lambda space: tmp_path / "absent.json" if space == "faceres" else shipped(space))
    with pytest.raises(ConfigError, match="encoder = 'faceres' has no shipped calibration"):
        parse_config({"vision": {"encoder": "faceres"}})
    monkeypatch.undo()
    assert parse_config({"vision": {"encoder": "faceres"}}).vision.encoder == "faceres"  # it ships one


def test_the_default_space_is_encoders_json_default():
    assert parse_config({}).vision.encoder == encoders.settings().default


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_check_config_refuses_a_space_whose_model_is_missing_or_damaged(calibrated, no_faceres, tmp_path, damage):
    from click.testing import CliRunner

    from lotcontrol.cli import cli

    if damage == "corrupt":
        no_faceres.mkdir()
        (no_faceres / "faceres.onnx").write_bytes(b"half a model")
    path = tmp_path / "lot.toml"
    path.write_text('[vision]\nencoder = "fused"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "check-config"])
    assert result.exit_code == 1 and result.output.startswith("Error: face model ")
    assert ("is missing" if damage == "missing" else "has sha256") in result.output
    assert "Traceback" not in result.output
    path.write_text('[vision]\nencoder = "dlib"\n')
    assert CliRunner().invoke(cli, ["--config", str(path), "check-config"]).exit_code == 0


def test_the_worker_refuses_to_decide_without_its_model_and_goes_on(calibrated, no_faceres, tmp_path, monkeypatch):
    """faceres missing with vision.encoder = fused: the worker says so once, reads every frame,
    decides nothing and ends only with its source."""
    import lotcontrol.vision.worker as worker
    from lotcontrol.config import prepare_data_dir
    from lotcontrol.messages import GalleryLoaded, Passage, SourceEnded
    from lotcontrol.vision.camera import Frame, FrameSource

    class Scripted(FrameSource):
        index = 0

        def read(self, timeout=1.0):
            self.index += 1
            return Frame(np.zeros((120, 160, 3), np.uint8), float(self.index), self.index) if self.index <= 4 else None

    monkeypatch.setattr(worker, "open_source", lambda spec, as_fast_as_possible=False: Scripted())
    monkeypatch.setattr(worker, "warm_up", lambda: None)
    monkeypatch.setattr(worker.Pipeline, "process", lambda *a: pytest.fail("a frame was processed"))
    sent = []

    class Pipe:
        def send(self, message):
            sent.append(message)

    config = parse_config({"vision": {"encoder": "fused"}})
    worker.run_worker(Pipe(), config, str(prepare_data_dir(tmp_path / "data")), "clip.mp4", True)
    [loaded] = [m for m in sent if isinstance(m, GalleryLoaded)]
    assert loaded.summary["space"] == "fused"
    assert "the gate stays shut" in loaded.summary["refused"] and "is missing" in loaded.summary["refused"]
    assert not [m for m in sent if isinstance(m, Passage)]
    assert isinstance(sent[-1], SourceEnded) and sent[-1].frames == 4


def test_a_float16_gallery_finds_the_same_residents_in_half_the_memory():
    from lotcontrol.vision.matcher import Gallery

    rng = np.random.default_rng(4)
    vectors = encoders.space_vectors("fused", {"dlib": rng.normal(0, 0.09, (400, 128)).astype(np.float32),
                                               "faceres": np.stack([unit(i) for i in range(400)])})
    ids = np.arange(400) // 4
    wide, half = Gallery(vectors, ids, LOOSE), Gallery(vectors, ids, LOOSE, dtype=np.float16)
    assert half.matrix.nbytes * 2 == wide.matrix.nbytes
    for row in range(0, 400, 7):
        query = vectors[row] + 0.01
        (a, da, _), (b, db, _) = wide.nearest(query), half.nearest(query)
        assert a == b == row // 4 and db == pytest.approx(da, abs=2e-3)


def test_status_shows_a_refusal_and_the_dlib_only_gallery(calibrated):
    from lotcontrol.cli.status import gallery_line

    refused = {"space": "fused", "refused": "faces are not matched, the gate stays shut for them: face model x is missing"}
    assert gallery_line(refused) == f"faces  NOT MATCHED in the fused space: {refused['refused']}"
    ids, found = faces([(1, dlib(1), unit(1)), (2, dlib(3), None)])
    line = gallery_line(GateGallery.from_embeddings(ids, found, MatchConfig(), "fused").summary())
    assert "[fused space]" in line and "+ 1 residents' 1 templates with dlib alone" in line
