"""The compression search's studies: ``results/search/<study>/`` as ``python -m export.search`` writes it
(trials.csv, fixed.csv, search.json), read into a :class:`Study`, and its Pareto chart.

``python -m reports.search <folder>`` draws that chart into the study folder; the search command calls it
after each study, so this module imports pandas and matplotlib only (through the rest of ``reports``),
never the exporter's stack.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from common.cli import ExampleFormatter
from reports.charts import _empty, _log_x, save
from reports.load import ReportError, read_table
from reports.summary import Chart

#: trials.csv: one row per Optuna trial, in the order the search writes them.
TRIAL_COLUMNS = (
    "number", "state", "status", "reason", "source", "precision", "per_channel", "equalize", "calibration",
    "backend", "format", "mean_return", "return_ratio", "lat_p50_us", "lat_p99_us", "size_bytes",
    "peak_rss_mb", "params", "pareto", "chosen", "seconds",
)  # fmt: skip
#: per_channel / equalize are True / False / empty: kept as the text the search wrote.
TRIAL_TEXT = (
    "state", "status", "reason", "source", "precision", "per_channel", "equalize", "backend", "format",
)  # fmt: skip
#: What the chart and the tables cannot do without; the other columns may be absent (empty).
TRIAL_REQUIRED = ("number", "status", "return_ratio", "lat_p99_us", "size_bytes", "pareto", "chosen")
#: fixed.csv: the target profile's fixed variants, measured in the same run as the trials.
FIXED_COLUMNS = (
    "variant", "backend", "format", "precision", "status", "mean_return", "return_ratio", "lat_p50_us",
    "lat_p99_us", "size_bytes", "peak_rss_mb",
)  # fmt: skip
FIXED_TEXT = ("variant", "backend", "format", "precision", "status")
FIXED_REQUIRED = ("variant", "backend", "status", "return_ratio", "lat_p99_us", "size_bytes")
META_REQUIRED = ("task", "target", "min_return_ratio", "chosen", "chosen_reason")
#: The objectives a dominance entry can name, in the order the tables show them.
DOMINANCE_OBJECTIVES = ("p99", "size", "rss")
PRODUCER_HINT = "rerun the study with `make search TASK=… TARGET=…`"

FEASIBLE, FRONT, GATE, FIXED, CHOSEN = "#9ecae1", "#08519c", "#8c8c8c", "#d95f02", "#e7298a"


@dataclass
class Study:
    """One study folder: its search.json, its trials and the fixed variants it was measured beside."""

    folder: Path
    meta: dict[str, Any]
    trials: pd.DataFrame
    fixed: pd.DataFrame

    @property
    def name(self) -> str:
        """The folder's name: unique under results/search/, so it names the study's files and HTML ids."""
        return self.folder.name

    @property
    def title(self) -> str:
        return f"{self.meta['task']} on {self.meta['target']}: {len(self.trials)} trials"

    def chosen_trial(self) -> dict[str, Any] | None:
        """The trial marked chosen in trials.csv, else the one search.json names, else None."""
        marked = self.trials[self.trials["chosen"] == 1]
        if len(marked):
            return marked.iloc[0].to_dict()
        number = (self.meta.get("chosen") or {}).get("number")
        match = self.trials[self.trials["number"] == number] if number is not None else marked
        return match.iloc[0].to_dict() if len(match) else None


def load_study(folder: Path) -> Study:
    """The three files of one study; a :class:`ReportError` naming the file if one is missing or malformed."""
    for name in ("search.json", "trials.csv", "fixed.csv"):
        if not (folder / name).is_file():
            raise ReportError(f"{folder / name}: missing; {PRODUCER_HINT}")
    path = folder / "search.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: unreadable JSON ({err})") from None
    if not isinstance(meta, dict) or any(k not in meta for k in META_REQUIRED):
        raise ReportError(f"{path}: not a search record (needs {', '.join(META_REQUIRED)})")
    if meta["chosen"] is not None and not isinstance(meta["chosen"], dict):
        raise ReportError(f"{path}: `chosen` must be an object or null")
    if not isinstance(meta["min_return_ratio"], (int, float)):
        raise ReportError(f"{path}: `min_return_ratio` must be a number")
    trials = read_table(folder / "trials.csv", TRIAL_COLUMNS, TRIAL_TEXT, TRIAL_REQUIRED, "a trials CSV")
    fixed = read_table(
        folder / "fixed.csv", FIXED_COLUMNS, FIXED_TEXT, FIXED_REQUIRED, "a fixed-variants CSV"
    )
    return Study(folder, meta, trials.sort_values("number", kind="stable").reset_index(drop=True), fixed)


def load_studies(results: Path, warnings: list[str]) -> list[Study]:
    """Every study folder under ``results/search/``, by name. A folder that cannot be read is a warning,
    not the end of the report: the benchmark tables do not depend on it, and a study may still be running."""
    root = results / "search"
    studies = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            studies.append(load_study(folder))
        except ReportError as err:
            warnings.append(f"{err}; the study is left out of the report")
    return studies


def _drawable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with both a p99 latency and a return ratio: the others have no place on the chart."""
    return frame[np.isfinite(frame["lat_p99_us"]) & np.isfinite(frame["return_ratio"])]


