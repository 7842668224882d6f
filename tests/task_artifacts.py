"""Artifacts of Gymnasium tasks for the tests, written without training or torch: one-layer ONNX policies
(``onnx.helper``) whose weights are chosen by hand, in a schema-2 manifest.

``cartpole_manifest``: the controller pushes toward the pole's lean (θ + 0.5·θ̇ > 0 → push right), which
balances CartPole-v1 for the full 500 steps on every seed — a policy of known quality, whatever the host.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.manifest import ArtifactEntry, Manifest, file_sha256, write_manifest
from tasks import from_env


def _save(graph: object, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def gemm_model(path: Path, weight: np.ndarray, bias: np.ndarray) -> Path:
    """``y = x · weightᵀ + bias`` as a one-node ONNX graph with a dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    out_dim, in_dim = weight.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["obs", "W", "b"], ["out"], transB=1)],
        "policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", out_dim])],
        [
            numpy_helper.from_array(weight.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    return _save(graph, path)


def image_model(path: Path, shape: tuple[int, ...], bias: np.ndarray) -> Path:
    """uint8 frames ``[N, *shape]`` → Cast, Flatten, Gemm with zero weights: the constant ``bias`` for every
    frame (a policy of known behaviour that still takes the frames as an image policy does)."""
    from onnx import TensorProto, helper, numpy_helper

    n_in = int(np.prod(shape))
    nodes = [
        helper.make_node("Cast", ["obs"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["out"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "image_policy",
        [helper.make_tensor_value_info("obs", TensorProto.UINT8, ["batch", *shape])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", len(bias)])],
        [
            numpy_helper.from_array(np.zeros((len(bias), n_in), np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    return _save(graph, path)


def task_manifest(
    root: Path, env_id: str, models: dict[str, tuple[np.ndarray, np.ndarray]], episodes: int = 50
) -> Path:
    """A schema-2 manifest with one ONNX artifact per ``variant → (weight, bias)``; an image task's
    artifacts take its uint8 frames (``weight`` is then ignored: see :func:`image_model`)."""
    task = from_env(env_id, episodes=episodes)
    image = task.observation.dtype == "uint8"
    backends = ["onnxruntime", "numpy"]
    entries = []
    for variant, (weight, bias) in models.items():
        (root / variant).mkdir(parents=True)
        if image:
            path = image_model(root / variant / "model.onnx", task.observation.shape, bias)
        else:
            path = gemm_model(root / variant / "model.onnx", weight, bias)
        entries.append(
            ArtifactEntry(
                name=f"{variant}/onnx", variant=variant, format="onnx", precision="fp32",
                path=f"{variant}/model.onnx", sha256=file_sha256(path), size_bytes=path.stat().st_size,
                params=bias.size if image else weight.size + bias.size, backends=backends,
            )
        )  # fmt: skip
    env = {"id": env_id, "obs_shape": list(task.observation.shape), "n_actions": 0}
    m = Manifest("x86", "2026-12-02T00:00:00Z", {}, env, {}, entries, task=task.to_dict())
    return write_manifest(m, root / "manifest.json")


def cartpole_manifest(root: Path) -> Path:
    lean = np.array([0.0, 0.0, 1.0, 0.5])  # θ + 0.5·θ̇: where the pole is falling
    return task_manifest(root, "CartPole-v1", {"float": (np.stack([-lean, lean]), np.zeros(2))})
