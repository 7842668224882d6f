"""The compression search: the best variant under a budget, found by a multi-objective Optuna study.

A user deploying to a device asks which variant is fastest (or smallest, or lightest in memory) while
keeping the return. The profile's fixed variants answer for a handful of settings; the search tries
others: a pruning ratio, a student size, fp16 or int8 (dynamic or static, per-channel or per-tensor
weights, activation equalization on or off, how many states calibrate it) and the backend to run it on.

Each trial is one variant built by the export code (``Builder.build_variant``, the same sources and
precisions the fixed variants use), gated by the export's gate (parity and return in the task, against the
float policy), and timed by the benchmark matrix's own subprocess cell (``python -m benchmarks`` on a
one-artifact manifest, ``--executor local|ray``), so a searched figure and a fixed one are measured alike.

The study is Optuna's NSGA-II (multi-objective; a trial that fails its gate is infeasible, not dropped:
its figures still tell the sampler where the gate fails), stored in SQLite under
``results/search/<task>-<target>/``, so a second run resumes and extends it. At the end the trials are
written as ``trials.csv``, the fixed variants measured in the same run as ``fixed.csv``, the decision as
``search.json``; the trial picked by ``--pick`` (e.g. the fastest of those keeping 99 % of the float
policy's return) is copied into the export's folder and added to its manifest as variant ``searched``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.manifest import ArtifactEntry, Manifest, ManifestError, load_manifest, write_manifest
from backends.profiles import TargetProfile, load_profile
from backends.registry import get_backend
from common.fileio import atomic_write_json, atomic_write_text
from export.variants import Variant
from tasks import TaskUnavailable

OBJECTIVES: dict[str, tuple[str, str]] = {
    "return": ("maximize", "return_ratio"),
    "p99": ("minimize", "lat_p99_us"),
    "size": ("minimize", "size_bytes"),
    "rss": ("minimize", "peak_rss_mb"),
}
"""``--objectives`` name → (direction, the trial figure it is): the return as a ratio to the float policy's
mean, the p99 latency at batch 1 (µs), the artifact's size on disk, the benchmark cell's peak RSS (MB)."""

PICKS = {"fastest": "lat_p99_us", "smallest": "size_bytes", "lightest": "peak_rss_mb"}
"""``--pick`` rule → the figure minimised among the trials that pass their gate and keep the return."""

P99_MARGIN = 0.10
"""A p99 counts as better only when at least this share lower: the same artifact timed twice in one study
(NSGA-II resamples settings) gave p99s 1–57 % apart on this 2-core VM at these µs latencies."""
RSS_MARGIN_MB = 1.0
"""A peak RSS counts as better only when at least this much lower (repeat cells: within 0.3 MB)."""
SIZE_MARGIN = 0.01
"""A size counts as smaller only when at least this share smaller: the same network and precision differ
by a few bytes of ONNX metadata (its variant name)."""


SEARCHED = "searched"
"""The variant name the picked trial gets in the manifest."""

EDGE_BACKENDS = ("onnxruntime", "openvino", "numpy")
"""Backends a trial may run on: the edge runtimes. ``torch`` is the reference, not a deployment, and a
TensorRT engine is built on its device (pending here): neither can be timed as a searched variant."""

PRUNE_PCTS = tuple(range(10, 90, 10))
"""Pruning ratios tried, in percent of each layer's channels (categorical steps: each source is built once
per run and reused by every trial that asks for it)."""
STUDENT_PCTS = (2, 5, 10, 20, 40)
"""Student sizes tried, in percent of the float policy's parameters."""
CALIBRATION_SIZES = (64, 256, 1024, 4096)
"""Calibration states tried for int8 (capped at those the export has: 4,096 rollout states of a policy,
a few hundred gridworld states)."""
PRECISION_CHOICES = ("fp32", "fp16", "int8-dynamic", "int8-static")

TRIAL_CSV = (
    "number",
    "state",
    "status",
    "reason",
    "source",
    "precision",
    "per_channel",
    "equalize",
    "calibration",
    "backend",
    "format",
    "mean_return",
    "return_ratio",
    "lat_p50_us",
    "lat_p99_us",
    "size_bytes",
    "peak_rss_mb",
    "params",
    "pareto",
    "chosen",
    "seconds",
)
FIXED_CSV = (
    "variant",
    "backend",
    "format",
    "precision",
    "status",
    "mean_return",
    "return_ratio",
    "lat_p50_us",
    "lat_p99_us",
    "size_bytes",
    "peak_rss_mb",
)


class SearchError(ValueError):
    """Input the search cannot start from; the message says what to run or change."""


