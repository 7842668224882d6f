"""``onnx:policy.onnx`` — a policy exported elsewhere, taken as its ONNX graph
(docs/contracts.md#policy-sources).

The graph is brought to the contract every backend relies on (``export.onnx_export.check_signature``):
one float32 input ``obs [batch, obs_dim]`` and one output ``q [batch, output_dim]`` — its input and output
renamed, a fixed batch dimension of 1 made symbolic (and checked to run at batch 2), nothing else touched.
It then *is* the float artifact, and fp16 and int8 are made from it as from any exported network.

There is no torch module to prune, so the pruned and masked variants are recorded ``skipped``; the
distilled student learns from the graph's outputs, computed by onnxruntime (:class:`OnnxPolicy` is a
torch module whose forward runs the graph, without gradients).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from torch import nn

import tasks
from common.fileio import file_sha256
from export.onnx_export import BATCH, INPUT, OUTPUT, check_signature
from export.policies import LoadedPolicy

KIND = "onnx"


class OnnxPolicy(nn.Module):
    """An ONNX graph as a (parameter-free, gradient-free) torch module: forward runs onnxruntime."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        import onnxruntime as ort

        self.proto = model.SerializeToString()
        self.graph_params = int(sum(np.prod(i.dims, dtype=np.int64) for i in model.graph.initializer))
        """Elements of the graph's initializers: its parameter count."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.proto, options, providers=["CPUExecutionProvider"])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(obs.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])

    def write_onnx(self, path: Path) -> Path:
        """The float graph, as the float variant's fp32 ONNX."""
        path.write_bytes(self.proto)
        return path

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxPolicy:
        return self  # immutable: the graph never trains, and a session cannot be copied


def load_onnx(path: Path, env_id: str, trust_pickle: bool = False, **_: Any) -> LoadedPolicy:
    """An ONNX file → a :class:`LoadedPolicy` whose model runs it (refused if it does not fit the env)."""
    try:
        model = onnx.load_model(str(path))
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, DecodeError, OSError, ValueError) as err:
        raise ValueError(f"policy onnx:{path}: not a valid ONNX model ({str(err).splitlines()[0]})") from None
    task = tasks.from_env(env_id)
    if task.observation.dtype != "float32" or len(task.observation.shape) != 1:
        raise ValueError(f"{env_id}: onnx: policies take float32 vector observations, not {task.observation}")
    obs_dim = task.observation.shape[0]
    out_dim = int(np.prod(tasks.actions.expected_output_shape(task)))
    conform(model, obs_dim, out_dim, f"policy onnx:{path}", env_id)
    policy = OnnxPolicy(model)
    try:
        out = policy(torch.zeros(2, obs_dim)).numpy()
    except Exception as err:  # onnxruntime raises its own pybind types for a graph that cannot run
        raise ValueError(f"policy onnx:{path} does not run on 2 {env_id} observations: {err}") from None
    if out.shape != (2, out_dim):
        got = list(out.shape)
        raise ValueError(f"policy onnx:{path} gives {got} on 2 observations; {env_id} needs [2, {out_dim}]")
    info = {
        "format": "onnx",
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "graph_params": policy.graph_params,
    }
    return LoadedPolicy(policy, task, KIND, str(path), file_sha256(path), info)


def conform(model: onnx.ModelProto, obs_dim: int, out_dim: int, what: str, env_id: str) -> None:
    """Rename the graph's only input to ``obs`` and only output to ``q``, with a symbolic batch; in place."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(
            f"{what}: a policy graph takes one observation and returns one tensor; this one has inputs "
            f"{[v.name for v in inputs]} and outputs {[v.name for v in graph.output]}"
        )
    for value, new, width in ((inputs[0], INPUT, obs_dim), (graph.output[0], OUTPUT, out_dim)):
        tensor = value.type.tensor_type
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            raise ValueError(f"{what}: {value.name} is not float32 (elem_type {tensor.elem_type})")
        dims = tensor.shape.dim
        if len(dims) != 2 or (dims[1].HasField("dim_value") and dims[1].dim_value != width):
            shape = [d.dim_value or d.dim_param for d in dims]
            side = "observations" if new == INPUT else "outputs"
            raise ValueError(f"{what}: {value.name} has shape {shape}; {env_id} has [batch, {width}] {side}")
        _rename(graph, value.name, new)
        value.name = new
        dims[0].Clear()
        dims[0].dim_param = BATCH
        dims[1].dim_value = width
    check_signature(model, obs_dim, out_dim)


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
