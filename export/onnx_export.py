"""torch → ONNX: one self-contained file, opset 18, ``obs [batch, obs_dim] → q [batch, n_actions]``.

Both of torch's exporters give the same clean graph here (Gemm/Relu, or Conv for the cnn). The legacy
TorchScript exporter is the default because it takes ~0.15 s per network against ~4 s for the dynamo
exporter (which rebuilds its op registry on every call; measured on 2 busy cores), and an export builds up
to six networks; ``--exporter dynamo`` keeps the newer path one flag away. torch is pinned (2.13.0), where
the legacy exporter still works but warns that it is deprecated; that one warning is silenced here.
"""

from __future__ import annotations

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


def save_single_file(model: onnx.ModelProto, path: Path) -> Path:
    """Check and write the model with every initializer inside the one file (no ``.data`` sidecar)."""
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


def check_signature(model: onnx.ModelProto, obs_dim: int, n_actions: int) -> None:
    """The contract every backend relies on: one float input ``obs [batch, obs_dim]``, ``q [batch, A]``."""
    graph = model.graph
    for values, name, width in ((graph.input, INPUT, obs_dim), (graph.output, OUTPUT, n_actions)):
        if len(values) != 1 or values[0].name != name:
            raise ValueError(f"exported graph has {[v.name for v in values]}, expected exactly [{name!r}]")
        tensor = values[0].type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 2:
            raise ValueError(
                f"{name}: expected a float32 matrix, got elem_type {tensor.elem_type}, rank {len(dims)}"
            )
        if dims[0].dim_param != BATCH or dims[1].dim_value != width:
            raise ValueError(f"{name}: expected shape [{BATCH}, {width}], got {dims}")


def export_onnx(
    model: nn.Module,
    obs_dim: int,
    n_actions: int,
    path: str | Path,
    metadata: dict[str, str],
    exporter: str = "torchscript",
) -> Path:
    """Export ``model`` (eval mode) to ``path`` and stamp ``metadata``; refuse a graph off the contract."""
    path = Path(path)
    try:
        export = EXPORTERS[exporter]
    except KeyError:
        raise ValueError(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        export(model, torch.zeros(1, obs_dim, dtype=torch.float32), path)
    finally:
        model.train(was_training)
    proto = onnx.load_model(str(path))
    _strip_node_metadata(proto)
    check_signature(proto, obs_dim, n_actions)
    set_metadata(proto, metadata)
    return save_single_file(proto, path)


def onnx_q_values(path: str | Path, obs: np.ndarray) -> np.ndarray:
    """Run an ONNX model on the CPU with onnxruntime (used for the export-time parity check)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.ascontiguousarray(obs, dtype=np.float32)})[0]


def torch_q_values(model: nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32))).numpy()


def export_parity(model: nn.Module, path: str | Path, obs: np.ndarray) -> float:
    """max |ΔQ| between the torch network and its ONNX export on ``obs``."""
    return float(np.abs(onnx_q_values(path, obs) - torch_q_values(model, obs)).max())