@dataclass
class SearchConfig:
    """How a compression search runs; saved in ``search.json``."""

    task: str = ""
    """The exported task (its folder under artifacts/, e.g. cartpole); empty or gridworld: the gridworld
    export, artifacts/<target>/."""
    target: str = "x86"
    """The target profile whose export is searched (its manifest: artifacts/[<task>/]<target>/)."""
    manifest: str = ""
    """The export's manifest.json, instead of the one --task and --target name."""
    trials: int = 40
    """Trials to run in this call (a resumed study adds them to its earlier ones; 0: none, only time the
    fixed variants again and re-decide, e.g. with another --pick)."""
    minutes: float = 15.0
    """Stop starting trials once this much wall time is spent (the fixed variants' timing included)."""
    objectives: tuple[str, ...] = field(default=("return", "p99", "size"), metadata={"metavar": "NAME,..."})
    """What the study optimises, from: return (ratio to the float policy's, maximised), p99 (latency at
    batch 1), size (on disk), rss (peak resident memory of the benchmark cell)."""
    pick: str = field(default="fastest", metadata={"choices": tuple(PICKS)})
    """Which trial becomes variant `searched`: the fastest (p99), smallest (size) or lightest (peak RSS) of
    those that pass their gate with at least --min-return-ratio of the float policy's return."""
    min_return_ratio: float = 0.99
    """The return a picked trial keeps, as a share of the float policy's mean return."""
    population: int = 10
    """NSGA-II's population: trials per generation (40 trials = 4 generations)."""
    focus: float = 0.5
    """Share of this call's trials spent on a focused round after the broad one: each tries an untried
    neighbour of a Pareto-front trial (the next pruning ratio or student size, the calibration size beside,
    an int8 option flipped, another backend); NSGA-II samples again once none is left. 0: broad only."""
    seed: int = 0
    """The sampler's seed (sources and calibration use the export's own seed)."""
    study: str = ""
    """Study name and folder under --out; default <task>-<target>."""
    out: str = "results/search"
    """Folder of the study folders (SQLite storage, trials, CSV/JSON, pareto.png)."""
    episodes: int = 0
    """Episodes of each trial's return gate; 0: the export's (so trials and fixed variants are judged on
    the same seeds)."""
    finetune_steps: int = 0
    """Fine-tuning steps of pruned networks and students; 0: the export's (each network's own budget)."""
    min_iters: int = 3000
    """Timed inference calls per latency measurement (p99 needs ≥ 662; at least 0.5 s of them anyway)."""
    repeats: int = 3
    """Times the final side-by-side timing of the fixed variants and the pick is repeated (medians kept)."""
    executor: str = field(default="local", metadata={"choices": ("local", "ray")})
    """Where the timing cells run: local, or ray (python -m benchmarks --executor ray: a node offering
    target_<target>, which must see this checkout's results/search/ at the same path)."""
    address: str = "auto"
    """--executor ray: the cluster to join."""
    add_to_manifest: bool = True
    """Copy the picked trial into the export's folder as variant `searched` (--no-add-to-manifest: only
    report it)."""
    chart: bool = True
    """Draw pareto.png into the study folder (python -m reports.search)."""
    progress: bool = True
    """A progress bar on a terminal, else one line per trial (--no-progress: neither)."""

    def __post_init__(self) -> None:
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives:
            raise ValueError(f"--objectives {','.join(self.objectives)}: choose from {', '.join(OBJECTIVES)}")
        for name, ok in (
            ("trials", self.trials >= 0),
            ("minutes", self.minutes > 0),
            ("population", self.population >= 2),
            ("focus", 0 <= self.focus <= 1),
            ("min_iters", self.min_iters >= 1),
            ("repeats", self.repeats >= 1),
            ("episodes", self.episodes >= 0),
            ("finetune_steps", self.finetune_steps >= 0),
            ("min_return_ratio", 0 <= self.min_return_ratio),
        ):
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} is out of range")

    @property
    def manifest_path(self) -> Path:
        if self.manifest:
            return Path(self.manifest)
        task = "" if self.task in ("", "gridworld") else self.task
        return Path("artifacts") / task / self.target / "manifest.json"

    @property
    def folder(self) -> Path:
        return Path(self.out) / (self.study or f"{self.task or 'gridworld'}-{self.target}")


# --------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Space:
    """What a trial may choose on this export: derived from its policy and its target profile."""

    sources: tuple[str, ...]
    """Source kinds: float, pruned (a torch module to prune), distilled."""
    equalize: bool
    """Whether int8's activation equalization is a choice (an MLP's; a CNN's int8 placement has none)."""
    backends: dict[str, tuple[str, ...]]
    """Precision (fp32, fp16, int8-dynamic, int8-static) → the edge backends of the profile that run it
    and whose format builds it (OpenVINO IR has no int8-dynamic)."""
    calibration: tuple[int, ...]


@dataclass(frozen=True)
class TrialPlan:
    """One trial's settings, as sampled."""

    source: str
    precision: str
    backend: str
    per_channel: bool | None = None
    equalize: bool | None = None
    calibration: int | None = None

    def variant(self, name: str) -> Variant:
        options = {
            "per_channel": self.per_channel,
            "equalize": self.equalize,
            "calibration": self.calibration,
        }
        return Variant(
            name, self.source, self.precision, tuple((k, v) for k, v in options.items() if v is not None)
        )


def backend_format(profile: TargetProfile, backend: str) -> str:
    """The profile's format that ``backend`` loads (onnx for onnxruntime and numpy, openvino for OpenVINO)."""
    return next(fmt for fmt, plan in profile.formats.items() if backend in plan.backends)


def runs(backend: str, fmt: str, precision: str) -> bool:
    """Whether format ``fmt`` is built in ``precision`` and ``backend`` runs it (the numpy reference runs
    no int8 graph, OpenVINO IR has no int8-dynamic)."""
    from export.formats import get_format

    converters = getattr(get_format(fmt), "CONVERTERS", None)  # a format that converts per precision
    if converters is not None and precision not in converters:
        return False
    return get_backend(backend).runs(fmt, _label(precision))


