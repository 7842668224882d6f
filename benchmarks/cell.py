"""One cell of the benchmark matrix in its own process: ``python -m benchmarks.cell SPEC.json``.

Why a process per cell: a runtime that segfaults, hangs or leaks takes only its own cell down (the driver
turns the exit status or the timeout into ``failed`` rows); load time, first inference and peak RSS
(VmHWM) are those of a fresh interpreter holding one model, as on a device; and a model cell imports what
``edge_runtime`` imports and nothing more — never torch (docs/contracts.md#layout-and-dependency-rules),
unless the backend is ``torch``.

The spec (written by :mod:`benchmarks.matrix`) is JSON: ``kind`` (``model`` or ``host``), ``scenarios``,
``config`` (the run's :class:`~benchmarks.matrix.BenchConfig` as a dict), ``result`` (where to write), and
for a model cell ``manifest``, ``entry`` (artifact name), ``backend``, ``observations`` (.npy) and
``sessions_dir``. The result is JSON too, rewritten atomically after every scenario so a crash or a
timeout keeps what finished: ``status``/``reason`` of the cell (a load failure, a missing runtime),
``cell`` (load_ms, first_infer_ms, rss_mb, peak_rss_mb, import_ms), ``scenarios`` (name → row fields with
their own ``status``/``reason``), ``seconds`` (name → wall time) and ``heavy_modules`` (which of torch,
gymnasium, … the process loaded).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tasks
from backends.base import Backend, BackendUnavailable
from backends.manifest import MEASURABLE, ManifestError
from backends.profiles import ProfileError
from backends.registry import get_backend
from benchmarks.latency import quantile_us, summarize_ns, time_calls
from benchmarks.rows import return_fields
from common.cli import ExampleFormatter
from common.fileio import atomic_write_text
from edge_runtime.cli import load_backend, resolve_plan
from edge_runtime.config import SessionConfig
from edge_runtime.session import Session, SessionPlan, peak_rss_mb, rss_reader
from gridworld.layouts import LayoutError
from gridworld.oracle import evaluate_policy

HEAVY_MODULES = ("torch", "gymnasium", "pandas", "matplotlib", "onnx")
"""Reported per cell: a model cell on a torch-free backend must load none of them."""
BATCH = 100
"""Observations per pass of the batch100 scenario (the name of the scenario and of its column)."""
#: The loop scenarios measure rather than enforce: a frame over the profile's budget (150 ms; one stall of
#: a shared machine) would stop the session half-way, so the watchdog is set to an hour and the stall shows
#: in lat_max_us instead.
NO_WATCHDOG_MS = 3_600_000.0
_MB = 1024.0 * 1024.0


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


class Recorder:
    """The cell's result file: what has been measured so far, saved after every step."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {"status": "ok", "reason": "", "cell": {}, "scenarios": {}, "seconds": {}}

    def save(self) -> None:
        cell = self.data["cell"]
        cell["peak_rss_mb"] = round(peak_rss_mb(rss_reader()() / _MB), 2)
        loaded = {name.partition(".")[0] for name in sys.modules}
        self.data["heavy_modules"] = sorted(loaded & set(HEAVY_MODULES))
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")

    def stop(self, status: str, reason: str) -> None:
        """The whole cell ends here (nothing loadable, runtime missing): every scenario gets this status."""
        self.data.update(status=status, reason=reason)
        self.save()

    def run(self, scenario: str, measure: Callable[[], dict[str, Any]], skip_missing: bool = False) -> None:
        """Measure one scenario into a row; an error becomes a ``failed`` row and the next scenario runs.

        ``skip_missing``: a missing optional package (torch for the trainer row) is ``skipped``, not failed.
        """
        t0 = time.perf_counter()
        try:
            row = {"status": "ok", "reason": "", **measure()}
        except ModuleNotFoundError as err:
            status = "skipped" if skip_missing else "failed"
            row = {"status": status, "reason": f"{err.name} is not installed ({err})"}
        # The cell's one broad boundary, like the session loop's: whatever a runtime raises mid-scenario
        # becomes that row's reason (with the traceback on stderr), and the other scenarios still run.
        except Exception as err:
            traceback.print_exc()
            row = {"status": "failed", "reason": _reason(err)}
        self.data["scenarios"][scenario] = row
        self.data["seconds"][scenario] = round(time.perf_counter() - t0, 3)
        self.save()


# ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelCell:
    """A loaded artifact and what the scenarios measure it on."""

    config: dict[str, Any]
    session_config: SessionConfig
    plan: SessionPlan
    backend: Backend
    observations: np.ndarray
    """Every state's observation, flat float32 ``[S, obs_dim]`` (the run's fixed observation file)."""
    _evaluation: dict[str, float] | None = dataclasses.field(default=None, init=False, repr=False)

    @property
    def one_by_one(self) -> list[np.ndarray]:
        """The observations as single ``[obs_dim]`` rows, the per-frame input."""
        return list(self.observations)

    def evaluation(self) -> dict[str, Any]:
        """The task's reward figure on this runtime: on the gridworld the exact evaluation over every start
        state through ``infer_one`` (the loop's per-frame call); on another task the seeded episodes of its
        evaluation list through the batched ``infer`` (mean return with its 95% CI)."""
        if self._evaluation is None:
            if self.plan.model is None:
                ev = tasks.evaluate(self.plan.task, self.backend.infer)
                rounded = {k: round(v, 6) if isinstance(v, float) else v for k, v in ev.as_dict().items()}
                self._evaluation = return_fields({**rounded, "ci95": [round(v, 6) for v in ev.ci95]})
                return self._evaluation
            infer_one = self.backend.infer_one

            def policy(obs: np.ndarray) -> np.ndarray:
                flat = np.ascontiguousarray(obs.reshape(len(obs), -1), dtype=np.float32)
                return np.fromiter((int(infer_one(o).argmax()) for o in flat), np.int64, len(flat))

            ev = evaluate_policy(self.plan.model, policy)
            self._evaluation = return_fields(
                {
                    "mean_return": round(ev.mean_return, 6),
                    "success_rate": round(ev.success_rate, 6),
                    "oracle_ratio": round(ev.oracle_ratio, 6),
                }
            )
        return self._evaluation


def measure_latency(cell: ModelCell) -> dict[str, Any]:
    """Single stream, batch 1: ``infer_one`` on the fixed observations in turn."""
    c = cell.config
    ns = time_calls(
        cell.backend.infer_one,
        cell.one_by_one,
        min_iters=c["min_iters"],
        min_seconds=c["min_seconds"],
        warmup_ms=c["warmup_ms"],
        max_seconds=c["max_seconds"],
    )
    return summarize_ns(ns)


def measure_batch100(cell: ModelCell) -> dict[str, Any]:
    """``batch_passes`` forward passes of 100 consecutive observations (wrapping round the file)."""
    c = cell.config
    obs = cell.observations
    n = len(obs)
    distinct = n // math.gcd(n, BATCH)  # pass i starts at row i*100 mod n: the batches repeat after this
    batches = [obs[(i * BATCH + np.arange(BATCH)) % n] for i in range(min(distinct, c["batch_passes"]))]
    out = cell.backend.infer(batches[0])
    if out.shape != (BATCH, cell.backend.n_actions):
        raise ValueError(f"a batch of {BATCH} gave output {out.shape}, expected ({BATCH}, n_actions)")
    ns = time_calls(
        cell.backend.infer,
        batches,
        min_iters=c["batch_passes"],
        min_seconds=0.0,
        warmup_ms=c["warmup_ms"],
        max_seconds=c["max_seconds"],
    )
    median_s = float(np.median(ns)) / 1e9
    return {
        **summarize_ns(ns),
        "batch100_ms": round(median_s * 1e3, 4),
        "value": round(BATCH / median_s, 1),
        "unit": "obs/s",
    }


