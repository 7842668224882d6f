"""Sessions on Gymnasium tasks (docs/contracts.md#the-task-spec, docs/contracts.md#the-session-files):
CartPole (discrete) and Pendulum (box) through the same loop, torch-free, with ``env_ms`` and ``artifact`` in
every row.

The models are one-layer ONNX graphs with weights chosen by hand (``tests/task_artifacts.py``), so their
behaviour is known without training: the CartPole controller balances every seed for the full 500 steps;
the Pendulum one returns −40·θ̇, mostly far outside the ±2 bounds, so most actions are clipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge_runtime.cli import main
from edge_runtime.session import CSV_COLUMNS, STOP_NON_FINITE
from tests.task_artifacts import cartpole_manifest, task_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cartpole_manifest(tmp_path_factory.mktemp("cartpole"))


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = {
        "float": (np.array([[0.0, 0.0, -40.0]]), np.zeros(1)),  # obs [cos θ, sin θ, θ̇]
        "broken": (np.zeros((1, 3)), np.array([np.nan])),  # a model gone bad: NaN for every input
    }
    return task_manifest(tmp_path_factory.mktemp("pendulum"), "Pendulum-v1", models)


# The head of a probe script run in a fresh interpreter: importing torch (or pandas, matplotlib, onnx) fails.
TORCH_FREE = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "pandas", "matplotlib", "onnx"):
            raise ImportError(name + " is not allowed on the edge path")
sys.meta_path.insert(0, Block())
from edge_runtime.cli import main
"""


def _session(out: Path) -> tuple[pd.DataFrame, dict]:
    (csv_path,) = sorted(out.glob("session_*.csv"))
    return pd.read_csv(csv_path), json.loads(csv_path.with_suffix(".json").read_text())


def test_a_cartpole_session_runs_torch_free_and_times_the_env_step(cartpole: Path, tmp_path: Path) -> None:
    """In a fresh interpreter where importing torch (or pandas, matplotlib, onnx) fails: gymnasium is what a
    CartPole device needs, and all it needs besides numpy and the runtime."""
    probe = (
        TORCH_FREE
        + f"""
argv = ["--manifest", {str(cartpole)!r}, "--variant", "float", "--fps", "0", "--episodes", "3", "--quiet"]
out = {str(tmp_path)!r}
codes = [main([*argv, "--backend", b, "--out", out + "/" + b]) for b in ("onnxruntime", "numpy")]
print(json.dumps({{"codes": codes, "torch": "torch" in sys.modules}}))
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0], "torch": False}
    for backend in ("onnxruntime", "numpy"):
        df, summary = _session(tmp_path / backend)
        assert tuple(df.columns) == CSV_COLUMNS
        assert summary["task"] == "cartpole" and summary["env_id"] == "CartPole-v1"
        assert summary["stop_reason"] == "completed" and summary["episodes"] == 3
        # The hand-made controller balances every seed to the time limit.
        assert summary["returns"]["mean_return"] == 500.0 and summary["returns"]["ci95"] == [500.0, 500.0]
        assert summary["returns"]["oracle_ratio"] is None and len(df) == 1500
        assert set(df["action"]) == {0, 1} and (df["artifact"] == "float/onnx").all()
        assert (df["env_ms"] > 0).all() and (df["frame_ms"] >= df["env_ms"] + df["latency_ms"]).all()


def test_python_m_edge_runtime_keeps_openssl_out_of_a_gymnasium_session(
    cartpole: Path, tmp_path: Path
) -> None:
    """gymnasium's import chain reaches hashlib; ``python -m edge_runtime`` hashes the artifact with CPython's
    built-in sha256 and keeps libcrypto (3.3 MB of RSS) out of the process."""
    probe = f"""
import json, runpy, sys
sys.argv = ["edge_runtime", "--manifest", {str(cartpole)!r}, "--variant", "float", "--backend", "onnxruntime",
            "--fps", "0", "--episodes", "1", "--quiet", "--out", {str(tmp_path)!r}]
try:
    runpy.run_module("edge_runtime", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"code": code, "gymnasium": "gymnasium" in sys.modules, "hashlib": "hashlib" in sys.modules,
                  "openssl": sys.modules.get("_hashlib") is not None}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "gymnasium": True, "hashlib": True, "openssl": False}
    assert _session(tmp_path)[1]["stop_reason"] == "completed"


