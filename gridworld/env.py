"""Gymnasium wrapper around :class:`gridworld.core.GridWorldCore`, registered as ``NeuroQuant/GridWorld-v0``.

``import gridworld`` already registers the environments (see :mod:`gridworld.registration`); importing
this module registers them too, for code written before that::

    import gymnasium as gym
    import gridworld  # noqa: F401  (registers NeuroQuant/*)
    env = gym.make("NeuroQuant/GridWorld-v0", obs_mode="image")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gridworld.core import (
    IMAGE_GOAL,
    MAX_STEPS,
    N_ACTIONS,
    VECTOR_OBS_DIM,
    GridModel,
    GridWorldCore,
)
from gridworld.registration import ENV_ID, register_envs

__all__ = ["ENV_ID", "RENDER_FPS", "GridWorldEnv", "observation_space", "register_envs"]

RENDER_FPS = 10


def observation_space(model: GridModel) -> spaces.Box:
    if model.obs_mode == "vector":
        low = np.array([0, 0, 0, 0, -1, -1], dtype=np.float32)
        return spaces.Box(low=low, high=np.ones(VECTOR_OBS_DIM, dtype=np.float32), dtype=np.float32)
    return spaces.Box(low=0, high=IMAGE_GOAL, shape=model.obs_shape, dtype=np.int8)


class GridWorldEnv(gym.Env):
    """10×10 directional gridworld. Actions: 0 turn left, 1 forward, 2 turn right.

    Reward +10 on reaching the goal (terminated), −0.1 on every other step; truncated after
    ``max_steps``. ``reset(options={"start": (x, y, heading)})`` places the agent explicitly.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        layout: str | Sequence[str] | np.ndarray = "default",
        obs_mode: str = "vector",
        layout_seed: int = 0,
        max_steps: int = MAX_STEPS,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"unknown render_mode {render_mode!r}; use one of {self.metadata['render_modes']}"
            )
        self.core = GridWorldCore(layout, obs_mode, max_steps, layout_seed)
        self.model = self.core.model
        self.observation_space = observation_space(self.model)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self.render_mode = render_mode
        self._window = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.core.rng = self.np_random
        start = (options or {}).get("start")
        obs = self.core.reset(start=tuple(start) if start is not None else None)
        if self.render_mode == "human":
            self.render()
        return obs, {"state": self.core.state}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated = self.core.step(action)
        if self.render_mode == "human":
            self.render()
        return obs, reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        from gridworld import render

        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        frame = render.render_rgb(self.model.layout, *self.core.agent)
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            self._window = render.PygameWindow(frame.shape[1], frame.shape[0], fps=RENDER_FPS)
        self._window.show(frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None


register_envs()