def _loop(cell: ModelCell, fps: float, episodes: int, max_frames: int) -> dict[str, Any]:
    """One edge_runtime session on the loaded backend; row fields from its per-frame arrays."""
    cfg = dataclasses.replace(cell.session_config, fps=fps, episodes=episodes, max_frames=max_frames)
    session = Session(cfg, dataclasses.replace(cell.plan, fps=fps), cell.backend)
    result = session.run()
    row = summarize_ns(session.histogram("latency"))
    row["loop_fps"] = result.summary["fps"]["mean"]
    if fps > 0:
        row["deadline_misses"] = result.summary["deadline_misses"]
        row["lateness_p99_us"] = quantile_us(session.histogram("lateness"), 99)
    row.update(cell.evaluation())
    if result.stop_reason != "completed":
        row.update(status="failed", reason=f"session {result.number} stopped: {result.stop_reason}")
    return row


def measure_loop_uncapped(cell: ModelCell) -> dict[str, Any]:
    c = cell.config
    return _loop(cell, 0.0, c["loop_episodes"], c["loop_frames"])


def measure_loop_paced(cell: ModelCell) -> dict[str, Any]:
    """At ``--paced-fps`` (default: the target profile's) for ``--paced-seconds`` worth of frames."""
    c = cell.config
    fps = float(c["paced_fps"] or cell.plan.fps)
    return _loop(cell, fps, 10**9, max(1, math.ceil(c["paced_seconds"] * fps)))


MODEL_MEASURES: dict[str, Callable[[ModelCell], dict[str, Any]]] = {
    "latency": measure_latency,
    "batch100": measure_batch100,
    "loop_uncapped": measure_loop_uncapped,
    "loop_paced": measure_loop_paced,
}


def _ms_since(t0: int) -> float:
    return round((time.perf_counter_ns() - t0) / 1e6, 3)


def open_model_cell(spec: dict[str, Any], rec: Recorder) -> ModelCell | None:
    """Resolve, import, verify and load the artifact; None (with the cell's status saved) if it cannot."""
    cfg = SessionConfig(
        manifest=Path(spec["manifest"]),
        variant=spec["variant"],
        backend=spec["backend"],
        out=Path(spec["sessions_dir"]),
        quiet=True,
        latency_budget_ms=NO_WATCHDOG_MS,
    )
    try:
        plan = resolve_plan(cfg)
        entry = next((a for a in plan.manifest.artifacts if a.name == spec["entry"]), plan.entry)
    except (ManifestError, ProfileError, LayoutError, ValueError) as err:
        rec.stop("failed", str(err))
        return None
    if entry.status == "pending-on-device":
        rec.stop("skipped", f"artifact pending-on-device ({entry.reason})")
        return None
    plan = dataclasses.replace(plan, entry=entry)
    t0 = time.perf_counter_ns()
    try:
        get_backend(cfg.backend).check_available()  # imports the runtime: kept out of load_ms
        import_ms = _ms_since(t0)
        t0 = time.perf_counter_ns()
        # Gate-failed artifacts are measured too (their verdict stays in the artifact_status column).
        backend = load_backend(cfg, plan, MEASURABLE)
        load_ms = _ms_since(t0)
    except BackendUnavailable as err:
        rec.stop("skipped", str(err))
        return None
    except (ManifestError, ValueError, OSError, RuntimeError) as err:
        rec.stop("failed", f"cannot load {entry.name} on {cfg.backend}: {err}")
        return None
    rss_mb = round(rss_reader()() / _MB, 2)
    rec.data["cell"].update(import_ms=import_ms, load_ms=load_ms, rss_mb=rss_mb)
    observations = np.load(spec["observations"], allow_pickle=False)
    t0 = time.perf_counter_ns()
    try:
        backend.infer_one(observations[0])
    except Exception as err:  # a runtime that loads but cannot run: the cell's boundary, as in Recorder.run
        traceback.print_exc()
        rec.stop("failed", f"first inference failed: {_reason(err)}")
        return None
    rec.data["cell"]["first_infer_ms"] = _ms_since(t0)
    rec.save()
    return ModelCell(spec["config"], cfg, plan, backend, observations)