def make_space(profile: TargetProfile, manifest: Manifest, graph_only: bool, n_calib: int) -> Space:
    """The choices of this export: pruning where there is a torch module, equalization where the policy is
    an MLP, and per precision the profile's edge backends that run it and took the export's artifacts."""
    image = len(manifest.task_spec().observation.shape) == 3
    # the backends the export's gated artifacts kept: one that refused this policy's graphs (the numpy
    # reference takes chains of layers, not a SAC policy's squashing) is not tried again
    kept = {b for a in manifest.artifacts if a.status == "ok" for b in a.backends}
    listed = dict.fromkeys(
        b for plan in profile.formats.values() for b in plan.backends if b in EDGE_BACKENDS and b in kept
    )
    backends = {}
    for precision in PRECISION_CHOICES:
        able = [b for b in listed if runs(b, backend_format(profile, b), precision)]
        if able:
            backends[precision] = tuple(able)
    sources = ("float", "distilled") if graph_only else ("float", "pruned", "distilled")
    calibration = tuple(sorted({min(n, n_calib) for n in CALIBRATION_SIZES}))
    return Space(sources, not image, backends, calibration)


def suggest(trial: Any, space: Space) -> TrialPlan:
    """Sample one trial's settings (Optuna's define-by-run: a parameter exists only where it applies)."""
    kind = trial.suggest_categorical("source", list(space.sources))
    source = kind
    if kind == "pruned":
        source = f"pruned-{trial.suggest_categorical('prune_pct', list(PRUNE_PCTS))}"
    elif kind == "distilled":
        source = f"distilled-{trial.suggest_categorical('student_pct', list(STUDENT_PCTS))}"
    precision = trial.suggest_categorical("precision", list(space.backends))
    backend = trial.suggest_categorical(f"backend_{precision}", list(space.backends[precision]))
    plan = TrialPlan(source, precision, backend)
    if _label(precision) != "int8":
        return plan
    plan = dataclasses.replace(
        plan, calibration=trial.suggest_categorical("calibration", list(space.calibration))
    )
    if backend == "openvino":  # NNCF quantizes the IR its own way: the calibration states are its only input
        return plan
    return dataclasses.replace(
        plan,
        per_channel=trial.suggest_categorical("per_channel", [True, False]),
        equalize=trial.suggest_categorical("equalize", [True, False]) if space.equalize else None,
    )


def trial_params(record: dict[str, Any]) -> dict[str, Any]:
    """The Optuna parameters that :func:`suggest` draws for a recorded trial's settings."""
    kind, _, pct = record["source"].rpartition("-")
    params: dict[str, Any] = {"source": kind or record["source"]}
    if kind:
        params["prune_pct" if kind == "pruned" else "student_pct"] = int(pct)
    params["precision"] = record["precision"]
    params[f"backend_{record['precision']}"] = record["backend"]
    for key in ("calibration", "per_channel", "equalize"):
        if record.get(key) is not None:
            params[key] = record[key]
    return params


def neighbours(params: dict[str, Any], space: Space) -> list[dict[str, Any]]:
    """Settings one step from ``params``: the focused round's candidates (:attr:`SearchConfig.focus`)."""
    found = []
    for key, choices in (
        ("prune_pct", PRUNE_PCTS),
        ("student_pct", STUDENT_PCTS),
        ("calibration", space.calibration),
    ):
        if params.get(key) in choices:
            at = list(choices).index(params[key])
            found += [{**params, key: choices[i]} for i in (at - 1, at + 1) if 0 <= i < len(choices)]
    found += [{**params, key: not params[key]} for key in ("per_channel", "equalize") if key in params]
    precision = params["precision"]
    for backend in space.backends.get(precision, ()):
        if backend != params[f"backend_{precision}"]:
            other = {**params, f"backend_{precision}": backend}
            if backend == "openvino":  # NNCF takes the calibration size only
                other = {k: v for k, v in other.items() if k not in ("per_channel", "equalize")}
            found.append(other)
    return found


def focus_queue(
    study: Any, records: list[dict[str, Any]], space: Space, objectives: tuple[str, ...], limit: int
) -> int:
    """Enqueue up to ``limit`` untried neighbours of the current Pareto front in ``study`` (front trials in
    p99 order); how many."""
    tried = {_key(trial_params(r)) for r in records}
    front = set(pareto_front(records, objectives))
    queued = 0
    for record in sorted(records, key=lambda r: r.get("lat_p99_us") or 0.0):
        if record["number"] not in front:
            continue
        for params in neighbours(trial_params(record), space):
            if queued < limit and _key(params) not in tried:
                tried.add(_key(params))
                study.enqueue_trial(params)
                queued += 1
    return queued


