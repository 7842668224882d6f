"""The gridworld state machine in numpy, with no gymnasium import (the edge runtime drives it directly).

The dynamics are compiled once per layout into lookup tables over the state ``s = (y*W + x)*4 + heading``:
``next_state[s, a]``, the reward and termination of arriving in a state, and the observation of every
state. A step is then one table lookup, which makes the scalar env fast and lets the batched env, the
oracle and the single env share one definition of the rules, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gridworld.layouts import GOAL, WALL, make_layout

# Headings clockwise from east with y growing southwards: turning right is +1, turning left is -1.
HEADINGS = ("E", "S", "W", "N")
HEADING_VECTORS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)
TURN_LEFT, FORWARD, TURN_RIGHT = 0, 1, 2
ACTION_NAMES = ("turn_left", "forward", "turn_right")
N_ACTIONS = 3

GOAL_REWARD = 10.0
STEP_REWARD = -0.1
MAX_STEPS = 100
OBS_MODES = ("vector", "image")
VECTOR_OBS_DIM = 6
#: Cell codes in the image observation (cells outside the grid read as walls).
IMAGE_EMPTY, IMAGE_WALL, IMAGE_GOAL = 0, 1, 2


@dataclass(frozen=True)
class GridModel:
    """Everything that follows from a layout and an observation mode; shared read-only by all envs."""

    layout: np.ndarray
    obs_mode: str
    next_state: np.ndarray = field(repr=False)  # [S, 3] int64
    arrive_reward: np.ndarray = field(repr=False)  # [S] float64: reward for arriving in s
    is_terminal: np.ndarray = field(repr=False)  # [S] bool: s is on the goal
    observations: np.ndarray = field(repr=False)  # [S, *obs_shape]
    start_states: np.ndarray = field(repr=False)  # valid starts: empty cell, any heading
    max_steps: int = MAX_STEPS
    """Episode limit (truncation) that exact evaluations and oracle returns of this model use."""

    @property
    def width(self) -> int:
        return int(self.layout.shape[1])

    @property
    def height(self) -> int:
        return int(self.layout.shape[0])

    @property
    def n_states(self) -> int:
        return int(self.next_state.shape[0])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.observations.shape[1:])

    @property
    def goal(self) -> tuple[int, int]:
        gy, gx = (int(v[0]) for v in np.nonzero(self.layout == GOAL))
        return gx, gy

    def state_index(self, x: int, y: int, heading: int) -> int:
        return (y * self.width + x) * 4 + heading

    def decode(self, state: int) -> tuple[int, int, int]:
        """State index → (x, y, heading)."""
        cell, heading = divmod(int(state), 4)
        y, x = divmod(cell, self.width)
        return x, y, heading


def build_model(
    layout: str | Sequence[str] | np.ndarray = "default",
    obs_mode: str = "vector",
    layout_seed: int = 0,
    max_steps: int = MAX_STEPS,
) -> GridModel:
    """Compile a layout into transition, reward and observation tables."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be ≥ 1, got {max_steps}")
    if obs_mode not in OBS_MODES:
        raise ValueError(f"unknown obs_mode {obs_mode!r}; use one of {OBS_MODES}")
    grid = make_layout(layout, layout_seed)
    grid.setflags(write=False)
    h, w = grid.shape
    ys, xs, hs = np.meshgrid(np.arange(h), np.arange(w), np.arange(4), indexing="ij")
    xs, ys, hs = xs.ravel(), ys.ravel(), hs.ravel()  # ordered like the state index
    n_states = h * w * 4

    def blocked(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        wall = np.ones_like(inside)
        wall[inside] = grid[y[inside], x[inside]] == WALL
        return wall

    fx, fy = xs + HEADING_VECTORS[hs, 0], ys + HEADING_VECTORS[hs, 1]
    stay = blocked(fx, fy)
    fx, fy = np.where(stay, xs, fx), np.where(stay, ys, fy)
    next_state = np.empty((n_states, N_ACTIONS), dtype=np.int64)
    next_state[:, TURN_LEFT] = (ys * w + xs) * 4 + (hs - 1) % 4
    next_state[:, FORWARD] = (fy * w + fx) * 4 + hs
    next_state[:, TURN_RIGHT] = (ys * w + xs) * 4 + (hs + 1) % 4

    is_terminal = grid[ys, xs] == GOAL
    arrive_reward = np.where(is_terminal, GOAL_REWARD, STEP_REWARD)
    start_states = np.flatnonzero((grid[ys, xs] != WALL) & ~is_terminal)

    if obs_mode == "vector":
        gx, gy = (int(v[0]) for v in np.nonzero(grid == GOAL)[::-1])
        obs = np.stack(
            [
                xs / (w - 1),
                ys / (h - 1),
                np.full(n_states, gx / (w - 1)),
                np.full(n_states, gy / (h - 1)),
                HEADING_VECTORS[hs, 0],
                HEADING_VECTORS[hs, 1],
            ],
            axis=1,
        ).astype(np.float32)
    else:
        obs = _egocentric_windows(grid, xs, ys, hs)
    tables = (next_state, arrive_reward, is_terminal, obs, start_states)
    for table in tables:
        table.setflags(write=False)
    return GridModel(grid, obs_mode, *tables, max_steps=int(max_steps))


def _egocentric_windows(grid: np.ndarray, xs: np.ndarray, ys: np.ndarray, hs: np.ndarray) -> np.ndarray:
    """3×3 int8 windows centred on the agent, rotated so the heading points up (row 0 is ahead)."""
    h, w = grid.shape
    fwd = HEADING_VECTORS[hs]  # [S, 2]
    right = HEADING_VECTORS[(hs + 1) % 4]
    out = np.empty((len(xs), 3, 3), dtype=np.int8)
    for i in range(3):
        for j in range(3):
            cx = xs + (1 - i) * fwd[:, 0] + (j - 1) * right[:, 0]
            cy = ys + (1 - i) * fwd[:, 1] + (j - 1) * right[:, 1]
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            cell = np.full(len(xs), IMAGE_WALL, dtype=np.int8)
            cell[inside] = grid[cy[inside], cx[inside]]
            out[:, i, j] = cell
    return out


class UniformSource(Protocol):
    """What draws a start: ``numpy.random.Generator`` or the stdlib's ``random.Random``."""

    def random(self) -> float: ...


def draw_start_index(rng: UniformSource, n_starts: int) -> int:
    """The one way a start is drawn, shared by the single and the batched env so their episodes match.

    A uniform, not ``rng.integers()``: the batched env pre-draws blocks of uniforms per env
    (``rng.random(k)`` gives the same numbers as k calls of ``rng.random()``), which keeps the two
    identical while its resets stay vectorised. The bias of flooring a 53-bit float is negligible.
    """
    return int(rng.random() * n_starts)


def states_from_vector_obs(model: GridModel, obs: np.ndarray) -> np.ndarray:
    """Recover state indices from ``vector`` observations ``[N, 6]`` (they identify the state exactly)."""
    obs = np.asarray(obs, dtype=np.float64).reshape(-1, VECTOR_OBS_DIM)
    x = np.rint(obs[:, 0] * (model.width - 1)).astype(np.int64)
    y = np.rint(obs[:, 1] * (model.height - 1)).astype(np.int64)
    vec = np.rint(obs[:, 4:6]).astype(np.int64)
    heading = np.argmax((vec[:, None, :] == HEADING_VECTORS[None]).all(axis=2), axis=1)
    return (y * model.width + x) * 4 + heading


class GridWorldCore:
    """One gridworld episode at a time, gymnasium-free.

    ``step`` returns ``(obs, reward, terminated, truncated)``; the caller resets after either flag.
    The start state is drawn from ``self.rng`` at each reset: anything with a ``random()`` method
    returning a float in [0, 1) — a ``numpy.random.Generator`` (``reset(seed=…)`` makes one) or the
    stdlib's ``random.Random``, which the edge runtime uses because importing ``numpy.random`` costs
    ~2 MB of RSS on the device. It is created on the first random reset, not before.
    """

    def __init__(
        self,
        layout: str | Sequence[str] | np.ndarray = "default",
        obs_mode: str = "vector",
        max_steps: int | None = None,
        layout_seed: int = 0,
        model: GridModel | None = None,
    ) -> None:
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be ≥ 1, got {max_steps}")
        if model is None:
            model = build_model(layout, obs_mode, layout_seed, MAX_STEPS if max_steps is None else max_steps)
        self.model = model
        # The model's limit unless overridden, so the env and exact evaluations of its model agree.
        self.max_steps = model.max_steps if max_steps is None else max_steps
        self.rng: UniformSource | None = None
        # Python lists make the scalar step a few list lookups instead of numpy scalar indexing.
        self._next = self.model.next_state.tolist()
        self._reward = self.model.arrive_reward.tolist()
        self._terminal = self.model.is_terminal.tolist()
        self._obs = list(self.model.observations)
        self._n_starts = len(self.model.start_states)
        self._valid_starts = frozenset(self.model.start_states.tolist())
        self.state = int(self.model.start_states[0])
        self.steps = 0

    def reset(self, seed: int | None = None, start: tuple[int, int, int] | None = None) -> np.ndarray:
        """Start an episode: at ``start`` = (x, y, heading) if given, else at a random valid start."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if start is not None:
            state = self.model.state_index(*start)
            if state not in self._valid_starts:
                raise ValueError(f"start {start} is not a valid start (empty cell, heading 0-3)")
            self.state = state
        else:
            if self.rng is None:
                self.rng = np.random.default_rng()
            self.state = int(self.model.start_states[draw_start_index(self.rng, self._n_starts)])
        self.steps = 0
        return self._obs[self.state].copy()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        if not 0 <= action < N_ACTIONS:
            raise ValueError(f"action must be 0 (turn left), 1 (forward) or 2 (turn right), got {action}")
        s = self._next[self.state][action]
        self.state = s
        self.steps += 1
        return self._obs[s].copy(), self._reward[s], self._terminal[s], self.steps >= self.max_steps

    @property
    def agent(self) -> tuple[int, int, int]:
        """(x, y, heading) of the agent."""
        return self.model.decode(self.state)
