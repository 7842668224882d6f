"""Run logging shared by every training stage: TensorBoard events, one ``metrics.csv`` and a loss-curve PNG.

Stages call :meth:`RunLogger.log` with ``{"Group/Name": value}`` scalars (``Loss/Bellman``,
``Eval/Return`` …). The CSV and the PNG are written on :meth:`RunLogger.close`, from everything logged,
so a run folder always says how its curves looked even where TensorBoard is not at hand.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from common.fileio import atomic_write

CSV_NAME = "metrics.csv"
PNG_NAME = "loss_curves.png"


class RunLogger:
    """Scalars per step → TensorBoard (live), ``metrics.csv`` and ``loss_curves.png`` (on close).

    Several :meth:`log` calls for the same step (losses, then an evaluation) merge into one CSV row; the
    CSV's columns are the union of all tags, empty where a step did not log a tag.
    """

    def __init__(self, out_dir: str | Path, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[int, dict[str, float]] = {}
        self._tags: dict[str, None] = {}  # insertion-ordered set
        self._closed = False
        self._writer: Any = None
        if tensorboard:
            # Imported here: the tensorboard import is slow and only some callers want it.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.out_dir))

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record ``scalars`` at ``step``; tags look like ``Group/Name``."""
        if self._closed:
            raise RuntimeError("RunLogger.log() after close()")
        row = self._rows.setdefault(int(step), {})
        for tag, value in scalars.items():
            value = float(value)
            row[tag] = value
            self._tags.setdefault(tag, None)
            if self._writer is not None:
                self._writer.add_scalar(tag, value, int(step))

    @property
    def tags(self) -> list[str]:
        return list(self._tags)

    def series(self, tag: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one tag, in step order."""
        pairs = [(s, row[tag]) for s, row in sorted(self._rows.items()) if tag in row]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def flush(self) -> None:
        """Write ``metrics.csv`` now (atomically) and flush TensorBoard; safe to call repeatedly."""
        if self._writer is not None:
            self._writer.flush()
        self._write_csv(self.out_dir / CSV_NAME)

    def close(self) -> None:
        """Write ``metrics.csv`` and ``loss_curves.png`` and close TensorBoard; a second call does nothing."""
        if self._closed:
            return
        self.flush()
        if self._rows:
            self._plot(self.out_dir / PNG_NAME)
        if self._writer is not None:
            self._writer.close()
        self._closed = True

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write_csv(self, path: Path) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", *self._tags])
                for step, row in sorted(self._rows.items()):
                    writer.writerow([step, *(_fmt(row.get(tag)) for tag in self._tags)])

        atomic_write(path, write)

    def _plot(self, path: Path) -> None:
        """One panel per tag group (``Loss``, ``Eval`` …), every tag of the group as a line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        groups: dict[str, list[str]] = {}
        for tag in self._tags:
            groups.setdefault(tag.split("/", 1)[0] if "/" in tag else "Other", []).append(tag)
        fig, axes = plt.subplots(len(groups), 1, figsize=(8, 3.2 * len(groups)), squeeze=False)
        for ax, (group, tags) in zip(axes[:, 0], groups.items(), strict=True):
            for tag in tags:
                steps, values = self.series(tag)
                ax.plot(steps, values, label=tag.split("/", 1)[-1], marker="o" if len(steps) < 30 else None)
            ax.set_title(group)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            if group == "Loss" and _all_positive(self, tags):
                ax.set_yscale("log")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(value)


def _all_positive(logger: RunLogger, tags: list[str]) -> bool:
    """Log scale only where every value is positive and finite (a log axis hides zeros and negatives)."""
    values = [v for tag in tags for v in logger.series(tag)[1]]
    return bool(values) and all(v > 0 and math.isfinite(v) for v in values)
