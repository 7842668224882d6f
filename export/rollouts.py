"""Observations a policy meets when it acts with exploration noise: calibration, gate and distillation
states for a policy source, which brings no dataset (docs/contracts.md#policy-sources).

Seeded throughout: the same policy and seed give the same states on any host that runs the env the same.
"""

from __future__ import annotations

import math

import numpy as np

import tasks
from export import task_gates
from tasks import TaskSpec

CALIBRATION_STATES = 4096
"""States the float policy's noisy rollouts give for int8 calibration and the parity gates. Enough that
MinMax ranges see the states the policy meets (~300 already calibrate a small MLP, PITFALLS) and that the
agreement figure resolves the 0.99 threshold (one state is 0.024 %; ±0.3 % at the 95 % level); few
enough that rollouts, calibration and the gates take about a second each on 2 cores."""
CALIBRATION_ENVS = 16
"""Envs stepped side by side (one batched policy call per step): 16 episodes' worth of starts rather
than one long episode, 256 steps each."""
CALIBRATION_SEED = 10_000
"""Reset seeds of the rollouts start here (plus ``--seed`` × envs): apart from the evaluation seeds
0..episodes-1, so the return gate plays episodes the calibration never saw."""
EPSILON = 0.1
"""Discrete exploration: the share of steps whose action is drawn uniformly instead of the policy's."""
BOX_NOISE = 0.1
"""Box exploration: Gaussian noise of this × (high − low) per dimension, clipped to the bounds."""


def explore(task: TaskSpec, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The policy's actions with exploration noise: ε-greedy (:data:`EPSILON`) for discrete actions,
    Gaussian :data:`BOX_NOISE` × range, clipped, for box. Draws the same numbers whatever the actions, so a
    seed gives one noise sequence."""
    if task.action.kind == "discrete":
        pick = rng.random(len(actions)) < EPSILON
        random = rng.integers(0, task.action.n, size=len(actions))
        return np.where(pick, random, actions).astype(actions.dtype)
    low, high = tasks.action_bounds(task)
    noise = rng.normal(0.0, 1.0, size=actions.shape) * (BOX_NOISE * (high - low))
    return np.clip(actions + noise, low, high).astype(np.float32)


def rollout_states(
    task: TaskSpec,
    infer: task_gates.Policy,
    seed: int = 0,
    n_states: int = CALIBRATION_STATES,
    n_envs: int = CALIBRATION_ENVS,
) -> np.ndarray:
    """Observations the float policy meets when it acts with exploration noise (no dataset needed).

    ``n_envs`` envs reset with seeds ``CALIBRATION_SEED + seed·n_envs + i`` step together until
    ``n_states`` observations are collected; an env whose episode ends starts the next one (the vector
    env's auto-reset). Seeded throughout: the same seed gives the same states.
    """
    rng = np.random.default_rng(seed)
    policy = task_gates.batched(task, infer)
    env = tasks.make_env(task, num_envs=n_envs)
    rows = []
    try:
        obs, _ = env.reset(seed=[CALIBRATION_SEED + seed * n_envs + i for i in range(n_envs)])
        for _ in range(math.ceil(n_states / n_envs)):
            obs = tasks.model_obs(task, obs)  # flat float32, or an image task's uint8 frames
            rows.append(obs)
            actions = explore(task, tasks.select_actions(task, policy(obs)), rng)
            obs, *_ = env.step(actions)
    finally:
        env.close()
    return np.ascontiguousarray(np.concatenate(rows)[:n_states])