def _key(params: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset(params.items())


def _label(precision: str) -> str:
    return "int8" if precision.startswith("int8") else precision


# ------------------------------------------------------------------------------------------- the subject


@dataclass
class Subject:
    """The export being searched: its manifest, its profile, a Builder over its policy's sources and the
    gate its artifacts pass (the export's, against the float policy)."""

    manifest: Manifest
    manifest_path: Path
    profile: TargetProfile
    builder: Any
    gate: Callable[[Manifest, ArtifactEntry, Variant], None]
    graph_only: bool
    float_return: float
    float_ci: tuple[float, float]
    exact: bool
    """Exact returns (the gridworld's oracle evaluation), else seeded episodes with a CI."""


def export_config(manifest_path: Path, config: SearchConfig) -> Any:
    """The ``ExportConfig`` the manifest was exported with (``export_config.json`` beside it)."""
    from export.pipeline import ExportConfig

    path = manifest_path.parent / "export_config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SearchError(f"{path}: cannot read the export's settings ({err}); re-run make export") from err
    known = {f.name for f in dataclasses.fields(ExportConfig)}
    export = ExportConfig(**{k: v for k, v in saved.items() if k in known})
    export.out, export.quiet = str(manifest_path.parent), True
    if config.episodes:
        export.episodes = config.episodes
    if config.finetune_steps:
        export.finetune_steps = config.finetune_steps
    return export


def load_export(config: SearchConfig) -> tuple[Manifest, Any]:
    """The manifest to search and the ``ExportConfig`` it was made with; SearchError naming what to run."""
    try:
        manifest = load_manifest(config.manifest_path)
    except ManifestError as err:
        hint = f"make export TARGET={config.target}" + (f" TASK={config.task}" if config.task else "")
        raise SearchError(f"{err} (search an export: run {hint} first)") from err
    return manifest, export_config(config.manifest_path, config)


@contextmanager
def open_subject(config: SearchConfig, manifest: Manifest, export: Any) -> Iterator[Subject]:
    """Prepare the sources and gate of the export ``manifest`` (:func:`load_export`), as ``python -m
    export`` prepares them, with a scratch folder for the sources' fp32 graphs."""
    from export import pipeline, task_export

    path = config.manifest_path
    profile = load_profile(manifest.target)
    ev = manifest.source.get("eval", {})
    with tempfile.TemporaryDirectory(prefix="neuroquant-search-") as scratch:
        if export.policy:
            plan = task_export.prepare(export)
            builder, ref = task_export.make_builder(plan, Path(scratch), Path(scratch))

            def gate(trial_manifest: Manifest, entry: ArtifactEntry, variant: Variant) -> None:
                from export import task_gates

                tolerance, own = task_export.own_outputs(variant, builder, ref)
                task_gates.gate(trial_manifest, entry, ref, profile, tolerance, own)

            graph_only = plan.policy.kind in task_export.GRAPH_ONLY or bool(plan.policy.underivable)
            mean, ci, exact = ref.evaluation.mean_return, tuple(ref.evaluation.ci95), False
        else:
            plan = pipeline.prepare(export)
            builder, ref = pipeline.make_builder(plan, Path(scratch), Path(scratch))

            def gate(trial_manifest: Manifest, entry: ArtifactEntry, variant: Variant) -> None:
                pipeline.gate_entry(trial_manifest, entry, variant, builder, ref)

            graph_only = False
            mean = ref.evaluation.mean_return
            ci, exact = (mean, mean), True
        if not math.isclose(mean, ev.get("mean_return", mean), rel_tol=1e-6, abs_tol=1e-6):
            print(
                f"note: the float policy's return here ({mean:.4g}) differs from the manifest's "
                f"({ev['mean_return']:.4g}): another host or --episodes; trials are judged on this run's",
                file=sys.stderr,
            )
        yield Subject(manifest, path, profile, builder, gate, graph_only, mean, ci, exact)


def return_ratio(mean: float | None, float_mean: float) -> float | None:
    """``mean`` as a share of the float policy's; for a negative float return (Pendulum), 1 + the gain over
    its magnitude, so a larger ratio is still a better return."""
    if mean is None:
        return None
    if float_mean > 0:
        return mean / float_mean
    return 1.0 + (mean - float_mean) / max(abs(float_mean), 1e-12)


# ------------------------------------------------------------------------------------------------ timing


def bench_command(manifest: Path, out: Path, config: SearchConfig) -> list[str]:
    """``python -m benchmarks`` timing only batch-1 latency (with its RSS) of a manifest's artifacts on the
    edge backends (:data:`EDGE_BACKENDS`)."""
    listed = {b for a in load_manifest(manifest).artifacts for b in a.backends}
    cmd = [sys.executable, "-m", "benchmarks", "--manifest", str(manifest), "--out", str(out)]
    cmd += ["--scenarios", "latency", "--no-env", "--no-trainer", "--no-progress"]
    cmd += ["--min-iters", str(config.min_iters), "--min-seconds", "0.5", "--max-seconds", "10"]
    cmd += ["--backends", ",".join(b for b in EDGE_BACKENDS if b in listed)]
    return [*cmd, "--executor", config.executor, "--address", config.address]


def run_bench(manifest: Path, out: Path, config: SearchConfig) -> list[dict[str, str]]:
    """Run the benchmark matrix on ``manifest`` into ``out``; its latency rows (every cell's)."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("bench_*.csv"))
    proc = subprocess.run(bench_command(manifest, out, config), capture_output=True, text=True, timeout=1800)
    written = sorted(set(out.glob("bench_*.csv")) - before)
    if proc.returncode != 0 or not written:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no output")
        raise RuntimeError(f"python -m benchmarks exited {proc.returncode}: {last}")
    with written[-1].open(newline="") as f:
        return [row for row in csv.DictReader(f) if row["scenario"] == "latency"]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def measure_fixed(subject: Subject, config: SearchConfig, folder: Path) -> list[dict[str, Any]]:
    """The manifest's variants timed like the trials, side by side (one row per artifact × backend): the
    profile's fixed ones, and ``searched`` when the pick was added. The matrix runs ``--repeats`` times over
    and each figure is the median of its runs: one artifact timed twice in one run differed by up to 15 % in
    p99 at HalfCheetah's ~10 µs."""
    runs = [run_bench(subject.manifest_path, folder / "bench-fixed", config) for _ in range(config.repeats)]
    entries = {e.name: e for e in load_manifest(subject.manifest_path).artifacts}
    fixed = []
    cells = [{(r["variant"], r["backend"]): r for r in rows} for rows in runs]
    for key, row in cells[0].items():
        timed = [run[key] for run in cells if key in run]
        entry = entries.get(f"{row['variant']}/{row['format']}")
        mean = entry.eval.get("mean_return") if entry is not None else None
        fixed.append(
            {
                "variant": row["variant"],
                "backend": row["backend"],
                "format": row["format"],
                "precision": row["precision"],
                "status": entry.status if entry is not None else row.get("artifact_status", ""),
                "mean_return": mean,
                "return_ratio": return_ratio(mean, subject.float_return),
                "measured": row["status"],
                "host": row.get("host", ""),
                "cpu": row.get("cpu", ""),
                **{
                    key: _median(r.get(key) for r in timed)
                    for key in ("lat_p50_us", "lat_p99_us", "peak_rss_mb")
                },
                "size_bytes": _number(row.get("size_bytes")),
            }
        )
    return fixed


def _median(texts: Iterator[str | None]) -> float | None:
    values = sorted(v for v in map(_number, texts) if v is not None)
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------------------------ trials


def run_trial(
    subject: Subject, plan: TrialPlan, number: int, folder: Path, config: SearchConfig
) -> dict[str, Any]:
    """Build, gate and time one trial's variant in ``folder``; its record (``status`` says how far it got)."""
    started = time.perf_counter()
    variant = plan.variant(f"trial-{number}")
    fmt = backend_format(subject.profile, plan.backend)
    record: dict[str, Any] = {**dataclasses.asdict(plan), "format": fmt, "status": "ok", "reason": ""}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    subject.builder.root = folder
    (entry,) = subject.builder.build_variant(variant, [fmt])
    record.update(size_bytes=entry.size_bytes, params=entry.params)
    if entry.status != "ok":
        return {**record, "status": "build-failed", "reason": entry.reason, "seconds": _since(started)}
    entry.backends = [plan.backend]
    trial_manifest = dataclasses.replace(subject.manifest, artifacts=[entry], root=folder)
    subject.gate(trial_manifest, entry, variant)
    mean = entry.eval.get("mean_return")
    record.update(mean_return=mean, return_ratio=return_ratio(mean, subject.float_return))
    record["parity"] = entry.parity
    if entry.status != "ok":  # still timed (the matrix times failed artifacts too): the report shows
        record.update(status="gate-failed", reason=entry.reason)  # what the gate rejected, at what speed
    write_manifest(trial_manifest, folder / "manifest.json")
    try:
        (row,) = run_bench(folder / "manifest.json", folder / "bench", config)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as err:
        return {**record, "status": "measure-failed", "reason": str(err), "seconds": _since(started)}
    if row["status"] != "ok":
        reason = f"latency cell {row['status']}: {row.get('reason', '')}"
        return {**record, "status": "measure-failed", "reason": reason, "seconds": _since(started)}
    record.update({k: _number(row.get(k)) for k in ("lat_p50_us", "lat_p99_us", "peak_rss_mb")})
    return {**record, "seconds": _since(started)}


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)


