"""torch → ONNX: one self-contained file, opset 18, ``obs [batch, obs_dim] → q [batch, n_actions]``
(an image task: ``obs`` uint8 ``[batch, C, H, W]``, scaled inside the graph).

Both of torch's exporters give the same clean graph here (Gemm/Relu, or Conv for the cnn). The legacy
TorchScript exporter is the default because it takes ~0.15 s per network against ~4 s for the dynamo
exporter (which rebuilds its op registry on every call; measured on 2 busy cores), and an export builds up
to six networks; ``--exporter dynamo`` keeps the newer path one flag away. torch is pinned (2.13.0), where
the legacy exporter still works but warns that it is deprecated; that one warning is silenced here.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

OPSET = 18
INPUT = "obs"
OUTPUT = "q"
BATCH = "batch"


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings(
            "ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning
        )
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=OPSET,
            dynamo=False,
            dynamic_axes={INPUT: {0: BATCH}, OUTPUT: {0: BATCH}},
        )


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.onnx.export(
        model,
        (example,),
        None,
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes=({0: BATCH},),
        verbose=False,
    )
    program.save(str(path), external_data=False)


EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, Path], None]] = {
    "torchscript": _export_torchscript,
    "dynamo": _export_dynamo,
}


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace the model's metadata_props with ``props`` (variant, source checkpoint hash, precision …)."""
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def _short_name(prefix: str, index: int) -> str:
    """``t0`` … ``t9``, ``ta`` … ``tz``, ``t10`` …: ``index`` in base 36 after a one-letter ``prefix``."""
    digits, out = "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while True:
        index, rest = divmod(index, 36)
        out = digits[rest] + out
        if not index:
            return prefix + out


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop what no runtime reads and shorten the names, in place; the computation is unchanged.

    - doc strings (model, graph, nodes, initializers) and ``value_info`` (shape annotations: onnxruntime,
      OpenVINO and TensorRT infer shapes again when they load a model);
    - opset imports of domains no node uses (onnxruntime's quantizers declare nine, ``com.microsoft``,
      ``ai.onnx.training`` …, for a graph of standard ops);
    - every tensor name but the real graph inputs and outputs (``obs`` and ``q``: the contract) becomes
      ``t<n>``, every node name ``n<n>`` (base 36). Nodes keep a short name rather than none because
      onnxruntime's ``nodes_to_exclude`` and NNCF's ignored scope select nodes by name.

    Why: the quantizers name tensors after their sources (``body.2.weight_zero_point``,
    ``/body/body.1/Relu_output_0_QuantizeLinear_Output`` …); on the 128×128×128 CQL policy those names,
    the value_info and the opset list were 3.1 KiB of the 41.4 KiB int8-static file, enough to keep it
    above 30 % of the fp32 file (30.6 % → 28.3 %). Every ONNX file written goes through it
    (:func:`save_single_file`), fp32 included, so size ratios compare weights with weights (the fp32 file
    loses 0.2 KiB).

    Graphs with subgraphs (If/Loop) or sparse initializers keep their names: a subgraph may use its
    parent's tensors by name, which this pass does not follow.
    """
    graph = model.graph
    model.doc_string = graph.doc_string = ""
    del graph.value_info[:]
    used_domains = {node.domain for node in graph.node} | {"", "ai.onnx"}
    kept = [o for o in model.opset_import if o.domain in used_domains]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    for init in graph.initializer:
        init.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
    nested = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if graph.sparse_initializer or any(a.type in nested for n in graph.node for a in n.attribute):
        return model
    initializers = {i.name for i in graph.initializer}
    fixed = {v.name for v in (*graph.input, *graph.output) if v.name not in initializers}
    names: dict[str, str] = {}
    counter = itertools.count()

    def short(name: str) -> str:
        if not name or name in fixed:  # "" is an omitted optional input
            return name
        if name not in names:
            names[name] = next(n for n in (_short_name("t", i) for i in counter) if n not in fixed)
        return names[name]

    for i, node in enumerate(graph.node):
        node.name = _short_name("n", i)
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for values in (graph.initializer, graph.input, graph.output):
        for value in values:
            value.name = short(value.name)
    return model


def save_single_file(model: onnx.ModelProto, path: Path) -> Path:
    """Compact (:func:`compact`), check and write the model with every initializer inside the one file
    (no ``.data`` sidecar)."""
    compact(model)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


def stamp(path: Path, props: dict[str, str]) -> None:
    """Rewrite ``path`` with ``props`` as its metadata (after a quantizer that dropped or never set them)."""
    model = onnx.load_model(str(path), load_external_data=False)
    set_metadata(model, props)
    save_single_file(model, path)


def _strip_node_metadata(model: onnx.ModelProto) -> None:
    """The dynamo exporter annotates nodes with stack traces holding local file paths: not for artifacts."""
    for node in model.graph.node:
        del node.metadata_props[:]


#: ONNX element type of the model input, by numpy dtype name (images enter as uint8:
#: docs/contracts.md#the-task-spec).
ELEM_TYPES = {"float32": onnx.TensorProto.FLOAT, "uint8": onnx.TensorProto.UINT8}


def check_signature(
    model: onnx.ModelProto,
    obs_dim: int,
    n_actions: int,
    input_shape: tuple[int, ...] | None = None,
    input_dtype: str = "float32",
) -> None:
    """The contract every backend relies on: one input ``obs [batch, obs_dim]`` float32 (or ``[batch,
    *input_shape]`` of ``input_dtype``: an image task's uint8 frames), one output ``q [batch, A]``
    float32."""
    graph = model.graph
    expected = (
        (graph.input, INPUT, tuple(input_shape or (obs_dim,)), ELEM_TYPES[input_dtype]),
        (graph.output, OUTPUT, (n_actions,), onnx.TensorProto.FLOAT),
    )
    for values, name, dims_wanted, elem in expected:
        if len(values) != 1 or values[0].name != name:
            raise ValueError(f"exported graph has {[v.name for v in values]}, expected exactly [{name!r}]")
        tensor = values[0].type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type != elem or len(dims) != len(dims_wanted) + 1:
            raise ValueError(
                f"{name}: expected elem_type {elem} of rank {len(dims_wanted) + 1}, got elem_type "
                f"{tensor.elem_type}, rank {len(dims)}"
            )
        if dims[0].dim_param != BATCH or tuple(d.dim_value for d in dims[1:]) != dims_wanted:
            raise ValueError(
                f"{name}: expected shape [{BATCH}, {', '.join(map(str, dims_wanted))}], got {dims}"
            )


def export_onnx(
    model: nn.Module,
    obs_dim: int,
    n_actions: int,
    path: str | Path,
    metadata: dict[str, str],
    exporter: str = "torchscript",
    input_shape: tuple[int, ...] | None = None,
    input_dtype: str = "float32",
) -> Path:
    """Export ``model`` (eval mode) to ``path`` and stamp ``metadata``; refuse a graph off the contract.
    ``input_shape``/``input_dtype``: one observation as the model takes it, default ``[obs_dim]`` float32
    (``Manifest.model_input``; an image task's uint8 ``[C, H, W]``)."""
    path = Path(path)
    try:
        export = EXPORTERS[exporter]
    except KeyError:
        raise ValueError(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        shape = tuple(input_shape or (obs_dim,))
        export(model, torch.zeros((1, *shape), dtype=getattr(torch, input_dtype)), path)
    finally:
        model.train(was_training)
    proto = onnx.load_model(str(path))
    _strip_node_metadata(proto)
    check_signature(proto, obs_dim, n_actions, input_shape, input_dtype)
    set_metadata(proto, metadata)
    return save_single_file(proto, path)


def model_array(obs: np.ndarray) -> np.ndarray:
    """Observations as a model input: an image task's uint8 frames stay uint8, anything else float32."""
    obs = np.asarray(obs)
    return np.ascontiguousarray(obs, dtype=np.uint8 if obs.dtype == np.uint8 else np.float32)


def onnx_q_values(path: str | Path, obs: np.ndarray) -> np.ndarray:
    """Run an ONNX model on the CPU with onnxruntime (used for the export-time parity check)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.uint8 if session.get_inputs()[0].type == "tensor(uint8)" else np.float32
    return session.run([OUTPUT], {INPUT: np.ascontiguousarray(obs, dtype=dtype)})[0]


def torch_q_values(model: nn.Module, obs: np.ndarray) -> np.ndarray:
    """The torch model on ``obs`` (uint8 frames stay uint8: an image policy scales them itself)."""
    with torch.inference_mode():
        return model(torch.from_numpy(model_array(obs))).numpy()


def export_parity(model: nn.Module, path: str | Path, obs: np.ndarray) -> float:
    """max |ΔQ| between the torch network and its ONNX export on ``obs``."""
    return float(np.abs(onnx_q_values(path, obs) - torch_q_values(model, obs)).max())
