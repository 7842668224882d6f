"""``benchmarks.layers``: per-operator time of an artifact from onnxruntime's profiler and OpenVINO's
counters (times themselves are the host's; what is checked is which operators they are attributed to)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backends.manifest import load_manifest
from benchmarks.layers import main, observations, openvino_ops, profile
from tests.task_artifacts import task_manifest

pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")


@pytest.fixture(scope="module")
def breakout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = {"float": (None, np.array([0, 1, 0, 0.0])), "fp16": (None, np.array([1, 0, 0, 0.0]))}
    return task_manifest(tmp_path_factory.mktemp("layers"), "ALE/Breakout-v5", models, episodes=2)


def test_each_operator_of_the_graph_gets_its_time(breakout: Path) -> None:
    manifest = load_manifest(breakout)
    obs = observations(manifest, 4)
    assert obs.dtype == np.uint8 and obs.shape == (4, 4, 84, 84)
    (record,) = profile(manifest, ["float"], runs=5)
    assert record["variant"] == "float" and record["runtime"] == "onnxruntime"
    assert {"Cast", "Gemm"} <= set(record["ops_us"])  # the image model: Cast, Flatten, Gemm
    assert (
        record["total_us"] > 0 and list(record["ops_us"].values()) == sorted(record["ops_us"].values())[::-1]
    )


def test_openvino_counters_name_the_executed_layers(breakout: Path, tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    manifest = load_manifest(breakout)
    xml = tmp_path / "float.xml"
    ov.save_model(ov.convert_model(str(manifest.artifact_path(manifest.entry("float", "onnx")))), str(xml))
    ops = openvino_ops(xml, observations(manifest, 2), runs=3)
    assert any(name.startswith("FullyConnected/") for name in ops) and all(us >= 0 for us in ops.values())


def test_the_cli_writes_its_records_and_refuses_an_unknown_variant(
    breakout: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "layers.json"
    assert main([str(breakout), "--variants", "float,fp16", "--runs", "3", "--out", str(out)]) == 0
    records = json.loads(out.read_text())["artifacts"]
    assert [r["variant"] for r in records] == ["float", "fp16"]
    assert main([str(breakout), "--variants", "pruned-50", "--out", str(tmp_path / "x.json")]) == 2
    assert "no variant ['pruned-50']" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
