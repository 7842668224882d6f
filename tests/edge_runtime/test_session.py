"""The session loop end to end: CSV and JSON contents, watchdog, crash, signals, refusals, numbering."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backends.manifest import load_manifest
from backends.numpy_ref import NumpyBackend
from common.fileio import file_sha256
from edge_runtime.cli import main, resolve_plan
from edge_runtime.config import SessionConfig, build_parser, parse_config
from edge_runtime.session import CSV_COLUMNS, Session
from tests.backends.artifact_factory import copy_manifest

REPO = Path(__file__).resolve().parents[2]
HAVE_ORT = (REPO / "backends/ort.py").is_file()


def _run(
    manifest: Path, out: Path, *extra: str, backend: str = "numpy", variant: str = "float"
) -> tuple[int, str]:
    err = io.StringIO()
    argv = [
        "--manifest",
        str(manifest),
        "--variant",
        variant,
        "--backend",
        backend,
        "--out",
        str(out),
        "--quiet",
    ]
    code = main([*argv, *extra], stream=err)
    return code, err.getvalue()


def _check_files(out: Path, number: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    csv, js = out / f"session_{number}.csv", out / f"session_{number}.json"
    df = pd.read_csv(csv)
    summary = json.loads(js.read_text())
    assert tuple(df.columns) == CSV_COLUMNS
    assert len(df) == summary["frames"]
    assert (df["frame"].to_numpy() == np.arange(len(df))).all()  # contiguous, nothing lost in the middle
    return df, summary


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_uncapped_session_writes_the_design_csv_and_json(
    manifest_path: Path, tmp_path: Path, backend: str
) -> None:
    if backend == "onnxruntime" and not HAVE_ORT:
        pytest.skip("backends/ort.py is not written yet")
    code, err = _run(manifest_path, tmp_path, "--fps", "0", "--episodes", "5", backend=backend)
    assert code == 0, err
    df, s = _check_files(tmp_path, 1)
    assert s["stop_reason"] == "completed" and s["episodes"] == 5
    assert df["episode"].nunique() == 5
    assert s["backend"] == backend and s["variant"] == "float" and s["target"] == "x86"
    assert len(s["artifact"]["sha256"]) == 64
    assert s["requested_fps"] == 0 and s["pacing"]["policy"] == "uncapped"
    assert {"p50", "p90", "p99", "p99.9", "max"} <= set(s["latency_us"])
    assert s["fps"]["mean"] > 0 and s["peak_rss_mb"] > 0
    assert {"cpu", "arch", "os", "python", "runtime"} <= set(s["host"])
    ends = df.groupby("episode").tail(1)
    assert np.isclose(ends["cumulative_reward"].sum(), s["total_reward"], atol=1e-3)
    assert s["returns"]["success_rate"] == 1.0  # the fixture policy is fitted to the oracle
    assert 0.9 <= s["returns"]["oracle_ratio"] <= 1.0 + 1e-9
    assert df["deadline_miss"].sum() == 0 and pd.isna(df["fps"].iloc[0]) and (df["fps"].iloc[1:] > 0).all()
    assert (df["latency_ms"] > 0).all() and (df["frame_ms"] >= df["latency_ms"]).all()
    # The summary's percentiles (edge_runtime.stats: fixed memory, 0.05 % buckets) are numpy's to that.
    for key, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9)):
        exact = np.percentile(df["latency_ms"] * 1e3, q)
        assert s["latency_us"][key] == pytest.approx(exact, rel=5e-4, abs=2e-3)
    assert s["latency_us"]["max"] == pytest.approx(df["latency_ms"].max() * 1e3, abs=2e-3)


def test_same_seed_same_episodes(manifest_path: Path, tmp_path: Path) -> None:
    """The stdlib generator that draws the session's starts is seeded by --seed: same seed, same
    episodes; another seed, other starts."""
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, err = _run(manifest_path, tmp_path / name, "--fps", "0", "--episodes", "6", "--seed", seed)
        assert code == 0, err
        df, _ = _check_files(tmp_path / name, 1)
        runs[name] = df[["episode", "frame", "action", "reward"]]
    pd.testing.assert_frame_equal(runs["a"], runs["b"])
    assert not runs["a"].equals(runs["c"])


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    """common.fileio hashes with CPython's built-in sha256 (no OpenSSL on the edge): same digests."""
    data = np.random.default_rng(0).bytes(3 * 2**20 + 17)  # several read chunks and a partial one
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_paced_session_records_lateness(manifest_path: Path, tmp_path: Path) -> None:
    code, err = _run(manifest_path, tmp_path, "--fps", "200", "--episodes", "1000", "--max-frames", "40")
    assert code == 0, err
    df, s = _check_files(tmp_path, 1)
    assert s["frames"] == 40 and s["requested_fps"] == 200
    assert s["pacing"]["policy"] == "spin-prewarm" and s["lateness_us"]["p50"] is not None
    assert s["pacing"]["prewarm_shots"] > 0
    assert s["duration_s"] >= 39 / 200
    assert s["deadline_misses"] == int(df["deadline_miss"].sum())


