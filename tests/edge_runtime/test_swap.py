"""Hot swap: SIGHUP or the control file bring a new artifact into a running session at a frame boundary;
a replacement that fails its checks is refused and the running model keeps acting."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from edge_runtime.cli import main
from edge_runtime.session import Session
from tests.backends.artifact_factory import copy_manifest

pytest.importorskip("onnxruntime")
FAST = ["--fps", "200", "--episodes", "1000000", "--max-frames", "240", "--mem-sample-ms", "5", "--quiet"]


def _session(manifest: Path, out: Path, *extra: str, backend: str = "onnxruntime") -> tuple[int, str]:
    err = io.StringIO()
    argv = ["--manifest", str(manifest), "--variant", "float", "--backend", backend, "--out", str(out)]
    return main([*argv, *FAST, *extra], stream=err), err.getvalue()


def _session_with(
    action: Any, manifest: Path, out: Path, *extra: str, backend: str = "onnxruntime"
) -> tuple[int, str]:
    """A session during which ``action`` runs once, 0.4 s in (a swap request, from another thread)."""
    timer = threading.Timer(0.4, action)
    timer.start()
    try:
        return _session(manifest, out, *extra, backend=backend)
    finally:
        timer.cancel()


def _results(out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    return pd.read_csv(out / "session_1.csv"), json.loads((out / "session_1.json").read_text())


def test_the_control_file_swaps_the_model_at_a_frame_boundary(manifest_path: Path, tmp_path: Path) -> None:
    control = tmp_path / "swap.txt"
    control.write_text("stale\n")  # present before the session: not a request
    request = lambda: control.write_text("int8-static\n")  # noqa: E731
    code, err = _session_with(request, manifest_path, tmp_path / "out", "--control", str(control))
    assert code == 0, err
    df, summary = _results(tmp_path / "out")
    (swap,) = summary["swaps"]
    assert swap["status"] == "swapped" and swap["source"].startswith("control file")
    assert swap["artifact"] == "int8-static/onnx" and len(swap["sha256"]) == 64
    frame = swap["frame"]
    assert 0 < frame < 240
    assert (df["artifact"][:frame] == "float/onnx").all() and (
        df["artifact"][frame:] == "int8-static/onnx"
    ).all()
    assert summary["artifacts_used"] == ["float/onnx", "int8-static/onnx"]
    assert summary["frames"] == 240 and (df["frame"].to_numpy() == list(range(240))).all()  # none lost
    assert "swapped in int8-static/onnx at frame" in err


def test_sighup_reloads_the_followed_variant(manifest_path: Path, tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGHUP)  # SIG_IGN under nohup, SIG_DFL otherwise
    hangup = lambda: os.kill(os.getpid(), signal.SIGHUP)  # noqa: E731
    code, err = _session_with(hangup, manifest_path, tmp_path / "out", "--follow", "int8-static")
    assert code == 0, err
    _, summary = _results(tmp_path / "out")
    assert [(s["source"], s["status"], s["variant"]) for s in summary["swaps"]] == [
        ("SIGHUP", "swapped", "int8-static")
    ]
    assert signal.getsignal(signal.SIGHUP) == before  # the previous handler is back


def test_a_tampered_replacement_is_refused_and_the_model_keeps_acting(
    manifest_path: Path, tmp_path: Path
) -> None:
    manifest = copy_manifest(manifest_path, tmp_path / "m")
    int8 = tmp_path / "m/int8-static/model.onnx"
    control = tmp_path / "swap.txt"

    def tamper_then_ask() -> None:
        int8.write_bytes(int8.read_bytes()[:-5] + b"bad!!")
        control.write_text("int8-static")

    code, err = _session_with(tamper_then_ask, manifest, tmp_path / "out", "--control", str(control))
    assert code == 0, err
    df, summary = _results(tmp_path / "out")
    (swap,) = summary["swaps"]
    assert swap["status"] == "refused" and "does not match the manifest" in swap["reason"]
    assert (df["artifact"] == "float/onnx").all() and summary["frames"] == 240
    assert "swap refused, the running model kept acting" in err


def test_a_replacement_the_backend_cannot_run_is_refused(manifest_path: Path, tmp_path: Path) -> None:
    control = tmp_path / "swap.txt"
    request = lambda: control.write_text("int8-static numpy")  # noqa: E731 (numpy runs no QDQ graph)
    code, err = _session_with(
        request, manifest_path, tmp_path / "out", "--control", str(control), backend="numpy"
    )
    assert code == 0, err
    _, summary = _results(tmp_path / "out")
    assert summary["swaps"][0]["status"] == "refused" and "quantized graph" in summary["swaps"][0]["reason"]


def test_rows_are_labelled_by_the_model_that_acted() -> None:
    session = Session.__new__(Session)  # only the row bookkeeping is under test
    session.artifact_runs = [(0, "a"), (5, "b"), (7, "c")]
    rows = [(0, 0, f) for f in range(3, 9)]  # frames 3..8: a a b b c c
    cut = session._by_artifact(rows)
    assert [(name, [r[2] for r in part]) for part, name in cut] == [
        ("a", [3, 4]),
        ("b", [5, 6]),
        ("c", [7, 8]),
    ]
    assert [name for _, name in session._by_artifact([(0, 0, 9)])] == ["c"]