def open_study(config: SearchConfig, folder: Path) -> Any:
    """The study in ``folder/study.db``, created or resumed; refused if it optimises other objectives."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    sampler = optuna.samplers.NSGAIISampler(population_size=config.population, seed=config.seed)
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{(folder / 'study.db').resolve()}",
        directions=[OBJECTIVES[o][0] for o in config.objectives],
        sampler=sampler,
        load_if_exists=True,
    )
    saved = study.user_attrs.get("objectives")
    if saved is None:
        study.set_user_attr("objectives", list(config.objectives))
    elif saved != list(config.objectives):
        raise SearchError(
            f"study {name} ({folder}) optimises {','.join(saved)}; run it with --objectives "
            f"{','.join(saved)}, or start another with --study NAME"
        )
    return study


def search(config: SearchConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the study (resuming it), write its CSV/JSON, add the pick to the manifest; (the summary of
    ``search.json``, every trial's record)."""
    from optuna.trial import TrialState
    from tqdm import tqdm

    started = time.perf_counter()
    folder = config.folder
    manifest, export = load_export(config)  # a missing or broken export is refused before the study exists
    study = open_study(config, folder)
    with open_subject(config, manifest, export) as subject:
        space = make_space(
            subject.profile, subject.manifest, subject.graph_only, len(subject.builder.calib_obs)
        )
        show = config.progress and sys.stderr.isatty()
        bar = tqdm(total=config.trials, desc=f"search {folder.name}", unit="trial", disable=not show)
        durations: list[float] = []
        broad = round(config.trials * (1 - config.focus))
        queue = 0  # focused trials enqueued and not yet run
        for index in range(config.trials):
            spent = time.perf_counter() - started + timing_reserve(subject.manifest, config.repeats)
            expected = sorted(durations)[len(durations) // 2] if durations else 0.0
            if spent + expected > config.minutes * 60:
                break
            if index >= broad and queue == 0:  # the focused round: around the front found so far
                remaining = config.trials - index
                queue = focus_queue(study, trial_records(study), space, config.objectives, remaining)
            queue = max(queue - 1, 0)
            trial = study.ask()
            try:
                plan = suggest(trial, space)
            except ValueError as err:  # Optuna: a parameter's choices differ from the study's earlier ones
                study.tell(trial, state=TrialState.FAIL)
                raise SearchError(
                    f"study {folder.name} was made over other choices than this export offers ({err}); "
                    f"start another with --study NAME"
                ) from err
            record = run_trial(subject, plan, trial.number, folder / "trials" / str(trial.number), config)
            durations.append(record["seconds"])
            for key, value in record.items():
                trial.set_user_attr(key, value)
            if record["status"] in ("ok", "gate-failed"):
                # NSGA-II's constrained domination: a trial that failed its gate is infeasible (> 0)
                trial.set_constraint("gate", 0.0 if record["status"] == "ok" else 1.0)
                values = [record[OBJECTIVES[o][1]] for o in config.objectives]
                study.tell(trial, values)
            else:
                study.tell(trial, state=TrialState.FAIL)
            bar.update()
            line = _trial_line(trial.number, record)
            bar.set_postfix_str(line[:60])
            if config.progress and not show:
                print(line, file=sys.stderr)
        bar.close()
        records = trial_records(study)
        chosen, why = choose(records, config)
        if chosen is not None and config.add_to_manifest:
            add_searched(subject, folder / "trials" / str(chosen["number"]), chosen, why)
        # the fixed variants (and the pick, now in the manifest) timed side by side in one run, so the
        # comparison does not span the minutes between the pick's trial and now
        fixed = measure_fixed(subject, config, folder)
        summary = decide(records, fixed, chosen, why, subject, config)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        summary["trials_run"] = len(durations)
        if chosen is not None and config.add_to_manifest:
            summary["added_to"] = str(subject.manifest_path)
    write_outputs(folder, records, fixed, summary)
    if config.chart:
        draw_chart(folder)
    return summary, records


def _trial_line(number: int, record: dict[str, Any]) -> str:
    settings = f"{record['source']} {record['precision']} {record['backend']}"
    if record["status"] in ("build-failed", "measure-failed"):
        return f"trial {number}: {settings}: {record['status']}: {record['reason'][:120]}"
    ratio, p99 = record.get("return_ratio"), record.get("lat_p99_us")
    figures = f"return ×{ratio:.4f}" if ratio is not None else "return -"
    figures += f", p99 {p99:.0f} µs" if p99 is not None else ""
    figures += f", {record['size_bytes'] / 1024:.1f} KiB" if record.get("size_bytes") else ""
    verdict = "ok" if record["status"] == "ok" else f"gate failed ({record['reason'][:80]})"
    return f"trial {number}: {settings}: {figures}: {verdict}"


def trial_records(study: Any) -> list[dict[str, Any]]:
    """Every finished trial of the study (all runs), flat: its settings and figures."""
    from optuna.trial import TrialState

    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        attrs = trial.user_attrs
        if "status" not in attrs:
            continue  # a trial interrupted before it was recorded
        state = "complete" if trial.state == TrialState.COMPLETE else "failed"
        records.append({"number": trial.number, "state": state, **attrs})
    return records


# ------------------------------------------------------------------------------------------------ decide


def pareto_front(records: list[dict[str, Any]], objectives: tuple[str, ...]) -> list[int]:
    """Numbers of the trials that pass their gate and no other such trial dominates on ``objectives``."""
    keys = [(OBJECTIVES[o][1], OBJECTIVES[o][0] == "maximize") for o in objectives]
    feasible = [r for r in records if r["status"] == "ok" and all(r.get(k) is not None for k, _ in keys)]

    def score(r: dict[str, Any]) -> list[float]:  # every objective as "smaller is better"
        return [-r[k] if up else r[k] for k, up in keys]

    front = []
    for r in feasible:
        s = score(r)
        if not any(all(a <= b for a, b in zip(score(o), s, strict=True)) and score(o) != s for o in feasible):
            front.append(r["number"])
    return front


def choose(records: list[dict[str, Any]], config: SearchConfig) -> tuple[dict[str, Any] | None, str]:
    """The trial ``--pick`` names among those that pass their gate with ≥ ``--min-return-ratio``; why."""
    figure = PICKS[config.pick]
    keeping = [
        r
        for r in records
        if r["status"] == "ok"
        and r.get("return_ratio") is not None
        and r["return_ratio"] >= config.min_return_ratio
        and r.get(figure) is not None
    ]
    if not keeping:
        passed = sum(r["status"] == "ok" for r in records)
        return None, (
            f"no trial keeps {config.min_return_ratio:g} of the float policy's return and passes its gate "
            f"({passed} of {len(records)} trials passed the gate)"
        )
    lowest = min(r[figure] for r in keeping)
    # timings within the noise of the lowest are a tie (P99_MARGIN, RSS_MARGIN_MB): the smallest of them
    # wins, not the one a lucky measurement put first
    within = {"lat_p99_us": lowest * (1 + P99_MARGIN), "peak_rss_mb": lowest + RSS_MARGIN_MB}.get(
        figure, lowest
    )
    tied = [r for r in keeping if r[figure] <= within]
    best = min(tied, key=lambda r: (r.get("size_bytes") or 0, r[figure]))
    ties = f", the smallest of the {len(tied)} within its timing noise" if len(tied) > 1 else ""
    shown = {
        "lat_p99_us": "p99 {:.3g} µs",
        "size_bytes": "{:,.0f} bytes",
        "peak_rss_mb": "peak RSS {:.1f} MB",
    }
    return best, (
        f"trial {best['number']} is the {config.pick} ({shown[figure].format(best[figure])}{ties}) of the "
        f"{len(keeping)} trials that pass their gate with return ≥ {config.min_return_ratio:g} × the float "
        f"policy's"
    )


def _timing(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("lat_p50_us", "lat_p99_us", "peak_rss_mb")}


def timing_reserve(manifest: Manifest, repeats: int) -> float:
    """Seconds kept for the final side-by-side timing: ~1.5 s a cell (process start, warm-up, ≥ 0.5 s of
    calls), ``repeats`` times."""
    cells = sum(b in EDGE_BACKENDS for a in manifest.artifacts if a.sha256 for b in a.backends)
    return repeats * (1.5 * cells + 5.0)


def dominance(
    chosen: dict[str, Any], fixed: list[dict[str, Any]], subject: Subject, config: SearchConfig
) -> list[dict[str, Any]]:
    """Against each fixed variant that passed its gate: is the pick's return equal or better, and on which
    other objective is it better by more than the noise (:data:`P99_MARGIN`, :data:`RSS_MARGIN_MB`,
    :data:`SIZE_MARGIN`)? Equal return: exact returns at least the fixed one's (the gridworld); seeded
    returns at least the fixed one's less the float policy's 95% CI half-width, the resolution the episodes
    give (two artifacts closer than that are not told apart by them)."""
    resolution = 1e-9 if subject.exact else (subject.float_ci[1] - subject.float_ci[0]) / 2
    better_by = {
        "p99": lambda mine, theirs: mine < theirs * (1 - P99_MARGIN),
        "size": lambda mine, theirs: mine < theirs * (1 - SIZE_MARGIN),
        "rss": lambda mine, theirs: mine < theirs - RSS_MARGIN_MB,
    }
    out = []
    for row in fixed:
        if row["variant"] == SEARCHED or row["status"] != "ok" or row["mean_return"] is None:
            continue
        if row["backend"] not in EDGE_BACKENDS:
            continue
        return_ok = chosen["mean_return"] >= row["mean_return"] - resolution
        better = [
            name
            for name, wins in better_by.items()
            if None not in (mine := chosen.get(OBJECTIVES[name][1]), theirs := row.get(OBJECTIVES[name][1]))
            and wins(mine, theirs)
        ]
        out.append(
            {
                "variant": row["variant"],
                "backend": row["backend"],
                "return_ok": bool(return_ok),
                "better_on": better,
                "dominates": bool(return_ok and better),
            }
        )
    return out


def decide(
    records: list[dict[str, Any]],
    fixed: list[dict[str, Any]],
    chosen: dict[str, Any] | None,
    why: str,
    subject: Subject,
    config: SearchConfig,
) -> dict[str, Any]:
    """The summary of ``search.json``: the Pareto front, the pick (:func:`choose`) and how it compares with
    the fixed variants; where the pick was added to the manifest and so timed again beside them
    (``searched`` in ``fixed``), those figures are the ones compared (with ``--no-add-to-manifest`` a
    ``searched`` row is an earlier pick's, and the trial's own timing is used)."""
    from export.pipeline import now_utc

    front = set(pareto_front(records, config.objectives))
    added = chosen is not None and config.add_to_manifest
    retimed = next((row for row in fixed if row["variant"] == SEARCHED), None) if added else None
    compared = None if chosen is None else {**chosen, **(_timing(retimed) if retimed else {})}
    for r in records:
        r["pareto"] = int(r["number"] in front)
        r["chosen"] = int(chosen is not None and r["number"] == chosen["number"])
    manifest = subject.manifest
    return {
        "schema": 1,
        "study": config.folder.name,
        "task": manifest.task_spec().name,
        "target": manifest.target,
        "manifest": str(subject.manifest_path),
        "objectives": list(config.objectives),
        "pick": config.pick,
        "min_return_ratio": config.min_return_ratio,
        "float": {
            "mean_return": subject.float_return,
            "ci95": list(subject.float_ci),
            "exact": subject.exact,
        },
        "chosen": None if chosen is None else _public(chosen),
        "chosen_reason": why,
        "dominance": [] if compared is None else dominance(compared, fixed, subject, config),
        "retimed": None if retimed is None else _timing(retimed),
        "pareto": sorted(front),
        "trials": len(records),
        "config": dataclasses.asdict(config),
        "created": now_utc(),
        "host": next(({"hostname": r.get("host"), "cpu": r.get("cpu")} for r in fixed), None),  # who timed
    }


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in TRIAL_CSV if k not in ("pareto", "chosen")} | {
        "parity": record.get("parity")
    }


