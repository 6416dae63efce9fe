"""The encoders and their spaces (lotcontrol/vision/encoders.py): the vectors the matcher compares."""

import json
import math

import numpy as np
import pytest

from lotcontrol.vision import encoders
from lotcontrol.vision.encoders import EncoderSettingsError, load, space_dim, space_vectors


def write(tmp_path, **changes):
    data = {"source": "test", "faceres": {"scale": 2.0, "mirror": False, "projection": None,
                                         "version": "human-models-3.0.4"},
            "fused": {"dlib_weight": 0.25}, "default": "fused"}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    path = tmp_path / "encoders.json"
    path.write_text(json.dumps(data))
    return path


def unit(rng, n, dim):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_shipped_settings_load_and_name_the_versions():
    current = encoders.settings()
    assert current.default in encoders.SPACES
    assert encoders.ENCODERS["dlib"] == (128, "dlib_face_recognition_resnet_model_v1")
    assert encoders.ENCODERS["faceres"].dim == 1024
    assert encoders.ENCODERS["faceres"].version.startswith("human-models-3.0.4")
    assert encoders.ENCODERS["faceres"].version.endswith("+mirror") == current.mirror


def test_mirrored_faceres_records_its_version(tmp_path):
    current = load(write(tmp_path, faceres__mirror=True))
    assert encoders.encoders(current)["faceres"].version == "human-models-3.0.4+mirror"


def test_each_space_gives_the_distances_the_contract_says(tmp_path):
    current = load(write(tmp_path))
    rng = np.random.default_rng(1)
    dlib = rng.normal(scale=0.1, size=(2, 128)).astype(np.float32)
    faceres = unit(rng, 2, 1024)
    embeddings = {"dlib": dlib, "faceres": faceres}
    d_dlib = np.linalg.norm(dlib[0] - dlib[1])
    d_faceres = np.linalg.norm(faceres[0] - faceres[1])

    v = space_vectors("dlib", embeddings, current)
    assert v.shape == (2, 128) and np.allclose(v, dlib)
    v = space_vectors("faceres", embeddings, current)
    assert v.shape == (2, 1024)
    assert np.linalg.norm(v[0] - v[1]) == pytest.approx(2.0 * d_faceres, rel=1e-5)
    v = space_vectors("fused", embeddings, current)
    assert v.shape == (2, 1152) == (2, space_dim("fused", current))
    expected = math.sqrt(0.25 * d_dlib**2 + 0.75 * (2.0 * d_faceres) ** 2)
    assert np.linalg.norm(v[0] - v[1]) == pytest.approx(expected, rel=1e-5)


def test_a_projection_reduces_and_renormalises(tmp_path):
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(1024, 64)))
    np.save(tmp_path / "p.npy", q.astype(np.float32))
    current = load(write(tmp_path, faceres__projection="p.npy", faceres__scale=3.0))
    faceres = unit(rng, 3, 1024)
    v = space_vectors("faceres", {"faceres": faceres}, current)
    assert v.shape == (3, 64) == (3, space_dim("faceres", current))
    assert np.allclose(np.linalg.norm(v, axis=1), 3.0, rtol=1e-5)
    projected = faceres @ q
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    assert np.allclose(v, 3.0 * projected, atol=1e-5)
    assert space_dim("fused", current) == 128 + 64


def test_faces_missing_an_encoder_are_not_in_the_space(tmp_path):
    current = load(write(tmp_path))
    rng = np.random.default_rng(3)
    dlib = rng.normal(size=(3, 128)).astype(np.float32)
    faceres = [unit(rng, 1, 1024)[0], None, unit(rng, 1, 1024)[0]]
    for space, expected in (("dlib", [True, True, True]), ("faceres", [True, False, True]),
                            ("fused", [True, False, True])):
        v = space_vectors(space, {"dlib": dlib, "faceres": faceres}, current)
        assert encoders.in_space(v).tolist() == expected, space
    # no faceres at all: nobody is in its spaces, everyone in dlib's
    assert not encoders.in_space(space_vectors("fused", {"dlib": dlib}, current)).any()
    assert encoders.in_space(space_vectors("dlib", {"dlib": dlib}, current)).all()
    # a NaN row in an array means the same as a None
    with_nan = np.stack([f if f is not None else np.full(1024, np.nan, np.float32) for f in faceres])
    assert encoders.in_space(space_vectors("faceres", {"faceres": with_nan}, current)).tolist() == [True, False, True]


def test_a_wrong_length_embedding_or_space_is_refused(tmp_path):
    current = load(write(tmp_path))
    with pytest.raises(ValueError, match="1024"):
        space_vectors("faceres", {"faceres": [np.zeros(512)]}, current)
    with pytest.raises(ValueError, match="unknown encoder space 'arcface'"):
        space_vectors("arcface", {"dlib": np.zeros((1, 128))}, current)


@pytest.mark.parametrize("change, match", [
    ({"faceres__scale": -1}, "faceres.scale"),
    ({"fused__dlib_weight": 1.5}, "fused.dlib_weight"),
    ({"default": "arcface"}, "default"),
    ({"faceres__mirror": "yes"}, "faceres.mirror"),
    ({"faceres__projection": "absent.npy"}, "absent.npy"),
])
def test_bad_settings_name_the_key(tmp_path, change, match):
    with pytest.raises(EncoderSettingsError, match=match):
        load(write(tmp_path, **change))


def test_a_corrupt_settings_file_is_a_clear_error(tmp_path):
    path = tmp_path / "encoders.json"
    path.write_text("{not json")
    with pytest.raises(EncoderSettingsError, match="encoders.json cannot be read"):
        load(path)
