"""The encoder fit (bench.encoder_fit) and the evaluation's encoder spaces (bench.accuracy.in_space):
on synthetic embeddings, but the last test, which encodes a few faces-lot photos for real."""

import dataclasses
import json

import numpy as np
import pytest

from lotcontrol.bench import accuracy as A
from lotcontrol.bench import encoder_fit as F
from lotcontrol.vision import calibration, encoders, faceres

from .conftest import FACES_LOT, need


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(seed=0, residents=90, strangers=120, photos=3):
    """People whose photos are noisy copies of a person's centre, in every encoder; faceres's
    mirror-averaged embedding is its plain one with less noise."""
    rng = np.random.default_rng(seed)
    people, encoded = [], {}
    for n, (group, count) in enumerate([("residents", residents), ("strangers", strangers)]):
        for i in range(count):
            key = f"{group}/p{i:03d}"
            paths = tuple(f"{key}/{j}.jpg" for j in range(photos if group == "residents" else 1))
            people.append(A.Person(key, paths, east_asian=i % 10 == 0))
            centre_d, centre_f = rng.normal(0, 0.09, 128), unit(rng.normal(size=1024))
            for path in paths:
                noise = rng.normal(size=1024)
                embeddings = {"dlib": (centre_d + rng.normal(0, 0.035, 128)).astype(np.float32),
                              "faceres": unit(centre_f + 0.04 * noise),
                              "faceres+mirror": unit(centre_f + 0.03 * noise)}
                encoded[path] = A.Encoded([(80, 100.0, embeddings)], dict.fromkeys(A.STEPS, 0.01))
    return people, encoded


def base():
    return encoders.Settings(source="test", faceres_scale=1.0, mirror=False, projection=None, projection_file=None,
                             faceres_version="human-models-3.0.4", dlib_weight=0.5, default="dlib")


def test_scale_puts_the_other_encoder_into_dlib_units_at_the_far():
    rng = np.random.default_rng(1)
    who = np.repeat(np.arange(40), 3)
    dlib = rng.normal(size=(120, 128)).astype(np.float32)
    other = (dlib * 0.25).astype(np.float32)  # the same geometry, a quarter of the size
    assert F.scale_to_dlib(dlib, other, who) == pytest.approx(4.0, rel=1e-5)
    scaled = other * F.scale_to_dlib(dlib, other, who)
    assert F.distance_at_far(scaled, who) == pytest.approx(F.distance_at_far(dlib, who), rel=1e-5)


def test_refused_counts_a_genuine_probe_nearer_someone_else_as_not_admitted():
    people, encoded = synthetic(residents=40, strangers=40)
    faces = F.tuning_faces(people, encoded)
    assert F.refused(faces.embeddings["dlib"], faces) < 0.1
    shuffled = faces.embeddings["dlib"][np.random.default_rng(0).permutation(len(faces.who))]
    assert F.refused(shuffled, faces) > 0.8  # a face's vector no longer its own: nearly every probe fails


def test_in_space_gives_the_fused_distance_of_the_contract_from_the_named_faceres_embedding():
    people, encoded = synthetic(residents=3, strangers=0)
    settings = dataclasses.replace(base(), faceres_scale=2.5, mirror=True, dlib_weight=0.3)
    a, b = people[0].photos[0], people[1].photos[0]
    fused = A.in_space({a: encoded[a], b: encoded[b]}, "fused", settings)
    d_fused = np.linalg.norm(fused[a].faces[0][2] - fused[b].faces[0][2])
    ea, eb = encoded[a].faces[0][2], encoded[b].faces[0][2]
    d_dlib = np.linalg.norm(ea["dlib"] - eb["dlib"])
    d_faceres = 2.5 * np.linalg.norm(ea["faceres+mirror"] - eb["faceres+mirror"])  # mirror: the averaged one
    assert d_fused ** 2 == pytest.approx(0.3 * d_dlib ** 2 + 0.7 * d_faceres ** 2, rel=1e-4)
    plain = A.in_space({a: encoded[a]}, "faceres", dataclasses.replace(settings, mirror=False))
    assert np.allclose(plain[a].faces[0][2], 2.5 * ea["faceres"], atol=1e-6)
    assert A.in_space({a: None}, "fused", settings) == {a: None}  # no photo stays no photo


