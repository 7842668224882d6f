"""The benchmark result files: column order, scenario names, and the CSV + JSON pair of one run.

The contract with ``reports/`` (docs/contracts.md#the-benchmark-rows, the result-file schema): one tidy row
per (task, target, variant, backend, scenario), a new
``bench_<target>_<host>_<YYYYmmddTHHMMSSZ>.csv``/``.json`` pair per run, never an overwrite. Missing figures
are empty cells, never 0.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common.fileio import atomic_write_text

COLUMNS = (
    "run_id",
    "timestamp",
    "task",
    "target",
    "host",
    "arch",
    "cpu",
    "emulated",
    "variant",
    "backend",
    "format",
    "precision",
    "artifact_status",
    "scenario",
    "status",
    "reason",
    "size_bytes",
    "params",
    "load_ms",
    "first_infer_ms",
    "iterations",
    "lat_p50_us",
    "lat_p90_us",
    "lat_p99_us",
    "lat_p999_us",
    "lat_max_us",
    "lat_mean_us",
    "lat_std_us",
    "batch100_ms",
    "rss_mb",
    "peak_rss_mb",
    "mean_return",
    "return_ci_low",
    "return_ci_high",
    "success_rate",
    "oracle_ratio",
    "action_agreement",
    "action_error",
    "loop_fps",
    "deadline_misses",
    "lateness_p99_us",
    "value",
    "unit",
)
"""CSV columns, in order (docs/contracts.md#the-benchmark-rows). ``task``: the manifest's task name;
``emulated``: 1 where the CPU runs another architecture's code (qemu-user), where latency is not the device's;
``mean_return`` with its 95% CI (``return_ci_*``, seeded episodes; on the gridworld the exact evaluation, so
the CI is the mean); ``action_agreement`` (discrete) or ``action_error`` (box: mean |Δa| / (high − low)) from
the export gate; ``lat_*``: per-call latency of the scenario's unit of work — one ``infer_one`` (latency), one
batch-100 pass (batch100), the inference inside the loop (loop_*). ``iterations``: timed calls, passes, frames
or gradient steps. ``value``/``unit``: the figure of a non-model row (steps/s), or observations/s of a
batch100 row."""

MODEL_SCENARIOS = ("latency", "batch100", "loop_uncapped", "loop_paced")
"""Scenarios of a (variant, backend) cell, run in this order in one subprocess."""
HOST_CELLS = {"env": ("env_single", "env_vector"), "trainer": ("trainer",)}
"""Rows without a model (variant/backend/format/precision ``-``), by the process that measures them (the
trainer's imports torch, so it runs alone)."""
HOST_SCENARIOS = tuple(s for group in HOST_CELLS.values() for s in group)
SCENARIOS = MODEL_SCENARIOS + HOST_SCENARIOS
NO_MODEL = "-"


def return_fields(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The row's reward columns from an evaluation dict (an export gate's ``eval`` or a cell's): the mean
    return and its 95% CI (an exact gridworld evaluation has no spread: the CI is the mean itself)."""
    mean = evaluation.get("mean_return")
    low, high = evaluation.get("ci95") or (mean, mean)
    fields = {"mean_return": mean, "return_ci_low": low, "return_ci_high": high}
    fields.update({k: evaluation.get(k) for k in ("success_rate", "oracle_ratio")})
    return fields


def safe_host(hostname: str) -> str:
    """The host part of a result file name: ``[A-Za-z0-9_-]`` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", hostname) or "host"


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as CSV text with exactly :data:`COLUMNS` (a key outside them is a programming error)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return buf.getvalue()


def write_pair(
    out_dir: Path, target: str, hostname: str, started: datetime, rows: list[dict[str, Any]], meta: dict
) -> tuple[Path, Path]:
    """Write ``bench_<target>_<host>_<stamp>.csv`` and ``.json`` (with ``meta`` + ``"csv"``) as a new pair.

    The stamp is the run's start (UTC); if another run already holds that second, the next free second is
    taken, so a rerun adds a pair and never replaces one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    text = csv_text(rows)
    when = started
    for _ in range(3600):
        stem = f"bench_{target}_{safe_host(hostname)}_{when:%Y%m%dT%H%M%SZ}"
        csv_path, json_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
        when += timedelta(seconds=1)
        if json_path.exists():
            continue
        try:
            atomic_write_text(csv_path, text, exclusive=True)  # never over a file
        except FileExistsError:
            continue
        try:
            atomic_write_text(
                json_path, json.dumps({**meta, "csv": csv_path.name}, indent=2) + "\n", exclusive=True
            )
        except BaseException:
            csv_path.unlink()  # no CSV without its JSON
            raise
        return csv_path, json_path
    raise FileExistsError(f"{out_dir}: no free result file name near {started:%Y%m%dT%H%M%SZ}")
