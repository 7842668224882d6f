"""ONNX-level precisions: fp32 as exported, fp16, int8 dynamic and int8 static (QDQ).

Quantizing the ONNX graph rather than the torch module is what the runtimes execute (torch's eager
quantization is deprecated and PT2E left torch; PITFALLS); :data:`PRECISIONS` maps an fp32 ONNX file to
each. fp16 keeps float32 I/O (``keep_io_types``); int8-dynamic is the smallest file, but TensorRT cannot
parse it; int8-static is QDQ with per-channel weights, MinMax calibration, Q/DQ on the inputs of weighted
layers only (:data:`UNQUANTIZED_OUTPUTS`) and float biases (TensorRT takes no int32 DQ biases).

On an MLP both int8 precisions quantize an equalized copy (:func:`equalize_activations`), keep the output
layer and a small or unevenly fed first layer float (:func:`output_layers`, :func:`float_input_layers`)
and correct the float biases (:func:`correct_biases`). A CNN gets onnxruntime's own placement (Q/DQ on
every op's input and output, fused into QLinearConv) and nothing else: 0.46× fp32's time at 99.2 %
agreement on the Breakout NatureCNN, where the MLP recipe gave 63 %. Weights are u8 × u8, exact on every
CPU (signed 8-bit weights overflow the int16 pair sums of x86 kernels without VNNI: the test teacher's
int8-static max |ΔQ| 21.9 on an AMD EPYC); a TensorRT target gets symmetric s8 with 7-bit weights
(``reduce_range``). (measurements: docs/export.md#how-the-int8-recipe-was-chosen)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from export.onnx_export import INPUT, model_array, save_single_file

CALIBRATION_BATCH = 64
UNQUANTIZED_OUTPUTS = ("Conv", "Gemm", "MatMul")
"""Ops whose outputs get no Q/DQ pair: only the inputs of weighted layers are quantized (TensorRT's and
NNCF's placement): onnxruntime's default, also each Gemm's output, rounds the Q-values themselves
(90.2 % agreement on the CQL policy, against 99.7 %; measurements: docs/export.md#qdq-placement)."""
QUANTIZED_OPS = UNQUANTIZED_OUTPUTS
"""The only ops whose inputs int8-static quantizes. onnxruntime's default list also takes
``LayerNormalization``, and a Q/DQ pair on its input rounds the raw Gemm output, whose per-row spread the
LayerNorm then divides out (max |ΔQ| 0.79 on the LayerNorm CQL policy)."""


@dataclass(frozen=True)
class Precision:
    name: str
    label: str
    """What the manifest's ``precision`` says: fp32, fp16 or int8."""
    apply: Callable[..., dict[str, Any]]
    """(fp32 ONNX, destination, calibration observations, *, tensorrt=False) → details for the artifact's
    ``extra``; ``tensorrt``: the graph must suit a TensorRT engine build too (symmetric int8)."""
    tolerance: float | None = None
    """max |ΔQ| allowed against the variant's own torch network; None: the target profile's bound."""
    options: tuple[str, ...] = ()
    """Keyword arguments ``apply`` takes beyond those (a variant's ``options``, ``export.variants``)."""


def _fp32(src: Path, dst: Path, calib: np.ndarray, tensorrt: bool = False) -> dict[str, Any]:
    if src != dst:
        shutil.copyfile(src, dst)
    return {}


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Order the nodes topologically (Kahn): the float16 converter appends its I/O Casts at the end, which
    onnxruntime tolerates but the ONNX checker, and so a valid artifact, does not."""
    produced_by = {out: i for i, node in enumerate(graph.node) for out in node.output}
    deps = [{produced_by[x] for x in node.input if x in produced_by} for node in graph.node]
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(deps):
        ready = [i for i, d in enumerate(deps) if i not in placed and d <= placed]
        if not ready:
            raise ValueError("the graph has a cycle")
        order += ready
        placed.update(ready)
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


def _fp16(src: Path, dst: Path, calib: np.ndarray, tensorrt: bool = False) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_model(str(src)), keep_io_types=True)
    sort_nodes(model.graph)
    save_single_file(model, dst)
    return {"conversion": "float16 weights and compute, float32 I/O"}


def _preprocessed(src: Path, folder: str) -> Path:
    """Shape inference + graph optimisation, as onnxruntime asks for before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(folder) / "pre.onnx"
    quant_pre_process(str(src), str(out))
    return out


def output_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the weighted nodes (Gemm/MatMul/Conv) that compute the graph outputs, found by walking
    back from each output through unweighted ops (an Identity, a Cast, an Add of a MatMul's bias). The int8
    precisions keep them float: they compute the Q-values, whose best two actions are often a few hundredths
    apart, with ~1 % of the weights; on the CQL policy int8-static then agrees on 100 % instead of 99.37 %
    (measurements: docs/export.md#the-output-layer-stays-float)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found = []
    for value in model.graph.output:
        node = producer.get(value.name)
        while node is not None and node.op_type not in UNQUANTIZED_OUTPUTS:
            node = next((producer[i] for i in node.input if i in producer), None)
        if node is not None:
            if not node.name:
                raise ValueError(f"the {node.op_type} computing {value.name!r} has no name to exclude it by")
            found.append(node.name)
    return found


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over fixed-size batches of observations."""

    def __init__(self, obs: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        obs = model_array(obs)
        self._iter: Iterator[dict[str, np.ndarray]] = iter(
            [{INPUT: obs[i : i + batch]} for i in range(0, len(obs), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def _outputs(model: onnx.ModelProto, names: list[str], obs: np.ndarray) -> list[np.ndarray]:
    """Run ``model`` on the CPU and return the named tensors (intermediate ones become graph outputs)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in have)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {INPUT: model_array(obs)})


def _float_bias(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> onnx.TensorProto | None:
    """The float constant bias a node adds: a Gemm's or Conv's third input, or the constant operand of an
    Add (how ``quantize_dynamic`` writes a Gemm: MatMulInteger … + Add)."""
    if node.op_type in ("Gemm", "Conv") and len(node.input) > 2:
        bias = inits.get(node.input[2])
    elif node.op_type == "Add":
        bias = next((inits[i] for i in node.input if i in inits), None)
        if bias is not None and len(bias.dims) != 1:
            return None  # not a per-channel bias of a [batch, channels] output
    else:
        return None
    return bias if bias is not None and bias.data_type == onnx.TensorProto.FLOAT else None


def correct_biases(reference: onnx.ModelProto, quantized: onnx.ModelProto, obs: np.ndarray) -> list[float]:
    """Shift each weighted layer's float bias by the mean error quantization adds to its output, in order.

    NNCF's "fast bias correction", which onnxruntime lacks: rounding moves each layer's output mean, which
    alone flips actions whose Q-values lie < 0.05 apart (the CQL policy's dataset agreement: 100 % instead of
    98.7 %; measurements: docs/export.md#equalization-and-bias-correction). Each correction sees the inputs
    the corrected earlier layers give; only layers whose output kept its name in ``reference`` (the fp32
    model that was quantized) are corrected. Returns the largest shift per layer.
    """
    if len(obs) == 0:
        return []
    float_outputs = {out for node in reference.graph.node for out in node.output}
    inits = {i.name: i for i in quantized.graph.initializer}
    shifts = []
    for node in quantized.graph.node:
        bias = _float_bias(node, inits)
        out = node.output[0]
        if bias is None or out not in float_outputs:
            continue
        (want,), (got,) = _outputs(reference, [out], obs), _outputs(quantized, [out], obs)
        if node.op_type == "Add" and (want.ndim != 2 or want.shape[1] != bias.dims[0]):
            continue
        axes = tuple(a for a in range(want.ndim) if a != 1)  # channels are axis 1 for Gemm and Conv alike
        delta = (want - got).mean(axis=axes).astype(np.float32)
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + delta, bias.name))
        shifts.append(float(np.abs(delta).max()))
    return shifts


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(onnx.helper.get_attribute_value(a)) for a in node.attribute if a.name == name), default)


