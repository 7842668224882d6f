"""Return curves of ``train.dqn --env`` runs in one figure: prioritized against uniform replay.

    python -m train.dqn_compare runs/dqn/breakout-uniform runs/dqn/breakout-per --out docs/per_breakout.png

Left: the greedy policy's mean evaluation return with its 95% CI at every evaluation. Right: the game's
return of each training episode (with the training env's life-loss terminal, one life per episode on
Atari), as a moving mean over ``--window`` episodes. Prints one line per run with its last and best
evaluation, so the figure's numbers can be quoted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.cli import ExampleFormatter


def read_run(folder: Path) -> dict[str, Any]:
    """A run's ``summary.json``; a ``ValueError`` naming the folder if it is no finished ``--env`` run."""
    path = Path(folder) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a finished train.dqn run ({err})") from err
    if "evaluations" not in summary or "train_episodes" not in summary:
        raise ValueError(f"{path}: not a train.dqn --env run (no evaluations / train_episodes)")
    return summary


def label(summary: dict[str, Any]) -> str:
    return "prioritized replay" if summary["per"] else "uniform replay"


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and up to ``window - 1`` before it."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot(runs: Sequence[dict[str, Any]], out: Path, window: int = 100) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for summary in runs:
        ev = summary["evaluations"]
        steps = np.array([e["step"] for e in ev])
        mean = np.array([e["mean_return"] for e in ev])
        ci = np.array([e["ci95"] for e in ev])
        (line,) = left.plot(steps, mean, marker="o", label=label(summary))
        left.fill_between(steps, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15)
        episodes = np.array(summary["train_episodes"], dtype=float).reshape(-1, 2)
        if len(episodes):
            right.plot(episodes[:, 0], moving_mean(episodes[:, 1], window), label=label(summary))
    game = runs[0]["env"]
    left.set(title=f"{game}: greedy evaluation (mean, 95% CI)", xlabel="transitions", ylabel="return")
    right.set(title=f"training episodes (moving mean of {window})", xlabel="transitions", ylabel="return")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.dqn_compare",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m train.dqn_compare runs/dqn/breakout-uniform runs/dqn/breakout-per "
        "--out docs/per_breakout.png",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of train.dqn --env runs")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--window", type=int, default=100, help="training episodes per moving mean")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(folder) for folder in args.runs]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len({r["env"] for r in runs}) > 1:
        print(f"error: the runs are of different tasks: {sorted({r['env'] for r in runs})}", file=sys.stderr)
        return 2
    for summary in runs:
        last, best = summary["evaluations"][-1], summary["best_eval"]
        print(
            f"{label(summary)}: {summary['transitions']} transitions in {summary['wall_s']:.0f} s; last "
            f"evaluation {last['mean_return']:.2f} [{last['ci95'][0]:.2f}, {last['ci95'][1]:.2f}], best "
            f"{best['mean_return']:.2f} at {best['step']}; {len(summary['train_episodes'])} training episodes"
        )
    print(f"wrote {plot(runs, args.out, args.window)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
