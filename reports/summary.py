"""The tables every output is drawn from: one line per measured model cell, the Pareto front, the
failed/skipped list, the throughput rows, the cross-target comparison and the session summaries.

The Markdown, the HTML and the charts all read these frames, so a figure cannot differ between them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reports.load import KEY, NON_MODEL_SCENARIOS, NUMERIC_COLUMNS, BenchmarkResults, Session

if TYPE_CHECKING:  # reports.search draws with reports.charts, which imports this module
    from reports.search import Study

CELL_KEY = ["task", "target", "host", "variant", "backend"]
#: Where a cell's return comes from, best first: the loop scenarios evaluate through the backend itself,
#: latency/batch rows carry the manifest's evaluation.
RETURN_SOURCES = ("loop_uncapped", "loop_paced", "latency", "batch100")
LATENCY_COLUMNS = ("lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_p999_us", "lat_max_us", "lat_mean_us")
CELL_TEXT_FIELDS = (*CELL_KEY, "format", "precision", "artifact_status", "status", "reason", "timestamp")
#: Per-scenario figures a cell line does not carry (the all-rows table shows them).
ROW_ONLY = ("load_ms", "first_infer_ms", "iterations", "lat_std_us", "lateness_p99_us", "value")
CELL_FIELDS = (*CELL_TEXT_FIELDS, *(c for c in NUMERIC_COLUMNS if c not in ROW_ONLY))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(value)


def _pick(records: dict[str, dict[str, Any]], column: str, order: tuple[str, ...] = ()) -> Any:
    """The first finite (or non-empty) value of ``column`` over the scenarios, in ``order`` first."""
    for scenario in (*order, *sorted(records)):
        value = records.get(scenario, {}).get(column)
        if _finite(value) or (isinstance(value, str) and value):
            return value
    return float("nan")


def _status(records: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """``ok`` / ``failed`` / ``skipped`` when every scenario agrees, else ``partial``; and the reasons."""
    statuses = {s: r["status"] or "?" for s, r in records.items()}
    bad = {s: (r["reason"] or r["status"]) for s, r in sorted(records.items()) if statuses[s] != "ok"}
    kinds = set(statuses.values())
    status = kinds.pop() if len(kinds) == 1 else "partial"
    if len(set(bad.values())) == 1 and len(bad) == len(records):
        return status, next(iter(bad.values()))
    return status, "; ".join(f"{s}: {why}" for s, why in bad.items())


def model_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (target, host, variant, backend) with the figures of all its scenarios side by side."""
    model = rows[~rows["scenario"].isin(NON_MODEL_SCENARIOS)]
    cells = []
    for key, group in model.groupby(CELL_KEY, sort=True):
        records = {r["scenario"]: r for r in group.to_dict("records")}
        latency = records.get("latency", {})
        status, reason = _status(records)
        peak = _pick(records, "peak_rss_mb", ("latency",))
        cell = dict(zip(CELL_KEY, key, strict=True))
        cell.update(
            format=_pick(records, "format", ("latency",)),
            precision=_pick(records, "precision", ("latency",)),
            artifact_status=_pick(records, "artifact_status", ("latency",)) or "",
            size_bytes=_pick(records, "size_bytes", ("latency",)),
            params=_pick(records, "params", ("latency",)),
            **{
                c: latency.get(c, float("nan")) if latency.get("status") == "ok" else float("nan")
                for c in LATENCY_COLUMNS
            },
            batch100_ms=records.get("batch100", {}).get("batch100_ms", float("nan")),
            rss_mb=_pick(records, "rss_mb", ("latency",)),
            peak_rss_mb=peak if _finite(peak) else _pick(records, "rss_mb", ("latency",)),
            mean_return=_pick(records, "mean_return", RETURN_SOURCES),
            return_ci_low=_pick(records, "return_ci_low", RETURN_SOURCES),
            return_ci_high=_pick(records, "return_ci_high", RETURN_SOURCES),
            success_rate=_pick(records, "success_rate", RETURN_SOURCES),
            oracle_ratio=_pick(records, "oracle_ratio", RETURN_SOURCES),
            action_agreement=_pick(records, "action_agreement", ("latency",)),
            action_error=_pick(records, "action_error", ("latency",)),
            emulated=_pick(records, "emulated", ("latency",)),
            loop_fps=_pick(records, "loop_fps", ("loop_uncapped", "loop_paced")),
            deadline_misses=records.get("loop_paced", {}).get("deadline_misses", float("nan")),
            status=status,
            reason=reason,
            timestamp=max(r["timestamp"] for r in records.values()),
        )
        cells.append(cell)
    frame = pd.DataFrame(cells, columns=CELL_FIELDS)
    for col in CELL_FIELDS:
        if col not in CELL_TEXT_FIELDS:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["gate_failed"] = frame["artifact_status"] == "failed"
    frame["status_text"] = [status_text(c) for c in frame.to_dict("records")]
    return frame


