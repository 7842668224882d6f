"""Reading the result files: benchmark CSV/JSON pairs and edge-session CSV/JSON pairs.

Every check on the input happens here, at the boundary, so the chart and table code can trust the frames
it is handed: a benchmark CSV without the columns of docs/contracts.md#the-benchmark-rows is refused with one
line naming the file and the columns, and rows measured again in a later run replace the older ones (newest
``timestamp`` wins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reports.session import EmptySessionError, SessionReportError, load_session

#: The benchmark CSV columns in the order ``python -m benchmarks`` writes them (``benchmarks.rows.COLUMNS``;
#: copied because reports only reads files, kept equal by tests/reports/test_schema.py).
BENCH_COLUMNS = (
    "run_id", "timestamp", "task", "target", "host", "arch", "cpu", "emulated", "variant", "backend",
    "format", "precision", "artifact_status", "scenario", "status", "reason", "size_bytes", "params",
    "load_ms", "first_infer_ms", "iterations", "lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_p999_us",
    "lat_max_us", "lat_mean_us", "lat_std_us", "batch100_ms", "rss_mb", "peak_rss_mb", "mean_return",
    "return_ci_low", "return_ci_high", "success_rate", "oracle_ratio", "action_agreement", "action_error",
    "loop_fps", "deadline_misses", "lateness_p99_us", "value", "unit",
)  # fmt: skip
TEXT_COLUMNS = (
    "run_id", "timestamp", "task", "target", "host", "arch", "cpu", "variant", "backend", "format",
    "precision", "artifact_status", "scenario", "status", "reason", "unit",
)  # fmt: skip
NUMERIC_COLUMNS = tuple(c for c in BENCH_COLUMNS if c not in TEXT_COLUMNS)
#: One row per key survives deduplication.
KEY = ("task", "target", "host", "variant", "backend", "scenario")
#: The task of rows written before benchmark CSVs had a ``task`` column: the gridworld was the only one.
DEFAULT_TASK = "gridworld"
#: The columns a benchmark CSV must have (a subset of docs/contracts.md#the-benchmark-rows, with the key and
#: the timestamp); the other columns may be absent (NaN).
REQUIRED = (
    "timestamp", "target", "host", "arch", "variant", "backend", "format", "precision", "scenario", "status",
    "reason", "size_bytes", "params", "load_ms", "first_infer_ms", "lat_p50_us", "lat_p90_us", "lat_p99_us",
    "lat_p999_us", "lat_max_us", "lat_mean_us", "batch100_ms", "rss_mb", "mean_return", "success_rate",
    "action_agreement", "loop_fps", "deadline_misses",
)  # fmt: skip
#: Scenarios that measure no model (variant/backend are "-"; the figure is in ``value`` with ``unit``).
NON_MODEL_SCENARIOS = ("env_single", "env_vector", "trainer")
PRODUCER_HINT = (
    "produce them with `make bench TARGET=x86` "
    "(python -m benchmarks --manifest artifacts/x86/manifest.json --out results/benchmark)"
)


class ReportError(ValueError):
    """Result files that cannot be reported on; the message names the file and what to do."""


@dataclass
class BenchmarkResults:
    """The benchmark rows after deduplication, with what the JSON files say about each run's host."""

    rows: pd.DataFrame
    """One row per (target, host, variant, backend, scenario), the newest measurement."""
    runs: list[dict[str, Any]]
    """One entry per CSV file: file, csv rows, and the JSON metadata (run_id, created, host, args, cells)."""
    replaced: int = 0
    """How many older rows a newer run of the same key replaced."""
    warnings: list[str] = field(default_factory=list)

    def hosts(self) -> pd.DataFrame:
        """One line per (target, host): the newest run's host metadata, falling back to the CSV columns."""
        lines = []
        for (target, host), group in self.rows.groupby(["target", "host"], sort=True):
            runs = [r for r in self.runs if (target, host) in r["pairs"]]
            newest = max(runs, key=lambda r: r["newest"]) if runs else {}
            # A Ray run measures on many devices: `hosts` has each one's metadata, `host` is the driver's.
            meta = (newest.get("hosts") or {}).get(host) or newest.get("host") or {}
            versions = meta.get("versions") or {}
            lines.append(
                {
                    "target": target,
                    "host": host,
                    "cpu": meta.get("cpu") or _first(group["cpu"]),
                    "arch": meta.get("arch") or _first(group["arch"]),
                    "cores": meta.get("cores", ""),
                    "os": meta.get("os", ""),
                    "python": meta.get("python", ""),
                    "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v),
                    "runs": len(runs),
                    "newest_run": newest.get("run_id") or newest.get("file", ""),
                    "created": newest.get("created", ""),
                }
            )
        return pd.DataFrame(lines)


def _first(values: pd.Series) -> str:
    present = [v for v in values if isinstance(v, str) and v]
    return present[0] if present else ""


