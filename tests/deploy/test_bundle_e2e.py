"""End to end, as on a device: bundle a real export, unpack it, and let run.sh create a fresh venv with
install_edge.sh (the Docker edge stage's install step) and run a session from it. No torch in that venv."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from pathlib import Path

import pytest

from deploy.bundle import BundleConfig, plan_bundle, write_bundle
from tests.deploy.conftest import BASE_PYTHON, clean_env, unpack

# docs/contracts.md#the-session-files, as written there
COLUMNS = (
    "timestamp_ns, episode, frame, action, reward, cumulative_reward, latency_ms, env_ms, frame_ms, mem_mb, "
    "fps, deadline_miss, artifact"
).split(", ")


def _run(root: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "run.sh"), *args],
        cwd=cwd,
        env=clean_env(PYTHON=BASE_PYTHON),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bundle_installs_into_a_fresh_venv_and_runs_a_session(manifest_path: Path, tmp_path: Path) -> None:
    bundle = plan_bundle(BundleConfig(target="x86", artifacts=str(manifest_path.parent)))
    root = unpack(write_bundle(bundle, tmp_path / "dist"), tmp_path / "device")
    out = tmp_path / "sessions"
    args = ("--variant", "float", "--backend", "onnxruntime", "--fps", "0", "--episodes", "2", "--quiet")
    started = time.perf_counter()
    first = _run(root, tmp_path, *args, "--out", str(out))
    install_s = time.perf_counter() - started
    if first.returncode != 0 and "pip" in first.stderr and "install_edge.sh: " not in first.stderr:
        pytest.skip(f"cannot install into a fresh venv here (no package index?): {first.stderr[-500:]}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "edge requirements installed" in first.stderr
    print(f"fresh venv + session: {install_s:.1f} s")

    (csv_path,) = out.glob("session_*.csv")
    with csv_path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    assert rows and {int(r["episode"]) for r in rows} == {0, 1}
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["stop_reason"] == "completed" and summary["episodes"] == 2

    venv_python = root / ".venv/bin/python"
    probe = "import importlib.util as u; print([m for m in ('torch', 'edge_runtime') if u.find_spec(m)])"
    found = subprocess.run(
        [str(venv_python), "-c", probe], cwd=tmp_path, env=clean_env(), capture_output=True, text=True
    )
    assert found.stdout.strip() == "[]"  # no torch; the project code runs from the bundle, not the venv
    freeze = subprocess.run([str(venv_python), "-m", "pip", "freeze"], capture_output=True, text=True)
    assert "torch" not in freeze.stdout.lower() and "onnxruntime==" in freeze.stdout

    second = _run(root, tmp_path, *args, "--episodes", "1", "--out", str(out))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "install_edge.sh" not in second.stderr  # the venv is reused
    assert len(list(out.glob("session_*.csv"))) == 2
