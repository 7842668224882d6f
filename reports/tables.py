"""Column specifications shared by the Markdown and HTML tables, and ``report.md`` itself.

A column says which field it shows, under which header and how a number is written, once; the Markdown
tables (pasteable into a README) and the sortable HTML tables are both built from these lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from reports.search import DOMINANCE_OBJECTIVES, Study, chosen_line, trial_table
from reports.summary import Chart, ReportData, arm64_summary, pair_label

MISSING = "–"


def _number(value: Any, kind: str) -> str:
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "sig":  # timings: three significant digits (6.37, 12.4, 0.0784), whole numbers from 100 up
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{min(6, 2 - math.floor(math.log10(abs(value))))}f}"
    if kind.startswith("g"):  # g, g3: shortest form (to 3 significant digits)
        return f"{value:.{kind[1:] or 6}g}"
    return f"{value:.{int(kind[1:])}f}"  # f1, f2, f3, f4


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    kind: str = "text"
    """text, or how a number is written: int, sig (3 significant digits), g, f1/f2/f3 (decimals)."""
    scale: float = 1.0

    @property
    def numeric(self) -> bool:
        return self.kind != "text"

    def raw(self, row: dict[str, Any]) -> Any:
        """The value a sort uses: a float (NaN when missing) for numbers, the text otherwise."""
        value = row.get(self.key)
        if not self.numeric:
            return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        try:
            number = float(value) * self.scale
        except (TypeError, ValueError):
            return math.nan
        return number

    def text(self, row: dict[str, Any]) -> str:
        value = self.raw(row)
        if not self.numeric:
            return value
        return MISSING if math.isnan(value) else _number(value, self.kind)


#: Every column a table can show, by field; a field not listed is text under its own name.
KNOWN = {
    c.key: c
    for c in (
        Column("size KB", "size_bytes", "f1", 1 / 1024),
        Column("params", "params", "int"),
        Column("load ms", "load_ms", "sig"),
        Column("first infer ms", "first_infer_ms", "sig"),
        Column("p50 µs", "lat_p50_us", "sig"),
        Column("p90 µs", "lat_p90_us", "sig"),
        Column("p99 µs", "lat_p99_us", "sig"),
        Column("p99.9 µs", "lat_p999_us", "sig"),
        Column("max µs", "lat_max_us", "sig"),
        Column("mean µs", "lat_mean_us", "sig"),
        Column("batch100 ms", "batch100_ms", "sig"),
        Column("RSS MB", "rss_mb", "f1"),
        Column("peak RSS MB", "peak_rss_mb", "f1"),
        Column("return", "mean_return", "f2"),
        Column("CI low", "return_ci_low", "f2"),
        Column("CI high", "return_ci_high", "f2"),
        Column("action error", "action_error", "f3"),
        Column("success", "success_rate", "f2"),
        Column("oracle ratio", "oracle_ratio", "f3"),
        Column("agreement", "action_agreement", "f3"),
        Column("loop FPS", "loop_fps", "int"),
        Column("deadline misses", "deadline_misses", "int"),
        Column("lateness p99 µs", "lateness_p99_us", "sig"),
        Column("value", "value", "int"),
        Column("requested FPS", "requested_fps", "g"),
        Column("frames", "frames", "int"),
        Column("episodes", "episodes", "int"),
        Column("mean FPS", "mean_fps", "f1"),
        Column("artifact", "artifact_status"),
        Column("status", "status_text"),
        Column("stop", "stop_reason"),
        Column("newest run", "newest_run"),
        Column("arm64 return", "arm64_return", "f4"),
        Column("x86 return", "x86_return", "f4"),
        Column("manifest return", "manifest_return", "f4"),
        Column("max |Δ| vs x86", "max_abs_diff", "g3"),
        Column("same actions", "same_actions", "f3"),
    )
}


def columns(*keys: str) -> list[Column]:
    return [KNOWN.get(k) or Column(k.replace("_", " "), k) for k in keys]


CELL_COLUMNS = columns(
    "task", "variant", "backend", "format", "precision", "size_bytes", "params", "lat_p50_us", "lat_p99_us",
    "batch100_ms", "peak_rss_mb", "mean_return", "return_ci_low", "return_ci_high", "oracle_ratio",
    "action_agreement", "action_error", "loop_fps", "status_text",
)  # fmt: skip
ROW_COLUMNS = columns(
    "task", "target", "host", "variant", "backend", "format", "precision", "scenario", "status",
    "artifact_status", "size_bytes", "params", "load_ms", "first_infer_ms", "lat_p50_us", "lat_p90_us",
    "lat_p99_us", "lat_p999_us", "lat_max_us", "lat_mean_us", "batch100_ms", "rss_mb", "peak_rss_mb",
    "mean_return", "return_ci_low", "return_ci_high", "success_rate", "oracle_ratio", "action_agreement",
    "action_error", "loop_fps", "deadline_misses", "lateness_p99_us", "value", "unit", "reason",
    "timestamp",
)  # fmt: skip
NON_MODEL_COLUMNS = columns("target", "host", "scenario", "value", "unit", "status", "reason")
SESSION_COLUMNS = columns(
    "session", "target", "host", "arch", "emulated", "variant", "backend", "requested_fps", "frames",
    "episodes", "lat_p50_us", "lat_p99_us", "mean_fps", "deadline_misses", "peak_rss_mb", "mean_return",
    "oracle_ratio", "stop_reason",
)  # fmt: skip
PROBLEM_COLUMNS = columns("task", "target", "host", "variant", "backend", "scenario", "status", "reason")
ARM64_COLUMNS = columns(
    "variant", "format", "backend", "precision", "arm64_return", "x86_return", "manifest_return",
    "max_abs_diff", "same_actions", "parity", "status",
)  # fmt: skip
HOST_COLUMNS = columns(
    "target", "host", "cpu", "arch", "cores", "os", "python", "versions", "runs", "newest_run", "created"
)
#: The compression search's trials (reports.search.trial_table): every one in the HTML, the front in Markdown.
_TRIAL = {
    c.key: c
    for c in (
        Column("trial", "number", "int"),
        Column("front", "mark"),
        Column("calibration", "calibration", "int"),
        Column("return ratio", "return_ratio", "f3"),
        Column("size KiB", "size_bytes", "f1", 1 / 1024),
    )
}


def _trial_columns(*keys: str) -> list[Column]:
    return [_TRIAL.get(k) or c for k, c in zip(keys, columns(*keys), strict=True)]


TRIAL_COLUMNS = _trial_columns(
    "number", "mark", "status", "source", "precision", "per_channel", "equalize", "calibration", "backend",
    "return_ratio", "lat_p99_us", "size_bytes", "peak_rss_mb", "reason",
)  # fmt: skip
FRONT_COLUMNS = _trial_columns(
    "number", "mark", "source", "precision", "backend", "return_ratio", "lat_p99_us", "size_bytes",
    "peak_rss_mb",
)  # fmt: skip
DOMINANCE_COLUMNS = [
    Column("fixed variant", "variant"),
    Column("backend", "backend"),
    Column("searched return ≥ its", "return_ok"),
    *(Column(f"searched better on {o}", f"better_{o}") for o in DOMINANCE_OBJECTIVES),
    Column("searched dominates", "dominates"),
]


def comparison_columns(table: pd.DataFrame) -> list[Column]:
    """variant, backend, then p99 and return for each (target, host) pair of ``ReportData.comparison``."""
    shown = columns("variant", "backend")
    for key in table.columns:
        if "|" in key:
            pair, value = key.split("|")
            shown.append(replace(KNOWN[value], header=f"{pair} {KNOWN[value].header}", key=key))
    return shown


def target_columns(cells: pd.DataFrame) -> list[Column]:
    """The per-target table's columns; a host column when one target was measured on several hosts."""
    return (columns("host") if cells["host"].nunique() > 1 else []) + CELL_COLUMNS


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, columns: list[Column]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, missing figures as an en dash."""
    lines = [
        "| " + " | ".join(_cell(c.header) for c in columns) + " |",
        "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|",
    ]
    for row in frame.to_dict("records"):
        lines.append("| " + " | ".join(_cell(c.text(row)) for c in columns) + " |")
    return "\n".join(lines)


def host_line(host: dict[str, Any]) -> str:
    details = ", ".join(str(host[k]) for k in ("arch", "os") if host.get(k))
    cores = f", {host['cores']} cores" if host.get("cores") not in ("", None) else ""
    python = f", Python {host['python']}" if host.get("python") else ""
    versions = f"; {host['versions']}" if host.get("versions") else ""
    run = f" (newest run {host['newest_run']}, {host['runs']} run(s))" if host.get("newest_run") else ""
    return (
        f"- **{pair_label(host['target'], host['host'])}**: {host.get('cpu') or 'unknown CPU'} "
        f"({details}{cores}){python}{versions}{run}"
    )


def render_markdown(data: ReportData) -> str:
    out = [
        "# NeuroQuant benchmark report",
        "",
        f"Generated {data.generated} from {data.sources()}.",
        "",
        "## Hosts",
        "",
        *(host_line(h) for h in data.hosts.to_dict("records")),
    ]
    for target, cells in data.cells.groupby("target", sort=True) if len(data.cells) else []:
        out += ["", f"## Target `{target}`", "", markdown_table(cells, target_columns(cells))]
    out += [
        "",
        "Latency figures are single-stream batch-1 inference (µs); batch100 is the median ms per forward "
        "pass of 100 observations; return is the exact mean return over every start state; agreement is "
        "the export parity gate's action agreement with the float policy; loop FPS is the uncapped "
        'edge-runtime loop. "gate failed": the artifact failed its export parity gate and was measured '
        "anyway.",
    ]
    if len(data.non_model):
        out += [
            "",
            "## Environment and trainer throughput",
            "",
            markdown_table(data.non_model, NON_MODEL_COLUMNS),
        ]
    if len(data.comparison):
        out += [
            "",
            "## Comparison across targets and hosts",
            "",
            markdown_table(data.comparison, comparison_columns(data.comparison)),
        ]
    if data.arm64:
        out += [
            "",
            "## arm64 under emulation (make verify-arm64)",
            "",
            arm64_summary(data.arm64),
            "",
            markdown_table(data.arm64_table, ARM64_COLUMNS),
        ]
    if len(data.session_table):
        out += ["", "## Edge sessions", "", markdown_table(data.session_table, SESSION_COLUMNS)]
        if (data.session_table["emulated"] == "emulated").any():
            out += ["", "Sessions marked emulated ran under qemu-user: their latencies are the emulator's."]
    for study in data.studies:
        out += search_markdown(study, data.search_charts.get(study.name))
    out += ["", "## Failed and skipped", ""]
    out.append(
        markdown_table(data.problems, PROBLEM_COLUMNS)
        if len(data.problems)
        else "Every measurement succeeded."
    )
    out += ["", "## Charts", ""]
    for chart in data.charts:
        out += [f"![{chart.title}]({chart.file})", "", f"*{chart.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def search_markdown(study: Study, chart: Chart | None) -> list[str]:
    """A study's lines of report.md: what was chosen and why, the Pareto trials, the chart."""
    table = trial_table(study)
    front = table[table["pareto"] == 1]
    lines = ["", f"## Compression search: {study.title} (`{study.name}`)", "", chosen_line(study), ""]
    lines.append(
        markdown_table(front, FRONT_COLUMNS) if len(front) else "No feasible trial: the front is empty."
    )
    if chart is not None:
        lines += ["", f"![{chart.title}]({chart.file})"]
    return lines