# --------------------------------------------------------------------------------------------- outputs


def add_searched(subject: Subject, trial_folder: Path, chosen: dict[str, Any], why: str) -> None:
    """Copy the picked trial's artifact into the export's folder as ``searched/`` and put its entry in the
    manifest (replacing an earlier pick); the files first, the manifest last, each swap atomic."""
    trial = load_manifest(trial_folder / "manifest.json")
    (entry,) = trial.artifacts
    old_dir = entry.path.split("/", 1)[0]
    root = subject.manifest_path.parent
    staged = Path(tempfile.mkdtemp(prefix=".searched.", dir=root))
    try:
        shutil.copytree(trial_folder / old_dir, staged, dirs_exist_ok=True)
        moved = root / f".{SEARCHED}.old-{os.getpid()}"
        if (root / SEARCHED).exists():
            os.replace(root / SEARCHED, moved)
        os.replace(staged, root / SEARCHED)
        shutil.rmtree(moved, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)

    def moved_path(rel: str) -> str:
        return f"{SEARCHED}/{rel.split('/', 1)[1]}"

    extra = dict(entry.extra)
    if "files" in extra:
        extra["files"] = {moved_path(k): v for k, v in extra["files"].items()}
    extra["search"] = {
        "study": trial_folder.parent.parent.name,
        "trial": chosen["number"],
        "settings": {k: chosen[k] for k in ("source", "precision", "per_channel", "equalize", "calibration")},
        "backend": chosen["backend"],
        "lat_p99_us": chosen["lat_p99_us"],
        "rule": why,
    }
    searched = dataclasses.replace(
        entry,
        name=f"{SEARCHED}/{entry.format}",
        variant=SEARCHED,
        path=moved_path(entry.path),
        status="ok",
        reason=None,
        extra=extra,
    )
    manifest = load_manifest(subject.manifest_path)
    manifest.artifacts = [a for a in manifest.artifacts if a.variant != SEARCHED] + [searched]
    write_manifest(manifest, subject.manifest_path)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: _cell(row.get(k)) for k in columns} for row in rows)
    atomic_write_text(path, text.getvalue())


