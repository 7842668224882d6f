"""The report's figures: the latency/return/memory bubble chart with its Pareto front, latency CDFs,
model size against return, the cross-target comparison and the per-session plots (``reports.session``).

Every chart uses one colour per backend and one marker per variant, fixed over the whole report, so a
point means the same thing on every figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, LogFormatter, NullLocator

from reports import session as session_plots
from reports.summary import Chart, ReportData, pair_label, pareto_front, shippable

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8", "d")
#: Bubble area (pt²) of the largest peak RSS on the chart.
MAX_AREA = 700.0
#: Percentile columns and the fraction of inferences at or below each.
PERCENTILES = (("lat_p50_us", 0.5), ("lat_p90_us", 0.9), ("lat_p99_us", 0.99), ("lat_p999_us", 0.999))
DPI = 110


@dataclass
class Style:
    """Colour per backend, marker per variant; the same mapping on every chart."""

    colors: dict[str, str]
    markers: dict[str, str]

    @classmethod
    def of(cls, cells: pd.DataFrame) -> Style:
        palette = plt.get_cmap("tab10").colors
        backends = sorted(cells["backend"].unique()) if len(cells) else []
        variants = sorted(cells["variant"].unique()) if len(cells) else []
        return cls(
            {b: to_hex(palette[i % len(palette)]) for i, b in enumerate(backends)},
            {v: MARKERS[i % len(MARKERS)] for i, v in enumerate(variants)},
        )

    def point(self, ax: Axes, x: float, y: float, cell: dict, size: float, hollow: bool) -> None:
        color = self.colors.get(cell["backend"], "grey")
        face = "none" if hollow else color
        ax.scatter(
            [x],
            [y],
            s=size,
            marker=self.markers.get(cell["variant"], "o"),
            facecolors=face,
            edgecolors=color,
            linewidths=1.6 if hollow else 0.6,
            alpha=0.9 if hollow else 0.7,
            zorder=3,
        )

    def handles(self, shown: pd.DataFrame) -> list[tuple[Line2D, str, bool]]:
        """Legend entries, as (handle, label, is_heading), for the backends and variants in ``shown``."""
        backends, variants = set(shown["backend"]), set(shown["variant"])
        entries = [_heading("backend (colour)")]
        entries += [
            (Line2D([], [], ls="", marker="o", ms=8, color=c), b, False)
            for b, c in self.colors.items()
            if b in backends
        ]
        entries.append(_heading("variant (marker)"))
        entries += [
            (Line2D([], [], ls="", marker=m, ms=8, color="#555555"), v, False)
            for v, m in self.markers.items()
            if v in variants
        ]
        return entries


def _heading(text: str) -> tuple[Line2D, str, bool]:
    return Line2D([], [], ls="", marker=""), text, True


def _legend(fig: Figure, entries: list[tuple[Line2D, str, bool]], **kwargs: object) -> None:
    legend = fig.legend(
        [h for h, _, _ in entries],
        [t for _, t, _ in entries],
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        frameon=False,
        **kwargs,
    )
    for text, (_, _, heading) in zip(legend.get_texts(), entries, strict=True):
        if heading:
            text.set_fontweight("bold")


def _grid(n: int, width: float, height: float, max_cols: int = 2) -> tuple[Figure, list[Axes]]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _log_x(ax: Axes) -> None:
    """Log-scale x with plain numbers (30, 100, 300) instead of 3×10¹."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(LogFormatter())
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _nice(value: float) -> float:
    """1, 2 or 5 times a power of ten, nearest to ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    return min((m * exp for m in (1, 2, 5, 10)), key=lambda v: abs(v - value))


def bubble(data: ReportData, style: Style) -> tuple[Figure, str]:
    cells = data.device_cells  # an emulated host's latency is the emulator's: not on this axis
    drawn = (
        cells[np.isfinite(cells["lat_p99_us"]) & np.isfinite(cells["mean_return"])] if len(cells) else cells
    )
    panels = data.panels or [("gridworld", t, h) for t, h in data.pairs]
    fig, axes = _grid(len(panels), 7.0, 5.0)
    rss_max = float(drawn["peak_rss_mb"].max()) if len(drawn) and drawn["peak_rss_mb"].notna().any() else 0.0
    scale = MAX_AREA / rss_max if rss_max > 0 else 0.0

    def area(rss: float) -> float:
        return max(rss * scale, 15.0) if math.isfinite(rss) and scale else 60.0

    for ax, (task, target, host) in zip(axes, panels, strict=True):
        exact = task == "gridworld"
        what = "exact return" if exact else "return ± 95% CI"
        ax.set_title(f"{task}, {pair_label(target, host)}: p99 latency vs {what}", fontsize=10)
        here = (drawn["task"] == task) & (drawn["target"] == target) & (drawn["host"] == host)
        mine = drawn[here] if len(drawn) else drawn
        if mine.empty:
            _empty(ax, "no successful latency measurement\n(see the failed and skipped list)")
            continue
        spread = mine[np.isfinite(mine["return_ci_low"]) & (mine["return_ci_high"] > mine["return_ci_low"])]
        if len(spread):  # the return's 95% CI of seeded episodes (an exact evaluation has none)
            ax.errorbar(
                spread["lat_p99_us"],
                spread["mean_return"],
                yerr=[
                    spread["mean_return"] - spread["return_ci_low"],
                    spread["return_ci_high"] - spread["mean_return"],
                ],
                fmt="none",
                ecolor="#777777",
                elinewidth=0.8,
                capsize=2,
                zorder=1,
            )
        for cell in mine.to_dict("records"):
            style.point(
                ax,
                cell["lat_p99_us"],
                cell["mean_return"],
                cell,
                area(cell["peak_rss_mb"]),
                cell["gate_failed"],
            )
        _log_x(ax)
        ax.margins(x=0.15, y=0.12)
        front = pareto_front(shippable(mine))
        if len(front):  # the step runs on to the right edge: what the slowest front point still offers
            right = ax.get_xlim()[1]
            xs, ys = [*front["lat_p99_us"], right], [*front["mean_return"], front["mean_return"].iloc[-1]]
            ax.step(xs, ys, where="post", color="k", lw=1.2, ls="--", zorder=2)
            ax.set_xlim(right=right)
            for cell in front.to_dict("records"):
                ax.annotate(
                    f"{cell['variant']}\n{cell['backend']}",
                    (cell["lat_p99_us"], cell["mean_return"]),
                    xytext=(7, -4),
                    textcoords="offset points",
                    fontsize=7,
                    va="top",
                )
        if data.oracle is not None and exact:
            ax.axhline(data.oracle, color="#888888", lw=0.9, ls=":", zorder=1)
        ax.set_xlabel("latency p99, batch 1 (µs, log scale)")
        ax.set_ylabel("exact mean return (all start states)" if exact else "mean return (seeded episodes)")
        ax.grid(True, which="both", alpha=0.3)

    entries = style.handles(drawn)
    if scale:
        entries.append(_heading("peak RSS (area)"))
        for mb in sorted({_nice(rss_max * f) for f in (0.2, 0.5, 1.0)}):
            entries.append(
                (
                    Line2D([], [], ls="", marker="o", ms=math.sqrt(area(mb)), color="#bbbbbb"),
                    f"{mb:g} MB",
                    False,
                )
            )
    entries += [
        _heading("lines"),
        (Line2D([], [], color="k", ls="--"), "Pareto front (lower p99,\nhigher return)", False),
        (
            Line2D([], [], ls="", marker="o", ms=8, mfc="none", color="#555555"),
            "hollow: failed\nexport gate",
            False,
        ),
    ]
    if data.oracle is not None:
        entries.append((Line2D([], [], color="#888888", ls=":"), f"oracle return {data.oracle:.2f}", False))
    if len(drawn):
        _legend(fig, entries, labelspacing=1.4)
    fig.tight_layout()
    gate = int(cells["gate_failed"].sum()) if len(cells) else 0
    unplotted = len(cells) - len(drawn)
    caption = (
        "One panel per (task, target, host), one bubble per (variant, backend) cell. x: single-stream "
        "(batch 1) p99 latency from the `latency` scenario; y: the task's return — exact over every start "
        "state on the gridworld, the mean of seeded episodes with its 95% CI as an error bar elsewhere — "
        "measured through the backend in the loop scenario, else the manifest's evaluation; area ∝ peak RSS "
        "of the cell's process. The dashed step "
        "line is the Pareto front of the cells that passed their export gate, its points labelled."
        + (f" {gate} hollow cell(s) failed the export parity gate (measured anyway)." if gate else "")
        + (
            f" {unplotted} cell(s) without a latency or return figure are not drawn (see Failed and skipped)."
            if unplotted
            else ""
        )
        + (
            f" {data.emulated_cells} cell(s) measured under emulation (qemu-user) are left out: their "
            "latency is the emulator's; their returns are in the tables."
            if data.emulated_cells
            else ""
        )
    )
    return fig, caption


def latency_cdf(data: ReportData, style: Style) -> tuple[Figure, str]:
    cells = data.device_cells  # emulated latencies (qemu-user) are not a device's: left out
    measured = cells[np.isfinite(cells["lat_p50_us"])] if len(cells) else cells
    with_frames = [
        s for s in data.sessions if s.frames is not None and not (s.summary.get("host") or {}).get("emulated")
    ]
    backends = sorted(measured["backend"].unique()) if len(measured) else []
    panels = backends + (["edge sessions"] if with_frames else [])
    fig, axes = _grid(max(len(panels), 1), 6.0, 4.2)
    if not panels:
        _empty(axes[0], "no latency measurements")
        return fig, "No latency measurement succeeded; see the failed and skipped list."
    key_columns = ["task", "target", "host", "variant", "backend", "scenario"]
    iterations = data.rows.set_index(key_columns)["iterations"]
    multi = len(data.pairs) > 1
    dashes = dict(zip(data.pairs, ("-", "--", ":", "-."), strict=False))
    palette = plt.get_cmap("tab10").colors
    colors = {v: palette[i % len(palette)] for i, v in enumerate(style.markers)}
    floor = 1.0
    for ax, backend in zip(axes, backends, strict=False):
        for cell in measured[measured["backend"] == backend].to_dict("records"):
            points = [(cell[c], q) for c, q in PERCENTILES if math.isfinite(cell[c])]
            key = (cell["task"], cell["target"], cell["host"], cell["variant"], backend, "latency")
            n = iterations.get(key, np.nan)
            top = 1.0 - 1.0 / n if math.isfinite(n) and n > 1 else 0.9999
            if math.isfinite(cell["lat_max_us"]):
                points.append((cell["lat_max_us"], top))
            floor = max(floor, 1.0 / (1.0 - max(q for _, q in points)))
            label = cell["variant"] + (f" ({pair_label(cell['target'], cell['host'])})" if multi else "")
            if len(data.tasks) > 1:
                label = f"{cell['task']}: {label}"
            xs, ys = zip(*points, strict=True)
            ax.step(
                xs,
                ys,
                where="post",
                marker=style.markers.get(cell["variant"], "o"),
                ms=5,
                lw=1.2,
                label=label,
                color=colors.get(cell["variant"]),
                ls=dashes.get((cell["target"], cell["host"]), "-"),
                markerfacecolor="none" if cell["gate_failed"] else None,
            )
        ax.set_title(f"{backend}: batch-1 latency CDF (benchmark percentiles)", fontsize=10)
    if with_frames:
        ax = axes[len(backends)]
        for s in with_frames:
            lat = np.sort(s.frames["latency_ms"].dropna().to_numpy() * 1e3)
            if not len(lat):
                continue
            ys = (np.arange(len(lat)) + 0.5) / len(lat)
            floor = max(floor, 2.0 * len(lat))
            label = f"{s.name}: {s.summary.get('variant', '?')} / {s.summary.get('backend', '?')}"
            ax.step(lat, ys, where="post", lw=1.2, label=label)
        ax.set_title("edge sessions: per-frame latency CDF", fontsize=10)
    emulated = data.emulated_cells or len(with_frames) < sum(s.frames is not None for s in data.sessions)
    top = 1.0 - 0.5 / floor
    ticks = [q for q in (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999) if q < top]
    for ax in axes:
        _log_x(ax)
        ax.set_yscale("logit")
        ax.set_ylim(0.3, top)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FixedFormatter([f"{q:g}" for q in ticks]))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("inference latency (µs, log scale)")
        ax.set_ylabel("fraction of inferences ≤ latency\n(logit scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    caption = (
        "Batch-1 latency CDF per backend, one line per variant"
        + (" and target @ host (line style)" if multi else "")
        + ", drawn as a step function through the "
        "benchmark's percentile columns (p50, p90, p99, p99.9, and the maximum at 1 − 1/iterations): the "
        "CDF is only known at those points, the steps are its lower bound."
        + (
            " The last panel is the exact empirical CDF of the per-frame `latency_ms` of the edge "
            "session CSVs."
            if with_frames
            else ""
        )
        + " Hollow markers: the artifact failed its export gate."
        + (" Cells and sessions measured under emulation are left out." if emulated else "")
    )
    return fig, caption


def size_vs_return(data: ReportData, style: Style) -> tuple[Figure, str]:
    cells = data.cells
    drawn = (
        cells[np.isfinite(cells["size_bytes"]) & np.isfinite(cells["mean_return"])].drop_duplicates(
            ["task", "target", "variant", "backend"]
        )
        if len(cells)
        else cells
    )
    tasks = sorted(drawn["task"].unique()) if len(drawn) else ["gridworld"]
    fig, axes = _grid(len(tasks), 8.5, 5.0)  # one panel per task: returns of two tasks share no scale
    for ax, task in zip(axes, tasks, strict=True):
        mine = drawn[drawn["task"] == task] if len(drawn) else drawn
        _size_panel(ax, mine, style, data.oracle if task == "gridworld" else None)
        ax.set_title(f"{task}: model size vs return (one point per variant × backend)", fontsize=10)
    ax = axes[0]
    entries = style.handles(drawn)
    entries.append(
        (
            Line2D([], [], ls="", marker="o", ms=8, mfc="none", color="#555555"),
            "hollow: failed\nexport gate",
            False,
        )
    )
    if len(drawn):
        _legend(fig, entries)
    fig.tight_layout()
    return fig, (
        "Size of each exported artifact file against its exact mean return; points of one artifact on "
        "several backends share an x." + (" The dotted line is the oracle's return." if data.oracle else "")
    )


def _size_panel(ax: Axes, drawn: pd.DataFrame, style: Style, oracle: float | None) -> None:
    if drawn.empty:
        _empty(ax, "no cell has both a model size and a return")
    else:
        for cell in drawn.to_dict("records"):
            style.point(ax, cell["size_bytes"] / 1024, cell["mean_return"], cell, 70.0, cell["gate_failed"])
        labelled = drawn.drop_duplicates(["variant", "format"]).sort_values("size_bytes")
        for i, cell in enumerate(labelled.to_dict("records")):  # alternate above/below: less overlap
            ax.annotate(
                f"{cell['variant']} ({cell['format']})",
                (cell["size_bytes"] / 1024, cell["mean_return"]),
                xytext=(6, 6 if i % 2 == 0 else -13),
                textcoords="offset points",
                fontsize=7,
            )
        if oracle is not None:
            ax.axhline(oracle, color="#888888", lw=0.9, ls=":", label=f"oracle return {oracle:.2f}")
        _log_x(ax)
        ax.margins(x=0.15, y=0.12)
        ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("model file size (KB, log scale)")
    ax.set_ylabel("exact mean return (all start states)" if oracle is not None else "mean return")


def comparison(data: ReportData, style: Style) -> tuple[Figure, str] | None:
    table = data.comparison
    if table.empty:
        return None
    pairs = sorted({c.split("|")[0] for c in table.columns if "|" in c})
    labels = [
        f"{v}\n{b}" + ("\n(gate failed)" if gate else "")
        for v, b, gate in zip(table["variant"], table["backend"], table["gate_failed"], strict=True)
    ]
    width = min(max(8.0, 0.45 * len(labels) * len(pairs) + 3), 24.0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 7.5), sharex=True)
    x = np.arange(len(labels))
    bar = 0.8 / len(pairs)
    colors = plt.get_cmap("Set2").colors
    for i, pair in enumerate(pairs):
        offset = x - 0.4 + bar * (i + 0.5)
        color = colors[i % len(colors)]
        top.bar(offset, table[f"{pair}|lat_p99_us"], bar, label=pair, color=color, edgecolor="k", lw=0.4)
        bottom.bar(offset, table[f"{pair}|mean_return"], bar, label=pair, color=color, edgecolor="k", lw=0.4)
    top.set_yscale("log")
    top.yaxis.set_major_formatter(LogFormatter())
    top.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    top.set_ylabel("latency p99, batch 1 (µs, log)")
    top.set_title("p99 latency and exact return per target @ host", fontsize=10)
    bottom.set_ylabel("exact mean return")
    if data.oracle is not None:
        bottom.axhline(data.oracle, color="#888888", lw=0.9, ls=":")
    bottom.set_xticks(x, labels, fontsize=7, rotation=0)
    for ax in (top, bottom):
        ax.grid(True, axis="y", which="both", alpha=0.3)
    top.legend(fontsize=8, title="target @ host", title_fontsize=8)
    fig.tight_layout()
    return fig, (
        "Grouped bars per (variant, backend): one bar per (target, host) pair that measured it; a missing "
        "bar is a cell that pair did not measure or that failed."
    )


def save(fig: Figure, path: Path, svg: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    if svg:
        fig.savefig(path.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


#: name → (title, figure builder); the bubble chart first, it is the report's headline figure.
CHARTS: dict[str, tuple[str, Callable[[ReportData, Style], tuple[Figure, str] | None]]] = {
    "bubble": ("Latency, return and memory per variant × backend", bubble),
    "latency_cdf": ("Latency CDF per backend", latency_cdf),
    "size_vs_return": ("Model size vs return", size_vs_return),
    "comparison": ("Comparison across targets and hosts", comparison),
}


def write_charts(data: ReportData, folder: Path, svg: bool = True) -> list[Chart]:
    """Draw every chart into ``folder`` (PNG; the bubble chart also as SVG) and the session plots into
    ``folder/sessions``; return them in the order the report shows them."""
    style = Style.of(data.cells)
    charts = []
    for name, (title, draw) in CHARTS.items():
        drawn = draw(data, style)
        if drawn is None:
            continue
        fig, caption = drawn
        save(fig, folder / f"{name}.png", svg=svg and name == "bubble")
        charts.append(Chart(f"{name}.png", title, caption))
    used: set[str] = set()
    for s in data.sessions:
        if s.frames is None:
            continue
        # Sessions from several devices (or runs) may share a name: the later ones go into their folder's
        # name, so no plot overwrites another.
        out = folder / "sessions" / (s.csv.parent.name if s.name in used else "")
        used.add(s.name)
        (combined,) = session_plots.write_plots(s.csv, out, loaded=(s.frames, s.summary), separate=False)
        emulated = " Ran under qemu-user: the latencies are the emulator's, not a device's." * bool(
            (s.summary.get("host") or {}).get("emulated")
        )
        charts.append(
            Chart(
                combined.relative_to(folder).as_posix(),
                f"Edge session {s.name}",
                "Per-frame inference latency (log scale, p50/p99 lines, deadline misses in red), "
                "achieved FPS and cumulative reward over the session, from the session CSV." + emulated,
            )
        )
    return charts