def read_table(
    path: Path, columns: tuple[str, ...], text: tuple[str, ...], required: tuple[str, ...], what: str
) -> pd.DataFrame:
    """A result CSV in ``columns`` order: ``text`` columns as stripped strings (missing = ""), the others as
    floats (missing = NaN); absent optional columns are added empty. Every result file is read through here,
    so an empty, unreadable or incomplete one is refused the same way: one line naming the file."""
    try:
        df = pd.read_csv(path, dtype={c: "string" for c in text}, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise ReportError(f"{path}: empty file, not {what} (expected a header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; is it {what}?")
    for col in columns:
        if col not in df.columns:
            df[col] = pd.NA if col in text else float("nan")
    for col in text:
        df[col] = df[col].astype("string").fillna("").str.strip()
    for col in columns:
        if col not in text:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df[list(columns)]


def read_benchmark_csv(path: Path) -> pd.DataFrame:
    """One benchmark CSV with the schema's dtypes; absent optional columns become NaN / empty strings."""
    df = read_table(path, BENCH_COLUMNS, TEXT_COLUMNS, REQUIRED, "a benchmark CSV")
    df.loc[df["task"] == "", "task"] = DEFAULT_TASK
    return df


def _read_run_json(csv_path: Path, warnings: list[str]) -> dict[str, Any]:
    json_path = csv_path.with_suffix(".json")
    if not json_path.is_file():
        warnings.append(f"{json_path.name}: missing; host details come from the CSV columns only")
        return {}
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        warnings.append(f"{json_path}: unreadable JSON ({err}); host details come from the CSV columns only")
        return {}
    return meta if isinstance(meta, dict) else {}


def dedup_newest(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the newest row per key; rows whose timestamps tie keep the one read last (later file)."""
    if rows.empty:
        return rows, 0
    order = rows.assign(
        _when=pd.to_datetime(rows["timestamp"], utc=True, errors="coerce", format="ISO8601"),
        _seq=range(len(rows)),
    ).sort_values(["_when", "_seq"], na_position="first", kind="stable")
    kept = order.drop_duplicates(list(KEY), keep="last").sort_values("_seq")
    return kept.drop(columns=["_when", "_seq"]).reset_index(drop=True), len(rows) - len(kept)


def load_benchmarks(folder: Path) -> BenchmarkResults:
    """Every ``*.csv`` in ``folder`` (+ its JSON), deduplicated; a clear error if there is nothing to read."""
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise ReportError(f"no benchmark results in {folder}/ (no *.csv files); {PRODUCER_HINT}")
    frames, runs, warnings = [], [], []
    for path in files:
        df = read_benchmark_csv(path)
        meta = _read_run_json(path, warnings)
        frames.append(df)
        runs.append(
            {
                **{k: meta.get(k) for k in ("run_id", "created", "target", "host", "hosts", "args", "cells")},
                "file": path.name,
                "rows": len(df),
                "pairs": set(zip(df["target"], df["host"], strict=True)),
                "newest": (meta.get("created") or "", max(df["timestamp"], default="")),
            }
        )
    rows, replaced = dedup_newest(pd.concat(frames, ignore_index=True))
    if rows.empty:
        raise ReportError(
            f"the benchmark CSVs in {folder}/ hold no rows ({', '.join(p.name for p in files)}); "
            + PRODUCER_HINT
        )
    return BenchmarkResults(rows, runs, replaced, warnings)


@dataclass
class Session:
    """One edge session: its frames (None if it recorded none) and its JSON summary."""

    csv: Path
    frames: pd.DataFrame | None
    summary: dict[str, Any]
    problem: str = ""
    """Why it cannot be plotted (no frames), for the report's failed/skipped list."""

    @property
    def name(self) -> str:
        return self.csv.stem


def load_sessions(folder: Path, newest: int) -> tuple[list[Session], int]:
    """The newest ``newest`` sessions under ``folder`` (recursively, so copies from several devices can sit in
    subfolders), newest first (by the JSON's ``started_at``, then file time), and how many were left out.

    A session CSV without the columns of docs/contracts.md#the-session-files is an error; one that recorded no
    frames (a session that crashed at start-up) is kept, unplotted, with its stop reason.
    """
    paths = sorted(folder.rglob("session_*.csv")) if folder.is_dir() else []
    if newest <= 0 or not paths:
        return [], len(paths)
    summaries = {p: _session_summary(p) for p in paths}
    paths.sort(key=lambda p: (str(summaries[p].get("started_at") or ""), p.stat().st_mtime), reverse=True)
    sessions = []
    for path in paths[:newest]:
        try:
            frames, summary = load_session(path)
            sessions.append(Session(path, frames, summary))
        except EmptySessionError:
            reason = summaries[path].get("stop_reason") or "no stop reason recorded"
            sessions.append(Session(path, None, summaries[path], f"no frames recorded (stop: {reason})"))
        except SessionReportError as err:
            raise ReportError(str(err)) from None
    return sessions, len(paths) - len(sessions)


def _session_summary(csv_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(csv_path.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


#: Written by ``python -m deploy.arm64`` (make verify-arm64): the arm64 bundle run under qemu-user.
ARM64_VERIFY = Path("arm64") / "verify.json"


def load_arm64(results: Path, warnings: list[str]) -> dict[str, Any] | None:
    """``results/arm64/verify.json`` if there is one; an unreadable one is a warning, not the end of the
    report (the benchmark tables do not depend on it)."""
    path = results / ARM64_VERIFY
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        warnings.append(f"{path}: unreadable ({err}); the arm64 section is left out (make verify-arm64)")
        return None
    fields = ("passed", "returns", "parity", "sessions", "arm64")
    if not isinstance(record, dict) or any(k not in record for k in fields):
        warnings.append(
            f"{path}: not a deploy.arm64 record (needs {', '.join(fields)}); arm64 section left out"
        )
        return None
    return record