def status_text(cell: dict[str, Any] | pd.Series) -> str:
    """The status column of the tables: the measurement status plus what the export gate said."""
    text = str(cell["status"])
    if cell.get("artifact_status") == "failed":
        text += " · gate failed"
    elif cell.get("artifact_status") == "pending-on-device":
        text += " · pending on device"
    return text


def pareto_front(table: pd.DataFrame, x: str = "lat_p99_us", y: str = "mean_return") -> pd.DataFrame:
    """The rows no other row beats on both counts (lower ``x`` and higher ``y``), sorted by ``x``.

    Rows missing either figure are ignored; of rows with equal ``x`` only the best ``y`` can be on the front,
    and a row that only ties an earlier one's ``y`` at a higher ``x`` is dominated.
    """
    points = table[np.isfinite(table[x].astype(float)) & np.isfinite(table[y].astype(float))]
    points = points.sort_values([x, y], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for index, value in zip(points.index, points[y], strict=True):
        if value > best:
            keep.append(index)
            best = value
    return points.loc[keep]


def shippable(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells that may sit on the Pareto front: a latency figure, and an artifact that passed its gate."""
    if cells.empty:
        return cells
    return cells[~cells["gate_failed"] & np.isfinite(cells["lat_p99_us"])]


def oracle_return(cells: pd.DataFrame) -> float | None:
    """The oracle's mean return, recovered as return ÷ oracle ratio (for a reference line on the charts)."""
    if cells.empty:
        return None
    ok = cells[(cells["oracle_ratio"] > 0.5) & np.isfinite(cells["mean_return"])]
    if ok.empty:
        return None
    return float((ok["mean_return"] / ok["oracle_ratio"]).median())


def problems(rows: pd.DataFrame, cells: pd.DataFrame, sessions: list[Session]) -> pd.DataFrame:
    """Every failed or skipped measurement, gate-failed artifact and frameless session, with its reason."""
    bad = rows[rows["status"] != "ok"][[*CELL_KEY, "scenario", "status", "reason"]].to_dict("records")
    for cell in cells[cells["gate_failed"]].to_dict("records") if not cells.empty else []:
        bad.append(
            {
                **{k: cell[k] for k in CELL_KEY},
                "scenario": "export gate",
                "status": "gate failed",
                "reason": "the artifact failed its parity gate at export; measured anyway, drawn hollow",
            }
        )
    for s in sessions:
        if s.problem:
            bad.append(
                {
                    "target": s.summary.get("target", ""),
                    "host": (s.summary.get("host") or {}).get("hostname", ""),
                    "variant": s.summary.get("variant", ""),
                    "backend": s.summary.get("backend", ""),
                    "scenario": s.name,
                    "status": "skipped",
                    "reason": s.problem,
                }
            )
    return pd.DataFrame(bad, columns=[*CELL_KEY, "scenario", "status", "reason"])


def non_model(rows: pd.DataFrame) -> pd.DataFrame:
    """Environment and trainer throughput rows."""
    cols = ["target", "host", "scenario", "value", "unit", "status", "reason"]
    return rows[rows["scenario"].isin(NON_MODEL_SCENARIOS)][cols].sort_values(["scenario", "target", "host"])


def pair_label(target: str, host: str) -> str:
    return f"{target} @ {host}"


def comparison(cells: pd.DataFrame) -> pd.DataFrame:
    """p99 latency and return per (variant, backend), one column pair per (target, host); empty when the
    results come from one (target, host) only."""
    measured = (
        cells[np.isfinite(cells["lat_p99_us"]) | np.isfinite(cells["mean_return"])] if len(cells) else cells
    )
    if measured.empty or len(measured.groupby(["target", "host"])) < 2:
        return pd.DataFrame()
    if measured["task"].nunique() > 1:  # one task's variants compared across targets: the gridworld's first
        measured = measured[measured["task"] == sorted(measured["task"].unique())[0]]
    wide = measured.assign(
        pair=[pair_label(t, h) for t, h in zip(measured["target"], measured["host"], strict=True)]
    )
    table = wide.pivot_table(
        index=["variant", "backend"], columns="pair", values=["lat_p99_us", "mean_return"], aggfunc="first"
    )
    out = table.index.to_frame(index=False)
    gate = wide.groupby(["variant", "backend"])["gate_failed"].any()
    out["gate_failed"] = [bool(gate.get(k, False)) for k in table.index]
    for pair in sorted(wide["pair"].unique()):
        for value in ("lat_p99_us", "mean_return"):
            out[f"{pair}|{value}"] = table[(value, pair)].to_numpy() if (value, pair) in table else np.nan
    return out


def session_rows(sessions: list[Session]) -> pd.DataFrame:
    """One line per session: the JSON's figures where written, else computed from the frames."""
    lines = []
    for s in sessions:
        meta, frames = s.summary, s.frames
        lat = meta.get("latency_us") or {}
        fps = meta.get("fps") or {}
        returns = meta.get("returns") or {}
        lat_us = frames["latency_ms"] * 1e3 if frames is not None else pd.Series(dtype=float)
        host = meta.get("host") or {}
        lines.append(
            {
                "session": s.name,
                "target": meta.get("target", ""),
                "host": host.get("hostname", ""),
                "arch": host.get("arch", ""),
                # qemu-user: the latencies are the emulator's, not a device's (the table says so per line)
                "emulated": "emulated" if host.get("emulated") else "",
                "variant": meta.get("variant", ""),
                "backend": meta.get("backend", ""),
                "requested_fps": meta.get("requested_fps", float("nan")),
                "frames": meta.get("frames", len(frames) if frames is not None else 0),
                "episodes": meta.get("episodes", frames["episode"].nunique() if frames is not None else 0),
                "lat_p50_us": lat.get("p50", lat_us.quantile(0.5) if len(lat_us) else float("nan")),
                "lat_p99_us": lat.get("p99", lat_us.quantile(0.99) if len(lat_us) else float("nan")),
                "mean_fps": fps.get("mean", frames["fps"].mean() if frames is not None else float("nan")),
                "deadline_misses": meta.get(
                    "deadline_misses", int(frames["deadline_miss"].sum()) if frames is not None else 0
                ),
                "peak_rss_mb": meta.get("peak_rss_mb", float("nan")),
                "mean_return": returns.get("mean_return", float("nan")),
                "oracle_ratio": returns.get("oracle_ratio", float("nan")),
                "stop_reason": meta.get("stop_reason", "") or s.problem,
                "started_at": meta.get("started_at", ""),
            }
        )
    return pd.DataFrame(lines)


def arm64_rows(record: dict[str, Any] | None) -> pd.DataFrame:
    """One line per artifact × backend of a ``make verify-arm64`` record: its return on arm64 (emulated),
    on x86 and in the manifest, and how far its outputs on the same observations are from x86's."""
    columns = [
        "variant", "format", "backend", "precision", "arm64_return", "x86_return", "manifest_return",
        "max_abs_diff", "same_actions", "parity", "status",
    ]  # fmt: skip
    if not record:
        return pd.DataFrame(columns=columns)
    key = ("variant", "format", "backend")
    parity = {tuple(p.get(k) for k in key): p for p in record.get("parity", [])}
    lines = []
    for r in record.get("returns", []):
        p = parity.get(tuple(r.get(k) for k in key), {})
        verdict = ("ok" if p.get("ok") else f"FAILED: needs {p.get('rule', '')}") if p else ""
        status = r.get("status", "")
        if status != "ok" and r.get("reason"):
            status = f"{status}: {r['reason']}"
        lines.append(
            {
                **{k: r.get(k) for k in key},
                "precision": p.get("precision", ""),
                "arm64_return": r.get("mean_return"),
                "x86_return": r.get("x86_return"),
                "manifest_return": r.get("manifest_return"),
                "max_abs_diff": p.get("max_abs_diff"),
                "same_actions": p.get("same_actions"),
                "parity": verdict,
                "status": status,
            }
        )
    return pd.DataFrame(lines, columns=columns)


def arm64_summary(record: dict[str, Any]) -> str:
    """One paragraph: what ran where, OpenVINO's fate on arm64, the verdict."""
    arm, ov = record.get("arm64", {}), record.get("openvino", {})
    sessions = record.get("sessions", [])
    equal = sum(bool(s.get("episodes_equal_x86")) for s in sessions)
    openvino = (
        f"OpenVINO {ov.get('version')} imports there"
        if ov.get("imports")
        else "OpenVINO does not load there (" + str(ov.get("error", "not tried")).splitlines()[0] + ")"
    )
    return (
        f"The arm64 bundle ran on aarch64 under qemu-user emulation (Python {arm.get('python', '?')}, numpy "
        f"{arm.get('numpy', '?')}, onnxruntime {arm.get('onnxruntime', '?')}); {openvino}. Every artifact "
        "ran on the same observations on both machines (parity: fp32 within 1e-4, fp16 within 1e-2 of the "
        f"output scale, int8 the same actions) and through its task's evaluation. {len(sessions)} edge "
        f"session(s) ran under emulation, {equal} with every episode's return equal to the same session on "
        "x86; their latencies time the emulator, not a device, so they stay off the bubble chart. Verdict: "
        + ("PASSED" if record.get("passed") else "FAILED")
        + f" ({record.get('seconds', '?')} s)."
    )


@dataclass
class Chart:
    """A written figure: its file (inside the report folder), title and the caption saying what it shows."""

    file: str
    title: str
    caption: str


@dataclass
class ReportData:
    """Everything the Markdown and HTML pages show."""

    results: Path
    bench: BenchmarkResults
    sessions: list[Session]
    sessions_left_out: int = 0
    arm64: dict[str, Any] | None = None
    """``results/arm64/verify.json`` (make verify-arm64), if any."""
    studies: list[Study] = field(default_factory=list)
    """The compression search's studies under ``results/search/`` (make search), if any."""
    charts: list[Chart] = field(default_factory=list)
    search_charts: dict[str, Chart] = field(default_factory=dict)
    """Each study's Pareto chart, by study name (``reports.search.write_charts``)."""
    generated: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    )

    def __post_init__(self) -> None:
        self.rows = self.bench.rows.sort_values(list(KEY), kind="stable").reset_index(drop=True)
        self.cells = model_cells(self.rows)
        self.front = pareto_front(shippable(self.cells))
        self.problems = problems(self.rows, self.cells, self.sessions)
        self.non_model = non_model(self.rows)
        self.comparison = comparison(self.cells)
        self.session_table = session_rows(self.sessions)
        self.arm64_table = arm64_rows(self.arm64)
        self.hosts = self.bench.hosts()
        self.oracle = oracle_return(self.cells)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return sorted({(t, h) for t, h in zip(self.rows["target"], self.rows["host"], strict=True)})

    @property
    def device_cells(self) -> pd.DataFrame:
        """The cells measured on a real CPU: those of an emulated host (qemu-user, ``emulated`` = 1) time
        the emulator, so they stay off every latency axis (their returns are still in the tables)."""
        cells = self.cells
        return cells[cells["emulated"] != 1] if len(cells) else cells

    @property
    def emulated_cells(self) -> int:
        return len(self.cells) - len(self.device_cells)

    @property
    def panels(self) -> list[tuple[str, str, str]]:
        """(task, target, host) of every cell measured on a real CPU: one bubble-chart panel each, tasks
        side by side."""
        cells = self.device_cells
        return (
            sorted(set(zip(cells["task"], cells["target"], cells["host"], strict=True))) if len(cells) else []
        )

    @property
    def tasks(self) -> list[str]:
        return sorted(set(self.rows["task"]))

    def sources(self) -> str:
        runs = len(self.bench.runs)
        text = (
            f"{runs} benchmark file{'s' * (runs != 1)} in {self.results / 'benchmark'}/ "
            f"({len(self.rows)} rows after keeping the newest of each key"
            + (f"; {self.bench.replaced} older rows replaced" if self.bench.replaced else "")
            + f"), {len(self.sessions)} edge session{'s' * (len(self.sessions) != 1)}"
        )
        if self.sessions_left_out:
            text += f" ({self.sessions_left_out} older not shown; see --sessions)"
        if self.studies:
            text += f", {len(self.studies)} compression-search stud{'ies' if len(self.studies) > 1 else 'y'}"
        return text
