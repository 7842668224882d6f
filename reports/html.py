"""``index.html``: one self-contained page (images as base64 data URIs, inline CSS and JS, no external URL),
so it can be mailed, attached to a CI run or opened from a device's SD card as a single file.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from html import escape
from pathlib import Path

import pandas as pd

from reports.search import Study, chosen_line, dominance_table, trial_table
from reports.summary import Chart, ReportData, arm64_summary
from reports.tables import (
    ARM64_COLUMNS,
    DOMINANCE_COLUMNS,
    HOST_COLUMNS,
    NON_MODEL_COLUMNS,
    PROBLEM_COLUMNS,
    ROW_COLUMNS,
    SESSION_COLUMNS,
    TRIAL_COLUMNS,
    Column,
    comparison_columns,
    target_columns,
)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f;
       background: #fafafa; }
header { background: #1f3a5f; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; opacity: .85; }
nav { padding: 8px 28px; background: #e8edf3; position: sticky; top: 0; z-index: 2; }
nav a { margin-right: 16px; color: #1f3a5f; text-decoration: none; font-weight: 600; }
main { padding: 8px 28px 40px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid #1f3a5f; padding-bottom: 4px; }
figure { margin: 18px 0; background: #fff; border: 1px solid #ddd; padding: 12px; border-radius: 6px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #444; font-size: 13px; margin-top: 6px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid #ddd; border-radius: 6px; }
table { border-collapse: collapse; font-size: 12.5px; white-space: nowrap; width: 100%; }
th, td { padding: 4px 6px; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f3f7; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #aaa; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; color: #1f3a5f; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; color: #1f3a5f; }
tbody tr:nth-child(even) { background: #f8f9fb; }
tbody tr:hover { background: #eef4ff; }
td.reason { white-space: normal; min-width: 240px; }
.st-ok { color: #17803d; } .st-failed, .st-gate { color: #c62828; font-weight: 600; }
.st-gate-failed, .st-build-failed, .st-measure-failed { color: #c62828; }
tr.pareto td { font-weight: 600; } tbody tr.pareto { background: #e6f0fa; }
p.chosen { font-size: 14px; }
.st-skipped, .st-partial { color: #8a6d00; }
.note { color: #555; font-size: 13px; }
"""

JS = """
(function () {
  function value(row, i) {
    var cell = row.cells[i];
    if (cell.hasAttribute("data-v")) {
      var v = cell.getAttribute("data-v");
      return v === "" ? null : Number(v);
    }
    var t = cell.textContent.trim();
    return t === "" || t === "\\u2013" ? null : t.toLowerCase();
  }
  function sortBy(table, th, i) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = value(a, i), y = value(b, i);
      if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }  // missing: last
      if (typeof x === "number" && typeof y === "number") { return sign * (x - y); }
      return sign * String(x).localeCompare(String(y), undefined, {numeric: true});
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, i) {
      th.title = "click to sort";
      th.addEventListener("click", function () { sortBy(table, th, i); });
    });
  });
  document.body.setAttribute("data-js", "ready");
})();
"""


def _status_class(text: str) -> str:
    if "gate failed" in text:
        return "st-gate"
    return f"st-{text.split()[0]}" if text else ""


