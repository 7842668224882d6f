"""The benchmark matrix on a Gymnasium task (docs/contracts.md#the-benchmark-rows): rows carry the task, and
the loop rows the return of the task's seeded evaluation episodes with its 95% CI, measured through the
runtime."""

from __future__ import annotations

from pathlib import Path

from benchmarks.__main__ import main
from edge_runtime.hostinfo import emulated
from tests.benchmarks.test_matrix import FAST, read_pair
from tests.task_artifacts import cartpole_manifest


def test_a_cartpole_matrix_reports_the_task_and_its_return_ci(tmp_path: Path, capsys) -> None:
    manifest = cartpole_manifest(tmp_path / "artifacts")
    out = tmp_path / "bench"
    code = main(["--manifest", str(manifest), "--out", str(out), *FAST, "--backends", "onnxruntime,numpy"])
    capsys.readouterr()
    assert code == 0
    header, rows, _ = read_pair(out)
    assert "task" in header and {r["task"] for r in rows} == {"cartpole"}
    assert {(r["backend"], r["status"]) for r in rows} == {("onnxruntime", "ok"), ("numpy", "ok")}
    assert {r["emulated"] for r in rows} == {str(int(emulated()))}
    loops = [r for r in rows if r["scenario"].startswith("loop")]
    assert len(loops) == 4
    for r in loops:
        # The hand-made controller balances all 50 evaluation seeds: a CI of zero width at 500.
        assert float(r["mean_return"]) == 500.0
        assert float(r["return_ci_low"]) == float(r["return_ci_high"]) == 500.0
        assert r["oracle_ratio"] == ""  # no oracle outside the gridworld
    latency = [r for r in rows if r["scenario"] == "latency"]
    assert all(r["mean_return"] == "" for r in latency)  # the manifest's entries carry no gate evaluation


def test_a_skipped_artifact_gives_skipped_rows_with_its_reason(tmp_path: Path, capsys) -> None:
    """A policy-source export records the variants it cannot build yet as ``skipped`` (no file): the matrix
    reports them without starting a cell process."""
    import json

    manifest = cartpole_manifest(tmp_path / "artifacts")
    data = json.loads(manifest.read_text())
    skipped = {**data["artifacts"][0], "name": "pruned-50/onnx", "variant": "pruned-50", "path": ""}
    skipped.update(sha256=None, size_bytes=None, status="skipped", reason="pruning a foreign policy: not yet")
    data["artifacts"].append(skipped)
    manifest.write_text(json.dumps(data))
    out = tmp_path / "bench"
    args = ["--manifest", str(manifest), "--out", str(out), *FAST, "--backends", "onnxruntime"]
    assert main([*args, "--variants", "pruned-50"]) == 0
    capsys.readouterr()
    _, rows, meta = read_pair(out)
    assert {(r["variant"], r["status"]) for r in rows} == {("pruned-50", "skipped")}
    assert all("artifact skipped (pruning a foreign policy: not yet)" in r["reason"] for r in rows)
    assert all(c["seconds"] == 0.0 for c in meta["cells"])  # decided without a process


def test_the_env_rows_time_the_tasks_own_env(tmp_path: Path, capsys) -> None:
    manifest = cartpole_manifest(tmp_path / "artifacts")
    out = tmp_path / "bench"
    fast = [a for a in FAST if a != "--no-env"]
    assert main(["--manifest", str(manifest), "--out", str(out), *fast, "--backends", "numpy"]) == 0
    capsys.readouterr()
    _, rows, _ = read_pair(out)
    env = {r["scenario"]: r for r in rows if r["variant"] == "-"}
    assert env["env_single"]["status"] == "ok" and env["env_single"]["task"] == "cartpole"
    assert float(env["env_single"]["value"]) > 0 and env["env_single"]["unit"] == "steps/s"
    assert env["env_vector"]["status"] == "skipped" and "not CartPole-v1" in env["env_vector"]["reason"]
