"""Hot swap under load: does a swap cost a frame? A paced edge session with swaps every few seconds.

    python -m benchmarks.hot_swap [--manifest artifacts/x86/manifest.json] [--variants float,int8-static]
                                  [--fps 100] [--frames 3000] [--swaps 5]

Runs ``python -m edge_runtime`` as the device would (its own process, ``--control`` file) and, once the
session is under way, writes the next of ``--variants`` into the control file ``--swaps`` times at even
intervals. Then, from the session's CSV and JSON: for each swap, the frame the new model first acted on and
the frame after it — were they late (``deadline_miss``), and how does their inference latency compare with
the session's p99? Also the load time of each swap (manifest re-read, hash check, load, 20 warm-up calls,
all off the frame path), and the host's steal time over the run (``benchmarks.contention``),
so a miss the hypervisor caused is told apart from one the swap caused. Prints a table, writes
``<out>/hot_swap.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.contention import contention_ms, contention_since
from common.cli import ExampleFormatter
from common.fileio import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def swap_frames(df: pd.DataFrame, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per swapped-in model: its first frame and the one after, late or not, latency against the p99."""
    p99_ms = summary["latency_us"]["p99"] / 1e3 if summary["latency_us"]["p99"] is not None else None
    rows = []
    for swap in summary["swaps"]:
        if swap["status"] != "swapped":
            continue
        frames = df[(df["frame"] >= swap["frame"]) & (df["frame"] <= swap["frame"] + 1)]
        rows.append(
            {
                "frame": int(swap["frame"]),
                "artifact": swap["artifact"],
                "load_s": swap["load_s"],
                "misses": int(frames["deadline_miss"].sum()),
                "latency_ms": [round(float(v), 4) for v in frames["latency_ms"]],
                "within_p99": p99_ms is None or bool((frames["latency_ms"] <= p99_ms).all()),
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    sessions, control = out / "sessions", out / "control.txt"
    shutil.rmtree(sessions, ignore_errors=True)  # a fresh folder: this run's session is session_1
    out.mkdir(parents=True, exist_ok=True)
    control.unlink(missing_ok=True)
    csv = sessions / "session_1.csv"
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    cmd = [
        sys.executable, "-m", "edge_runtime", "--manifest", str(args.manifest), "--variant", variants[0],
        "--backend", args.backend, "--fps", str(args.fps), "--max-frames", str(args.frames),
        "--episodes", "1000000", "--control", str(control), "--out", str(sessions), "--quiet",
    ]  # fmt: skip
    before = contention_ms()
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    duration = args.frames / args.fps
    gap = duration / (args.swaps + 1)
    while not csv.exists() and proc.poll() is None:
        time.sleep(0.01)  # the session has started once its CSV exists
    started = time.monotonic()
    for i in range(args.swaps):
        time.sleep(max(0.0, started + gap * (i + 1) - time.monotonic()))
        control.write_text(variants[(i + 1) % len(variants)] + "\n")
    _, err = proc.communicate(timeout=duration + 120)
    lost = contention_since(before)
    if proc.returncode != 0:
        raise RuntimeError(f"the session failed ({proc.returncode}): {err}")
    df = pd.read_csv(csv)
    summary = json.loads(csv.with_suffix(".json").read_text())
    swaps = swap_frames(df, summary)
    return {
        "manifest": str(args.manifest),
        "backend": args.backend,
        "variants": variants,
        "fps": args.fps,
        "frames": summary["frames"],
        "swaps_requested": args.swaps,
        "swaps_done": len(swaps),
        "refused": [s for s in summary["swaps"] if s["status"] != "swapped"],
        "deadline_misses": summary["deadline_misses"],
        "misses_on_swap_frames": sum(s["misses"] for s in swaps),
        "swap_frames_within_p99": all(s["within_p99"] for s in swaps),
        "latency_p50_us": summary["latency_us"]["p50"],
        "latency_p99_us": summary["latency_us"]["p99"],
        "swaps": swaps,
        "host_steal_ms": None if lost is None else lost["host_steal"],
        "session_json": str(csv.with_suffix(".json")),
        "cpu": summary["host"].get("cpu"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hot_swap",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m benchmarks.hot_swap --manifest artifacts/x86/manifest.json "
        "--variants float,int8-static --fps 100 --frames 3000 --swaps 5",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("--manifest", type=Path, default=Path("artifacts/x86/manifest.json"))
    parser.add_argument("--variants", default="float,int8-static", help="the session starts on the first")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--fps", type=float, default=100.0)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/hot_swap"))
    args = parser.parse_args(argv)
    if args.fps <= 0 or args.frames < 1 or args.swaps < 1 or len(args.variants.split(",")) < 2:
        parser.error("--fps > 0, --frames ≥ 1, --swaps ≥ 1 and two or more --variants are needed")
    if not args.manifest.is_file():
        parser.error(f"--manifest {args.manifest} does not exist (make export builds it)")
    try:
        result = run(args)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for s in result["swaps"]:
        lat = ", ".join(f"{v * 1e3:.0f}" for v in s["latency_ms"])
        print(
            f"frame {s['frame']:>5}: {s['artifact']:<18} loaded in {s['load_s'] * 1e3:.0f} ms; swap frame "
            f"and the next: {s['misses']} late, latency {lat} µs (p99 {result['latency_p99_us']:.0f})"
        )
    steal = result["host_steal_ms"]
    print(
        f"{result['swaps_done']}/{result['swaps_requested']} swaps at {result['fps']:g} FPS over "
        f"{result['frames']} frames: {result['misses_on_swap_frames']} late swap frames, "
        f"{result['deadline_misses']} late frames in all; swap frames within p99: "
        f"{result['swap_frames_within_p99']}; host steal {steal if steal is None else round(steal)} ms"
    )
    path = atomic_write_json(args.out / "hot_swap.json", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
