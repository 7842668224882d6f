"""The benchmark matrix: every (artifact × backend) cell of a manifest × scenarios, one process per cell.

Why it is built this way:
- Every cell runs in a fresh ``python -m benchmarks.cell`` process with a timeout (:func:`measure_cell`):
  a crash, a hang or an exception in one cell becomes ``failed`` rows with the reason, and the matrix
  goes on. Running cells side by side on one machine would make them measure each other, so the local
  executor runs them one after another, and the Ray executor (``benchmarks.fleet``) lets each device run
  one cell at a time.
- An executor (``--executor``, :data:`EXECUTORS`) only decides where :func:`measure_cell` is called;
  the host, arch and cpu of a row are measured by the process that calls it, i.e. on the device.
- A missing runtime (``BackendUnavailable``) or a TensorRT engine still ``pending-on-device`` is a
  ``skipped`` row with the reason; an artifact that failed its export gate is still measured, so the
  reports can show what the gate rejected (the ``artifact_status`` column keeps the verdict).
- Nothing is written until the end, and then as a new CSV + JSON pair (``benchmarks.rows``): bad input or
  an interrupted run leaves no half-written result behind.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from backends.manifest import ArtifactEntry, Manifest, ManifestError, file_sha256, load_manifest
from backends.profiles import ProfileError, load_profile
from benchmarks.observations import random_rollout_observations
from benchmarks.rows import HOST_CELLS, MODEL_SCENARIOS, NO_MODEL, SCENARIOS, return_fields, write_pair
from edge_runtime.cli import env_settings
from edge_runtime.hostinfo import host_info
from gridworld.core import build_model
from gridworld.layouts import LayoutError
from tasks import TaskUnavailable

REPO = Path(__file__).resolve().parent.parent
#: Distributions whose versions go into the run's JSON (read from metadata: nothing is imported).
VERSIONED = (
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "tensorrt",
    "torch",
    "gymnasium",
    "psutil",
)
#: Model cells run numpy's BLAS on one thread, like the onnxruntime/OpenVINO profiles (intra-op threads 1):
#: a second BLAS thread spinning against other load turned 0.2 ms batch passes into 5 ms ones here.
#: A variable the caller has set wins.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Where the cells run (``--executor``): name → ``"module:function"``, imported on first use, so Ray is
#: imported only by a run that asks for it. Each has the signature of :func:`run_local`.
EXECUTORS = {"local": "benchmarks.matrix:run_local", "ray": "benchmarks.fleet:run_ray"}


class BenchError(ValueError):
    """Input the matrix cannot run on (manifest, profile, filters); the message says what to fix."""


@dataclass
class BenchConfig:
    """How one run of the benchmark matrix is measured; saved as ``args`` in the run's JSON."""

    manifest: Path
    """The export manifest, e.g. artifacts/x86/manifest.json (the target is read from it)."""
    out: Path = Path("results/benchmark")
    """Folder for the new bench_<target>_<host>_<UTC time>.csv/.json pair (an existing file is never
    replaced)."""
    variants: tuple[str, ...] = field(default=(), metadata={"metavar": "VARIANT,..."})
    """Only these variants, comma-separated (default: every variant in the manifest)."""
    backends: tuple[str, ...] = field(default=(), metadata={"metavar": "BACKEND,..."})
    """Only these backends, comma-separated (default: every backend an artifact lists)."""
    cells: tuple[str, ...] = field(default=(), metadata={"metavar": "VARIANT:BACKEND,..."})
    """Only these cells, as VARIANT:BACKEND,… (e.g. float:onnxruntime,fp16:openvino). Filters combine: a
    cell runs when it passes every filter given."""
    scenarios: tuple[str, ...] = field(default=(), metadata={"metavar": "SCENARIO,..."})
    """Only these scenarios, comma-separated, from: latency, batch100, loop_uncapped, loop_paced (model
    cells) and env_single, env_vector, trainer (host rows). Default: all."""
    min_iters: int = 10_000
    """latency: at least this many timed infer_one calls (batch 1) ..."""
    min_seconds: float = 2.0
    """latency: ... and at least this many seconds of them."""
    max_seconds: float = 30.0
    """latency, batch100: stop timing after this many seconds even if --min-iters is not reached (a slow
    backend then reports fewer calls; p99 is left empty below 662 calls, p99.9 below 6,643)."""
    warmup_ms: float = 200.0
    """Untimed calls for this long before each timed scenario (latency, batch100)."""
    batch_passes: int = 500
    """batch100: timed forward passes of 100 observations each (batch100_ms is the median pass)."""
    loop_episodes: int = 100
    """loop_uncapped: episodes of the uncapped (fps 0) edge_runtime session ..."""
    loop_frames: int = 20_000
    """loop_uncapped: ... or this many frames, whichever comes first."""
    paced_seconds: float = 2.0
    """loop_paced: run the paced session for this long (frames = seconds × fps)."""
    paced_fps: float | None = None
    """loop_paced: frame rate (default: the target profile's fps, 10 for the shipped ones)."""
    cell_timeout: float = 120.0
    """Seconds one cell's process may take; past it the process is killed and its unfinished scenarios
    are failed rows."""
    env: bool = True
    """Measure the env_single and env_vector rows (gridworld steps/s; --no-env skips them)."""
    trainer: bool = True
    """Measure the trainer row (offline CQL gradient steps/s; needs torch; --no-trainer skips it)."""
    env_seconds: float = 1.0
    """env_single, env_vector: timed seconds each, split over --env-repeats (the median is reported)."""
    env_repeats: int = 3
    """env_single, env_vector: timed repeats."""
    env_vector_envs: int = 4096
    """env_vector: sub-environments of the vector env."""
    trainer_steps: int = 50
    """trainer: gradient steps per timed repeat (batch 256, 256×256 MLP)."""
    trainer_repeats: int = 3
    """trainer: timed repeats (the median is reported)."""
    trainer_warmup: int = 10
    """trainer: untimed gradient steps first."""
    trainer_threads: int = 2
    """trainer: torch intra-op threads (2, as `make train` uses; on a machine whose cores are busy with other
    work, 2 threads can be 30× slower than 1)."""
    sessions_dir: Path | None = None
    """Keep the loop scenarios' session_<N>.csv/.json here (e.g. results/sessions); default: a temporary
    folder, deleted at the end. With --executor ray: on each node, relative to its checkout."""
    progress: bool = True
    """Progress bar over the cells (only on a terminal) or one line per cell; --no-progress for neither."""
    executor: str = field(default="local", metadata={"choices": tuple(EXECUTORS)})
    """Where cells run: local = one after another on this machine; ray = as tasks on a Ray cluster, each
    on a node that offers the resource target_<manifest target> (one cell per node at a time; needs the
    fleet extra and the same checkout and artifacts on every node, see docs/benchmarks.md, "Fleet")."""
    address: str = "auto"
    """--executor ray: the cluster to join (auto = the one `ray start` runs on this machine, or
    $RAY_ADDRESS; else HOST:6379 of the head node)."""
    ray_wait_s: float = 30.0
    """--executor ray: how long a target may have no node in the cluster (at the start, or when its nodes
    leave) before its remaining cells are skipped rows instead of waiting for ever."""

    def __post_init__(self) -> None:
        """Refuse settings that cannot produce a measurement, naming the flag."""
        self.manifest, self.out = Path(self.manifest), Path(self.out)
        for name, (ok, rule) in _RANGES.items():
            if not ok(getattr(self, name)):
                raise ValueError(f"--{_flag(name)} must be {rule}, got {getattr(self, name)}")
        if self.paced_fps is not None and not self.paced_fps > 0:
            raise ValueError(
                f"--paced-fps must be > 0 (loop_uncapped is the fps-0 run), got {self.paced_fps}"
            )
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(
                f"unknown scenario(s) {', '.join(unknown)} in --scenarios; use {', '.join(SCENARIOS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


_AT_LEAST_1 = (lambda v: v >= 1, "≥ 1")
_NOT_NEGATIVE = (lambda v: v >= 0, "≥ 0")
_POSITIVE = (lambda v: v > 0, "> 0")
#: The range of every numeric setting that has one.
_RANGES = {
    **dict.fromkeys(("min_iters", "batch_passes", "loop_episodes", "loop_frames"), _AT_LEAST_1),
    **dict.fromkeys(("env_repeats", "env_vector_envs", "trainer_steps", "trainer_repeats"), _AT_LEAST_1),
    "trainer_threads": _AT_LEAST_1,
    **dict.fromkeys(("min_seconds", "warmup_ms", "trainer_warmup", "ray_wait_s"), _NOT_NEGATIVE),
    **dict.fromkeys(("max_seconds", "paced_seconds", "cell_timeout", "env_seconds"), _POSITIVE),
}


def _flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass
class Cell:
    """One subprocess of the run: a (variant, backend) pair of the manifest, or a host-row group."""

    name: str
    kind: str
    """``model`` or ``host``."""
    scenarios: tuple[str, ...]
    entry: ArtifactEntry | None = None
    backend: str = NO_MODEL

    @property
    def variant(self) -> str:
        return self.entry.variant if self.entry is not None else NO_MODEL


@dataclass
class Outcome:
    """What a cell produced: the cell process's result (possibly partial) or why there is none."""

    status: str
    reason: str
    seconds: float
    result: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------
def _check_filter(given: tuple[str, ...], known: list[str], what: str, flag: str, manifest: Path) -> None:
    unknown = [v for v in given if v not in known]
    if unknown:
        raise BenchError(
            f"unknown {what} {', '.join(map(repr, unknown))} in {flag}; choose from what {manifest} has: "
            + ", ".join(known)
        )


def plan_cells(config: BenchConfig, manifest: Manifest) -> list[Cell]:
    """The cells to run, in manifest order, then the host rows; a filter naming nothing known is refused."""
    pairs = [(entry, backend) for entry in manifest.artifacts for backend in entry.backends]
    variants = list(dict.fromkeys(e.variant for e, _ in pairs))
    backends = list(dict.fromkeys(b for _, b in pairs))
    names = [f"{e.variant}:{b}" for e, b in pairs]
    _check_filter(config.variants, variants, "variant(s)", "--variants", config.manifest)
    _check_filter(config.backends, backends, "backend(s)", "--backends", config.manifest)
    _check_filter(config.cells, names, "cell(s)", "--cells (VARIANT:BACKEND)", config.manifest)
    wanted = set(config.scenarios or SCENARIOS)
    model_scenarios = tuple(s for s in MODEL_SCENARIOS if s in wanted)
    cells = []
    if model_scenarios:
        for (entry, backend), name in zip(pairs, names, strict=True):
            if (
                (not config.variants or entry.variant in config.variants)
                and (not config.backends or backend in config.backends)
                and (not config.cells or name in config.cells)
            ):
                cells.append(Cell(name, "model", model_scenarios, entry, backend))
        if not cells:
            raise BenchError(
                "no cell passes --variants/--backends/--cells together; the manifest's cells are: "
                + ", ".join(names)
            )
    enabled = {"env": config.env, "trainer": config.trainer}
    for name, scenarios in HOST_CELLS.items():
        chosen = tuple(s for s in scenarios if s in wanted)
        if enabled[name] and chosen:
            cells.append(Cell(name, "host", chosen))
    if not cells:
        raise BenchError(
            "nothing to run: --scenarios selects only host rows and --no-env/--no-trainer drop them"
        )
    return cells


#: Observations the latency scenarios cycle through on a Gymnasium task: visited states of seeded
#: random-action episodes (the gridworld uses every state instead).
TASK_OBSERVATIONS = 1000


def observation_file(manifest: Manifest, path: Path) -> Path:
    """Observations the latency scenarios feed, flat float32, deterministic: every state of the gridworld
    (from its tables), or on another task :data:`TASK_OBSERVATIONS` states of seeded random-action
    episodes."""
    settings = env_settings(manifest)
    if settings is not None:
        model = build_model(
            settings["layout"], settings["obs_mode"], settings["layout_seed"], settings["max_steps"]
        )
        obs = model.observations.reshape(model.n_states, -1)
    else:
        obs = random_rollout_observations(manifest.task_spec(), TASK_OBSERVATIONS)
    np.save(path, np.ascontiguousarray(obs, dtype=np.float32), allow_pickle=False)
    return path


# ------------------------------------------------------------------------------------------------------
def _exit_reason(code: int, stderr: str) -> str:
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return f"cell process {how}" + (f": {last[:300]}" if last else "")


def write_spec(cell: Cell, config: BenchConfig, work: Path, common: dict[str, Any]) -> tuple[Path, Path]:
    """Write the cell's JSON spec (see ``benchmarks.cell``) into ``work``; return it and its result path."""
    stem = work / cell.name.replace(":", "__").replace("/", "_")
    spec = {
        "kind": cell.kind,
        "scenarios": list(cell.scenarios),
        "config": config.to_dict(),
        "result": f"{stem}.result.json",
        **common,
    }
    if cell.entry is not None:
        spec.update(entry=cell.entry.name, variant=cell.entry.variant, backend=cell.backend)
    spec_path = Path(f"{stem}.spec.json")
    spec_path.write_text(json.dumps(spec, indent=1))
    return spec_path, Path(spec["result"])


def run_cell(cell: Cell, config: BenchConfig, work: Path, common: dict[str, Any]) -> Outcome:
    """Run one cell in its own process (or decide without one that it cannot run)."""
    entry = cell.entry
    if entry is not None and entry.status in ("pending-on-device", "skipped"):
        return Outcome("skipped", f"artifact {entry.status} ({entry.reason})", 0.0)
    if entry is not None and entry.status == "failed" and entry.sha256 is None:
        return Outcome("failed", f"export failed: {entry.reason}", 0.0)
    spec_path, result_path = write_spec(cell, config, work, common)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.cell", str(spec_path)],
            cwd=REPO,
            env={**SINGLE_THREAD_ENV, **os.environ} if cell.kind == "model" else None,
            capture_output=True,
            text=True,
            timeout=config.cell_timeout,
        )
        crash = "" if proc.returncode == 0 else _exit_reason(proc.returncode, proc.stderr)
    except subprocess.TimeoutExpired:
        crash = f"cell timed out after {config.cell_timeout:g} s (--cell-timeout)"
    seconds = round(time.perf_counter() - t0, 2)
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if crash:
        return Outcome("failed", crash, seconds, result)
    if not result:
        return Outcome("failed", "the cell process wrote no result", seconds)
    return Outcome(result["status"], result["reason"], seconds, result)


