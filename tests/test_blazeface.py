"""BlazeFace: the converter's ops it needs, anchors, box decoding, NMS, letterboxing and tiles, the
installed model against the original tfjs graph run unchanged in Node, and the vision.detector setting."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lotcontrol.config import Config, parse_config
from lotcontrol.errors import ConfigError, ModelConvertError, ModelFileError
from lotcontrol.vision import blazeface
from lotcontrol.vision.faces import Box
from lotcontrol.vision.tfjs_onnx import convert, read_tfjs

from .conftest import FACES, need
from .test_faceres import NODE_SCRIPT, TFJS_MODULES, _b64, node_with_tfjs, write_graph

SAME = {"s": _b64("SAME")}
NHWC = {"s": _b64("NHWC")}
ONES = {"list": {"i": ["1", "1", "1", "1"]}}
TWOS = {"list": {"i": ["1", "2", "2", "1"]}}


def _fused(name: str, x: str, k: str, b: str, ops: list[str]) -> dict:
    return {"name": name, "op": "_FusedConv2D", "input": [x, k, b],
            "attr": {"strides": ONES, "padding": SAME, "data_format": NHWC, "dilations": ONES,
                     "fused_ops": {"list": {"s": [_b64(o) for o in ops]}}, "num_args": {"i": "1"}}}


def blaze_ops_graph(folder: Path, *, fused_ops: tuple[str, ...] = ("BiasAdd", "Relu")) -> Path:
    """x [1, 4, 4, 3] -> 1x1 convolution + bias + ReLU (fused) -> zero padding of height, width and
    channels -> 2x2 stride-2 SAME max pooling -> reshape to [1, 9, 5] ("out"), and a second head, a
    1x1 convolution + bias without ReLU, reshaped to [1, 16, 2] ("head")."""
    rng = np.random.default_rng(3)
    weights = {
        "k": rng.normal(size=(1, 1, 3, 4)).astype(np.float32),
        "b": rng.normal(size=(4,)).astype(np.float32),
        "pads": np.array([[0, 0], [1, 0], [0, 2], [0, 1]], np.int32),
        "shape": np.array([1, 9, 5], np.int32),
        "k2": rng.normal(size=(1, 1, 4, 2)).astype(np.float32),
        "b2": rng.normal(size=(2,)).astype(np.float32),
        "shape2": np.array([1, 16, 2], np.int32),
    }
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
         "shape": {"shape": {"dim": [{"size": "1"}, {"size": "4"}, {"size": "4"}, {"size": "3"}]}}}},
        _fused("conv", "x", "k", "b", list(fused_ops)),
        {"name": "pad", "op": "Pad", "input": ["conv", "pads"]},
        {"name": "pool", "op": "MaxPool", "input": ["pad"],
         "attr": {"ksize": TWOS, "strides": TWOS, "padding": SAME, "data_format": NHWC}},
        {"name": "out", "op": "Reshape", "input": ["pool", "shape"]},
        _fused("conv2", "conv", "k2", "b2", ["BiasAdd"]),
        {"name": "head", "op": "Reshape", "input": ["conv2", "shape2"]},
    ]
    return write_graph(folder, nodes, weights)


def _blaze_reference(x: np.ndarray, graph: Path) -> tuple[np.ndarray, np.ndarray]:
    """The graph in numpy, NHWC as TensorFlow computes it (fp16-rounded weights)."""
    w = read_tfjs(graph).weights
    conv = np.maximum(np.einsum("nhwc,co->nhwo", x, w["k"][0, 0]) + w["b"], 0)
    padded = np.pad(conv, w["pads"])  # [1, 5, 6, 5]
    # SAME 2x2 stride 2 on 5 rows: 3 rows, the last from one row (TensorFlow pads after, with -inf)
    grown = np.pad(padded, ((0, 0), (0, 1), (0, 0), (0, 0)), constant_values=-np.inf)
    pooled = grown.reshape(1, 3, 2, 3, 2, 5).max(axis=(2, 4))
    head = np.einsum("nhwc,co->nhwo", conv, w["k2"][0, 0]) + w["b2"]
    return pooled.reshape(1, 9, 5), head.reshape(1, 16, 2)


def test_fused_convolution_padding_pooling_and_reshape_convert_to_what_tensorflow_computes(tmp_path):
    import onnxruntime

    graph = blaze_ops_graph(tmp_path)
    model = convert(read_tfjs(graph), ["out", "head"], name="ops")
    x = np.random.default_rng(4).normal(size=(1, 4, 4, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out, head = session.run(None, {"x": x})
    expected_out, expected_head = _blaze_reference(x, graph)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(head, expected_head, rtol=1e-4, atol=1e-4)


def test_a_fused_op_the_converter_does_not_know_is_refused_by_name(tmp_path):
    graph = blaze_ops_graph(tmp_path, fused_ops=("BiasAdd", "Relu6"))
    with pytest.raises(ModelConvertError, match=r"node 'conv' \(_FusedConv2D\): fused ops \['BiasAdd', 'Relu6'\]"):
        convert(read_tfjs(graph), ["out"])


def test_anchors_are_the_two_grids_of_the_short_range_model():
    anchors = blazeface.anchors()
    assert anchors.shape == (896, 2)
    np.testing.assert_array_equal(anchors[:2], [[4, 4], [4, 4]])  # stride 8, 2 a cell, 16 x 16
    np.testing.assert_array_equal(anchors[2], [12, 4])
    np.testing.assert_array_equal(anchors[511], [124, 124])
    np.testing.assert_array_equal(anchors[512:518], [[8, 8]] * 6)  # stride 16, 6 a cell, 8 x 8
    np.testing.assert_array_equal(anchors[518], [24, 8])
    np.testing.assert_array_equal(anchors[-1], [120, 120])


def test_a_box_is_decoded_from_its_anchor_offset_and_size():
    logits = np.full(896, -20.0, np.float32)
    regressors = np.zeros((896, 16), np.float32)
    logits[518] = 3.0
    regressors[518, :4] = [2.0, -3.0, 40.0, 50.0]  # centre offset x, y; width, height (input pixels)
    boxes, scores = blazeface.decode(logits, regressors)
    np.testing.assert_allclose(boxes[518], [24 + 2 - 20, 8 - 3 - 25, 24 + 2 + 20, 8 - 3 + 25])
    assert scores[518] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert scores.argmax() == 518 and scores[0] < 1e-8
    _, huge = blazeface.decode(np.array([-1e6, 1e6], np.float32), np.zeros((2, 16)), np.zeros((2, 2)))
    assert huge[0] < 1e-40 and huge[1] == 1.0  # clipped, no overflow


def test_nms_keeps_the_best_of_overlapping_boxes_and_the_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 12]], np.float64)
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    assert blazeface.nms(boxes, scores) == [1, 2]
    assert blazeface.nms(boxes, scores, iou=0.9) == [1, 3, 2, 0]
    assert blazeface.nms(np.zeros((0, 4)), np.zeros(0)) == []


def test_letterbox_keeps_the_aspect_and_pads_bottom_right():
    image = np.full((100, 200, 3), 255, np.uint8)
    batch, scale = blazeface.letterbox(image)
    assert batch.shape == (1, 128, 128, 3) and scale == pytest.approx(0.64)
    assert batch[0, :64].min() == pytest.approx(1.0) and batch[0, 64:].max() == pytest.approx(-1.0)


def test_tiles_cover_the_frame_and_overlap():
    for height, width, n in ((360, 640, 2), (1080, 1920, 3), (480, 640, 2)):
        covered = np.zeros((height, width), bool)
        tiles = blazeface.tiles_of(height, width, n)
        for top, left, side in tiles:
            assert top >= 0 and left >= 0 and top + side <= height and left + side <= width
            covered[top:top + side, left:left + side] = True
        assert covered.all()
        assert len({side for _, _, side in tiles}) == 1


def _installed() -> blazeface.BlazeFaceDetector:
    path = blazeface.BUILD_DIR / "blazeface.onnx"
    if not path.exists():
        pytest.skip(f"{path} is absent: `make install` converts it (it needs npm)")
    return blazeface.detector()


def _photos(count: int) -> list[np.ndarray]:
    from lotcontrol.vision import faces

    need(FACES)
    paths = [sorted((FACES / person).glob("*.jpg"))[0] for person in ("Tony_Blair", "Serena_Williams", "Colin_Powell")]
    return [faces.read_photo(path).rgb for path in paths[:count]]


def test_the_installed_model_finds_the_face_hog_finds_and_maps_it_back_to_the_frame():
    from lotcontrol.vision import faces
    from lotcontrol.vision.pipeline import iou

    detector = _installed()
    for rgb in _photos(3):
        (hog,) = faces.detect(rgb, 1)
        found = [box for box, _ in detector.scored(rgb)]  # best first (LFW photos show bits of neighbours)
        assert found and iou(found[0], hog) > 0.5, (found, hog)
        # the same photo in a wider frame, shifted: the box moves with it (letterboxing undone)
        frame = np.zeros((rgb.shape[0] + 60, rgb.shape[1] * 2, 3), np.uint8)
        frame[60:, 100:100 + rgb.shape[1]] = rgb
        moved = detector.scored(frame)[0][0]
        shifted = Box(found[0].top + 60, found[0].right + 100, found[0].bottom + 60, found[0].left + 100)
        assert iou(moved, shifted) > 0.7, (moved, shifted)


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match=r"face model .*absent\.onnx is missing: run `make install`"):
        blazeface.BlazeFaceDetector(tmp_path / "absent.onnx", sha256=None)


@pytest.mark.slow
def test_the_onnx_model_gives_the_outputs_of_the_tfjs_graph_on_real_photos(tmp_path):
    detector = _installed()
    node = node_with_tfjs()
    graph = blazeface.BUILD_DIR / "human-models-3.0.4" / "blazeface-front.json"
    batch = np.concatenate([blazeface.letterbox(rgb)[0] for rgb in _photos(3)]).astype(np.float32)
    batch.astype("<f4").tofile(tmp_path / "input.f32")
    onnx_outputs = [detector.session.run(detector.outputs, {detector.input: one[None]}) for one in batch]
    for index, name in enumerate(detector.outputs):
        subprocess.run(
            [node, str(NODE_SCRIPT), str(graph), str(tmp_path / "input.f32"), *map(str, batch.shape), name,
             str(tmp_path / "tfjs.f32")],
            check=True, timeout=900, env={**os.environ, "NODE_PATH": str(TFJS_MODULES)}, capture_output=True,
        )
        ours = np.concatenate([outputs[index] for outputs in onnx_outputs])
        tfjs = np.fromfile(tmp_path / "tfjs.f32", dtype="<f4").reshape(ours.shape)
        np.testing.assert_allclose(ours, tfjs, rtol=1e-4, atol=1e-3 * np.abs(tfjs).max())
    # and the outputs mean a face: each photo's best anchor scores above MediaPipe's threshold
    for outputs in onnx_outputs:
        logits = np.concatenate([outputs[0][0, :, 0], outputs[1][0, :, 0]])
        assert 1 / (1 + np.exp(-logits.max())) > blazeface.MIN_SCORE


def test_vision_detector_chooses_the_pipeline_s_detector(monkeypatch):
    from lotcontrol.vision.matcher import Gallery
    from lotcontrol.vision.pipeline import Pipeline

    class Fake:
        def detect(self, rgb):
            return [Box(10, 30, 30, 10)]

    monkeypatch.setattr(blazeface, "detector", lambda: Fake())
    config = parse_config({"vision": {"detector": "blazeface"}})
    empty = Gallery(np.zeros((0, 128), np.float32), np.zeros(0, np.int64), version=0)
    assert Pipeline(config, empty)._detect_in(np.zeros((60, 80, 3), np.uint8), 5, 7) == [Box(15, 37, 35, 17)]
    assert Config().vision.detector == "hog"
    with pytest.raises(ConfigError, match="vision.detector"):
        parse_config({"vision": {"detector": "cnn"}})


def test_the_benchmark_s_box_mapping_recovers_a_known_shift_and_scale():
    from lotcontrol.bench.detector import fit_mapping, mapped

    rng = np.random.default_rng(5)
    pairs = []
    for _ in range(20):
        left, top, width = rng.integers(0, 200, size=2).tolist() + [int(rng.integers(40, 120))]
        blaze = Box(top, left + width, top + width, left)
        pairs.append((blaze, mapped(blaze, np.array([0.05, -0.1, 0.9]))))
    np.testing.assert_allclose(fit_mapping(pairs), [0.05, -0.1, 0.9], atol=0.02)  # boxes are whole pixels
