"""The env a session drives, behind one small interface: ``reset() → obs``, ``step(action) → (obs, reward,
terminated, truncated)``, both giving the flat float32 observation the model takes.

Two kinds, chosen by the manifest's task (docs/contracts.md#the-task-spec):
- :class:`GridLoopEnv` — the NeuroQuant gridworld on its numpy core (:class:`gridworld.core.GridWorldCore`):
  no gymnasium in the process, a table-lookup step, and the BFS oracle's optimal return of every start so a
  session can report its oracle ratio. The stdlib ``random`` draws the starts (numpy.random would add ~2 MB
  and OpenSSL to a process budgeted at 64 MB).
- :class:`GymLoopEnv` — any other task, through ``gymnasium.make`` (:func:`tasks.make_env`); episode ``i``
  of a session is reset with seed ``seed + i``, so with seed 0 a session plays the task's evaluation
  episodes (seeds 0, 1, …) in order. ``info`` is read only for ``is_success`` at an episode's end.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np

from gridworld.core import GridModel, GridWorldCore
from gridworld.oracle import Oracle, return_for_distance
from tasks import TaskSpec, make_env, model_input

MIN_HEIGHT = 400
"""--render: an env's pictures are scaled up by whole pixels to at least this many rows."""


def _image_obs(obs: Any) -> np.ndarray:
    return np.asarray(obs, dtype=np.uint8)


def _as_is(obs: Any) -> Any:
    return obs


def _flat_obs(obs: Any) -> np.ndarray:
    return np.asarray(obs, dtype=np.float32).reshape(-1)


class GridLoopEnv:
    """The gridworld core with flat float32 observations and the oracle's return of each start."""

    def __init__(self, model: GridModel, seed: int) -> None:
        self.core = GridWorldCore(model=model)
        self.core.rng = random.Random(seed)  # same seed, same sequence of starts
        self.flat = model.obs_mode != "vector"  # image windows reach the model as flat float32
        self._distance = Oracle(model).distance
        self._max_steps = model.max_steps
        self._start = 0
        if not self.flat:
            self.step = self.core.step  # the per-frame call goes straight to the core: no wrapper frame

    def reset(self) -> np.ndarray:
        obs = self.core.reset()
        self._start = self.core.state
        return obs.reshape(-1).astype(np.float32) if self.flat else obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated = self.core.step(action)
        return obs.reshape(-1).astype(np.float32), reward, terminated, truncated

    def success(self, terminated: bool) -> bool | None:
        """Whether the episode that just ended succeeded: the goal terminates it, the step limit truncates."""
        return bool(terminated)

    def optimal_return(self) -> float | None:
        """The BFS oracle's return from the current episode's start (what a perfect policy earns)."""
        return float(return_for_distance(self._distance[self._start], self._max_steps))

    def close(self) -> None:
        pass


class GymLoopEnv:
    """A Gymnasium env of a task: seeded resets, float32 flat observations, scalar rewards."""

    def __init__(self, spec: TaskSpec, seed: int, render: bool = False) -> None:
        if render:  # the env draws its own frames (--render): an Atari game's screen, a pole and cart …
            spec = replace(
                spec, env=replace(spec.env, kwargs={**spec.env.kwargs, "render_mode": "rgb_array"})
            )
        self.env: Any = make_env(spec)
        self.seed = seed
        self.episode = 0
        self._success: bool | None = None
        # Images (uint8 [C, H, W], the model scales them) go in as the env gives them; anything else flat.
        # Chosen once here: step() is on the per-frame path. A flat observation goes in as it is: every
        # backend's infer_one copies it into its float32 input (the conversion cost ~0.3 µs a frame).
        if model_input(spec)[1] == "uint8":
            self._obs = _image_obs
        elif len(self.env.observation_space.shape or ()) == 1:
            self._obs = _as_is
        else:
            self._obs = _flat_obs

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed + self.episode)
        self.episode += 1
        self._success = None
        return self._obs(obs)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "is_success" in info:
            self._success = bool(info["is_success"])
        return self._obs(obs), float(reward), terminated, truncated

    def frame(self) -> np.ndarray:
        """The env's current picture, ``[H, W, 3]`` uint8, scaled up by whole pixels to at least
        :data:`MIN_HEIGHT` rows (an Atari screen is 210 × 160)."""
        picture = np.asarray(self.env.render(), dtype=np.uint8)
        scale = max(1, -(-MIN_HEIGHT // picture.shape[0]))
        return picture.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else picture

    def success(self, terminated: bool) -> bool | None:
        """``info["is_success"]`` at the episode's end, or None where the env does not report it."""
        return self._success

    def optimal_return(self) -> float | None:
        return None  # no oracle outside the gridworld

    def close(self) -> None:
        self.env.close()