def _entry_fields(entry: ArtifactEntry | None, manifest: Manifest) -> dict[str, Any]:
    if entry is None:
        return dict.fromkeys(("variant", "backend", "format", "precision"), NO_MODEL)
    size = entry.size_bytes
    path = manifest.artifact_path(entry)
    if size is None and path.is_file():
        size = path.stat().st_size
    return {
        "variant": entry.variant,
        "format": entry.format,
        "precision": entry.precision,
        "artifact_status": entry.status,
        "size_bytes": size,
        "params": entry.params,
        "action_agreement": entry.parity.get("action_agreement"),
        "action_error": entry.parity.get("mean_action_error"),
    }


def cell_rows(cell: Cell, outcome: Outcome, manifest: Manifest, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario of the cell: measured, or failed/skipped with the reason."""
    fields = {**base, **_entry_fields(cell.entry, manifest), "backend": cell.backend}
    fields.update(outcome.result.get("cell", {}))
    fields.pop("import_ms", None)
    measured = outcome.result.get("scenarios", {})
    rows = []
    for scenario in cell.scenarios:
        row = {**fields, "scenario": scenario}
        if cell.entry is not None and scenario in ("latency", "batch100"):
            row.update(return_fields(cell.entry.eval))
        if scenario in measured:
            row.update(measured[scenario])
        elif outcome.status != "ok":
            row.update(status=outcome.status, reason=outcome.reason)
        else:
            row.update(status="failed", reason="the cell process did not report this scenario")
        rows.append(row)
    return rows


def _cell_summary(cell: Cell, outcome: Outcome, rows: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [r["status"] for r in rows]
    if "failed" in statuses:
        status = "failed"
    elif all(s == "skipped" for s in statuses):
        status = "skipped"
    else:
        status = "ok"
    reason = outcome.reason or next((r["reason"] for r in rows if r["status"] != "ok" and r["reason"]), "")
    return {
        "name": cell.name,
        "variant": cell.variant,
        "backend": cell.backend,
        "scenarios": list(cell.scenarios),
        "status": status,
        "reason": reason,
        "seconds": outcome.seconds,
        "scenario_seconds": outcome.result.get("seconds", {}),
        "import_ms": outcome.result.get("cell", {}).get("import_ms"),
        "heavy_modules": outcome.result.get("heavy_modules"),
    }


def describe_host() -> dict[str, Any]:
    """The run's host for the JSON (hostname, cpu, arch, cores, os, python, versions); imports no runtime."""
    info = host_info("", extra_packages=())
    versions = {}
    for dist in VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = info["cpu_count"]
    return {
        "hostname": info["hostname"],
        "cpu": info["cpu"],
        "arch": info["arch"],
        "emulated": info["emulated"],
        "cores": info["cpu_count"],
        "usable_cores": usable,
        "os": info["os"],
        "python": info["python"],
        "versions": versions,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


@dataclass
class RunResult:
    csv_path: Path
    json_path: Path
    rows: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    seconds: float


@dataclass
class RunContext:
    """What every cell of one run shares; a Ray task gets a copy and swaps in its own ``work``/``common``."""

    config: BenchConfig
    manifest: Manifest
    work: Path
    """Scratch folder of the machine that runs the cells (specs, results, observations)."""
    common: dict[str, Any]
    """Spec fields shared by the cells: ``manifest``, ``observations``, ``sessions_dir`` (paths there)."""
    base: dict[str, Any]
    """Row fields of the run: run_id, timestamp, target."""


@dataclass
class CellReport:
    """What one cell gave: its rows, its summary for the JSON, and the host that measured it."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    host: dict[str, Any] | None = None
    """:func:`describe_host` of the machine the cell ran on; None when it ran nowhere."""


#: ``executor(cells, context, done) -> reports in cell order``; ``done(cell, report)`` as each finishes.
Executor = Callable[[list[Cell], RunContext, Callable[[Cell, CellReport], None]], list[CellReport]]


def host_fields(host: dict[str, Any] | None) -> dict[str, Any]:
    """The row columns that say where a cell ran (empty for a cell that ran nowhere)."""
    host = host or {}
    emulated = host.get("emulated")
    return {
        "host": host.get("hostname", ""),
        "arch": host.get("arch", ""),
        "cpu": host.get("cpu", ""),
        "emulated": "" if emulated is None else int(bool(emulated)),
    }


def cell_report(
    cell: Cell, outcome: Outcome, ctx: RunContext, host: dict[str, Any] | None = None
) -> CellReport:
    rows = cell_rows(cell, outcome, ctx.manifest, {**ctx.base, **host_fields(host)})
    summary = {**_cell_summary(cell, outcome, rows), "host": host_fields(host)["host"]}
    return CellReport(rows, summary, host)


def measure_cell(cell: Cell, ctx: RunContext) -> CellReport:
    """Run one cell and turn its outcome into rows, on the machine that calls this: the one function every
    executor runs (the Ray task calls it on the device, which starts ``benchmarks.cell`` there)."""
    host = describe_host()
    return cell_report(cell, run_cell(cell, ctx.config, ctx.work, ctx.common), ctx, host)


def unrun_report(cell: Cell, ctx: RunContext, status: str, reason: str) -> CellReport:
    """Rows for a cell that no machine ran (no node for its target, a lost task), with the reason."""
    return cell_report(cell, Outcome(status, reason, 0.0), ctx)


def prepare_common(
    manifest: Manifest, manifest_path: Path, sessions_dir: Path | None, work: Path, root: Path
) -> dict[str, Any]:
    """Write the observation file into ``work`` and return the cells' shared spec fields, with relative
    paths taken from ``root`` (the current folder on the driver, the checkout on a Ray node)."""
    try:
        obs_path = observation_file(manifest, work / "observations.npy")
    except (LayoutError, ValueError, TaskUnavailable) as err:
        raise BenchError(f"{manifest_path}: cannot build its env ({err})") from err
    return {
        "manifest": str((root / manifest_path).resolve()),
        "observations": str(obs_path),
        "sessions_dir": str((root / (sessions_dir or work / "sessions")).resolve()),
    }


def run_local(
    cells: list[Cell], ctx: RunContext, done: Callable[[Cell, CellReport], None]
) -> list[CellReport]:
    """One cell after another on this machine."""
    reports = []
    for cell in cells:
        reports.append(measure_cell(cell, ctx))
        done(cell, reports[-1])
    return reports


def get_executor(name: str) -> Executor:
    """The executor registered as ``name`` in :data:`EXECUTORS` (its module imported now)."""
    if name not in EXECUTORS:
        raise BenchError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    module, _, function = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def _progress(config: BenchConfig, total: int) -> Any:
    from tqdm import tqdm

    show = config.progress and sys.stderr.isatty()
    return tqdm(total=total, unit="cell", desc="benchmark", disable=not show, file=sys.stderr)


def load_inputs(config: BenchConfig) -> tuple[Manifest, list[Cell]]:
    """The manifest, its target profile and the cells to run; bad input raises :class:`BenchError`."""
    try:
        manifest = load_manifest(config.manifest)
        load_profile(manifest.target)  # the cells need it for fps and backend settings: fail here, once
    except (ManifestError, ProfileError) as err:
        raise BenchError(str(err)) from err
    return manifest, plan_cells(config, manifest)


def run_matrix(config: BenchConfig) -> RunResult:
    """Run every selected cell and write the result pair; raises :class:`BenchError` before any cell."""
    manifest, cells = load_inputs(config)
    execute = get_executor(config.executor)
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    host = describe_host()
    base = {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "task": manifest.task_spec().name,
        "target": manifest.target,
    }
    with tempfile.TemporaryDirectory(prefix="nq_bench_") as tmp:
        work = Path(tmp)
        common = prepare_common(manifest, config.manifest, config.sessions_dir, work, Path.cwd())
        bar = _progress(config, len(cells))
        log = config.progress and bar.disable
        finished = 0

        def done(cell: Cell, report: CellReport) -> None:
            nonlocal finished
            finished += 1
            bar.set_postfix_str(cell.name)
            bar.update()
            if log:
                s = report.summary
                print(
                    f"[{finished}/{len(cells)}] {cell.name}: {s['status']} in {s['seconds']:.1f} s"
                    + (f" on {s['host']}" if s["host"] and s["host"] != host["hostname"] else "")
                    + (f" — {s['reason']}" if s["reason"] else ""),
                    file=sys.stderr,
                )

        try:
            reports = execute(cells, RunContext(config, manifest, work, common, base), done)
        finally:
            bar.close()
    rows = [row for report in reports for row in report.rows]
    summaries = [report.summary for report in reports]
    seconds = round(time.perf_counter() - t_start, 2)
    meta = {
        "schema": 1,
        "run_id": base["run_id"],
        "created": base["timestamp"],
        "target": manifest.target,
        "manifest": str(config.manifest),
        "manifest_sha256": file_sha256(config.manifest),
        "host": host,  # where the driver ran (and the result file's name)
        "hosts": {r.host["hostname"]: r.host for r in reports if r.host},  # where the cells ran
        "args": config.to_dict(),
        "model_cell_env": {k: os.environ.get(k, v) for k, v in SINGLE_THREAD_ENV.items()},
        "seconds": seconds,
        "cells": summaries,
    }
    csv_path, json_path = write_pair(config.out, manifest.target, host["hostname"], started, rows, meta)
    return RunResult(csv_path, json_path, rows, summaries, seconds)


def _fmt(value: Any, spec: str = ",.1f") -> str:
    return "" if value is None or value == "" else format(value, spec)


def format_summary(result: RunResult) -> str:
    """Per cell: variant, backend, latency p50/p99 (µs) and status; host rows with their figure."""
    table = [("variant", "backend", "p50 µs", "p99 µs", "status", "s")]
    by_cell = {(r["variant"], r["backend"], r["scenario"]): r for r in result.rows}
    for c in result.cells:
        if c["variant"] == NO_MODEL:
            for s in c["scenarios"]:
                r = by_cell[(NO_MODEL, NO_MODEL, s)]
                figure = f"{_fmt(r.get('value'), ',.0f')} {r.get('unit') or ''}".strip()
                table.append((s, "-", figure, "", r["status"], f"{c['seconds']:.1f}"))
            continue
        lat = by_cell.get((c["variant"], c["backend"], "latency"), {})
        table.append(
            (
                c["variant"],
                c["backend"],
                _fmt(lat.get("lat_p50_us")),
                _fmt(lat.get("lat_p99_us")),
                c["status"],
                f"{c['seconds']:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            v.rjust(w) if 2 <= i <= 3 or i == 5 else v.ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    notes = [f"  {c['name']}: {c['reason']}" for c in result.cells if c["status"] != "ok" and c["reason"]]
    return "\n".join([*lines, *(["not ok:", *notes] if notes else [])])