def test_fps_defaults_to_the_target_profile(manifest_path: Path) -> None:
    plan = resolve_plan(
        parse_config(["--manifest", str(manifest_path), "--variant", "float", "--backend", "numpy"])
    )
    assert plan.fps == 10 and plan.latency_budget_ms == 150 and plan.target == "x86"


class _Flaky(NumpyBackend):
    """A numpy backend that turns slow (or crashes) after ``after`` frames: the injected fault."""

    def __init__(self, *args: Any, after: int, sleep_s: float = 0.0, crash: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.after, self.sleep_s, self.crash, self.calls = after, sleep_s, crash, 0

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls > self.after:
            if self.crash:
                raise RuntimeError("device lost")
            time.sleep(self.sleep_s)
        return super().infer_one(obs)


def _session(manifest_path: Path, out: Path, backend: NumpyBackend, **cfg: Any) -> Session:
    config = SessionConfig(
        manifest=manifest_path, variant="float", backend="numpy", out=out, quiet=True, **cfg
    )
    plan = resolve_plan(config)
    backend.path = plan.manifest.artifact_path(plan.entry)
    backend.load()
    return Session(config, plan, backend)


def test_watchdog_stops_a_slow_backend(manifest_path: Path, tmp_path: Path) -> None:
    slow = _Flaky(Path("unused"), 6, 3, after=25, sleep_s=0.15)
    result = _session(manifest_path, tmp_path, slow, fps=0, episodes=100, latency_budget_ms=60.0).run()
    assert result.stop_reason == "latency_budget_exceeded" and result.exit_code == 3
    df, s = _check_files(tmp_path, result.number)
    assert s["frames"] == 26  # the offending frame is recorded, then the session stops
    assert df["latency_ms"].iloc[-1] > 60.0 and (df["latency_ms"].iloc[:-1] < 60.0).all()


def test_backend_crash_ends_with_error_reason(manifest_path: Path, tmp_path: Path) -> None:
    crashing = _Flaky(Path("unused"), 6, 3, after=30, crash=True)
    result = _session(manifest_path, tmp_path, crashing, fps=0, episodes=100).run()
    assert result.stop_reason == "error: RuntimeError: device lost" and result.exit_code == 1
    _, s = _check_files(tmp_path, result.number)
    assert s["frames"] == 30 and "device lost" in s["traceback"]


def test_sigint_stops_cleanly(manifest_path: Path, tmp_path: Path) -> None:
    backend = _Flaky(Path("unused"), 6, 3, after=10**9)
    session = _session(manifest_path, tmp_path, backend, fps=100, episodes=10**6)
    before = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = session.run()
    finally:
        timer.cancel()
    assert result.stop_reason == "signal" and result.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back
    _, s = _check_files(tmp_path, result.number)
    assert 5 <= s["frames"] <= 100


def _cli(manifest: Path, out: Path, *extra: str, backend: str = "numpy") -> list[str]:
    return [
        sys.executable, "-m", "edge_runtime", "--manifest", str(manifest), "--variant", "float",
        "--backend", backend, "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def test_sigterm_mid_session_leaves_valid_csv_and_json(manifest_path: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _cli(manifest_path, tmp_path, "--fps", "200", "--episodes", "1000000", "--flush-s", "0.2"),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    frames = tmp_path / "session_1.frames"  # rows reach the frame log while the session runs
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not frames.is_file() or frames.stat().st_size < 2000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    df, s = _check_files(tmp_path, 1)
    assert s["stop_reason"] == "signal" and s["signal_number"] == signal.SIGTERM
    assert len(df) >= 19
    assert not frames.exists() and s["csv_write_s"] is not None  # the CSV holds the rows: the log is gone


def test_two_concurrent_runs_never_share_a_number(manifest_path: Path, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            _cli(manifest_path, tmp_path, "--fps", "0", "--episodes", "3"), cwd=REPO, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert sorted(p.name for p in tmp_path.glob("session_*.csv")) == ["session_1.csv", "session_2.csv"]
    assert sorted(p.name for p in tmp_path.glob("session_*.json")) == ["session_1.json", "session_2.json"]


def test_tampered_model_is_refused_with_a_clear_message(manifest_path: Path, tmp_path: Path) -> None:
    src = manifest_path.parent / "float/model.onnx"
    # next to the copied manifest: paths stay relative (docs/contracts.md#the-manifest)
    bad = tmp_path / "m/art/model.onnx"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(src.read_bytes()[:-7] + b"corrupt")

    def point_at_bad(d: dict[str, Any]) -> None:
        for a in d["artifacts"]:
            if a["variant"] == "float" and a["format"] == "onnx":
                a["path"] = "art/model.onnx"

    manifest = copy_manifest(manifest_path, tmp_path / "m", point_at_bad)
    code, err = _run(manifest, tmp_path / "out", "--fps", "0")
    assert code == 1
    assert "does not match the manifest" in err and "make export" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # no empty session files


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_corrupt_model_with_matching_hash_is_refused(
    manifest_path: Path, tmp_path: Path, backend: str
) -> None:
    """The manifest was rewritten for a broken file: the runtime, not the hash, must refuse it."""
    if backend == "onnxruntime" and not HAVE_ORT:
        pytest.skip("backends/ort.py is not written yet")
    from backends.manifest import file_sha256

    # next to the copied manifest: paths stay relative (docs/contracts.md#the-manifest)
    bad = tmp_path / "m/bad/model.onnx"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((manifest_path.parent / "float/model.onnx").read_bytes()[:200])

    def point_at_bad(d: dict[str, Any]) -> None:
        for a in d["artifacts"]:
            if a["variant"] == "float" and a["format"] == "onnx":
                a["path"], a["sha256"] = "bad/model.onnx", file_sha256(bad)

    manifest = copy_manifest(manifest_path, tmp_path / "m", point_at_bad)
    code, err = _run(manifest, tmp_path / "out", "--fps", "0", backend=backend)
    assert code == 1
    assert "cannot load float/onnx" in err and "model.onnx" in err


def test_wrong_observation_size_is_refused_at_load(manifest_path: Path, tmp_path: Path) -> None:
    def image_env(d: dict[str, Any]) -> None:
        d["env"]["obs_mode"], d["env"]["obs_shape"] = "image", [9]
        d["task"]["env"]["kwargs"]["obs_mode"], d["task"]["observation"]["shape"] = "image", [9]

    manifest = copy_manifest(manifest_path, tmp_path / "m", image_env)
    code, err = _run(manifest, tmp_path / "out", "--fps", "0")
    assert code == 1 and "size 6" in err and "9" in err


def test_bad_variant_and_missing_manifest_exit_2(manifest_path: Path, tmp_path: Path) -> None:
    code, err = _run(manifest_path, tmp_path, variant="nope")
    variants = ", ".join(load_manifest(manifest_path).variants())  # float, fp16, int8-static, pruned-50
    assert code == 2 and f"no variant 'nope' in the manifest; variants: {variants}" in err
    # The variant exists, not for that backend: what it has, and where each runs.
    code, err = _run(manifest_path, tmp_path, variant="pruned-50", backend="openvino")
    assert code == 2 and "no artifact of variant 'pruned-50' runs on backend 'openvino'" in err
    assert "that variant has: pruned-50/torch (torch)" in err
    code, err = _run(tmp_path / "missing.json", tmp_path)
    assert code == 2 and "make export" in err


def test_unavailable_runtime_exits_1_with_install_hint(manifest_path: Path, tmp_path: Path) -> None:
    code, err = _run(manifest_path, tmp_path, variant="int8-static", backend="tensorrt")
    assert code == 1 and "tensorrt" in err and "cuda-python" in err


def test_help_documents_every_setting() -> None:
    text = build_parser().format_help()
    for name in SessionConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text
    for word in ("uncapped", "spin-prewarm", "hybrid", "sleep", "exit status"):
        assert word in text
    with pytest.raises(SystemExit) as exc:
        parse_config(["--manifest", "m.json", "--episodes", "0"])
    assert exc.value.code == 2


def test_live_line_and_render_in_a_real_session(
    manifest_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not quiet, with the pygame window (headless): the status line appears and frames are drawn."""
    pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    shown: list[tuple[int, ...]] = []
    from gridworld import render

    real_show = render.PygameWindow.show

    def show(self: render.PygameWindow, frame: np.ndarray) -> None:
        shown.append(frame.shape)
        real_show(self, frame)

    monkeypatch.setattr(render.PygameWindow, "show", show)
    err = io.StringIO()
    argv = ["--manifest", str(manifest_path), "--variant", "float", "--backend", "numpy", "--fps", "100",
            "--episodes", "1000", "--max-frames", "70", "--render", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv, stream=err) == 0, err.getvalue()
    assert "FPS" in err.getvalue() and "infer p50" in err.getvalue()  # at least one live line (0.7 s)
    assert len(shown) == 70
    _check_files(tmp_path, 1)


@pytest.mark.parametrize("schema", [1, 2])
def test_env_settings_come_from_the_manifest_kwargs(manifest_path: Path, schema: int) -> None:
    """Export records the collect-time env kwargs (layout, layout_seed, obs_mode, max_steps) in the task's
    env kwargs; a schema-1 manifest (no task) in env.kwargs."""
    from edge_runtime.cli import env_settings

    m = load_manifest(manifest_path)
    kwargs = {"layout": "procedural", "layout_seed": 3, "obs_mode": "vector", "max_steps": 50}
    if schema == 1:
        m.task = None
        m.env["kwargs"] = kwargs
    else:
        m.task["env"]["kwargs"] = kwargs
    assert env_settings(m) == {
        "layout": "procedural",
        "layout_seed": 3,
        "obs_mode": "vector",
        "max_steps": 50,
    }


def test_a_gymnasium_task_has_no_gridworld_settings(manifest_path: Path) -> None:
    from edge_runtime.cli import env_settings
    from tasks import ActionSpec, EnvSpec, ObservationSpec, TaskSpec

    m = load_manifest(manifest_path)
    pole = TaskSpec(
        "cartpole", EnvSpec("CartPole-v1", {}, 500), ObservationSpec((4,)), ActionSpec.discrete(2), "logits"
    )
    m.task = pole.to_dict()
    assert (
        env_settings(m) is None
    )  # the session drives it through Gymnasium (tests/edge_runtime/test_tasks.py)