def pareto_chart(study: Study) -> tuple[Figure, str]:
    """p99 latency × return ratio of every trial and fixed variant, area ∝ model size; the figure and a
    caption saying how to read it."""
    trials = study.trials
    feasible = _drawable(trials[trials["status"] == "ok"])
    front = feasible[feasible["pareto"] == 1].sort_values("lat_p99_us", kind="stable")
    others = feasible[feasible["pareto"] != 1]
    gated = _drawable(trials[trials["status"] == "gate-failed"])
    # the pick timed again beside the fixed variants (variant "searched" in fixed.csv): drawn as its own
    # hollow star, the figure search.json's comparison used
    retimed = _drawable(study.fixed[study.fixed["variant"] == "searched"])
    fixed = _drawable(study.fixed[study.fixed["variant"] != "searched"])
    chosen = study.chosen_trial()
    if chosen is not None and not (
        math.isfinite(chosen["lat_p99_us"]) and math.isfinite(chosen["return_ratio"])
    ):
        chosen = None
    drawn = (feasible, gated, fixed)
    xs = np.concatenate([f["lat_p99_us"].to_numpy(float) for f in drawn])
    sizes = np.concatenate([f["size_bytes"].to_numpy(float) for f in drawn])
    largest = float(np.nanmax(sizes)) if np.isfinite(sizes).any() else 1.0

    def area(sizes: pd.Series) -> np.ndarray:
        return 30 + 400 * sizes.fillna(0).to_numpy(float) / largest

    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    entries: list[tuple[Line2D, str]] = []
    log = False
    if not len(xs):
        _empty(ax, "no trial or fixed variant has both a p99 latency and a return ratio")
    else:

        def points(frame: pd.DataFrame, **style: Any) -> None:
            ax.scatter(frame["lat_p99_us"], frame["return_ratio"], s=area(frame["size_bytes"]), **style)

        points(others, c=FEASIBLE, edgecolors="#4a7fa5", linewidths=0.6, alpha=0.8, zorder=3)
        points(front, c=FRONT, edgecolors="k", linewidths=0.6, alpha=0.9, zorder=4)
        if len(front) > 1:
            ax.step(front["lat_p99_us"], front["return_ratio"], where="post", color=FRONT, lw=1.2, zorder=2)
        points(gated, marker="x", c=GATE, linewidths=1.4, zorder=3)
        exported = fixed["status"] == "ok"  # a variant whose export failed its gate is drawn hollow
        points(fixed[exported], marker="s", c=FIXED, edgecolors=FIXED, linewidths=1.2, alpha=0.85, zorder=4)
        points(fixed[~exported], marker="s", facecolors="none", edgecolors=FIXED, linewidths=1.4, zorder=4)
        for row, size in zip(fixed.to_dict("records"), area(fixed["size_bytes"]), strict=True):
            ax.annotate(  # beside the square, whatever its size
                f"{row['variant']}/{row['backend']}",
                (row["lat_p99_us"], row["return_ratio"]),
                xytext=(math.sqrt(size) / 2 + 3, 2),
                textcoords="offset points",
                fontsize=7,
                color="#7a3500",
            )
        if chosen is not None:
            ax.scatter(
                [chosen["lat_p99_us"]],
                [chosen["return_ratio"]],
                s=320,
                marker="*",
                c=CHOSEN,
                edgecolors="k",
                linewidths=0.8,
                zorder=6,
            )
            ax.scatter(
                retimed["lat_p99_us"],
                retimed["return_ratio"],
                s=220,
                marker="*",
                facecolors="none",
                edgecolors=CHOSEN,
                linewidths=1.2,
                zorder=6,
            )
            ax.annotate(
                "searched",
                (chosen["lat_p99_us"], chosen["return_ratio"]),
                xytext=(8, -12),
                textcoords="offset points",
                fontsize=8,
                fontweight="bold",
                color=CHOSEN,
            )
        log = bool(xs.min() > 0 and xs.max() / xs.min() > 10)
        if log:
            _log_x(ax)
        ax.margins(x=0.12, y=0.12)
        # the region that decides: from a little below the lowest passing point and the return bar; a
        # gate-failed trial far below it (a broken quantization) would squash everything else into a line
        passing = np.concatenate([f["return_ratio"].to_numpy(float) for f in (feasible, fixed)])
        floor = min([float(study.meta["min_return_ratio"]) - 0.1, *(passing[np.isfinite(passing)] - 0.05)])
        below = int((gated["return_ratio"] < floor).sum())
        if below:
            ax.set_ylim(bottom=floor)
        ax.grid(True, which="both", alpha=0.3)
        entries = [
            (Line2D([], [], ls="", marker="o", ms=8, color=FEASIBLE), "feasible trial"),
            (Line2D([], [], marker="o", ms=8, color=FRONT), "Pareto front\n(return, p99, size)"),
            (Line2D([], [], ls="", marker="x", ms=8, color=GATE), "failed its export gate"),
            (Line2D([], [], ls="", marker="s", ms=8, color=FIXED), "fixed variant\n(hollow: export failed)"),
            (Line2D([], [], ls="", marker="*", ms=12, color=CHOSEN), "chosen ('searched')"),
        ]
        if len(retimed):
            hollow = Line2D([], [], ls="", marker="*", ms=12, mfc="none", mec=CHOSEN)
            entries.append((hollow, "chosen, timed again\nbeside the fixed"))
    ratio = float(study.meta["min_return_ratio"])
    ax.axhline(ratio, color="#555555", lw=1.0, ls="--", zorder=1)
    entries.append((Line2D([], [], color="#555555", ls="--"), f"min return ratio {ratio:g}"))
    ax.legend(
        *zip(*entries, strict=True),
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        frameon=False,
        labelspacing=1.1,
    )
    ax.set_title(study.title, fontsize=10)
    ax.set_xlabel("latency p99, batch 1 (µs" + (", log scale)" if log else ")"))
    ax.set_ylabel("return ratio (mean return ÷ float policy's)")
    fig.tight_layout()
    return fig, _caption(study, largest, len(trials) - len(feasible) - len(gated), below if len(xs) else 0)


