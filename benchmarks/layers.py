"""Where an artifact's inference time goes: onnxruntime's profiler and OpenVINO's per-layer counters.

    python -m benchmarks.layers artifacts/breakout/x86/manifest.json --variants float,int8-static,pruned-50

For each (variant, format) artifact of the manifest that is ``ok`` in ``onnx`` (run by onnxruntime) or
``openvino``: ``--runs`` single-frame inferences on rollout-free observations of the task's input (random
uint8 frames for an image task, zeros otherwise: the time of these graphs does not depend on the values),
one thread as the target profiles run them, then the time of each operator kind summed over the graph and
divided by the runs, largest first. Prints a table and writes ``results/layers.json``.

Why not the benchmark matrix: that measures the call as the device makes it; this explains a p50 that
missed a target (a Conv left in float by the quantizer, a reorder OpenVINO inserted), per operator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backends.manifest import ArtifactEntry, Manifest, ManifestError, load_manifest
from common.cli import ExampleFormatter
from common.fileio import atomic_write_json

RUNS = 200
WARMUP = 20


def observations(manifest: Manifest, n: int = 16) -> np.ndarray:
    """``n`` observations of the manifest's model input."""
    shape, dtype = manifest.model_input
    if np.dtype(dtype) == np.uint8:
        return np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return np.zeros((n, *shape), dtype=dtype)


def onnxruntime_ops(path: Path, obs: np.ndarray, runs: int = RUNS) -> dict[str, float]:
    """µs per inference of each op type (kernel time of the nodes, onnxruntime's profiler)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="neuroquant-ort-profile-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for i in range(WARMUP):
            session.run(None, {name: obs[i % len(obs) : i % len(obs) + 1]})
        for i in range(runs):  # the warm-up runs are in the profile too: only each node's last `runs` count
            session.run(None, {name: obs[i % len(obs) : i % len(obs) + 1]})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")]
            per_node[node].append(float(event["dur"]))
            op_of[node] = event.get("args", {}).get("op_name", "?")
    totals: dict[str, float] = defaultdict(float)
    for node, durations in per_node.items():
        totals[op_of[node]] += sum(durations[-runs:]) / runs
    return dict(totals)


def openvino_ops(path: Path, obs: np.ndarray, runs: int = RUNS) -> dict[str, float]:
    """µs per inference of each executed layer kind (``node_type/exec_type``), OpenVINO's counters."""
    import openvino as ov

    core = ov.Core()
    # as backends.ov compiles it: f32 (AMX CPUs would otherwise run an fp32 IR in bf16), one thread
    config = {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
    config["INFERENCE_PRECISION_HINT"] = "f32"
    model = core.read_model(str(path))
    model.reshape({model.inputs[0]: [1, *obs.shape[1:]]})
    request = core.compile_model(model, "CPU", config).create_infer_request()
    for i in range(WARMUP):
        request.infer({0: obs[i % len(obs) : i % len(obs) + 1]})
    totals: dict[str, float] = defaultdict(float)
    for i in range(runs):
        request.infer({0: obs[i % len(obs) : i % len(obs) + 1]})
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                totals[f"{info.node_type}/{info.exec_type}"] += info.real_time.total_seconds() * 1e6 / runs
    return dict(totals)


PROFILERS = {"onnx": ("onnxruntime", onnxruntime_ops), "openvino": ("openvino", openvino_ops)}


def profile(manifest: Manifest, variants: Sequence[str], runs: int = RUNS) -> list[dict[str, Any]]:
    """One record per profiled artifact: variant, format, runtime, total µs and µs per op kind."""
    obs = observations(manifest)
    records = []
    entries: list[ArtifactEntry] = [
        a
        for a in manifest.artifacts
        if a.status == "ok" and a.format in PROFILERS and (not variants or a.variant in variants)
    ]
    for entry in entries:
        runtime, measure = PROFILERS[entry.format]
        ops = measure(manifest.artifact_path(entry), obs, runs)
        ranked = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
        records.append(
            {
                "variant": entry.variant,
                "format": entry.format,
                "runtime": runtime,
                "total_us": round(sum(ops.values()), 1),
                "ops_us": {k: round(v, 2) for k, v in ranked.items()},
            }
        )
    return records


def table(records: Sequence[dict[str, Any]], top: int = 6) -> str:
    lines = []
    for r in records:
        parts = ", ".join(f"{op} {us:.0f}" for op, us in list(r["ops_us"].items())[:top])
        lines.append(f"{r['variant']:<16} {r['runtime']:<12} {r['total_us']:>8.1f} µs  {parts}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layers",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m benchmarks.layers artifacts/breakout/x86/manifest.json "
        "--variants float,int8-static,pruned-50",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--variants", default="", help="comma-separated variants (default: every ok one)")
    parser.add_argument("--runs", type=int, default=RUNS, help="profiled single-frame inferences")
    parser.add_argument("--out", type=Path, default=Path("results/layers.json"))
    args = parser.parse_args(argv)
    if args.runs < 1:
        print(f"error: --runs must be ≥ 1, got {args.runs}", file=sys.stderr)
        return 2
    try:
        manifest = load_manifest(args.manifest)
    except (ManifestError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - {a.variant for a in manifest.artifacts})
    if unknown:
        print(f"error: the manifest has no variant {unknown}", file=sys.stderr)
        return 2
    records = profile(manifest, variants, args.runs)
    print(table(records))
    atomic_write_json(args.out, {"manifest": str(args.manifest), "runs": args.runs, "artifacts": records})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
