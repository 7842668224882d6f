"""``python -m deploy.check MANIFEST --obs reference.npz --out DIR``: what every artifact of an export does
on this machine, to compare with what it did on another.

Shipped in the device bundle (torch-free, like the edge runtime): ``make verify-arm64`` runs it inside the
emulated arm64 root and on the x86 host over the same files, then compares the two (``deploy.arm64``).
For every artifact the manifest marks ``ok`` and every backend it lists that loads here, it writes

- the artifact's outputs on the observations of ``reference.npz`` (array ``obs``, float32
  ``[N, obs_dim]``), into ``DIR/outputs.npz`` under the key ``<variant>__<format>__<backend>``;
- its return in the task, evaluated here as the export's gate evaluated it (the gridworld: exactly, over
  every start state; any other task: its seeded episodes), next to the return the manifest records, into
  ``DIR/check.json`` with this machine's host block (``arch``, ``emulated``).

A backend whose runtime is missing here is recorded ``unavailable`` with the reason, never dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tasks
from backends.base import BackendUnavailable
from backends.manifest import ArtifactEntry, Manifest, ManifestError, load_manifest
from backends.profiles import load_profile
from backends.registry import get_backend
from common.cli import ExampleFormatter
from edge_runtime.hostinfo import host_info

OUTPUTS = "outputs.npz"
REPORT = "check.json"


def output_key(entry: ArtifactEntry, backend: str) -> str:
    """The ``outputs.npz`` key of an artifact run by ``backend`` (``/`` would make a folder in the zip)."""
    return f"{entry.variant}__{entry.format}__{backend}"


def _policy(task: tasks.TaskSpec, infer: Any) -> tasks.Policy:
    """A flat-I/O model as a policy of the task's observation and output shapes (for tasks.evaluate)."""
    shape = tasks.actions.expected_output_shape(task)

    def policy(obs: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(obs, dtype=np.float32).reshape(len(obs), -1)
        return np.asarray(infer(flat)).reshape(len(obs), *shape)

    return policy


def check_entry(
    manifest: Manifest, entry: ArtifactEntry, backend: str, obs: np.ndarray, episodes: int | None
) -> tuple[dict[str, Any], np.ndarray | None]:
    """(the record of ``entry`` run by ``backend`` here, its outputs on ``obs`` or None if it did not run)."""
    record: dict[str, Any] = {"variant": entry.variant, "format": entry.format, "backend": backend}
    record["precision"] = entry.precision
    record["manifest_return"] = entry.eval.get("mean_return")
    try:
        settings = load_profile(manifest.target).settings_for(backend)
        model = get_backend(backend).from_manifest(manifest, entry, settings)
    except (BackendUnavailable, ImportError) as err:
        return {**record, "status": "unavailable", "reason": str(err)}, None
    except (ManifestError, ValueError, RuntimeError, OSError) as err:
        return {**record, "status": "error", "reason": f"{type(err).__name__}: {err}"}, None
    task = manifest.task_spec()
    with model:
        start = time.perf_counter()
        outputs = np.asarray(model.infer(obs), dtype=np.float32)
        record["batch_ms"] = round((time.perf_counter() - start) * 1e3, 3)
        count = episodes if task.evaluation.kind != "exact" else None
        evaluation = tasks.evaluate(task, _policy(task, model.infer), episodes=count)
    record["mean_return"] = evaluation.mean_return
    if record["manifest_return"] is not None:
        record["return_delta"] = evaluation.mean_return - record["manifest_return"]
    record["status"] = "ok"
    return record, outputs


def run_check(manifest_path: Path, obs_path: Path, out: Path, episodes: int | None = None) -> dict[str, Any]:
    """Check every ``ok`` artifact on each of its backends; write ``out/outputs.npz``, ``out/check.json``."""
    manifest = load_manifest(manifest_path)
    with np.load(obs_path, allow_pickle=False) as data:
        obs = np.ascontiguousarray(data["obs"], dtype=np.float32)
    records, outputs = [], {}
    for entry in manifest.artifacts:
        if entry.status != "ok":
            continue
        for backend in entry.backends:
            record, result = check_entry(manifest, entry, backend, obs, episodes)
            records.append(record)
            if result is not None:
                outputs[output_key(entry, backend)] = result
            print(
                f"deploy.check: {entry.name} on {backend}: {record['status']}"
                + (f", return {record['mean_return']:.6g}" if "mean_return" in record else ""),
                file=sys.stderr,
            )
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / OUTPUTS, **outputs)
    report = {
        "manifest": str(manifest_path),
        "target": manifest.target,
        "task": manifest.task_spec().name,
        "observations": len(obs),
        "episodes": episodes,
        "host": host_info("deploy.check", ("numpy", "onnxruntime", "openvino")),
        "artifacts": records,
    }
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.check",
        description="Run every artifact of an export on the given observations and in its task here.",
        epilog="Example: python -m deploy.check artifacts/arm64/manifest.json --obs ref.npz --out check/",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("manifest", type=Path, help="the export's manifest.json")
    parser.add_argument("--obs", type=Path, required=True, help="an .npz with a float32 array 'obs'")
    parser.add_argument("--out", type=Path, required=True, help="folder for outputs.npz and check.json")
    parser.add_argument(
        "--episodes", type=int, default=None, help="seeded episodes per artifact (not the gridworld's)"
    )
    args = parser.parse_args(argv)
    try:
        report = run_check(args.manifest, args.obs, args.out, args.episodes)
    except (ManifestError, OSError, KeyError, ValueError) as err:
        print(f"python -m deploy.check: error: {err}", file=sys.stderr)
        return 2
    bad = [r for r in report["artifacts"] if r["status"] == "error"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