def _equalizable(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto]]:
    """``(Gemm, Relu, Gemm)`` and ``(LayerNormalization, Relu, Gemm)`` chains whose hidden channels can be
    rescaled without changing the function: each tensor used by one node only, weights (a LayerNorm's
    scale) and the first node's per-channel bias (a LayerNorm's shift) constant."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    outputs = {v.name for v in graph.output}

    def only_use(name: str) -> onnx.NodeProto | None:
        found = uses.get(name, [])
        return found[0] if len(found) == 1 and name not in outputs else None

    chains = []
    for first in graph.node:
        if len(first.input) < 2 or first.input[1] not in inits:
            continue
        if first.op_type == "Gemm" and not _attr(first, "transA", 0):
            channels = inits[first.input[1]].dims[0 if _attr(first, "transB", 0) else 1]
        elif first.op_type == "LayerNormalization" and _attr(first, "axis", -1) in (-1, 1):
            if len([o for o in first.output if o]) != 1 or len(inits[first.input[1]].dims) != 1:
                continue
            channels = inits[first.input[1]].dims[0]  # its scale; scale and shift set each channel's size
        else:
            continue
        relu = only_use(first.output[0])
        second = only_use(relu.output[0]) if relu is not None and relu.op_type == "Relu" else None
        if second is None or second.op_type != "Gemm" or _attr(second, "transA", 0):
            continue
        bias = first.input[2] if len(first.input) > 2 else ""
        constants = [first.input[1], second.input[1], *([bias] if bias else [])]
        if second.input[0] != relu.output[0] or any(n not in inits or only_use(n) is None for n in constants):
            continue
        if bias and list(inits[bias].dims)[-1:] != [channels]:
            continue
        chains.append((first, relu, second))
    return chains


def equalize_activations(model: onnx.ModelProto, obs: np.ndarray) -> list[float]:
    """Rescale the channels of every hidden ReLU layer so that each reaches the same maximum on ``obs``,
    in place; returns, per layer, the spread (largest / smallest channel maximum) it had.

    Channel c of ``Gemm → Relu → Gemm`` is divided by s_c in the first Gemm (weights and bias; or a
    LayerNorm's scale and shift) and multiplied back in the second's input weights: ReLU(x / s) = ReLU(x) / s
    for s > 0, so the float function is unchanged. s_c is the channel's calibration maximum over the geometric
    mean of those maxima; dead channels are left alone. Why: one int8 scale covers a whole activation tensor,
    set by its largest channel (10× the smallest live one in the 40×40 distilled student); equalized, the
    next layer's per-channel weights absorb the spread, and that student's int8-static agreement is 100 %
    instead of 98.10 % (measurements: docs/export.md#equalization-and-bias-correction).
    """
    chains = _equalizable(model)
    if not chains or len(obs) == 0:
        return []
    inits = {i.name: i for i in model.graph.initializer}
    acts = _outputs(model, [relu.output[0] for _, relu, _ in chains], obs)
    spreads = []
    for (first, _, second), act in zip(chains, acts, strict=True):
        peak = np.abs(act.reshape(len(act), -1)).max(axis=0).astype(np.float64)
        live = peak > 0
        if not live.any():
            continue
        scale = np.ones_like(peak)
        scale[live] = peak[live] / np.exp(np.log(peak[live]).mean())
        in_axis = 1 if _attr(second, "transB", 0) else 0
        if first.op_type == "Gemm":
            out_axis = 0 if _attr(first, "transB", 0) else 1
            updates = {first.input[1]: 1 / scale.reshape([-1 if a == out_axis else 1 for a in range(2)])}
        else:  # LayerNormalization: its per-channel scale
            updates = {first.input[1]: 1 / scale}
        updates[second.input[1]] = scale.reshape([-1 if a == in_axis else 1 for a in range(2)])
        if len(first.input) > 2 and first.input[2]:
            updates[first.input[2]] = 1 / scale
        for name, factor in updates.items():
            value = numpy_helper.to_array(inits[name]).astype(np.float64) * factor
            inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
        spreads.append(float(peak[live].max() / peak[live].min()))
    return spreads


INPUT_SPREAD_MIN = 2.0
"""A first layer whose observation features' calibration maxima lie within this factor of each other may be
quantized (the gridworld's all peak at ~1); beyond it, it stays float (:func:`float_input_layers`)."""

FIRST_LAYER_SHARE_MAX = 0.05
"""A first layer holding at most this share of the network's weights stays float whatever the features
(:func:`float_input_layers`): a low-dimensional observation's, where int8 costs most and saves least."""


def float_input_layers(model: onnx.ModelProto, obs: np.ndarray) -> tuple[list[str], dict[str, Any]]:
    """(the first layer, if it should stay float in int8; what decided it: ``input_spread`` and
    ``input_layer_share``). Only a Gemm the graph input feeds directly is considered.

    It stays float when the features are uneven (:func:`feature_spread` above :data:`INPUT_SPREAD_MIN`): the
    input is quantized per tensor, so the largest feature sets the step for all (CartPole's int8-dynamic
    agrees on 99.2 % instead of 91.3 %); or when it holds at most :data:`FIRST_LAYER_SHARE_MAX` of the
    weights (the CQL policy's 6×128 layer: int8-static max |ΔQ| 0.257 instead of 0.545, for +2.3 KiB).
    (measurements: docs/export.md#the-first-layer-stays-float)
    """
    found: dict[str, Any] = {"input_spread": None, "input_layer_share": None}
    graph = model.graph
    if len(graph.input) != 1 or len(obs) == 0:
        return [], found
    name = graph.input[0].name
    consumers = [n for n in graph.node if name in n.input]
    if len(consumers) != 1 or consumers[0].op_type != "Gemm" or list(consumers[0].input[:1]) != [name]:
        return [], found
    first = consumers[0]
    inits = {i.name: i for i in graph.initializer}
    weights = [
        int(np.prod(inits[n.input[1]].dims))
        for n in graph.node
        if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in inits
    ]
    own = int(np.prod(inits[first.input[1]].dims)) if first.input[1] in inits else 0
    found["input_spread"] = spread = feature_spread(obs)
    found["input_layer_share"] = share = own / sum(weights) if weights and own else None
    keep = (spread is not None and spread > INPUT_SPREAD_MIN) or (
        share is not None and share <= FIRST_LAYER_SHARE_MAX
    )
    return ([first.name] if keep else []), found


def feature_spread(obs: np.ndarray) -> float | None:
    """Largest / smallest nonzero maximum |x_j| of the observation's features over ``obs``; None if all
    are zero (or there are none)."""
    if len(obs) == 0:
        return None
    peak = np.abs(np.asarray(obs, dtype=np.float64).reshape(len(obs), -1)).max(axis=0)
    live = peak > 0
    return float(peak[live].max() / peak[live].min()) if live.any() else None


def _prepared(
    src: Path, folder: str, calib: np.ndarray, equalize: bool = True
) -> tuple[Path, dict[str, Any]]:
    """The fp32 model both int8 precisions quantize: activations equalized (unless ``equalize`` is off),
    then pre-processed; and what equalization found (for the artifact's ``extra``)."""
    model = onnx.load_model(str(src))
    found = {"activation_spreads": equalize_activations(model, calib) if equalize else None}
    equalized = Path(folder) / "equalized.onnx"
    onnx.save_model(model, str(equalized))
    return _preprocessed(equalized, folder), found


def _quantize_int8(
    src: Path,
    dst: Path,
    calib: np.ndarray,
    quantize: Callable[[Path, list[str]], None],
    equalize: bool = True,
) -> dict[str, Any]:
    """What both int8 precisions do around onnxruntime's quantizer, ``quantize(fp32, float_layers)``
    (which writes ``dst``): equalize (``equalize``) and pre-process the fp32 model, keep its output layers
    (and a small or unevenly fed first layer, :func:`float_input_layers`) float, then correct the float
    biases of the result."""
    with tempfile.TemporaryDirectory() as tmp:
        pre, equalized = _prepared(src, tmp, calib, equalize)
        prepared = onnx.load_model(str(pre))
        first, decided = float_input_layers(prepared, calib)
        kept = [*first, *(name for name in output_layers(prepared) if name not in first)]
        quantize(pre, kept)
        quantized = onnx.load_model(str(dst))
        shifts = correct_biases(prepared, quantized, calib)
    save_single_file(quantized, dst)
    return {"float_layers": kept, **decided, **equalized, "bias_shifts": shifts}


def _int8_dynamic(
    src: Path,
    dst: Path,
    calib: np.ndarray,
    tensorrt: bool = False,
    *,
    per_channel: bool = True,
    equalize: bool = True,
) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def quantize(pre: Path, last: list[str]) -> None:
        quantize_dynamic(
            pre,
            dst,
            per_channel=per_channel,
            weight_type=QuantType.QUInt8,  # u8 × u8: exact on every CPU (module docstring); TensorRT
            # cannot parse dynamic quantization anyway
            # quantize_dynamic rewrites each Gemm into "<name>_MatMul" + "<name>_Add" before it looks at
            # the exclusions, so the rewritten MatMul's name is the one that keeps the layer float.
            nodes_to_exclude=[*last, *(f"{name}_MatMul" for name in last)],
        )

    granularity = "per-channel" if per_channel else "per-tensor"
    return {
        "quantization": f"dynamic, u8 x u8 (asymmetric {granularity} weights), "
        f"{'equalized' if equalize else 'unequalized'} activations, output layer float, bias-corrected",
        **_quantize_int8(src, dst, calib, quantize, equalize),
    }


def _int8_static(
    src: Path,
    dst: Path,
    calib: np.ndarray,
    tensorrt: bool = False,
    *,
    per_channel: bool = True,
    equalize: bool = True,
) -> dict[str, Any]:
    """``equalize``: the MLP placement's activation equalization (a CNN's placement has none, module
    docstring); ``per_channel``: weight scales per output channel, or one per tensor."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if len(calib) == 0:
        raise ValueError("int8-static needs calibration observations, got none")
    # s8 × s8 with 7-bit weights where TensorRT needs symmetric Q/DQ, else u8 × u8 (module docstring)
    kind = QuantType.QInt8 if tensorrt else QuantType.QUInt8
    scheme = "symmetric s8, 7-bit weights (TensorRT)" if tensorrt else "asymmetric u8 x u8"
    conv = any(node.op_type == "Conv" for node in onnx.load_model(str(src)).graph.node)
    weights, ops, outputs = kind, list(QUANTIZED_OPS), list(UNQUANTIZED_OUTPUTS)
    if conv:  # a CNN: onnxruntime's full QDQ placement, which it fuses into QLinearConv (module docstring)
        weights, ops, outputs = QuantType.QInt8, None, []
        scheme = f"{'symmetric s8' if tensorrt else 'u8'} activations x s8 7-bit weights, outputs quantized"

    def quantize(pre: Path, last: list[str]) -> None:
        quantize_static(
            pre,
            dst,
            _Batches(calib),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=tensorrt or conv,
            activation_type=kind,
            weight_type=weights,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=ops,
            nodes_to_exclude=last,
            extra_options={
                "ActivationSymmetric": tensorrt,
                "WeightSymmetric": tensorrt or conv,
                "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": outputs,
            },
        )

    granularity = "per-channel" if per_channel else "per-tensor"
    if conv:
        # onnxruntime's pre-processing and quantizer only: the MLP path's activation equalization and bias
        # correction took the trained Breakout CNN to 63 % agreement (module docstring).
        with tempfile.TemporaryDirectory() as tmp:
            pre = _preprocessed(src, tmp)
            kept = output_layers(onnx.load_model(str(pre)))
            quantize(pre, kept)
            save_single_file(onnx.load_model(str(dst)), dst)
        return {
            "quantization": f"static QDQ, {scheme}, {granularity} weights, output layer float",
            "calibration_samples": len(calib),
            "float_layers": kept,
        }
    return {
        "quantization": f"static QDQ, {scheme}, {granularity} weights, "
        f"{'equalized' if equalize else 'unequalized'} activations, output layer float, bias-corrected",
        "calibration_samples": len(calib),
        **_quantize_int8(src, dst, calib, quantize, equalize),
    }


INT8_OPTIONS = ("per_channel", "equalize")
"""The int8 precisions' settings: per-channel (default) or per-tensor weight scales, activation equalization
on (default) or off."""

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "fp32", _fp32, tolerance=1e-5),
        Precision("fp16", "fp16", _fp16),
        Precision("int8-dynamic", "int8", _int8_dynamic, options=INT8_OPTIONS),
        Precision("int8-static", "int8", _int8_static, options=INT8_OPTIONS),
    )
}


def quantize_errors() -> tuple[type[BaseException], ...]:
    """What onnx and onnxruntime's tools raise on a model they cannot take (pybind types: bare Exceptions)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    pybind = tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph", "RuntimeException"))
    return (ValueError, RuntimeError, KeyError, onnx.checker.ValidationError, *pybind)