def write_outputs(
    folder: Path, records: list[dict[str, Any]], fixed: list[dict[str, Any]], summary: dict
) -> None:
    """trials.csv, fixed.csv and search.json (the report reads these: ``reports.search``)."""
    write_csv(folder / "trials.csv", TRIAL_CSV, records)
    write_csv(folder / "fixed.csv", FIXED_CSV, fixed)
    atomic_write_json(folder / "search.json", summary)


def draw_chart(folder: Path) -> None:
    """pareto.png by the report's chart (``python -m reports.search``; a process, as export does not import
    reports); a failure is a warning, the study's files stand."""
    proc = subprocess.run(
        [sys.executable, "-m", "reports.search", str(folder)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
        print(f"warning: no pareto.png ({last})", file=sys.stderr)


def format_summary(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The Pareto front as a table, the pick and its comparison with the fixed variants."""
    rows = [("trial", "source", "precision", "backend", "return", "p99 µs", "size KiB", "rss MB")]
    for r in sorted((r for r in records if r.get("pareto")), key=lambda r: r.get("lat_p99_us") or 0):
        rows.append(
            (
                f"{r['number']}{' *' if r.get('chosen') else ''}",
                r["source"],
                r["precision"] + ("" if r.get("per_channel") in (None, True) else " per-tensor"),
                r["backend"],
                f"{r['return_ratio']:.4f}",
                f"{r['lat_p99_us']:.0f}",
                f"{r['size_bytes'] / 1024:.1f}",
                f"{r['peak_rss_mb']:.1f}" if r.get("peak_rss_mb") is not None else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["Pareto front (* = picked):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(summary["chosen_reason"])
    compared = summary["dominance"]
    if compared:
        won = [
            f"{d['variant']}/{d['backend']} ({', '.join(d['better_on'])})" for d in compared if d["dominates"]
        ]
        lost = [f"{d['variant']}/{d['backend']}" for d in compared if not d["dominates"]]
        lines.append(
            f"at equal or better return and better on p99, size or RSS than {len(won)} of the "
            f"{len(compared)} fixed variants that passed their gate: {', '.join(won) or 'none'}"
        )
        if lost:
            lines.append(f"  not better than: {', '.join(lost)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- main


def build_parser() -> Any:
    from backends.profiles import known_targets
    from common.cli import dataclass_parser

    return dataclass_parser(
        SearchConfig,
        prog="python -m export.search",
        description="The best variant of an export under a budget: an Optuna NSGA-II study over pruning, "
        "student size, precision and backend; each trial built, gated and timed like the fixed variants.",
        epilog=f"Known targets: {', '.join(known_targets())}. The example needs make export TARGET=x86 "
        "POLICY=sb3:runs/zoo/cartpole/model.zip ENV=CartPole-v1 first.\nExample: python -m export.search "
        "--task cartpole --target x86 --trials 40 --minutes 15 --pick fastest --min-return-ratio 0.99",
    )


def main(argv: list[str] | None = None) -> int:
    """Exit 2 with one line on bad input (nothing written to the manifest); 0 once the study is saved."""
    from common.cli import parse_dataclass

    parser = build_parser()
    config = parse_dataclass(SearchConfig, parser, argv, outputs={"out": "dir"})
    try:
        summary, records = search(config)
    except (SearchError, ValueError, TaskUnavailable) as err:  # ProfileError, CheckpointError …
        print(f"python -m export.search: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary, records))
    where = f"; added as variant {SEARCHED} to {summary['added_to']}" if summary.get("added_to") else ""
    print(f"wrote {config.folder}/ ({summary['trials_run']} trials in {summary['seconds']} s{where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
