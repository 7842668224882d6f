"""Rendering as pure functions: a frame is a numpy array computed from (layout, x, y, heading).

Only numpy is imported here. pygame is imported when a window is first opened and Pillow when a GIF is
written, so the edge runtime and the training code can import the env without either installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from common.fileio import atomic_write
from gridworld.core import MAX_STEPS, N_ACTIONS, GridWorldCore
from gridworld.layouts import EMPTY, GOAL, WALL

#: Cell colours (RGB) indexed by the layout code.
CELL_COLOURS = {
    EMPTY: (236, 236, 228),
    WALL: (64, 68, 78),
    GOAL: (84, 178, 92),
}
GRID_LINE_COLOUR = (180, 180, 172)
AGENT_COLOUR = (214, 48, 49)
#: Fraction of a cell left free around the agent's triangle.
_AGENT_MARGIN = 0.15

_PALETTE = np.zeros((max(CELL_COLOURS) + 1, 3), dtype=np.uint8)
for _code, _rgb in CELL_COLOURS.items():
    _PALETTE[_code] = _rgb


@lru_cache(maxsize=8)
def agent_masks(cell_px: int) -> tuple[np.ndarray, ...]:
    """Boolean ``[cell_px, cell_px]`` triangle masks indexed by heading (0=E, 1=S, 2=W, 3=N).

    Computed once per cell size: drawing the agent is then a masked assignment, not a polygon fill.
    """
    if cell_px < 4:
        raise ValueError(f"cell_px must be ≥ 4 to draw the agent, got {cell_px}")
    centres = (np.arange(cell_px) + 0.5) / cell_px
    v, u = np.meshgrid(centres, centres, indexing="ij")  # v: row (down), u: column (right)
    m = _AGENT_MARGIN
    # Pointing north: apex at (0.5, m), base along v = 1 - m, widening linearly towards the base.
    half_width = (v - m) / (1 - 2 * m) * (0.5 - m)
    north = (v >= m) & (v <= 1 - m) & (np.abs(u - 0.5) <= half_width)
    # np.rot90 turns counter-clockwise on screen (row 0 at the top): N -> W -> S -> E.
    masks = tuple(np.rot90(north, k=3 - heading).copy() for heading in range(4))
    for mask in masks:
        mask.setflags(write=False)
    return masks


@lru_cache(maxsize=16)
def _background(layout_bytes: bytes, shape: tuple[int, int], cell_px: int) -> np.ndarray:
    """The static part of a frame (cells and grid lines), cached because it only depends on the layout."""
    layout = np.frombuffer(layout_bytes, dtype=np.int8).reshape(shape)
    frame = _PALETTE[layout]  # [H, W, 3]
    frame = np.repeat(np.repeat(frame, cell_px, axis=0), cell_px, axis=1)
    frame[::cell_px, :] = GRID_LINE_COLOUR
    frame[:, ::cell_px] = GRID_LINE_COLOUR
    frame[-1, :] = GRID_LINE_COLOUR
    frame[:, -1] = GRID_LINE_COLOUR
    frame.setflags(write=False)
    return frame


def render_rgb(layout: np.ndarray, x: int, y: int, heading: int, cell_px: int = 32) -> np.ndarray:
    """The grid as a uint8 RGB frame ``[H*cell_px, W*cell_px, 3]`` with the agent as a triangle."""
    layout = np.asarray(layout, dtype=np.int8)
    if layout.ndim != 2:
        raise ValueError(f"layout must be a 2-D [y, x] array, got shape {layout.shape}")
    h, w = layout.shape
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"agent position (x={x}, y={y}) lies outside the {w}x{h} grid")
    if not 0 <= heading < 4:
        raise ValueError(f"heading must be 0 (E), 1 (S), 2 (W) or 3 (N), got {heading}")
    frame = _background(layout.tobytes(), (h, w), cell_px).copy()
    cell = frame[y * cell_px : (y + 1) * cell_px, x * cell_px : (x + 1) * cell_px]
    cell[agent_masks(cell_px)[heading]] = AGENT_COLOUR
    return frame


class PygameWindow:
    """A window that shows numpy frames at a capped rate; pygame is imported on the first ``show``."""

    def __init__(self, width: int, height: int, fps: float = 10, title: str = "NeuroQuant GridWorld") -> None:
        self.width, self.height = int(width), int(height)
        self.fps = fps
        self.title = title
        self._pygame: Any = None
        self._screen: Any = None
        self._clock: Any = None

    @property
    def is_open(self) -> bool:
        return self._screen is not None

    def _open(self) -> None:
        import pygame

        pygame.display.init()
        pygame.display.set_caption(self.title)
        self._screen = pygame.display.set_mode((self.width, self.height))
        self._clock = pygame.time.Clock()
        self._pygame = pygame

    def show(self, frame: np.ndarray) -> None:
        """Blit ``frame`` ([H, W, 3] uint8), keep the window responsive, then wait to hold ``fps``."""
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(
                f"frame shape {frame.shape} does not match the window ({self.height}, {self.width}, 3)"
            )
        if self._screen is None:
            self._open()
        pygame = self._pygame
        # surfarray indexes pixels [x, y]; frames are [y, x].
        pygame.surfarray.blit_array(self._screen, np.ascontiguousarray(frame.transpose(1, 0, 2)))
        pygame.display.flip()
        # pump (not get) so the OS sees the window alive while events stay queued for a caller to read.
        pygame.event.pump()
        self._clock.tick(self.fps)

    def close(self) -> None:
        if self._screen is not None:
            self._pygame.display.quit()
            self._screen = None
            self._clock = None


Policy = Callable[[np.ndarray], np.ndarray]


def render_episode_gif(
    path: str | os.PathLike[str],
    policy: Policy | None = None,
    actions: Sequence[int] | None = None,
    layout: str | Sequence[str] | np.ndarray = "default",
    obs_mode: str = "vector",
    seed: int = 0,
    start: tuple[int, int, int] | None = None,
    max_steps: int = MAX_STEPS,
    fps: float = 10,
    cell_px: int = 32,
    layout_seed: int = 0,
) -> int:
    """Run one episode and save it as an animated GIF; return the number of frames rendered.

    ``policy`` is a batch policy (``obs[N, ...] -> actions[N]``, e.g. ``Oracle(model).policy()``);
    ``actions`` is a fixed action list, stopped early if the episode ends. Frames: the start plus one per
    step. The episode is rendered in memory and written to a temporary file that replaces ``path`` only
    when complete, so a failing policy or writer never leaves a half-written GIF. Pillow folds identical
    consecutive frames (a bump into a wall) into one longer frame, so the GIF can hold fewer frames than
    returned while its timing stays exact.
    """
    if (policy is None) == (actions is None):
        raise ValueError("pass exactly one of policy= (a batch policy) or actions= (a list of actions)")
    if fps <= 0:
        raise ValueError(f"fps must be > 0 for a GIF, got {fps}")
    core = GridWorldCore(layout, obs_mode, max_steps, layout_seed)
    obs = core.reset(seed=seed, start=start)
    frames = [render_rgb(core.model.layout, *core.agent, cell_px=cell_px)]
    plan = list(actions) if actions is not None else None
    for t in range(max_steps):
        if plan is not None:
            if t >= len(plan):
                break
            action = int(plan[t])
        else:
            chosen = np.asarray(policy(obs[None])).reshape(-1)
            if chosen.shape != (1,):
                raise ValueError(f"policy returned {chosen.shape} actions for one observation")
            action = int(chosen[0])
        if not 0 <= action < N_ACTIONS:
            raise ValueError(f"action {action} at step {t} is outside 0..{N_ACTIONS - 1}")
        obs, _, terminated, truncated = core.step(action)
        frames.append(render_rgb(core.model.layout, *core.agent, cell_px=cell_px))
        if terminated or truncated:
            break
    _write_gif_atomically(Path(path), frames, duration_ms=1000.0 / fps)
    return len(frames)


def _write_gif_atomically(path: Path, frames: list[np.ndarray], duration_ms: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(duration_ms), loop=0
        ),
    )
