"""torch → ONNX: parity with torch, the obs/q contract, a dynamic batch, one self-contained compact file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.gates import reachable_obs
from export.onnx_export import OPSET, compact, export_onnx, export_parity, onnx_q_values, torch_q_values
from gridworld.core import GridModel
from tests.layer_norm import layer_norm_mlp
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


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_layer_norm_mlp_parity(tmp_path: Path, env_model: GridModel, exporter: str) -> None:
    """The trainer's default Q-net has a LayerNorm in each hidden layer: ONNX keeps it as one op per layer."""
    net = layer_norm_mlp((32, 16))
    path = _export(net, tmp_path / "ln.onnx", exporter)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("LayerNormalization") == 2
    obs = env_model.observations.reshape(env_model.n_states, -1).astype(np.float32)
    assert export_parity(net, path, obs) <= 1e-5


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


SHORT = re.compile(r"[tn][0-9a-z]+")


def _names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    tensors = {n for node in graph.node for n in (*node.input, *node.output) if n}
    return tensors | {i.name for i in graph.initializer} | {n.name for n in graph.node}


def test_exported_file_is_compact(mlp_onnx: Path) -> None:
    model = onnx.load_model(str(mlp_onnx))
    assert not model.graph.value_info and not model.doc_string
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    assert all(SHORT.fullmatch(n) for n in _names(model) - {"obs", "q"}), sorted(_names(model))


def test_compact_keeps_a_quantized_graph_valid_and_identical(
    tmp_path: Path, mlp_onnx: Path, env_model: GridModel
) -> None:
    """onnxruntime's pre-processing + quantizer output as they write it (long names, value_info, nine
    opset domains)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre, raw = tmp_path / "pre.onnx", tmp_path / "raw.onnx"
    quant_pre_process(str(mlp_onnx), str(pre))
    quantize_dynamic(pre, raw, weight_type=QuantType.QInt8)
    model = onnx.load_model(str(raw))
    assert model.graph.value_info and len(model.opset_import) > 1  # what compact() has to remove
    assert any(not SHORT.fullmatch(n) for n in _names(model) - {"obs", "q"})
    before = model.ByteSize()
    compact(model)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["obs"] and [o.name for o in model.graph.output] == ["q"]
    assert not model.graph.value_info
    assert {o.domain for o in model.opset_import} == {""}
    assert all(SHORT.fullmatch(n) for n in _names(model) - {"obs", "q"})
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)  # node names stay unique
    assert model.ByteSize() < before - 1500
    small = tmp_path / "small.onnx"
    onnx.save_model(model, str(small))
    rng = np.random.default_rng(0)
    for obs in (reachable_obs(env_model), rng.normal(size=(1, 6)).astype(np.float32)):
        np.testing.assert_array_equal(onnx_q_values(small, obs), onnx_q_values(raw, obs))


def test_compact_leaves_names_of_graphs_with_subgraphs() -> None:
    from onnx import TensorProto, helper

    def branch(name: str, value: float) -> onnx.GraphProto:
        const = helper.make_node("Constant", [], [f"{name}_out"], value_float=value)
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [])
        return helper.make_graph([const], name, [], [out])

    node = helper.make_node(
        "If", ["cond"], ["q"], name="choose", then_branch=branch("yes", 1.0), else_branch=branch("no", 0.0)
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, [])],
        doc_string="dropped",
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    compact(model)
    onnx.checker.check_model(model)
    assert model.graph.node[0].name == "choose" and not model.graph.doc_string
