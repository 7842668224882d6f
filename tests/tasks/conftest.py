"""Toy envs registered for the task tests: one that reports ``is_success``, and spaces tasks refuse."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

COIN_ID = "TasksTest/Coin-v0"
SPACES_ID = "TasksTest/Spaces-v0"


class CoinEnv(gym.Env):
    """One-step episodes: the observation shows a coin (−1 or +1); calling it right is a success."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.coin = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.coin = int(self.np_random.integers(2))
        return np.array([2.0 * self.coin - 1.0], dtype=np.float32), {}

    def step(self, action: int):
        right = int(action) == self.coin
        obs = np.zeros(1, dtype=np.float32)
        return obs, float(right), True, False, {"is_success": right}


class SpacesEnv(gym.Env):
    """An env whose spaces tasks do not take, chosen by ``case``."""

    CASES = {  # noqa: RUF012 (read-only table)
        "dict-observation": (spaces.Dict({"x": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2)),
        "multidiscrete-action": (spaces.Box(-1, 1, (2,)), spaces.MultiDiscrete([2, 3])),
        "unbounded-box-action": (spaces.Box(-1, 1, (2,)), spaces.Box(-np.inf, np.inf, (1,))),
        "discrete-from-one": (spaces.Box(-1, 1, (2,)), spaces.Discrete(3, start=1)),
    }

    def __init__(self, case: str) -> None:
        self.observation_space, self.action_space = self.CASES[case]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any):
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.fixture(scope="session", autouse=True)
def toy_envs() -> None:
    for env_id, entry_point in ((COIN_ID, CoinEnv), (SPACES_ID, SpacesEnv)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=5, disable_env_checker=True)