def _caption(study: Study, largest: float, undrawn: int, below: int = 0) -> str:
    float_return = (study.meta.get("float") or {}).get("mean_return")
    return (
        f"Study {study.meta.get('study', study.name)}: one point per trial of the search, x its batch-1 p99 "
        "latency, y its mean return ÷ the float policy's"
        + (f" ({float_return:g})" if isinstance(float_return, (int, float)) else "")
        + f", area ∝ model size (largest {largest / 1024:,.1f} KiB). Filled circles passed their export "
        "gate (the feasible trials); the dark ones, joined by the step line, are their Pareto front over "
        "return, p99 and size together (so a front point can sit below and right of another: it is "
        "smaller). Grey ×: trials that failed their gate, where they were measured; squares: the target "
        "profile's fixed variants, timed side by side at the end of the run; the star: the chosen trial "
        "(hollow: where it timed beside the fixed variants, the figure they are compared by). The dashed "
        "line is the minimum return ratio the chosen trial must keep."
        + (f" {undrawn} trial(s) that failed to build or measure are not drawn." if undrawn > 0 else "")
        + (f" {below} gate-failed trial(s) lie below the plotted range." if below else "")
    )


def write_chart(study: Study, path: Path) -> Chart:
    """Draw the study's Pareto chart into ``path`` (PNG); the :class:`Chart` names the file by its name."""
    fig, caption = pareto_chart(study)
    save(fig, path)
    return Chart(path.name, f"Pareto chart of {study.title}", caption)