def test_box_actions_are_clipped_and_logged(pendulum: Path, tmp_path: Path) -> None:
    argv = ["--manifest", str(pendulum), "--variant", "float", "--backend", "onnxruntime", "--fps", "0"]
    assert main([*argv, "--episodes", "2", "--out", str(tmp_path), "--quiet"]) == 0
    df, summary = _session(tmp_path)
    assert summary["stop_reason"] == "completed" and len(df) == 2 * 200
    actions = df["action"].astype(float)
    assert actions.between(-2.0, 2.0).all() and (actions.abs() == 2.0).mean() > 0.5
    assert summary["returns"]["success_rate"] is None and summary["returns"]["ci95"] is not None


def test_a_non_finite_action_stops_the_session_with_its_reason(pendulum: Path, tmp_path: Path) -> None:
    argv = ["--manifest", str(pendulum), "--variant", "broken", "--backend", "onnxruntime", "--fps", "0"]
    assert main([*argv, "--episodes", "2", "--out", str(tmp_path), "--quiet"]) == 1
    df, summary = _session(tmp_path)
    assert summary["stop_reason"] == STOP_NON_FINITE == "error: non-finite action"
    assert "nan" in summary["error_detail"] and summary["frames"] == 0 and df.empty


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_discrete_model_gone_bad_stops_the_session_too(tmp_path: Path, bad: float) -> None:
    """argmax of a row holding NaN or +inf picks it: the loop refuses instead of acting on it."""
    lean = np.array([0.0, 0.0, 1.0, 0.5])
    models = {"broken": (np.stack([-lean, lean]), np.array([0.0, bad]))}
    manifest = task_manifest(tmp_path / "art", "CartPole-v1", models)
    argv = ["--manifest", str(manifest), "--variant", "broken", "--backend", "onnxruntime", "--fps", "0"]
    assert main([*argv, "--episodes", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 1
    _, summary = _session(tmp_path / "out")
    assert summary["stop_reason"] == STOP_NON_FINITE and summary["frames"] == 0


def test_an_atari_session_feeds_uint8_frames_torch_free(tmp_path: Path) -> None:
    """Breakout through the same loop: the task's Atari preprocessing on the device, [4, 84, 84] uint8 frames
    straight into a graph that takes nothing else, in an interpreter where torch cannot be imported. The
    policy always presses FIRE (its logits are a constant): the paddle never moves, the five lives go."""
    pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")
    manifest = task_manifest(tmp_path / "art", "ALE/Breakout-v5", {"float": (None, np.array([0, 1, 0, 0]))})
    probe = (
        TORCH_FREE
        + f"""
argv = ["--manifest", {str(manifest)!r}, "--variant", "float", "--backend", "onnxruntime", "--fps", "0"]
sys.exit(main([*argv, "--episodes", "1", "--quiet", "--out", {str(tmp_path / "s")!r}]))
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    df, summary = _session(tmp_path / "s")
    assert (
        summary["task"] == "breakout" and summary["stop_reason"] == "completed" and summary["episodes"] == 1
    )
    assert set(df["action"]) == {1} and len(df) > 50  # FIRE every frame until the last life is lost
    assert (df["env_ms"] > 0).all() and summary["returns"]["mean_return"] == df["reward"].sum()


def test_an_atari_session_renders_the_game_at_15_fps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--render on an Atari task shows the env's own screen (scaled up by whole pixels) in the pygame window,
    at the game's 15 FPS unless --fps says otherwise (SDL's dummy video driver: no display needed)."""
    pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")
    from gridworld.render import PygameWindow

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    shown: list[tuple[int, ...]] = []
    real_show = PygameWindow.show
    monkeypatch.setattr(
        PygameWindow, "show", lambda self, frame: (shown.append(frame.shape), real_show(self, frame))
    )
    manifest = task_manifest(tmp_path / "art", "ALE/Breakout-v5", {"float": (None, np.array([0, 1, 0, 0]))})
    argv = ["--manifest", str(manifest), "--variant", "float", "--backend", "onnxruntime", "--render"]
    assert main([*argv, "--max-frames", "20", "--quiet", "--out", str(tmp_path / "s")]) == 0
    _, summary = _session(tmp_path / "s")
    assert summary["requested_fps"] == 15.0 and summary["frames"] == 20
    assert shown and set(shown) == {(420, 320, 3)}  # the 210 × 160 screen, twice as large