def run_model_cell(spec: dict[str, Any], rec: Recorder) -> None:
    cell = open_model_cell(spec, rec)
    if cell is None:
        return
    try:
        for scenario in spec["scenarios"]:
            rec.run(scenario, lambda s=scenario: MODEL_MEASURES[s](cell))
    finally:
        cell.backend.close()


# ------------------------------------------------------------------------------------------------------
def _task(spec: dict[str, Any]) -> Any:
    """The manifest's task, or None for the gridworld (whose env the env rows time by default)."""
    from backends.manifest import load_manifest
    from tasks.envs import gridworld_kwargs

    task = load_manifest(spec["manifest"]).task_spec()
    return None if gridworld_kwargs(task) is not None else task


def measure_env_single(spec: dict[str, Any]) -> dict[str, Any]:
    """Steps/s of one env: the gridworld's numpy core, or the manifest's Gymnasium task (``env.step``
    with random actions, resets untimed)."""
    from benchmarks.env_speed import measure_rate, single_env_chunk

    config, task = spec["config"], _task(spec)
    if task is not None:
        from benchmarks.observations import bare_env_step_us

        steps = max(1000, int(config["env_seconds"] * 20_000))
        mean_us = bare_env_step_us(task, steps)["mean"]
        return {"value": round(1e6 / mean_us, 1), "unit": "steps/s", "iterations": steps}
    repeats = config["env_repeats"]
    r = measure_rate("env_single", "steps/s", single_env_chunk(), config["env_seconds"] / repeats, repeats)
    return {"value": round(r.median, 1), "unit": r.unit}


def measure_env_vector(spec: dict[str, Any]) -> dict[str, Any]:
    """Env-steps/s of the gridworld's batched vector env (its own numpy program; no task has one)."""
    from benchmarks.env_speed import measure_rate, vector_env_chunk

    config = spec["config"]
    if (task := _task(spec)) is not None:
        return {
            "status": "skipped",
            "reason": f"env_vector times the gridworld's batched env, not {task.env.id}",
        }

    repeats, n = config["env_repeats"], config["env_vector_envs"]
    chunk = vector_env_chunk(n)
    r = measure_rate(f"vector x{n}", "env-steps/s", chunk, config["env_seconds"] / repeats, repeats)
    return {"value": round(r.median, 1), "unit": r.unit}


def measure_trainer(spec: dict[str, Any]) -> dict[str, Any]:
    """Gradient steps/s of the offline trainer's inner loop (CQL, batch 256, 256×256; needs torch)."""
    from benchmarks.train_speed import default_dataset, measure  # imports torch

    config = spec["config"]
    steps, repeats = config["trainer_steps"], config["trainer_repeats"]
    r = measure(
        default_dataset(),
        steps=steps,
        repeats=repeats,
        warmup=config["trainer_warmup"],
        threads=config["trainer_threads"],
    )
    return {"value": round(r["median_steps_per_s"], 1), "unit": "steps/s", "iterations": steps * repeats}


HOST_MEASURES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "env_single": measure_env_single,
    "env_vector": measure_env_vector,
    "trainer": measure_trainer,
}


def run_host_cell(spec: dict[str, Any], rec: Recorder) -> None:
    for scenario in spec["scenarios"]:
        rec.run(scenario, lambda s=scenario: HOST_MEASURES[s](spec), skip_missing=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cell",
        description="Run one cell of the benchmark matrix (started by python -m benchmarks, one per cell).",
        epilog="Example: python -m benchmarks.cell float__onnxruntime.spec.json  "
        "# a spec written by python -m benchmarks",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("spec", type=Path, help="the cell's JSON spec, written by benchmarks.matrix")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    rec = Recorder(spec["result"])
    rec.save()
    (run_model_cell if spec["kind"] == "model" else run_host_cell)(spec, rec)
    rec.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
