"""A TensorFlow.js graph model (model.json + .bin weights) converted to ONNX, without TensorFlow.

Runs at install time (``lotcontrol.vision.model_install``), never in the gate's path. It knows the ops
of the inference graphs we ship (faceres's embedding: a MobileNet's convolutions, depthwise
convolutions, folded batch norms, ReLU6 as Relu/Minimum/Maximum, the global mean; its age and gender
heads are not converted; BlazeFace: convolutions fused with their bias and ReLU, channel padding,
2x2 max pooling, and the reshapes of its heads into [1, anchors, values]) and refuses any other op, layout or weight encoding with ``ModelConvertError`` naming the
node, so a new model fails at install with a clear message instead of converting wrongly.

Layout: tfjs graphs are NHWC; ONNX convolutions are NCHW. The ONNX model takes the same NHWC input as
the tfjs one, transposes once after the input, keeps every 4-d tensor NCHW, and transposes 4-d outputs
back, so its outputs equal the tfjs ones. Per-channel constants of an NCHW tensor's elementwise ops are
reshaped to [C, 1, 1]. The output is deterministic: the same model.json and weights give the same
bytes (nodes in dependency order from the outputs, fixed opset, IR version and producer).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelConvertError

OPSET = 13
IR_VERSION = 8  # onnxruntime 1.14 and later read it; fixed so the bytes do not change with onnx's default
PRODUCER = "lotcontrol.vision.tfjs_onnx"

_DTYPES = {"float32": ("<f4", 4), "int32": ("<i4", 4)}
_QUANTIZED = {"float16": ("<f2", 2)}
#: NHWC axis -> NCHW axis
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}
_ELEMENTWISE = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul",
                "Minimum": "Min", "Maximum": "Max"}
_UNARY = {"Relu": "Relu", "Identity": "Identity"}


@dataclass(frozen=True)
class TfjsModel:
    """A tfjs graph model read from disk: its nodes by name and its weights as numpy arrays."""

    nodes: dict[str, dict]
    weights: dict[str, np.ndarray]
    source: str


def read_tfjs(model_json: Path) -> TfjsModel:
    """Read model.json and the weight files it names (beside it); ModelConvertError says what is wrong."""
    try:
        manifest = json.loads(Path(model_json).read_text(encoding="utf-8"))
        topology = manifest["modelTopology"]
        groups = manifest["weightsManifest"]
    except OSError as exc:
        raise ModelConvertError(f"{model_json}: cannot be read ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelConvertError(f"{model_json}: not a tfjs graph model ({exc!r})") from None
    if manifest.get("format") != "graph-model":
        raise ModelConvertError(f"{model_json}: format {manifest.get('format')!r}, expected 'graph-model'")
    weights: dict[str, np.ndarray] = {}
    for group in groups:
        data = b""
        for name in group["paths"]:
            path = Path(model_json).parent / name
            try:
                data += path.read_bytes()
            except OSError as exc:
                raise ModelConvertError(f"{path}: cannot be read ({exc.strerror})") from None
        offset = 0
        for spec in group["weights"]:
            array, size = _decode_weight(spec, data, offset, model_json)
            weights[spec["name"]] = array
            offset += size
        if offset != len(data):
            raise ModelConvertError(
                f"{model_json}: the weight files {group['paths']} hold {len(data)} bytes, the manifest "
                f"describes {offset}"
            )
    nodes = {}
    for node in topology.get("node", []):
        nodes[node["name"]] = node
    return TfjsModel(nodes, weights, str(model_json))


def _decode_weight(spec: dict, data: bytes, offset: int, source) -> tuple[np.ndarray, int]:
    name, dtype, shape = spec["name"], spec["dtype"], [int(s) for s in spec["shape"]]
    quantization = spec.get("quantization")
    if dtype not in _DTYPES:
        raise ModelConvertError(f"{source}: weight {name} has dtype {dtype!r}, which the converter does not know")
    if quantization:
        stored = quantization.get("dtype")
        if stored not in _QUANTIZED or quantization.get("original_dtype", dtype) != "float32":
            raise ModelConvertError(
                f"{source}: weight {name} is quantized as {stored!r}, which the converter does not know"
            )
        numpy_type, width = _QUANTIZED[stored]
    else:
        numpy_type, width = _DTYPES[dtype]
    count = int(np.prod(shape, dtype=np.int64))
    size = count * width
    if offset + size > len(data):
        raise ModelConvertError(f"{source}: the weight files end inside weight {name}")
    array = np.frombuffer(data, dtype=numpy_type, count=count, offset=offset).reshape(shape)
    return array.astype(np.float32 if dtype == "float32" else np.int32), size


def _attr(node: dict, key: str, default=None):
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "s" in value:
        return base64.b64decode(value["s"]).decode("ascii")
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(i) for i in items["i"]]
        if "s" in items:
            return [base64.b64decode(s).decode("ascii") for s in items["s"]]
        return []
    for kind in ("b", "i", "f", "type"):
        if kind in value:
            return value[kind]
    return default


class _Converter:
    def __init__(self, model: TfjsModel):
        self.model = model
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}  # one per name, however many ops use it
        self.inputs: list[onnx.ValueInfoProto] = []
        self.layout: dict[str, str] = {}  # tensor -> "nchw" (4-d, transposed) or "plain"
        self.done: set[str] = set()
        self._alias: dict[str, str] = {}  # a 4-d input -> its NCHW copy

    def fail(self, node: dict, why: str):
        raise ModelConvertError(f"{self.model.source}: node {node['name']!r} ({node['op']}): {why}")

    # -- tensors -----------------------------------------------------------------------------------
    def _inputs(self, node: dict) -> list[str]:
        names = []
        for raw in node.get("input", []):
            if raw.startswith("^"):
                continue  # a control dependency: no data flows
            name, _, index = raw.partition(":")
            if index not in ("", "0"):
                self.fail(node, f"uses output {index} of {name!r}; only first outputs are supported")
            names.append(name)
        return names

    def const(self, name: str) -> np.ndarray | None:
        node = self.model.nodes.get(name)
        if node is None or node["op"] != "Const":
            return None
        if name not in self.model.weights:
            self.fail(node, "a constant with no value in the weights manifest")
        return self.model.weights[name]

    def initializer(self, name: str, array: np.ndarray) -> str:
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def emit(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    # -- the walk ------------------------------------------------------------------------------------
    def visit(self, name: str) -> None:
        """Convert ``name`` after everything it depends on (depth first, iterative: no recursion limit)."""
        stack = [(name, False)]
        while stack:
            current, ready = stack.pop()
            if current in self.done:
                continue
            node = self.model.nodes.get(current)
            if node is None:
                raise ModelConvertError(f"{self.model.source}: tensor {current!r} is produced by no node")
            if ready or node["op"] == "Const":
                self.done.add(current)
                if node["op"] != "Const":  # constants become initializers where an op uses them
                    self.convert(node)
                continue
            stack.append((current, True))
            for parent in reversed(self._inputs(node)):
                if parent not in self.done:
                    stack.append((parent, False))

    def convert(self, node: dict) -> None:
        op = node["op"]
        handler = getattr(self, f"op_{op.lstrip('_')}", None)
        if op in _ELEMENTWISE:
            self.elementwise(node, _ELEMENTWISE[op])
        elif op in _UNARY:
            (x,) = self._inputs(node)
            self.emit(_UNARY[op], [x], node["name"])
            self.layout[node["name"]] = self.layout[x]
        elif handler is not None:
            handler(node)
        else:
            self.fail(node, "the converter does not know this op")

    def op_Placeholder(self, node: dict) -> None:
        dims = self._shape(node)
        if _attr(node, "dtype") not in ("DT_FLOAT", None):
            self.fail(node, f"input of type {_attr(node, 'dtype')}; only float inputs are supported")
        name = node["name"]
        shape = [d if d >= 0 else "batch" for d in dims]
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        if len(dims) == 4:
            self.emit("Transpose", [name], f"{name}/nchw", perm=[0, 3, 1, 2])
            self.layout[name] = "plain"
            self.layout[f"{name}/nchw"] = "nchw"
            self._alias[name] = f"{name}/nchw"
        else:
            self.layout[name] = "plain"

    def _shape(self, node: dict) -> list[int]:
        shape = node.get("attr", {}).get("shape", {}).get("shape", {})
        return [int(d.get("size", -1)) for d in shape.get("dim", [])]

    def tensor(self, name: str) -> str:
        """The ONNX tensor standing for the tfjs tensor ``name`` (the NCHW copy of a 4-d input)."""
        return self._alias.get(name, name)

    def _convolution(self, node: dict, *, depthwise: bool) -> None:
        x, w = self._inputs(node)
        kernel = self.const(w)
        if kernel is None or kernel.ndim != 4:
            self.fail(node, "the kernel must be a 4-d constant")
        if _attr(node, "data_format", "NHWC") != "NHWC":
            self.fail(node, f"data_format {_attr(node, 'data_format')}; only NHWC is supported")
        if self.layout.get(self.tensor(x)) != "nchw":
            self.fail(node, "its input is not a 4-d image tensor")
        strides = _attr(node, "strides", [1, 1, 1, 1])
        dilations = _attr(node, "dilations", [1, 1, 1, 1])
        padding = _attr(node, "padding", "VALID")
        if strides[0] != 1 or strides[3] != 1 or dilations[0] != 1 or dilations[3] != 1:
            self.fail(node, "strides or dilations across batch or channels")
        if padding not in ("SAME", "VALID"):
            self.fail(node, f"padding {padding}; only SAME and VALID are supported")
        height, width, channels, out = kernel.shape
        if depthwise:  # [H, W, C, multiplier] -> [C * multiplier, 1, H, W], group C
            weight = kernel.transpose(2, 3, 0, 1).reshape(channels * out, 1, height, width)
            group = channels
        else:  # HWIO -> OIHW
            weight = kernel.transpose(3, 2, 0, 1)
            group = 1
        w_name = self.initializer(f"{w}/oihw", weight)
        self.emit(
            "Conv", [self.tensor(x), w_name], node["name"],
            kernel_shape=[height, width], strides=strides[1:3], dilations=dilations[1:3], group=group,
            auto_pad="SAME_UPPER" if padding == "SAME" else "VALID",
        )
        self.layout[node["name"]] = "nchw"

    def op_Conv2D(self, node: dict) -> None:
        self._convolution(node, depthwise=False)

    def op_DepthwiseConv2dNative(self, node: dict) -> None:
        self._convolution(node, depthwise=True)

    def op_FusedConv2D(self, node: dict) -> None:
        """A convolution with its bias, and a ReLU when fused_ops says so (grappler's fusion)."""
        fused = _attr(node, "fused_ops", [])
        if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]):
            self.fail(node, f"fused ops {fused}; only BiasAdd and BiasAdd + Relu are supported")
        x, w, b = self._inputs(node)
        bias = self.const(b)
        if bias is None or bias.ndim != 1:
            self.fail(node, "the bias must be a 1-d constant")
        name = node["name"]
        conv = f"{name}/conv" if fused[-1] == "Relu" else name
        self._convolution({**node, "input": [x, w], "name": conv}, depthwise=False)
        self.nodes[-1].input.append(self.initializer(f"{b}/bias", bias.astype(np.float32)))
        if fused[-1] == "Relu":
            self.emit("Relu", [conv], name)
            self.layout[name] = "nchw"

    def op_Pad(self, node: dict) -> None:
        """Zero padding of a 4-d image tensor (BlazeFace pads channels to add a narrower branch)."""
        x, p = self._inputs(node)
        pads = self.const(p)
        if pads is None or pads.shape != (4, 2):
            self.fail(node, "the paddings must be a [4, 2] constant")
        if self.layout.get(self.tensor(x)) != "nchw":
            self.fail(node, "its input is not a 4-d image tensor")
        nchw = [pads[a] for a in (0, 3, 1, 2)]  # NHWC rows in NCHW order
        onnx_pads = np.array([row[0] for row in nchw] + [row[1] for row in nchw], dtype=np.int64)
        self.emit("Pad", [self.tensor(x), self.initializer(f"{p}/onnx", onnx_pads)], node["name"], mode="constant")
        self.layout[node["name"]] = "nchw"

    def op_MaxPool(self, node: dict) -> None:
        (x,) = self._inputs(node)
        if _attr(node, "data_format", "NHWC") != "NHWC":
            self.fail(node, f"data_format {_attr(node, 'data_format')}; only NHWC is supported")
        if self.layout.get(self.tensor(x)) != "nchw":
            self.fail(node, "its input is not a 4-d image tensor")
        ksize, strides = _attr(node, "ksize", [1, 1, 1, 1]), _attr(node, "strides", [1, 1, 1, 1])
        padding = _attr(node, "padding", "VALID")
        if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
            self.fail(node, "pooling across batch or channels")
        if padding not in ("SAME", "VALID"):
            self.fail(node, f"padding {padding}; only SAME and VALID are supported")
        self.emit("MaxPool", [self.tensor(x)], node["name"], kernel_shape=ksize[1:3], strides=strides[1:3],
                  auto_pad="SAME_UPPER" if padding == "SAME" else "VALID")
        self.layout[node["name"]] = "nchw"

    def op_Reshape(self, node: dict) -> None:
        """A reshape to a constant shape; a 4-d image tensor is put back in NHWC order first, so the
        elements come out in TensorFlow's order."""
        x, s = self._inputs(node)
        shape = self.const(s)
        if shape is None or shape.ndim != 1:
            self.fail(node, "the new shape must be a 1-d constant")
        source = self.tensor(x)
        if self.layout.get(source) == "nchw":
            source = self.emit("Transpose", [source], f"{node['name']}/nhwc", perm=[0, 2, 3, 1])
        self.emit("Reshape", [source, self.initializer(f"{s}/int64", shape.astype(np.int64))], node["name"])
        self.layout[node["name"]] = "plain"

    def elementwise(self, node: dict, onnx_op: str) -> None:
        names = self._inputs(node)
        if len(names) != 2:
            self.fail(node, f"{len(names)} inputs, expected 2")
        operands, layouts = [], set()
        for name in names:
            value = self.const(name)
            if value is None:
                operands.append(self.tensor(name))
                layouts.add(self.layout[self.tensor(name)])
            else:
                operands.append((name, value))
        if not layouts:
            self.fail(node, "both inputs are constants; fold them before converting")
        if len(layouts) > 1:
            self.fail(node, "mixes a 4-d image tensor with another tensor")
        layout = layouts.pop()
        for index, operand in enumerate(operands):
            if isinstance(operand, tuple):
                name, value = operand
                if layout == "nchw" and value.ndim == 1:
                    value = value.reshape(-1, 1, 1)
                elif layout == "nchw" and value.ndim > 1:
                    self.fail(node, f"constant {name!r} of shape {list(value.shape)} on a 4-d image tensor")
                operands[index] = self.initializer(f"{name}/{layout}", value.astype(np.float32))
        self.emit(onnx_op, operands, node["name"])
        self.layout[node["name"]] = layout

    def op_Mean(self, node: dict) -> None:
        x, axes_name = self._inputs(node)
        axes = self.const(axes_name)
        if axes is None:
            self.fail(node, "the reduction axes must be a constant")
        keep = bool(_attr(node, "keep_dims", False))
        axes = sorted(int(a) for a in np.atleast_1d(axes))
        layout = self.layout[self.tensor(x)]
        if layout == "nchw":
            axes = [_NHWC_TO_NCHW[a % 4] for a in axes]
            if not keep and sorted(axes) != [2, 3]:
                self.fail(node, "a mean over 4-d axes other than height and width without keep_dims")
        self.emit("ReduceMean", [self.tensor(x)], node["name"], axes=sorted(axes), keepdims=int(keep))
        self.layout[node["name"]] = layout if keep else "plain"


