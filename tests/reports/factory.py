"""Fixture result files written the way ``python -m benchmarks`` and ``python -m edge_runtime`` write them.

The benchmark column order is spelled out here from the result-file contract rather than imported from
``reports``, so a drift between the reader and the contract shows up as a failing test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HEADER = (
    "run_id,timestamp,task,target,host,arch,cpu,emulated,variant,backend,format,precision,artifact_status,"
    "scenario,status,reason,size_bytes,params,load_ms,first_infer_ms,iterations,lat_p50_us,lat_p90_us,"
    "lat_p99_us,lat_p999_us,lat_max_us,lat_mean_us,lat_std_us,batch100_ms,rss_mb,peak_rss_mb,mean_return,"
    "return_ci_low,return_ci_high,success_rate,oracle_ratio,action_agreement,action_error,loop_fps,"
    "deadline_misses,lateness_p99_us,value,unit"
).split(",")
SESSION_HEADER = (
    "timestamp_ns,episode,frame,action,reward,cumulative_reward,latency_ms,env_ms,frame_ms,mem_mb,fps,"
    "deadline_miss,artifact"
).split(",")
ORACLE = 8.8

# variant, backend, format, precision, size_bytes, params, p50 µs, return, peak RSS MB, artifact status
CELLS = [
    ("float", "onnxruntime", "onnx", "fp32", 138_618, 34_435, 24.0, 8.8, 92.0, "ok"),
    ("float", "openvino", "openvino", "fp32", 141_200, 34_435, 41.0, 8.8, 210.0, "ok"),
    ("float", "numpy", "onnx", "fp32", 138_618, 34_435, 11.0, 8.8, 48.0, "ok"),
    ("fp16", "onnxruntime", "onnx", "fp16", 70_114, 34_435, 30.0, 8.8, 90.0, "ok"),
    ("int8-static", "onnxruntime", "onnx", "int8", 40_231, 34_435, 19.0, 8.62, 88.0, "ok"),
    ("int8-static", "openvino", "openvino", "int8", 45_870, 34_435, 16.0, 3.1, 205.0, "failed"),
    ("pruned-50", "onnxruntime", "onnx", "fp32", 72_900, 17_300, 17.5, 8.71, 87.0, "ok"),
    ("distilled", "onnxruntime", "onnx", "fp32", 9_842, 2_211, 9.0, 8.45, 80.0, "ok"),
    ("distilled", "numpy", "onnx", "fp32", 9_842, 2_211, 6.0, 8.45, 45.0, "ok"),
]
MODEL_SCENARIOS = ("latency", "batch100", "loop_uncapped", "loop_paced")
CELL_FIELDS = ("variant", "backend", "format", "precision", "artifact_status")


def bench_row(**fields: Any) -> dict[str, Any]:
    """A row with every column; unspecified figures are empty (NaN), as the contract asks."""
    row = dict.fromkeys(HEADER, "")
    row.update(fields)
    return row


def cell_rows(spec: tuple, common: dict[str, Any], lat_scale: float = 1.0) -> list[dict[str, Any]]:
    """The four model scenarios of one (variant, backend) cell."""
    variant, backend, fmt, precision, size, params, p50, ret, rss, artifact = spec
    p50 *= lat_scale
    base = dict(
        common,
        variant=variant,
        backend=backend,
        format=fmt,
        precision=precision,
        artifact_status=artifact,
        status="ok",
        size_bytes=size,
        params=params,
        load_ms=round(3 + rss / 20, 2),
        first_infer_ms=round(p50 / 200, 3),
        rss_mb=rss - 6,
        peak_rss_mb=rss,
        mean_return=ret,
        success_rate=1.0 if ret > 8 else 0.4,
        oracle_ratio=round(ret / ORACLE, 4),
        action_agreement=0.62 if artifact == "failed" else 0.998,
    )
    latency = dict(
        base,
        scenario="latency",
        iterations=20_000,
        lat_p50_us=p50,
        lat_p90_us=round(p50 * 1.3, 2),
        lat_p99_us=round(p50 * 2.1, 2),
        lat_p999_us=round(p50 * 4.5, 2),
        lat_max_us=round(p50 * 12, 2),
        lat_mean_us=round(p50 * 1.15, 2),
        lat_std_us=round(p50 * 0.4, 2),
    )
    batch = dict(base, scenario="batch100", iterations=500, batch100_ms=round(p50 * 0.02, 3))
    uncapped = dict(base, scenario="loop_uncapped", iterations=4000, loop_fps=round(1e6 / (p50 + 9), 1))
    paced = dict(
        base, scenario="loop_paced", iterations=400, loop_fps=10.0, deadline_misses=0, lateness_p99_us=6.5
    )
    return [bench_row(**r) for r in (latency, batch, uncapped, paced)]


def run_rows(target: str, host: str, timestamp: str, lat_scale: float = 1.0) -> list[dict[str, Any]]:
    """A full matrix: the cells above, a TensorRT cell skipped, one failed scenario, the throughput rows."""
    common = {
        "run_id": f"{target}-{host}-{timestamp}",
        "timestamp": timestamp,
        "target": target,
        "host": host,
        "arch": "aarch64" if target == "arm64" else "x86_64",
        "cpu": f"{target} test CPU",
    }
    rows = [row for spec in CELLS for row in cell_rows(spec, common, lat_scale)]
    for row in rows:  # one scenario of one cell crashed
        if (row["variant"], row["backend"], row["scenario"]) == ("pruned-50", "onnxruntime", "batch100"):
            row.update(status="failed", reason="onnxruntime: RuntimeError: bad alloc", batch100_ms="")
    trt = ("float", "tensorrt", "tensorrt", "fp16", "pending-on-device")
    rows += [
        bench_row(**common, **dict(zip(CELL_FIELDS, trt, strict=True)), scenario=scenario, status="skipped",
                  reason="tensorrt: no CUDA device")
        for scenario in MODEL_SCENARIOS
    ]  # fmt: skip
    no_model = dict.fromkeys(CELL_FIELDS[:4], "-")
    throughput = {"env_single": 81234.5, "env_vector": 1.2e6, "trainer": 412.0}
    rows += [
        bench_row(**common, **no_model, scenario=scenario, status="ok", iterations=1000,
                  value=value * lat_scale, unit="steps/s")
        for scenario, value in throughput.items()
    ]  # fmt: skip
    return rows


def write_bench_run(folder: Path, rows: list[dict[str, Any]], stamp: str, with_json: bool = True) -> Path:
    """``bench_<target>_<host>_<stamp>.csv`` + the same stem ``.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    target, host = rows[0]["target"], rows[0]["host"]
    path = folder / f"bench_{target}_{host}_{stamp}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    if with_json:
        cells = {(r["variant"], r["backend"]): r for r in rows}
        meta = {
            "schema": 1,
            "run_id": rows[0]["run_id"],
            "created": rows[0]["timestamp"],
            "target": target,
            "manifest": f"artifacts/{target}/manifest.json",
            "manifest_sha256": "ab" * 32,
            "host": {
                "hostname": host,
                "cpu": rows[0]["cpu"],
                "arch": rows[0]["arch"],
                "cores": 4,
                "os": "Linux-6.1-test",
                "python": "3.11.7",
                "versions": {"numpy": "2.4.6", "onnxruntime": "1.22.0", "openvino": "2025.2"},
            },
            "args": {"manifest": f"artifacts/{target}/manifest.json", "executor": "local"},
            "cells": [
                {"variant": v, "backend": b, "status": r["status"], "reason": r["reason"], "seconds": 1.5}
                for (v, b), r in cells.items()
            ],
            "csv": path.name,
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def write_session(
    folder: Path,
    n: int,
    started_at: str,
    frames: int = 120,
    variant: str = "int8-static",
    backend: str = "onnxruntime",
    stop_reason: str = "completed",
) -> Path:
    """``session_<n>.csv`` (the columns of docs/contracts.md#the-session-files, 10 FPS) and its JSON
    summary."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    path = folder / f"session_{n}.csv"
    lat = np.round(0.02 + rng.gamma(2.0, 0.004, frames), 6)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SESSION_HEADER)
        cumulative = 0.0
        for i in range(frames):
            episode, frame = divmod(i, 12)
            reward = 10.0 if frame == 11 else -0.1
            cumulative = reward if frame == 0 else cumulative + reward
            fps = "" if i == 0 else f"{10 + rng.normal(0, 0.02):.2f}"
            writer.writerow(
                [
                    1_795_312_196_000_000_000 + i * 100_000_000,
                    episode,
                    frame,
                    i % 3,
                    reward,
                    round(cumulative, 2),
                    lat[i],
                    0.004,
                    round(lat[i] + 0.02, 6),
                    77.2,
                    fps,
                    int(i == 50),
                    "float/onnx",
                ]
            )
    lat_us = lat * 1e3
    summary = {
        "session": n,
        "csv": path.name,
        "stop_reason": stop_reason,
        "target": "x86",
        "backend": backend,
        "variant": variant,
        "host": {"hostname": "hostA", "cpu": "x86 test CPU", "arch": "x86_64"},
        "started_at": started_at,
        "requested_fps": 10.0,
        "frames": frames,
        "latency_us": {k: float(np.percentile(lat_us, q)) for k, q in (("p50", 50), ("p99", 99))}
        if frames
        else {},
        "fps": {"mean": 10.0},
        "deadline_misses": 1 if frames > 50 else 0,
        "peak_rss_mb": 79.4,
        "episodes": frames // 12,
        "returns": {"mean_return": 8.9, "oracle_ratio": 1.0},
    }
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return path


def make_results(root: Path) -> Path:
    """Two x86 runs on hostA (the newer re-measures float/onnxruntime), one arm64 run on hostB, and three
    sessions (the newest recorded no frames)."""
    bench = root / "benchmark"
    write_bench_run(bench, run_rows("x86", "hostA", "2026-11-20T10:00:00Z"), "20261120T100000Z")
    newer = [
        r
        for r in run_rows("x86", "hostA", "2026-11-21T09:30:00Z", lat_scale=0.5)
        if (r["variant"], r["backend"]) == ("float", "onnxruntime")
    ]
    write_bench_run(bench, newer, "20261121T093000Z")
    write_bench_run(
        bench, run_rows("arm64", "hostB", "2026-11-21T08:00:00Z", lat_scale=3.0), "20261121T080000Z"
    )
    sessions = root / "sessions"
    write_session(sessions, 1, "2026-11-21T10:00:00+00:00", backend="onnxruntime")
    write_session(sessions, 2, "2026-11-21T11:00:00+00:00", variant="float", backend="numpy")
    write_session(sessions, 3, "2026-11-21T12:00:00+00:00", frames=0, stop_reason="error: backend crashed")
    return root


# number, status, source, precision, backend, return ratio, p99 µs, size bytes, pareto, chosen, reason
TRIALS = [
    (0, "ok", "float", "fp32", "onnxruntime", 1.0, 48.0, 138_618, 0, 0, ""),
    (1, "ok", "pruned-40", "int8-static", "onnxruntime", 1.0, 21.0, 24_000, 1, 1, ""),
    (2, "gate-failed", "distilled-10", "int8-dynamic", "onnxruntime", 0.71, 12.0, 6_000, 0, 0,
     "return ratio 0.710 < 0.99"),
    (3, "ok", "float", "fp16", "openvino", 1.0, 60.0, 70_000, 0, 0, ""),
    (4, "ok", "distilled-10", "fp32", "numpy", 0.992, 26.0, 12_000, 1, 0, ""),
    (5, "build-failed", "distilled-10", "int8-static", "openvino", None, None, None, 0, 0,
     "openvino: unsupported operator"),
]  # fmt: skip
# variant, backend, export status, return ratio, p99 µs, size bytes, peak RSS MB
FIXED = [
    ("float", "onnxruntime", "ok", 1.0, 50.0, 138_618, 92.0),
    ("int8-static", "onnxruntime", "ok", 1.0, 30.0, 40_231, 75.0),
    ("int8-static", "openvino", "failed", 0.35, 25.0, 45_870, 205.0),
]
# fixed variant (the ones that passed their gate), backend, the searched model's return at least its,
# the objectives on which the searched model is strictly better
DOMINANCE = [
    ("float", "onnxruntime", True, ["p99", "size", "rss"]),
    ("int8-static", "onnxruntime", True, ["p99", "size"]),
]
CHOSEN_FIELDS = ("number", "source", "precision", "backend", "lat_p99_us", "size_bytes", "return_ratio")
CHOSEN_REASON = "the fastest p99 of the 3 feasible trials (return ratio at least 0.99)"


def write_study(folder: Path, float_return: float = 500.0) -> Path:
    """``results/search/<study>/`` as ``python -m export.search`` writes it: trials.csv, fixed.csv and
    search.json, for task ``x`` on target ``x86`` (six trials, one failing the return gate, one failing to
    build; three fixed variants, one whose export failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = []
    for number, status, source, precision, backend, ratio, p99, size, pareto, chosen, reason in TRIALS:
        measured = ratio is not None
        quantized = precision.startswith("int8")
        trials.append(
            {
                "number": number,
                "state": "complete" if measured else "failed",
                "status": status,
                "reason": reason,
                "source": source,
                "precision": precision,
                "per_channel": (precision == "int8-static") if quantized else "",
                "equalize": False if quantized else "",
                "calibration": 256 if precision == "int8-static" else "",
                "backend": backend,
                "format": "openvino" if backend == "openvino" else "onnx",
                "mean_return": ratio * float_return if measured else "",
                "return_ratio": ratio if measured else "",
                "lat_p50_us": p99 / 2 if measured else "",
                "lat_p99_us": p99 if measured else "",
                "size_bytes": size if measured else "",
                "peak_rss_mb": 80.0 + number if measured else "",
                "params": 4_610,
                "pareto": pareto,
                "chosen": chosen,
                "seconds": 12.5,
            }
        )
    pd.DataFrame(trials).to_csv(folder / "trials.csv", index=False)
    fixed = [
        {"variant": v, "backend": b, "format": "openvino" if b == "openvino" else "onnx",
         "precision": "fp32" if v == "float" else "int8", "status": st, "mean_return": r * float_return,
         "return_ratio": r, "lat_p50_us": p99 / 2, "lat_p99_us": p99, "size_bytes": size, "peak_rss_mb": rss}
        for v, b, st, r, p99, size, rss in FIXED
    ]  # fmt: skip
    pd.DataFrame(fixed).to_csv(folder / "fixed.csv", index=False)
    chosen = next(t for t in trials if t["chosen"])
    meta = {
        "schema": 1,
        "study": folder.name,
        "task": "x",
        "target": "x86",
        "manifest": "artifacts/x/x86/manifest.json",
        "objectives": ["return", "p99", "size"],
        "pick": "fastest",
        "min_return_ratio": 0.99,
        "float": {"mean_return": float_return, "ci95": [float_return, float_return]},
        "chosen": {k: chosen[k] for k in CHOSEN_FIELDS},
        "chosen_reason": CHOSEN_REASON,
        "dominance": [
            {"variant": v, "backend": b, "return_ok": ok, "better_on": on, "dominates": ok and bool(on)}
            for v, b, ok, on in DOMINANCE
        ],
        "trials": len(trials),
        "seconds": 75.0,
        "created": "2026-12-03T14:00:00Z",
        "host": {"cpu": "x86 test CPU", "cores": 2},
    }
    (folder / "search.json").write_text(json.dumps(meta, indent=2))
    return folder
