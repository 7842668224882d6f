"""``onnx:`` policy sources: any ONNX graph of the right shape is brought to the backends' contract (input
``obs``, output ``q``, symbolic batch) and becomes the float artifact unchanged in function; fp16, int8 and
a distilled student are made from it, pruning is skipped; a graph that does not fit is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from backends.manifest import load_manifest
from export.__main__ import main
from export.onnx_export import INPUT, OUTPUT, onnx_q_values
from export.policies import load_policy


def _export(model: nn.Module, n_in: int, path: Path, dynamic: bool = True, names=("input", "logits")) -> Path:
    axes = {names[0]: {0: "n"}, names[1]: {0: "n"}} if dynamic else None
    torch.onnx.export(
        model,
        torch.zeros(1, n_in),
        str(path),
        input_names=[names[0]],
        output_names=[names[1]],
        dynamic_axes=axes,
        dynamo=False,
    )
    return path


@pytest.fixture
def cartpole_onnx(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    return _export(model, 4, tmp_path / "cartpole.onnx", dynamic=False)  # batch fixed at 1, as often


def test_a_graph_is_brought_to_the_contract(cartpole_onnx: Path) -> None:
    policy = load_policy(f"onnx:{cartpole_onnx}", "CartPole-v1")
    assert policy.kind == "onnx" and policy.info["graph_params"] == 4 * 32 + 32 + 32 * 2 + 2
    assert list(policy.model.parameters()) == []  # nothing to train or prune
    out = Path(cartpole_onnx.parent / "conformed.onnx")
    policy.model.write_onnx(out)
    graph = onnx.load_model(str(out)).graph
    assert [v.name for v in graph.input] == [INPUT] and [v.name for v in graph.output] == [OUTPUT]
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    original = ort.InferenceSession(str(cartpole_onnx))
    expected = np.concatenate([original.run(None, {"input": row[None]})[0] for row in obs])
    assert np.abs(onnx_q_values(out, obs) - expected).max() <= 1e-6  # the same function, batched


@pytest.mark.parametrize(
    ("make", "env", "message"),
    [
        ("garbage", "CartPole-v1", "not a valid ONNX model"),
        ("cartpole", "Pendulum-v1", "Pendulum-v1 has [batch, 3] observations"),
        ("three_outputs", "CartPole-v1", "CartPole-v1 has [batch, 2] outputs"),
    ],
)
def test_refusals(
    cartpole_onnx: Path, tmp_path: Path, make: str, env: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartpole_onnx
    if make == "garbage":
        path = tmp_path / "garbage.onnx"
        path.write_bytes(b"not a protobuf at all")
    elif make == "three_outputs":
        path = _export(nn.Sequential(nn.Linear(4, 3)), 4, tmp_path / "three.onnx")
    argv = ["--target", "x86", "--policy", f"onnx:{path}", "--env", env, "--out", str(tmp_path / "out")]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a small export with a distilled student: ~15 s
def test_onnx_export_quantizes_and_distils_but_does_not_prune(cartpole_onnx: Path, tmp_path: Path) -> None:
    argv = ["--target", "x86", "--policy", f"onnx:{cartpole_onnx}", "--env", "CartPole-v1", "--episodes", "5"]
    argv += ["--out", str(tmp_path / "out"), "--quiet", "--variants", "float,int8-static,pruned-50,distilled"]
    assert main(argv) == 0
    manifest = load_manifest(tmp_path / "out" / "manifest.json")
    by = {a.name: a for a in manifest.artifacts}
    assert manifest.source["kind"] == "onnx" and manifest.source["params"] == by["float/onnx"].params
    assert by["float/onnx"].status == "ok" and by["float/onnx"].parity["max_abs_diff"] <= 1e-5
    assert by["int8-static/onnx"].path and by["distilled/onnx"].path
    assert by["distilled/onnx"].params <= 0.1 * by["float/onnx"].params
    assert (
        by["pruned-50/onnx"].status == "skipped"
        and "pruning needs the torch module" in by["pruned-50/onnx"].reason
    )