def test_the_fit_uses_the_tuning_people_only():
    people, encoded = synthetic()
    tuning, test = A.split_by_person({p.key: p for p in people}, (0, 0, 0))
    lookup = {p.key: p for p in people}
    chosen = F.fit([lookup[k] for k in tuning], encoded, base())
    # the test half's photos made into something else entirely: every one of its embeddings redrawn
    rng = np.random.default_rng(7)
    changed = dict(encoded)
    for key in test:
        for path in lookup[key].photos:
            changed[path] = A.Encoded([(80, 100.0, {"dlib": rng.normal(0, 0.5, 128).astype(np.float32),
                                                    "faceres": unit(rng.normal(size=1024)),
                                                    "faceres+mirror": unit(rng.normal(size=1024))})], {})
    again = F.fit([lookup[k] for k in tuning], changed, base())
    assert F.describe(again.settings) == F.describe(chosen.settings)
    assert again.table == chosen.table
    # while the tuning half's photos do move it
    moved = dict(encoded)
    for key in tuning:
        for path in lookup[key].photos:
            e = encoded[path].faces[0][2]
            moved[path] = A.Encoded([(80, 100.0, {**e, "faceres": unit(e["faceres"] * 3 + rng.normal(size=1024)),
                                                  "faceres+mirror": unit(e["faceres+mirror"] * 3 + rng.normal(size=1024))})], {})
    assert F.fit([lookup[k] for k in tuning], moved, base()).settings.faceres_scale != chosen.settings.faceres_scale


def test_the_fit_takes_the_mirror_only_when_it_pays_and_a_projection_only_when_it_is_cheap():
    people, encoded = synthetic()
    result = F.fit(people, encoded, base())
    table = result.table
    assert table["cpu_vs_dlib"]["faceres+mirror"] == pytest.approx(2.0)  # 5 points + 2 inferences, 0.01 s each
    assert result.settings.mirror is False  # never over the CPU target, whatever it gains
    cheap = {p: dataclasses.replace(e, cpu={**e.cpu, "dlib": 0.1}) for p, e in encoded.items()}
    result_cheap = F.fit(people, cheap, base())
    t = result_cheap.table
    assert t["cpu_vs_dlib"]["faceres+mirror"] == pytest.approx(0.2)
    assert result_cheap.settings.mirror == (t["mirror"]["true"]["refused"]
                                            <= t["mirror"]["false"]["refused"] - F.MIRROR_GAIN)
    dims = None if result.settings.projection is None else result.settings.projection.shape[1]
    full = table["projection"]["None"]["refused"]
    cheap = [d for d in F.DIMS if table["projection"][str(d)]["refused"] <= full + F.PROJECTION_COST]
    assert dims == (min(cheap) if cheap else None)
    assert result.settings.dlib_weight in F.WEIGHTS
    best = min(table["dlib_weight"].values())
    assert table["dlib_weight"][str(result.settings.dlib_weight)] == best
    if dims is not None:
        assert result.settings.projection.shape == (1024, dims)
        assert result.settings.projection_file == F.PROJECTION_FILE


def test_write_makes_an_encoders_json_that_loads_back(tmp_path):
    vectors = unit(np.random.default_rng(2).normal(size=(300, 1024)))
    chosen = dataclasses.replace(base(), faceres_scale=1.2345678, mirror=True, dlib_weight=0.3,
                                 projection=F.pca(vectors, 128), projection_file=F.PROJECTION_FILE,
                                 same_person={"faceres": 0.9456, "fused": 0.97})
    path = tmp_path / "encoders.json"
    F.write(chosen, "fused", "fitted on synthetic people", path)
    loaded = encoders.load(path)
    assert loaded.default == "fused" and loaded.mirror == chosen.mirror
    assert loaded.faceres_scale == pytest.approx(chosen.faceres_scale, rel=1e-3)
    assert loaded.projection.shape == (1024, 128) and loaded.dlib_weight == chosen.dlib_weight
    assert loaded.same_person == {"faceres": 0.946, "fused": 0.97}
    data = json.loads(path.read_text())
    for wrong in ({"faceres": 0.1}, {"arcface": 1.0}, {"fused": "0.9"}, [0.9]):
        path.write_text(json.dumps(data | {"same_person": wrong}))
        with pytest.raises(encoders.EncoderSettingsError, match="same_person must map spaces"):
            encoders.load(path)


