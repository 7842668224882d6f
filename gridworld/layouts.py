"""Grid layouts: the default fixed map, ASCII parsing and procedural solvable maps.

A layout is an ``int8`` array ``[height, width]`` indexed ``[y, x]`` (y grows southwards) holding
:data:`EMPTY`, :data:`WALL` or :data:`GOAL`, with exactly one goal. Outside the grid counts as wall.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

EMPTY, WALL, GOAL = 0, 1, 2
_CHARS = {".": EMPTY, "#": WALL, "G": GOAL}

#: The default 10×10 map: two wall segments and a few blocks between the open start area and the goal.
DEFAULT_LAYOUT: tuple[str, ...] = (
    "..........",
    "..........",
    "..####....",
    "......#...",
    "..#...#.#.",
    "..#.....#.",
    "..#..####.",
    "..........",
    ".#####..G.",
    "..........",
)


class LayoutError(ValueError):
    """A layout that cannot be played (bad characters, ragged rows, no or several goals, unsolvable)."""


def parse_layout(rows: Sequence[str]) -> np.ndarray:
    """Turn ASCII rows (``.`` empty, ``#`` wall, ``G`` goal) into a layout array."""
    if not rows or not all(isinstance(r, str) for r in rows):
        raise LayoutError("a layout is a non-empty list of strings such as '..#.G'")
    width = len(rows[0])
    if width < 2 or len(rows) < 2 or any(len(r) != width for r in rows):
        raise LayoutError(
            f"layout rows must all have the same length ≥ 2, got lengths {[len(r) for r in rows]}"
        )
    bad = sorted({c for r in rows for c in r} - set(_CHARS))
    if bad:
        raise LayoutError(f"unknown layout characters {bad}; use '.' empty, '#' wall, 'G' goal")
    grid = np.array([[_CHARS[c] for c in r] for r in rows], dtype=np.int8)
    validate_layout(grid)
    return grid


def validate_layout(grid: np.ndarray) -> None:
    """Refuse a layout without exactly one goal or with an empty cell that cannot reach the goal."""
    if grid.ndim != 2 or grid.dtype != np.int8:
        raise LayoutError(f"a layout is a 2-D int8 array, got {grid.ndim}-D {grid.dtype}")
    n_goals = int((grid == GOAL).sum())
    if n_goals != 1:
        raise LayoutError(f"a layout needs exactly one goal 'G', found {n_goals}")
    unreachable = (grid == EMPTY) & ~_reachable_from_goal(grid)
    if unreachable.any():
        ys, xs = np.nonzero(unreachable)
        raise LayoutError(f"{len(xs)} empty cells cannot reach the goal, e.g. (x={xs[0]}, y={ys[0]})")


def layout_to_ascii(grid: np.ndarray) -> list[str]:
    inverse = {v: k for k, v in _CHARS.items()}
    return ["".join(inverse[int(v)] for v in row) for row in grid]


def _reachable_from_goal(grid: np.ndarray) -> np.ndarray:
    """4-connected flood fill from the goal over non-wall cells (turning is free, so this is enough)."""
    h, w = grid.shape
    seen = np.zeros_like(grid, dtype=bool)
    gy, gx = (int(v[0]) for v in np.nonzero(grid == GOAL))
    seen[gy, gx] = True
    queue = deque([(gx, gy)])
    while queue:
        x, y = queue.popleft()
        for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            nx, ny = x + dx, y + dy
            if 0 <= nx < w and 0 <= ny < h and not seen[ny, nx] and grid[ny, nx] != WALL:
                seen[ny, nx] = True
                queue.append((nx, ny))
    return seen


def procedural_layout(
    seed: int, size: int = 10, wall_density: float = 0.2, max_tries: int = 1000
) -> np.ndarray:
    """A random layout whose every empty cell can reach the goal (so the oracle solves every start).

    Candidates with unreachable pockets are rejected and redrawn, never patched, so the wall density
    is the one asked for.
    """
    if not 0.0 <= wall_density < 0.6:
        raise LayoutError(f"wall_density must be in [0, 0.6), got {wall_density}")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        grid = np.where(rng.random((size, size)) < wall_density, WALL, EMPTY).astype(np.int8)
        free = np.flatnonzero(grid == EMPTY)
        if len(free) < 2:
            continue
        grid.flat[rng.choice(free)] = GOAL
        try:
            validate_layout(grid)
        except LayoutError:
            continue
        return grid
    raise LayoutError(f"no solvable layout after {max_tries} tries at wall_density={wall_density}")


def make_layout(layout: str | Sequence[str] | np.ndarray = "default", layout_seed: int = 0) -> np.ndarray:
    """Resolve the env's ``layout`` kwarg: ``"default"``, ``"procedural"``, ASCII rows or an array."""
    if isinstance(layout, np.ndarray):
        grid = layout.astype(np.int8, copy=True)
        validate_layout(grid)
        return grid
    if isinstance(layout, str):
        if layout == "default":
            return parse_layout(DEFAULT_LAYOUT)
        if layout == "procedural":
            return procedural_layout(layout_seed)
        raise LayoutError(f"unknown layout {layout!r}; use 'default', 'procedural' or a list of ASCII rows")
    return parse_layout(list(layout))
