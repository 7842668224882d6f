"""The derived tables: Pareto front, newest-wins deduplication, one line per model cell."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from reports.load import KEY, dedup_newest, read_benchmark_csv
from reports.summary import model_cells, pareto_front
from tests.reports.factory import run_rows, write_bench_run


def test_pareto_front_on_a_hand_made_table() -> None:
    nan = math.nan
    table = pd.DataFrame(
        {
            "name": ["A", "B", "C", "D", "E", "F", "G", "H", "I"],
            "lat_p99_us": [10.0, 20.0, 15.0, 30.0, 5.0, 40.0, nan, 10.0, 50.0],
            "mean_return": [5.0, 8.0, 4.0, 8.0, 1.0, 9.5, 10.0, 6.0, nan],
        }
    )
    # C is beaten by A, A by H (same latency, higher return), D ties B's return at a higher latency;
    # G and I miss a figure.
    front = pareto_front(table)
    assert list(front["name"]) == ["E", "H", "B", "F"]
    assert list(front["lat_p99_us"]) == sorted(front["lat_p99_us"])
    assert list(front["mean_return"]) == sorted(front["mean_return"])
    assert pareto_front(table.iloc[:0]).empty


def test_dedup_keeps_the_newest_row_per_key() -> None:
    key = {
        "task": "gridworld", "target": "x86", "host": "h", "variant": "float", "backend": "numpy",
        "scenario": "latency",
    }  # fmt: skip
    rows = pd.DataFrame(
        [
            {**key, "timestamp": "2026-11-21T10:00:00Z", "v": "newest"},  # read first, but newest
            {**key, "timestamp": "2026-11-20T10:00:00Z", "v": "old"},
            {**key, "scenario": "batch100", "timestamp": "2026-11-20T10:00:00Z", "v": "only"},
            {**key, "backend": "onnxruntime", "timestamp": "2026-11-20T10:00:00Z", "v": "tie-first"},
            {**key, "backend": "onnxruntime", "timestamp": "2026-11-20T10:00:00Z", "v": "tie-later-file"},
            {**key, "backend": "openvino", "timestamp": "2026-11-19T00:00:00Z", "v": "dated"},
            {**key, "backend": "openvino", "timestamp": "garbage", "v": "undated"},
        ]
    )
    kept, replaced = dedup_newest(rows)
    assert replaced == 3
    assert sorted(kept["v"]) == ["dated", "newest", "only", "tie-later-file"]
    assert not kept.duplicated(list(KEY)).any()


def test_model_cells_merge_scenarios(tmp_path: Path) -> None:
    path = write_bench_run(tmp_path, run_rows("x86", "h", "2026-11-20T10:00:00Z"), "20261120T100000Z")
    cells = model_cells(read_benchmark_csv(path)).set_index(["variant", "backend"])
    assert len(cells) == 10  # nine measured cells and the skipped TensorRT one; no throughput rows
    float_ort = cells.loc[("float", "onnxruntime")]
    assert float_ort["status"] == "ok" and float_ort["lat_p99_us"] == 50.4
    assert float_ort["batch100_ms"] == 0.48 and float_ort["loop_fps"] == round(1e6 / 33, 1)
    pruned = cells.loc[("pruned-50", "onnxruntime")]
    assert pruned["status"] == "partial"
    assert pruned["reason"] == "batch100: onnxruntime: RuntimeError: bad alloc"
    assert math.isnan(pruned["batch100_ms"]) and pruned["lat_p99_us"] == 36.75
    trt = cells.loc[("float", "tensorrt")]
    assert trt["status"] == "skipped" and trt["reason"] == "tensorrt: no CUDA device"
    assert trt["status_text"] == "skipped · pending on device" and math.isnan(trt["lat_p99_us"])
    gate = cells.loc[("int8-static", "openvino")]
    assert gate["gate_failed"] and gate["status_text"] == "ok · gate failed"
