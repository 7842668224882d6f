"""torch → ONNX: parity with torch, the obs/q contract, a dynamic batch, one self-contained file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.onnx_export import OPSET, export_onnx, export_parity, torch_q_values
from gridworld.core import GridModel
from train.networks import MLPNet, NetConfig, build_network

META = {"neuroquant.variant": "float", "neuroquant.source_sha256": "ab" * 32}


def _export(model: torch.nn.Module, path: Path, exporter: str = "torchscript") -> Path:
    config = model.config
    return export_onnx(model, config.obs_dim, config.n_actions, path, META, exporter=exporter)


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory, teacher_net: MLPNet) -> Path:
    return _export(teacher_net, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_mlp_parity_on_every_reachable_state(
    mlp_onnx: Path, teacher_net: MLPNet, env_model: GridModel
) -> None:
    obs = env_model.observations.reshape(env_model.n_states, -1).astype(np.float32)
    assert export_parity(teacher_net, mlp_onnx, obs) <= 1e-5


def test_cnn_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn = build_network(NetConfig(kind="cnn", obs_dim=9, hidden=(32,), channels=8)).eval()
    path = _export(cnn, tmp_path / "cnn.onnx")
    obs = np.random.default_rng(0).integers(0, 3, size=(64, 9)).astype(np.float32)  # image cell codes
    assert export_parity(cnn, path, obs) <= 1e-5


def test_contract_single_file_opset_and_metadata(mlp_onnx: Path) -> None:
    assert sorted(p.name for p in mlp_onnx.parent.iterdir()) == ["model.onnx"]  # no .data sidecar
    model = onnx.load_model(str(mlp_onnx), load_external_data=False)
    onnx.checker.check_model(model)
    assert all(
        not init.HasField("data_location") or init.data_location == 0 for init in model.graph.initializer
    )
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "obs" and out.name == "q"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 6]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3]
    assert {p.key: p.value for p in model.metadata_props} == META
    assert all(len(node.metadata_props) == 0 for node in model.graph.node)


@pytest.mark.parametrize("batch", [1, 256])
def test_dynamic_batch(mlp_onnx: Path, teacher_net: MLPNet, batch: int) -> None:
    obs = np.random.default_rng(batch).random((batch, 6), dtype=np.float32)
    session = ort.InferenceSession(str(mlp_onnx), providers=["CPUExecutionProvider"])
    q = session.run(["q"], {"obs": obs})[0]
    assert q.shape == (batch, 3)
    np.testing.assert_allclose(q, torch_q_values(teacher_net, obs), atol=1e-5)


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_contract(tmp_path: Path, teacher_net: MLPNet) -> None:
    path = _export(teacher_net, tmp_path / "dynamo.onnx", exporter="dynamo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamo.onnx"]
    obs = np.random.default_rng(1).random((256, 6), dtype=np.float32)
    assert export_parity(teacher_net, path, obs) <= 1e-5
    model = onnx.load_model(str(path))
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [
        "batch",
        6,
    ]


def test_unknown_exporter_is_refused(tmp_path: Path, teacher_net: MLPNet) -> None:
    with pytest.raises(ValueError, match=r"unknown exporter 'jit'.*torchscript, dynamo"):
        _export(teacher_net, tmp_path / "x.onnx", exporter="jit")