def html_table(
    frame: pd.DataFrame,
    columns: list[Column],
    table_id: str,
    sortable: bool = True,
    row_class: Callable[[dict], str] | None = None,
) -> str:
    """A table whose numeric cells carry their raw value in ``data-v`` so sorting is numeric; ``row_class``
    gives a row a CSS class (to highlight it) from its record."""
    head = "".join(
        f'<th class="num">{escape(c.header)}</th>' if c.numeric else f"<th>{escape(c.header)}</th>"
        for c in columns
    )
    body = []
    for row in frame.to_dict("records"):
        tds = []
        for c in columns:
            text = escape(c.text(row))
            if c.numeric:
                raw = c.raw(row)
                tds.append(f'<td class="num" data-v="{"" if math.isnan(raw) else repr(raw)}">{text}</td>')
            elif c.key in ("status", "status_text"):
                tds.append(f'<td class="{_status_class(c.text(row))}">{text}</td>')
            elif c.key == "reason":
                tds.append(f'<td class="reason">{text}</td>')
            else:
                tds.append(f"<td>{text}</td>")
        cls = row_class(row) if row_class else ""
        body.append((f'<tr class="{escape(cls)}">' if cls else "<tr>") + "".join(tds) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    return (
        f'<div class="scroll"><table id="{escape(table_id)}"{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(chart: Chart, folder: Path) -> str:
    return (
        f'<figure><img alt="{escape(chart.title)}" src="{data_uri(folder / chart.file)}">'
        f"<figcaption><b>{escape(chart.title)}.</b> {escape(chart.caption)}</figcaption></figure>"
    )


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def _p(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{escape(text)}</p>'


def _study(study: Study, chart: Chart | None, folder: Path) -> str:
    """One study's part of the search section: chart, what was chosen and why, the fixed variants it was
    compared with, every trial (the Pareto front highlighted)."""
    dominance = dominance_table(study)
    return "".join(
        (
            f'<h3 id="search-{escape(study.name)}">{escape(study.title)} ({escape(study.name)})</h3>',
            _figure(chart, folder) if chart else "",
            _p(chosen_line(study), "chosen"),
            _p(
                "The searched model against each fixed variant of the target profile that passed its gate, "
                "timed side by side at the end of the run: whether its return is at least the variant's "
                "(within the float policy's 95% CI on a seeded task), on which objectives it is better by "
                "more than the noise (p99 by 10 %, size by 1 %, RSS by 1 MB), and so whether it dominates "
                "the variant."
            ),
            html_table(dominance, DOMINANCE_COLUMNS, f"dominance-{study.name}", sortable=False)
            if len(dominance)
            else _p("No comparison with the fixed variants (none passed its gate, or no trial was chosen)."),
            _p("Every trial; highlighted rows are on the Pareto front of the feasible trials."),
            html_table(
                trial_table(study),
                TRIAL_COLUMNS,
                f"trials-{study.name}",
                row_class=lambda row: "pareto" if row["pareto"] == 1 else "",
            ),
        )
    )


def render_html(data: ReportData, folder: Path) -> str:
    """The page; chart files are read from ``folder`` (where ``write_charts`` put them) and embedded."""
    sections = []
    targets = []
    for target, cells in data.cells.groupby("target", sort=True) if len(data.cells) else []:
        targets.append(f"<h3>Target {escape(str(target))}</h3>")
        targets.append(html_table(cells, target_columns(cells), f"cells-{target}"))
    sections.append(
        _section(
            "summary",
            "Summary per variant × backend",
            _p(
                "One line per measured cell (click a header to sort). Latency: single-stream batch 1; "
                "return: exact mean over every start state; agreement: the export gate's action agreement "
                "with the float policy; loop FPS: the uncapped edge-runtime loop."
            ),
            *targets or [_p("No model was measured.")],
        )
    )
    figures = [_figure(c, folder) for c in data.charts if not c.file.startswith("sessions/")]
    sections.append(_section("charts", "Charts", *figures))
    if data.studies:
        sections.append(
            _section(
                "search",
                "Compression search",
                _p(
                    "The Optuna search over compression recipes (source × precision × quantization options × "
                    "backend), one study per (task, target): results/search/<study>/."
                ),
                *(_study(s, data.search_charts.get(s.name), folder) for s in data.studies),
            )
        )
    if len(data.comparison):
        sections.append(
            _section(
                "compare",
                "Comparison across targets and hosts",
                _p("p99 latency (µs) and exact return per (variant, backend) for each target @ host."),
                html_table(data.comparison, comparison_columns(data.comparison), "comparison"),
            )
        )
    if len(data.non_model):
        sections.append(
            _section(
                "throughput",
                "Environment and trainer throughput",
                html_table(data.non_model, NON_MODEL_COLUMNS, "throughput"),
            )
        )
    if data.arm64:
        sections.append(
            _section(
                "arm64",
                "arm64 under emulation",
                _p(arm64_summary(data.arm64)),
                html_table(data.arm64_table, ARM64_COLUMNS, "arm64", sortable=False),
            )
        )
    if data.sessions:
        emulated = (data.session_table["emulated"] == "emulated").any()
        session_figures = [_figure(c, folder) for c in data.charts if c.file.startswith("sessions/")]
        left_out = (
            _p(f"{data.sessions_left_out} older session(s) not shown (raise --sessions).")
            if data.sessions_left_out
            else ""
        )
        sections.append(
            _section(
                "sessions",
                "Edge sessions",
                html_table(data.session_table, SESSION_COLUMNS, "sessions-table"),
                _p("Sessions marked emulated ran under qemu-user: their latencies are the emulator's.")
                if emulated
                else "",
                left_out,
                *session_figures,
            )
        )
    problems = (
        html_table(data.problems, PROBLEM_COLUMNS, "problems")
        if len(data.problems)
        else _p("Every measurement succeeded.")
    )
    sections.append(
        _section(
            "problems",
            "Failed and skipped",
            _p(
                "Cells that failed or were skipped, artifacts that failed their export gate, and sessions "
                "without frames, each with its reason."
            ),
            problems,
        )
    )
    warnings = "".join(_p(w) for w in data.bench.warnings)
    sections.append(_section("hosts", "Hosts", html_table(data.hosts, HOST_COLUMNS, "hosts"), warnings))
    sections.append(
        _section(
            "rows",
            "All benchmark rows",
            _p(
                "Every row after keeping the newest measurement of each (target, host, variant, backend, "
                "scenario); click a header to sort."
            ),
            html_table(data.rows, ROW_COLUMNS, "all-rows"),
        )
    )
    nav = "".join(
        f'<a href="#{a}">{escape(t)}</a>'
        for a, t in (
            ("summary", "Summary"),
            ("charts", "Charts"),
            ("search", "Search"),
            ("compare", "Comparison"),
            ("throughput", "Throughput"),
            ("arm64", "arm64"),
            ("sessions", "Sessions"),
            ("problems", "Failed & skipped"),
            ("hosts", "Hosts"),
            ("rows", "All rows"),
        )
        if f'id="{a}"' in "".join(sections)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>NeuroQuant benchmark report</title><style>{CSS}</style></head><body>"
        f"<header><h1>NeuroQuant benchmark report</h1><p>Generated {escape(data.generated)} from "
        f"{escape(data.sources())}.</p></header><nav>{nav}</nav><main>{''.join(sections)}</main>"
        f"<script>{JS}</script></body></html>\n"
    )