def write_charts(studies: list[Study], folder: Path) -> dict[str, Chart]:
    """Each study's chart as ``folder/search/<study>.png``, by study name (the report's copy)."""
    charts = {}
    for study in studies:
        chart = write_chart(study, folder / "search" / f"{study.name}.png")
        charts[study.name] = Chart(f"search/{chart.file}", chart.title, chart.caption)
    return charts


def chosen_line(study: Study) -> str:
    """One line: which trial was chosen, its figures, and the search's reason (or why none was)."""
    reason = str(study.meta.get("chosen_reason") or "").strip()
    trial = study.chosen_trial()
    if study.meta["chosen"] is None and trial is None:
        return "No trial chosen" + (f": {reason}" if reason else ".")
    record = {**(trial or {}), **(study.meta["chosen"] or {})}

    def figure(key: str, fmt: str, scale: float = 1.0) -> str:
        value = record.get(key)
        return format(float(value) * scale, fmt) if isinstance(value, (int, float)) else "?"

    recipe = ", ".join(str(record[k]) for k in ("source", "precision", "backend") if record.get(k))
    return (
        f"Chosen: trial {figure('number', '.0f')} ({recipe}): p99 {figure('lat_p99_us', ',.1f')} µs, "
        f"{figure('size_bytes', ',.1f', 1 / 1024)} KiB, return ratio {figure('return_ratio', '.3f')}"
        + (f" — {reason}" if reason else "")
    )


def trial_table(study: Study) -> pd.DataFrame:
    """The trials with a ``mark`` column for the tables: Pareto (on the front), chosen, both or neither."""
    marks = [
        " · ".join(m for m, on in (("Pareto", pareto == 1), ("chosen", chosen == 1)) if on)
        for pareto, chosen in zip(study.trials["pareto"], study.trials["chosen"], strict=True)
    ]
    return study.trials.assign(mark=marks)


def dominance_table(study: Study) -> pd.DataFrame:
    """search.json's dominance list, one line per fixed variant that passed its gate: whether the searched
    model's return is at least that variant's (within the float policy's CI on a seeded task), per objective
    whether it is better beyond the noise margins ("better") or not ("no"), and so whether it dominates."""
    lines = []
    for entry in study.meta.get("dominance") or []:
        if not isinstance(entry, dict):
            continue
        better = set(entry.get("better_on") or [])
        return_ok = bool(entry.get("return_ok"))
        dominates = entry.get("dominates", return_ok and bool(better))
        lines.append(
            {
                "variant": entry.get("variant", ""),
                "backend": entry.get("backend", ""),
                "return_ok": "yes" if return_ok else "no",
                **{f"better_{o}": "better" if o in better else "no" for o in DOMINANCE_OBJECTIVES},
                "dominates": "yes" if dominates else "no",
            }
        )
    columns = ["variant", "backend", "return_ok", *(f"better_{o}" for o in DOMINANCE_OBJECTIVES), "dominates"]
    return pd.DataFrame(lines, columns=columns)


def main(argv: Sequence[str] | None = None) -> int:
    """0 with the chart written; 2 with one line on stderr if the study's files cannot be read."""
    parser = argparse.ArgumentParser(
        prog="python -m reports.search",
        description="Draw a compression-search study's Pareto chart (p99 latency × return ratio, area ∝ "
        "model size; trials, fixed variants and the chosen trial) from its trials.csv, fixed.csv and "
        "search.json.",
        epilog="Exit status: 0 chart written, 1 writing failed, 2 missing or malformed study files.\n"
        "Example: python -m reports.search results/search/cartpole-x86  # writes its pareto.png",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("folder", type=Path, help="the study folder, results/search/<study>/")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: <folder>/pareto.png)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    out = args.out or args.folder / "pareto.png"
    try:
        write_chart(load_study(args.folder), out)
    except ReportError as err:
        print(f"python -m reports.search: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"python -m reports.search: error: cannot write {out}: {err}", file=sys.stderr)
        return 1
    print(f"python -m reports.search: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
