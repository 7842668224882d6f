"""The live terminal line: FPS, latency, memory, action and reward, redrawn at most twice a second.

Why rate-limited and fed from the session's own arrays: printing is a syscall and a terminal redraw;
doing it per frame would cost more than the frame itself at thousands of FPS.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

from gridworld.core import ACTION_NAMES


class LiveLine:
    """Redraws one status line (``\\r`` on a terminal; one line per update when piped)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        interval_s: float = 0.5,
        action_names: Sequence[str] | None = ACTION_NAMES,
    ) -> None:
        """``action_names``: labels of discrete actions (the gridworld's by default); None prints the
        index, or the vector of a box action."""
        if interval_s < 0.5:
            raise ValueError("the live line updates at most twice a second (interval_s ≥ 0.5)")
        self.stream = stream if stream is not None else sys.stderr
        self.interval_ns = round(interval_s * 1e9)
        self.tty = self.stream.isatty()
        self._width = 0
        self.action_names = action_names

    def update(
        self,
        *,
        frame: int,
        episode: int,
        fps: float,
        latency_us: float,
        mem_mb: float,
        action: Any,
        reward: float,
        misses: int,
    ) -> None:
        text = (
            f"frame {frame:>8}  ep {episode:>4}  {fps:>9.1f} FPS  infer p50 {latency_us:>8.1f} µs  "
            f"RSS {mem_mb:>6.1f} MB  action {self._label(action):<10}  return {reward:>7.2f}  "
            f"misses {misses}"
        )
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()

    def _label(self, action: Any) -> str:
        if isinstance(action, int):
            return self.action_names[action] if self.action_names is not None else str(action)
        return " ".join(f"{v:+.3f}" for v in action.reshape(-1))