def convert(model: TfjsModel, outputs: list[str], *, name: str = "model") -> onnx.ModelProto:
    """The ONNX model computing ``outputs`` (tfjs tensor names) from the graph's inputs; only the nodes
    those outputs need are converted (heads that are not asked for are left out)."""
    converter = _Converter(model)
    for output in outputs:
        converter.visit(output.partition(":")[0])
    graph_outputs = []
    for output in outputs:
        tensor = converter.tensor(output.partition(":")[0])
        if converter.layout.get(tensor) == "nchw":
            tensor = converter.emit("Transpose", [tensor], f"{tensor}/nhwc", perm=[0, 2, 3, 1])
        graph_outputs.append(helper.make_empty_tensor_value_info(tensor))
    if not converter.inputs:
        raise ModelConvertError(f"{model.source}: the outputs {outputs} depend on no input")
    graph = helper.make_graph(converter.nodes, name, converter.inputs, graph_outputs,
                             list(converter.initializers.values()))
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER, producer_version="1",
        ir_version=IR_VERSION,
    )
    try:
        # The outputs' types come from shape inference; the intermediate shapes it adds are dropped, so
        # the bytes do not depend on how much a given onnx version infers.
        inferred = onnx.shape_inference.infer_shapes(onnx_model, strict_mode=True)
        for output, typed in zip(onnx_model.graph.output, inferred.graph.output):
            output.CopyFrom(typed)
        onnx.checker.check_model(onnx_model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:  # a converter bug
        raise ModelConvertError(f"{model.source}: the converted model is not valid ONNX: {exc}") from None
    return onnx_model
