"""Plots of one edge session: per-frame inference latency, achieved FPS and cumulative reward.

``python -m reports.session results/sessions/session_N.csv [--out DIR]`` writes ``session_N_latency.png``,
``session_N_fps.png``, ``session_N_reward.png`` and ``session_N.png`` (all three stacked). Reads the CSV
(and the JSON summary next to it, for the title) and nothing else — the original NeuroQuant's day-11/12
plots, from the files a device leaves behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.cli import ExampleFormatter

REQUIRED = (
    "timestamp_ns",
    "episode",
    "frame",
    "reward",
    "latency_ms",
    "fps",
    "cumulative_reward",
    "deadline_miss",
)


class SessionReportError(ValueError):
    """A session CSV that cannot be plotted (missing, empty, or without the columns of
    docs/contracts.md#the-session-files)."""


class EmptySessionError(SessionReportError):
    """A well-formed session CSV without frames (a session stopped before its first frame)."""


def load_session(csv_path: Path) -> tuple[Any, dict[str, Any]]:
    """The frames as a DataFrame plus the JSON summary (empty if it was not written)."""
    import pandas as pd

    if not csv_path.is_file():
        raise SessionReportError(f"{csv_path}: no such session CSV")
    try:
        df = pd.read_csv(csv_path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SessionReportError(f"{csv_path}: not a readable session CSV ({err})") from err
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SessionReportError(f"{csv_path}: missing column(s) {missing}; is it a session_<N>.csv?")
    if df.empty:
        raise EmptySessionError(f"{csv_path}: the session recorded no frames")
    summary_path = csv_path.with_suffix(".json")
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError:
            summary = {}
    return df, summary


def _title(csv_path: Path, summary: dict[str, Any]) -> str:
    if not summary:
        return csv_path.stem
    fps = summary.get("requested_fps")
    rate = "uncapped" if fps == 0 else f"{fps:g} FPS"
    host = summary.get("host") or {}
    where = (
        f"{summary.get('target')}, {host.get('arch')} emulated"
        if host.get("emulated")
        else summary.get("target")
    )
    return (
        f"{csv_path.stem}: {summary.get('variant')} on {summary.get('backend')} ({where}), "
        f"{rate}, stop: {summary.get('stop_reason')}"
    )


def _seconds(df: Any) -> Any:
    return (df["timestamp_ns"] - df["timestamp_ns"].iloc[0]) / 1e9


def plot_latency(ax: Any, df: Any) -> None:
    t, lat_us = _seconds(df), df["latency_ms"] * 1e3
    ax.plot(t, lat_us, lw=0.6, color="#1f77b4", label="inference")
    ax.axhline(lat_us.median(), color="k", lw=0.8, ls="--", label=f"p50 {lat_us.median():.1f} µs")
    ax.axhline(
        lat_us.quantile(0.99), color="#d62728", lw=0.8, ls=":", label=f"p99 {lat_us.quantile(0.99):.1f} µs"
    )
    misses = df[df["deadline_miss"] == 1]
    if len(misses):
        ax.scatter(
            _seconds(df)[misses.index], lat_us[misses.index], s=8, color="#d62728", label="deadline miss"
        )
    ax.set_yscale("log")
    ax.set_ylabel("latency (µs)")
    ax.legend(loc="upper right", fontsize=7)


def plot_fps(ax: Any, df: Any) -> None:
    t, fps = _seconds(df), df["fps"]
    ax.plot(t, fps, lw=0.6, color="#2ca02c", label="instantaneous")
    window = max(1, min(len(df) // 20, 1000))
    ax.plot(
        t, fps.rolling(window, min_periods=1).median(), lw=1.2, color="k", label=f"rolling median ({window})"
    )
    ax.set_ylabel("FPS")
    ax.legend(loc="upper right", fontsize=7)


def plot_reward(ax: Any, df: Any) -> None:
    t = _seconds(df)
    ax.plot(t, df["cumulative_reward"], lw=0.8, color="#9467bd", label="episode return so far")
    ends = df.groupby("episode").tail(1)
    ax.scatter(t[ends.index], ends["cumulative_reward"], s=6, color="k", label="episode end")
    ax.set_ylabel("episode return so far")
    total = ax.twinx()
    total.plot(t, df["reward"].cumsum(), lw=0.8, color="#ff7f0e", label="session total")
    total.set_ylabel("session total reward")
    lines = ax.get_legend_handles_labels()
    more = total.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=7)


PLOTS: dict[str, Callable[[Any, Any], None]] = {
    "latency": plot_latency,
    "fps": plot_fps,
    "reward": plot_reward,
}


def write_plots(
    csv_path: str | Path,
    out_dir: str | Path | None = None,
    loaded: tuple[Any, dict[str, Any]] | None = None,
    separate: bool = True,
) -> list[Path]:
    """Write the combined PNG and, with ``separate``, one PNG per plot; return their paths.

    ``loaded``: the session's ``(frames, summary)`` as :func:`load_session` returned them, when the caller
    has read the files already.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = Path(csv_path)
    out = Path(out_dir) if out_dir is not None else csv_path.parent / "plots"
    out.mkdir(parents=True, exist_ok=True)
    df, summary = loaded if loaded is not None else load_session(csv_path)
    title = _title(csv_path, summary)
    written = []
    for name, draw in PLOTS.items() if separate else ():
        fig, ax = plt.subplots(figsize=(9, 3.2))
        draw(ax, df)
        ax.set_xlabel("session time (s)")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        path = out / f"{csv_path.stem}_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    fig, axes = plt.subplots(len(PLOTS), 1, figsize=(9, 8), sharex=True)
    for ax, draw in zip(axes, PLOTS.values(), strict=True):
        draw(ax, df)
    axes[-1].set_xlabel("session time (s)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = out / f"{csv_path.stem}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports.session",
        description="Plot one edge session: per-frame latency, FPS and cumulative reward (PNG files).",
        epilog="Example: python -m reports.session results/sessions/session_1.csv",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("csv", type=Path, help="results/sessions/session_<N>.csv written by edge_runtime")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <csv folder>/plots)")
    args = parser.parse_args(argv)
    try:
        paths = write_plots(args.csv, args.out)
    except SessionReportError as err:
        print(f"reports.session: {err}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
