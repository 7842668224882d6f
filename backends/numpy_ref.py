"""A pure-numpy reference backend: evaluates an MLP or a CNN policy straight from an ONNX file's weights.

Why it exists: it is the parity oracle that needs neither torch nor any inference runtime, and the
latency floor (a few BLAS calls per frame) the real runtimes are compared against.

Why it carries its own ONNX reader: an ``.onnx`` file is a protobuf message, and the device-side
``edge`` extra does not install the ``onnx`` package (nor should the oracle depend on onnxruntime, the
runtime it checks). The subset of the protobuf wire format an MLP needs — model → graph → nodes,
initializers, inputs, outputs — is about a hundred lines; the tests cross-check it against
``onnx.numpy_helper`` wherever ``onnx`` is installed.

Supported graphs: one chain from the single input to the single output of ``Gemm``,
``MatMul`` (+ ``Add``), ``LayerNormalization`` (over the last axis, after an affine layer), ``Relu`` or
``Tanh`` (a PPO policy's activation),
float ``Cast`` and ``Identity`` nodes, with constant weights (fp32, fp64 or fp16; fp16 is upcast and
computed in fp32). Before the first affine layer, a convolutional trunk (:class:`Trunk`): ``Cast`` of
uint8 frames, ``Div``/``Mul`` by a scalar (an image policy's 1/255), ``Reshape``, ``Conv`` (no groups or
dilation) each optionally followed by ``Relu``, then ``Flatten``: NatureCNN, each conv one im2col matmul
(0.66 ms a Breakout frame against onnxruntime's 0.37 here, with OpenBLAS on one thread as the benchmarks
run it; left to its threads beside another busy process, OpenBLAS took 47 ms). Quantized graphs (QDQ,
integer matmuls) and anything branching are refused with the list of supported ops.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from backends.base import Backend

SUPPORTED_OPS = (
    "Gemm", "MatMul", "Add", "LayerNormalization", "Relu", "Tanh", "Cast", "Identity", "Constant",
    "Conv", "Div", "Mul", "Flatten", "Reshape",
)  # fmt: skip
TRUNK_OPS = frozenset({"Conv", "Div", "Mul", "Flatten", "Reshape"})
"""Ops only a graph's convolutional trunk (before its first affine layer) may use."""
_QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "QLinearConv",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
    }
)
# TensorProto.DataType codes → numpy dtypes (only those a float MLP can carry).
_DTYPES: dict[int, Any] = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    6: np.int32,
    7: np.int64,
    10: np.float16,
    11: np.float64,
}
_FLOAT_CODES = frozenset({1, 10, 11})
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class OnnxReadError(ValueError):
    """The file is not a readable ONNX model, or uses something this reader does not handle."""


# --------------------------------------------------------------------------------------------------------
# Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): just enough to walk ONNX.
# --------------------------------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxReadError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxReadError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    """int64 fields are two's complement in 10 varint bytes when negative."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field number, wire type, value)``; ``value`` is an int (varint) or bytes (others)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise OnnxReadError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > end:
            raise OnnxReadError(f"truncated protobuf field {number}")
        yield number, wire, value


def _packed_varints(wire: int, value: Any) -> list[int]:
    """A repeated integer field: packed (one length-delimited blob) or one varint per occurrence."""
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