def test_the_one_person_limit_takes_as_many_different_people_in_each_space_as_dlib_does():
    """Step 5: faceres's different-person distances are packed closer than dlib's (here: a smaller
    spread about the same unit distance), so dlib's 0.6 would take more of them for one person; the
    fitted factor gives the space dlib's share, and SamePerson compares at it."""
    from lotcontrol.bench.calibrate import _pairs
    from lotcontrol.vision.matcher import SamePerson

    rng = np.random.default_rng(3)
    who = np.repeat(np.arange(150), 2)
    dlib, faceres = np.zeros((300, 128), np.float32), np.zeros((300, 1024), np.float32)
    dlib[:, :4] = np.repeat(rng.normal(0, 0.45, (150, 4)), 2, axis=0) + rng.normal(0, 0.05, (300, 4))
    faceres[:, :4] = np.repeat(rng.normal(0, 1, (150, 4)), 2, axis=0) + rng.normal(0, 0.1, (300, 4))
    faceres = unit(faceres)  # at most 2 apart, times the scale: packed unlike dlib's spread
    settings = dataclasses.replace(base(), faceres_scale=0.45, dlib_weight=0.5)
    space = {"dlib": dlib, "faceres": faceres}
    table = F.same_person_factors(space, who, settings)
    everyone = np.ones(len(who), bool)
    dlib_share = table["dlib"]["different_within"]
    assert 0.001 < dlib_share < 0.2
    assert table["faceres"]["different_within_before"] > 2 * dlib_share and table["faceres"]["factor"] < 0.9
    for name in ("faceres", "fused"):
        different = _pairs(encoders.space_vectors(name, space, settings), who, everyone, same=False)
        assert table[name]["different_within_before"] == pytest.approx(np.mean(different <= F.SAME_PERSON))
        assert np.mean(different <= table[name]["limit"]) == pytest.approx(dlib_share, abs=0.002)
        fitted = dataclasses.replace(settings, same_person={name: table[name]["factor"]})
        assert encoders.same_person_limit(name, 0.6, fitted) == pytest.approx(table[name]["limit"], abs=0.002)
        assert encoders.same_person_limit("dlib", 0.6, fitted) == 0.6
    rule = SamePerson(0.6, "faceres")
    assert rule.limit == encoders.same_person_limit("faceres", 0.6) and rule.setting == 0.6
    assert SamePerson(0.6).described == "enroll.camera_same_person = 0.6"


def test_faces_lot_photos_get_every_encoder_from_one_detection():
    lot = need(FACES_LOT)
    model = faceres.BUILD_DIR / "faceres.onnx"
    if not model.is_file():
        pytest.skip(f"{model} is absent: `make install` converts it (it needs npm)")
    people = sorted(p for p in (lot / "residents").iterdir() if p.is_dir())[:3]
    found = {}
    for person in people:
        for path in sorted(person.glob("*.jpg"))[:2]:
            _, encoded = A._encode(str(path))
            assert encoded is not None and encoded.faces
            width, _, embeddings = encoded.faces[0]
            assert width > 20 and set(embeddings) == set(A.EMBEDDINGS)
            assert embeddings["dlib"].shape == (128,)
            for name in ("faceres", "faceres+mirror"):
                assert embeddings[name].shape == (1024,)
                assert np.linalg.norm(embeddings[name]) == pytest.approx(1.0, abs=1e-4)
            assert not np.allclose(embeddings["faceres"], embeddings["faceres+mirror"])
            assert all(encoded.cpu[s] >= 0 for s in A.STEPS) and encoded.cpu["faceres+mirror"] > 0
            found[str(path)] = encoded
    seen = A.in_space(found, "faceres", encoders.load())
    vectors = {path: s.faces[0][2] for path, s in seen.items()}
    paths = sorted(vectors)
    same = [np.linalg.norm(vectors[a] - vectors[b]) for a, b in zip(paths[::2], paths[1::2])]
    different = [np.linalg.norm(vectors[a] - vectors[b]) for a in paths[::2] for b in paths[::2] if a < b]
    assert max(same) < min(different)  # two photos of one person nearer than two people, in dlib units


def test_an_interrupted_pass_is_used_as_far_as_it_went(tmp_path, monkeypatch):
    people, encoded = synthetic(residents=3, strangers=2)
    done = {p: e for p, e in encoded.items() if not p.startswith("residents/p001/")}
    monkeypatch.setattr(A, "CACHE", tmp_path)
    (tmp_path / f"lot-v{A.CACHE_VERSION}.pickle").write_bytes(A.pickle.dumps(done))
    got = A.encode_photos(sorted(encoded), "lot", cached_only=True)  # encodes nothing: no model needed
    assert set(got) == set(done)
    assert [p.key for p in A.complete(people, got)] == [p.key for p in people if p.key != "residents/p001"]


@pytest.mark.parametrize("space", ["faceres", "fused"])
def test_each_space_ships_a_calibration_measured_with_dlibs_rule_and_the_shipped_numbers(space):
    from lotcontrol.bench.calibrate import space_file

    dlib = json.loads(calibration.FILE.read_text(encoding="utf-8"))
    data = json.loads(space_file(space).read_text(encoding="utf-8"))
    table = calibration.Calibration.from_dict(data)
    assert data["rule"] == dlib["rule"] and table.distances.round(3).tolist() == dlib["distances"]
    # measured with the encoder numbers that ship: a new fit needs a new calibration
    assert f"{space} space ({F.describe(encoders.load())})" in table.source
    rates = table.stranger_rates(1400)
    assert np.all(np.diff(rates) >= 0) and rates[0] < rates[-1]
    assert table.limit(0.005, 1400) >= table.distances[0]


def test_shipped_encoder_numbers_are_fitted_on_a_tuning_half():
    shipped = encoders.load()
    assert "tuning half" in shipped.source and shipped.faceres_scale != 1.0
    if shipped.projection_file:
        assert shipped.projection.shape[0] == 1024
