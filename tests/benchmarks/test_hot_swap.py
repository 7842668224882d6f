"""``benchmarks.hot_swap``: a paced session in its own process, swapped through its control file, and the
swap frames read back from its CSV (whether they were late is the host's; that they are found is not)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.hot_swap import main, swap_frames

pytest.importorskip("onnxruntime")


def test_each_swap_is_found_in_the_sessions_csv(manifest_path: Path, tmp_path: Path) -> None:
    argv = ["--manifest", str(manifest_path), "--variants", "float,int8-static", "--fps", "100"]
    assert main([*argv, "--frames", "200", "--swaps", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "hot_swap.json").read_text())
    assert result["swaps_done"] == 2 and result["refused"] == [] and result["frames"] == 200
    assert [s["artifact"] for s in result["swaps"]] == ["int8-static/onnx", "float/onnx"]
    assert all(len(s["latency_ms"]) == 2 and s["load_s"] > 0 for s in result["swaps"])
    assert result["misses_on_swap_frames"] == sum(s["misses"] for s in result["swaps"])


def test_swap_frames_reads_the_swap_frame_and_the_next() -> None:
    df = pd.DataFrame(
        {"frame": range(6), "deadline_miss": [0, 0, 1, 0, 0, 0], "latency_ms": [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]}
    )
    summary = {
        "latency_us": {"p99": 300.0},
        "swaps": [
            {"status": "swapped", "frame": 2, "artifact": "b", "load_s": 0.01},
            {"status": "refused", "reason": "x"},
        ],
    }
    (row,) = swap_frames(df, summary)
    assert row == {
        "frame": 2,
        "artifact": "b",
        "load_s": 0.01,
        "misses": 1,
        "latency_ms": [0.5, 0.1],
        "within_p99": False,
    }


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--manifest", str(tmp_path / "none.json")])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        main(["--variants", "float"])