@dataclass
class _Tensor:
    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    raw: bytes | None = None
    float_data: list[float] = field(default_factory=list)
    int_data: list[int] = field(default_factory=list)
    double_data: list[float] = field(default_factory=list)
    external: bool = False

    def array(self) -> np.ndarray:
        if self.external:
            raise OnnxReadError(
                f"initializer {self.name!r} is stored in an external data file; re-export the model as one "
                "file (torch.onnx.export(..., external_data=False))"
            )
        dtype = _DTYPES.get(self.data_type)
        if dtype is None:
            raise OnnxReadError(f"initializer {self.name!r} has unsupported ONNX data type {self.data_type}")
        count = int(np.prod(self.dims)) if self.dims else 1
        if self.raw is not None:
            arr = np.frombuffer(self.raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        elif self.data_type == 1:
            arr = np.asarray(self.float_data, dtype=np.float32)
        elif self.data_type == 11:
            arr = np.asarray(self.double_data, dtype=np.float64)
        elif self.data_type == 10:  # fp16 values travel as uint16 bit patterns in int32_data
            arr = np.asarray(self.int_data, dtype=np.uint16).view(np.float16)
        else:
            arr = np.asarray(self.int_data, dtype=dtype)
        if arr.size != count:
            raise OnnxReadError(f"initializer {self.name!r}: {arr.size} values for dims {self.dims}")
        return arr.reshape(self.dims)


def _tensor(buf: bytes) -> _Tensor:
    t = _Tensor()
    for number, wire, value in _fields(buf):
        if number == 1:
            t.dims.extend(_packed_varints(wire, value))
        elif number == 2:
            t.data_type = value
        elif number == 4:
            t.float_data.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif number in (5, 7):
            t.int_data.extend(_packed_varints(wire, value))
        elif number == 8:
            t.name = value.decode()
        elif number == 9:
            t.raw = bytes(value)
        elif number == 10:
            t.double_data.extend(struct.unpack(f"<{len(value) // 8}d", value))
        elif number == 14:
            t.external = value == _EXTERNAL
    return t


@dataclass
class _Node:
    op_type: str = ""
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _attribute(buf: bytes) -> tuple[str, Any]:
    name, value_out, floats, ints = "", None, [], []
    for number, wire, value in _fields(buf):
        if number == 1:
            name = value.decode()
        elif number == 2:
            value_out = struct.unpack("<f", value)[0]
        elif number == 3:
            value_out = _signed(value)
        elif number == 4:
            value_out = bytes(value)
        elif number == 5:
            value_out = _tensor(value)
        elif number == 7:
            floats.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif number == 8:
            ints.extend(_packed_varints(wire, value))
    if value_out is None:
        value_out = floats or ints
    return name, value_out


def _node(buf: bytes) -> _Node:
    n = _Node()
    for number, _, value in _fields(buf):
        if number == 1:
            n.inputs.append(value.decode())
        elif number == 2:
            n.outputs.append(value.decode())
        elif number == 4:
            n.op_type = value.decode()
        elif number == 7:
            n.domain = value.decode()
        elif number == 5:
            key, attr = _attribute(value)
            n.attrs[key] = attr
    return n


@dataclass
class _ValueInfo:
    name: str
    elem_type: int
    shape: list[int | str]
    """``int`` for a fixed size, the ``dim_param`` name (or ``"?"``) for a dynamic one."""


def _value_info(buf: bytes) -> _ValueInfo:
    name, elem_type, shape = "", 0, []
    for number, _, value in _fields(buf):
        if number == 1:
            name = value.decode()
        elif number == 2:  # TypeProto
            for tnum, _, tval in _fields(value):
                if tnum != 1:  # tensor_type
                    continue
                for num2, _, val2 in _fields(tval):
                    if num2 == 1:
                        elem_type = val2
                    elif num2 == 2:  # TensorShapeProto
                        for dnum, _, dval in _fields(val2):
                            if dnum != 1:
                                continue
                            dim: int | str = "?"
                            for num3, _, val3 in _fields(dval):
                                dim = _signed(val3) if num3 == 1 else val3.decode()
                            shape.append(dim)
    return _ValueInfo(name, elem_type, shape)


@dataclass
class OnnxGraph:
    """The parts of an ONNX model an MLP evaluator needs."""

    nodes: list[_Node]
    initializers: dict[str, _Tensor]
    inputs: list[_ValueInfo]
    outputs: list[_ValueInfo]

    def initializer_arrays(self) -> dict[str, np.ndarray]:
        return {name: t.array() for name, t in self.initializers.items()}


def read_onnx(data: bytes) -> OnnxGraph:
    """Parse a serialized ``ModelProto`` into nodes, initializers and graph inputs/outputs."""
    graph_buf = None
    for number, wire, value in _fields(data):
        if number == 7 and wire == 2:
            graph_buf = value
    if graph_buf is None:
        raise OnnxReadError("no graph in the file (is it an ONNX model?)")
    nodes, inits, inputs, outputs = [], {}, [], []
    for number, wire, value in _fields(graph_buf):
        if wire != 2:
            continue
        if number == 1:
            nodes.append(_node(value))
        elif number == 5:
            t = _tensor(value)
            inits[t.name] = t
        elif number == 11:
            inputs.append(_value_info(value))
        elif number == 12:
            outputs.append(_value_info(value))
        elif number == 15:
            raise OnnxReadError("sparse initializers are not supported by the numpy reference")
    # Older exporters also list initializers as graph inputs; only the rest are real inputs.
    inputs = [vi for vi in inputs if vi.name not in inits]
    return OnnxGraph(nodes, inits, inputs, outputs)


# --------------------------------------------------------------------------------------------------------
# Lowering: the node list → a chain of affine layers with optional ReLU.
# --------------------------------------------------------------------------------------------------------


@dataclass
class Norm:
    """``LayerNormalization`` over the features: ``(y − mean y) / sqrt(var y + eps) · scale + shift``."""

    scale: np.ndarray
    shift: np.ndarray
    eps: float


@dataclass
class Layer:
    """``y = x @ weight + bias``, then ``norm`` if set, then ReLU if ``relu`` or tanh if ``tanh``; weights
    ``[in, out]`` fp32."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False
    norm: Norm | None = None
    tanh: bool = False

    @property
    def activated(self) -> bool:
        return self.relu or self.tanh


@dataclass
class Conv:
    """A 2-D convolution ``[N, C, H, W] → [N, O, H', W']`` (weights ``[O, C, kh, kw]``, fp32), then ReLU if
    ``relu``; computed as one matmul over the input's sliding windows (im2col)."""

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    """Zero padding ``(top, left, bottom, right)``."""
    relu: bool = False
    _matrix: np.ndarray | None = field(default=None, repr=False)
    """``weight`` as a ``[C·kh·kw, O]`` matrix, made on the first call."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        top, left, bottom, right = self.pads
        if any(self.pads):
            x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        out, _, kh, kw = self.weight.shape
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
        windows = windows[:, :, :: self.stride[0], :: self.stride[1]]  # [N, C, H', W', kh, kw]
        n, _, h, w = windows.shape[:4]
        # one copy into rows of (C, kh, kw) patches, then one BLAS matmul (tensordot on the strided view
        # measured 8–25 ms a layer against ~0.3 ms this way)
        patches = np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(n * h * w, -1)
        if self._matrix is None:
            self._matrix = np.ascontiguousarray(self.weight.reshape(out, -1).T)
        y = patches @ self._matrix
        y += self.bias
        if self.relu:
            np.maximum(y, 0.0, out=y)
        return np.ascontiguousarray(y.reshape(n, h, w, out).transpose(0, 3, 1, 2))


@dataclass
class Trunk:
    """What a graph does before its first affine layer: scale, reshape, convolve, flatten (in order)."""

    steps: list[Any] = field(default_factory=list)
    """:class:`Conv`, ``("scale", factor)`` or ``("reshape", shape)`` (``shape`` without the batch)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        for step in self.steps:
            if isinstance(step, Conv):
                x = step(x)
            elif step[0] == "scale":
                x = x * step[1]
            else:
                x = x.reshape(len(x), *step[1])
        return x.reshape(len(x), -1)


def _unsupported(op: str, why: str) -> OnnxReadError:
    return OnnxReadError(
        f"{why} ({op}); the numpy reference evaluates float MLP chains of {', '.join(SUPPORTED_OPS)} only — "
        "run quantized, convolutional or other graphs with onnxruntime or openvino"
    )


def lower_to_layers(graph: OnnxGraph) -> tuple[list[Layer], str, Trunk]:
    """Walk the single chain from the graph input to its output; return the layers, the input's name and
    the convolutional trunk before the first layer (empty for an MLP)."""
    quant = sorted({n.op_type for n in graph.nodes if n.op_type in _QUANT_OPS})
    if quant:
        raise _unsupported(", ".join(quant), "quantized graph")
    int_inits = [n for n, t in graph.initializers.items() if t.data_type in (2, 3)]
    if int_inits:
        raise _unsupported(f"int8 initializers {int_inits[:3]}", "quantized graph")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise OnnxReadError(
            f"expected one input and one output, found inputs {[v.name for v in graph.inputs]} and "
            f"outputs {[v.name for v in graph.outputs]}"
        )
    consts = graph.initializer_arrays()
    current = graph.inputs[0].name
    layers: list[Layer] = []
    trunk = Trunk()
    pending_add: Layer | None = None  # a MatMul that may still receive its bias from an Add
    for node in graph.nodes:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise _unsupported(f"{node.domain}.{op}", "custom-domain operator")
        if op == "Constant":
            tensor = node.attrs.get("value")
            if not isinstance(tensor, _Tensor):
                raise _unsupported(op, "Constant without a tensor 'value'")
            consts[node.outputs[0]] = tensor.array()
            continue
        if op not in SUPPORTED_OPS:
            raise _unsupported(op, "unsupported operator")
        dynamic = [i for i in node.inputs if i and i not in consts]
        if dynamic != [current]:
            raise _unsupported(op, f"not a single chain: node inputs {node.inputs} (chain is at {current!r})")
        if op in TRUNK_OPS or (op == "Relu" and trunk.steps and not layers):
            if layers:
                raise _unsupported(op, f"{op} after the first affine layer")
            _trunk_step(trunk, node, consts)
            current = node.outputs[0]
            continue
        if op == "Gemm":
            if node.attrs.get("transA", 0):
                raise _unsupported(op, "Gemm with transA=1")
            if node.inputs[0] != current:
                raise _unsupported(op, "Gemm whose activation is not input A")
            w = consts[node.inputs[1]].astype(np.float32)
            if node.attrs.get("transB", 0):
                w = w.T
            w = w * np.float32(node.attrs.get("alpha", 1.0))
            b = np.zeros(w.shape[1], np.float32)
            if len(node.inputs) > 2 and node.inputs[2]:
                b = b + np.float32(node.attrs.get("beta", 1.0)) * consts[node.inputs[2]].astype(np.float32)
            layers.append(Layer(np.ascontiguousarray(w), _as_bias(b, w.shape[1], op)))
            pending_add = None
        elif op == "MatMul":
            if node.inputs[0] != current:
                raise _unsupported(op, "MatMul whose activation is the right operand")
            w = consts[node.inputs[1]].astype(np.float32)
            if w.ndim != 2:
                raise _unsupported(op, f"MatMul with a {w.ndim}-D weight")
            pending_add = Layer(np.ascontiguousarray(w), np.zeros(w.shape[1], np.float32))
            layers.append(pending_add)
        elif op == "Add":
            if pending_add is None:
                raise _unsupported(op, "Add that does not follow a MatMul")
            other = next(i for i in node.inputs if i != current)
            pending_add.bias = _as_bias(pending_add.bias + consts[other].astype(np.float32), None, op)
            pending_add = None
        elif op == "LayerNormalization":
            if not layers or layers[-1].activated or layers[-1].norm is not None:
                raise _unsupported(op, "LayerNormalization that does not follow an affine layer")
            if node.attrs.get("axis", -1) not in (-1, 1) or len([o for o in node.outputs if o]) != 1:
                raise _unsupported(op, "LayerNormalization other than over the features, with one output")
            width = layers[-1].weight.shape[1]
            scale = consts[node.inputs[1]].astype(np.float32).reshape(-1)
            shift = np.zeros(width, np.float32)
            if len(node.inputs) > 2 and node.inputs[2]:
                shift = consts[node.inputs[2]].astype(np.float32).reshape(-1)
            if scale.shape != (width,) or shift.shape != (width,):
                raise _unsupported(
                    op, f"LayerNormalization scale/shift of shapes {scale.shape}/{shift.shape}"
                )
            layers[-1].norm = Norm(scale, shift, float(node.attrs.get("epsilon", 1e-5)))
            pending_add = None
        elif op in ("Relu", "Tanh"):
            if not layers or layers[-1].activated:
                raise _unsupported(op, f"{op} that does not follow an affine layer")
            layers[-1].relu, layers[-1].tanh = op == "Relu", op == "Tanh"
            pending_add = None
        elif op == "Cast":
            if node.attrs.get("to") not in _FLOAT_CODES:
                raise _unsupported(op, f"Cast to non-float type {node.attrs.get('to')}")
        current = node.outputs[0]
    if current != graph.outputs[0].name:
        raise OnnxReadError(
            f"the chain ends at {current!r}, not at the graph output {graph.outputs[0].name!r}"
        )
    if not layers:
        raise OnnxReadError("the graph has no affine layer")
    for prev, nxt in itertools.pairwise(layers):
        if prev.weight.shape[1] != nxt.weight.shape[0]:
            raise OnnxReadError(f"layer shapes do not chain: {prev.weight.shape} then {nxt.weight.shape}")
    return layers, graph.inputs[0].name, trunk


def _trunk_step(trunk: Trunk, node: _Node, consts: dict[str, np.ndarray]) -> None:
    """Append what ``node`` does to the trunk (a Relu to the Conv before it); refuse what it cannot do."""
    op = node.op_type
    if op == "Relu":
        if not isinstance(trunk.steps[-1], Conv) or trunk.steps[-1].relu:
            raise _unsupported(op, "Relu in the trunk that does not follow a Conv")
        trunk.steps[-1].relu = True
    elif op in ("Div", "Mul"):
        factor = consts[node.inputs[1]] if node.inputs[0] not in consts else consts[node.inputs[0]]
        if np.size(factor) != 1 or (op == "Div" and node.inputs[1] not in consts):
            raise _unsupported(op, f"{op} other than by a scalar constant")
        value = float(np.asarray(factor).reshape(-1)[0])
        trunk.steps.append(("scale", np.float32(1.0 / value if op == "Div" else value)))
    elif op == "Reshape":
        shape = tuple(int(d) for d in consts[node.inputs[1]].reshape(-1))
        if len(shape) < 2 or shape[0] not in (-1, 0) or any(d <= 0 for d in shape[1:]):
            raise _unsupported(op, f"Reshape to {list(shape)} (expected [-1, ...] of fixed sizes)")
        trunk.steps.append(("reshape", shape[1:]))
    elif op == "Flatten":
        if node.attrs.get("axis", 1) != 1:
            raise _unsupported(op, "Flatten other than to [N, features]")
        trunk.steps.append(("reshape", (-1,)))
    else:  # Conv
        if node.attrs.get("group", 1) != 1 or any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
            raise _unsupported(op, "Conv with groups or dilation")
        if node.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _unsupported(op, "Conv with auto_pad")
        weight = consts[node.inputs[1]].astype(np.float32)
        if weight.ndim != 4:
            raise _unsupported(op, f"Conv with a {weight.ndim}-D weight (2-D convolutions only)")
        bias = np.zeros(weight.shape[0], np.float32)
        if len(node.inputs) > 2 and node.inputs[2]:
            bias = consts[node.inputs[2]].astype(np.float32).reshape(-1)
        stride = tuple(int(v) for v in node.attrs.get("strides", [1, 1]))
        pads = tuple(int(v) for v in node.attrs.get("pads", [0, 0, 0, 0]))
        # ONNX pads are (begin H, begin W, end H, end W)
        trunk.steps.append(Conv(weight, bias, (stride[0], stride[1]), (pads[0], pads[1], pads[2], pads[3])))


def _as_bias(b: np.ndarray, width: int | None, op: str) -> np.ndarray:
    b = np.asarray(b, dtype=np.float32)
    if b.ndim > 1 and b.shape[0] != 1:
        raise _unsupported(op, f"bias of shape {b.shape} (must broadcast over the batch)")
    b = b.reshape(-1)
    if width is not None and b.size == 1:
        b = np.full(width, b[0], np.float32)
    return np.ascontiguousarray(b)


class NumpyBackend(Backend):
    """Runs an ONNX MLP or CNN policy with numpy only: the torch-free parity oracle and latency floor."""

    name: ClassVar[str] = "numpy"
    formats: ClassVar[tuple[str, ...]] = ("onnx",)
    precisions: ClassVar[tuple[str, ...] | None] = ("fp32", "fp16")  # no QDQ/int8 emulation
    package: ClassVar[str] = "numpy"

    layers: list[Layer]

    def load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise OnnxReadError(f"{self.path}: cannot read the model ({err})") from err
        try:
            graph = read_onnx(data)
            self.layers, _, self.trunk = lower_to_layers(graph)
            # what the trunk hands the first layer, for one observation of the manifest's input shape
            probe = self.trunk(np.zeros((1, *self.input_shape), np.float32)) if self.trunk.steps else None
        except OnnxReadError as err:
            raise OnnxReadError(f"{self.path}: {err}") from err
        except (UnicodeDecodeError, struct.error, IndexError, KeyError) as err:
            raise OnnxReadError(f"{self.path}: not a valid ONNX model ({err!r}); re-export it") from err
        except ValueError as err:  # the trunk's shapes do not fit the manifest's input
            raise ValueError(
                f"{self.path}: the model's convolutions do not take observations of shape "
                f"{list(self.input_shape)} ({err})"
            ) from err
        in_dim, out_dim = self.layers[0].weight.shape[0], self.layers[-1].weight.shape[1]
        expected = self.obs_dim if probe is None else probe.shape[1]
        if in_dim != expected:
            raise ValueError(
                f"{self.path}: model takes observations of size {in_dim}, "
                f"the manifest's env has {self.obs_dim}"
            )
        if out_dim != self.n_actions:
            raise ValueError(
                f"{self.path}: model outputs {out_dim} values, the env has {self.n_actions} actions"
            )
        # Per-frame path: preallocated hidden buffers, one matmul/add/max per layer and no temporaries.
        self._hidden = [np.empty(layer.weight.shape[1], np.float32) for layer in self.layers[:-1]]
        self._plan = [
            (layer.weight, layer.bias, buf, layer.relu, layer.tanh, layer.norm, 1.0 / len(buf))
            for layer, buf in zip(self.layers, self._hidden, strict=False)
        ]
        self._last = self.layers[-1]
        if self._last.norm is not None:
            raise OnnxReadError(f"{self.path}: a LayerNormalization after the output layer is not supported")

    def infer(self, obs: np.ndarray) -> np.ndarray:
        if self.trunk.steps:
            x = self.trunk(self.as_input(obs))
        else:
            x = np.asarray(obs, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != self.obs_dim:
                raise ValueError(f"expected observations [N, {self.obs_dim}], got shape {x.shape}")
        for layer in self.layers:
            x = x @ layer.weight
            x += layer.bias
            if layer.norm is not None:
                x -= x.mean(axis=1, keepdims=True)
                x /= np.sqrt(np.mean(x * x, axis=1, keepdims=True) + np.float32(layer.norm.eps))
                x *= layer.norm.scale
                x += layer.norm.shift
            if layer.relu:
                np.maximum(x, 0.0, out=x)
            elif layer.tanh:
                np.tanh(x, out=x)
        return x

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        if self.trunk.steps:  # a frame's convolutions dwarf the per-call overheads the MLP path saves
            return self.infer(obs[None])[0]
        x = obs if obs.dtype == np.float32 else np.asarray(obs, dtype=np.float32)
        for w, b, buf, relu, tanh, norm, inv_width in self._plan:
            np.dot(x, w, out=buf)
            buf += b
            if norm is not None:  # Python floats for the row statistics: ~1 µs a call cheaper than numpy's
                buf -= float(np.add.reduce(buf)) * inv_width
                buf *= (float(np.dot(buf, buf)) * inv_width + norm.eps) ** -0.5
                buf *= norm.scale
                buf += norm.shift
            if relu:
                np.maximum(buf, 0.0, out=buf)
            elif tanh:
                np.tanh(buf, out=buf)
            x = buf
        q = np.dot(x, self._last.weight)
        q += self._last.bias
        if self._last.relu:
            np.maximum(q, 0.0, out=q)
        elif self._last.tanh:
            np.tanh(q, out=q)
        return q

    def runtime_version(self) -> str:
        return f"numpy {np.__version__}"
