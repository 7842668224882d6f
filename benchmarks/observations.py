"""Observations the benchmarks feed a model on a Gymnasium task, and the env's bare step time.

Both come from the env itself, seeded, so two runs (or two machines) feed the same inputs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tasks import make_env, model_obs


def random_rollout_observations(spec: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` observations of seeded episodes with uniformly random actions (the env's own sampler), as the
    task's models take them (``tasks.model_obs``: flat float32 rows, or an image task's uint8 frames)."""
    env = make_env(spec)
    env.action_space.seed(seed)
    rows: list[np.ndarray] = []
    try:
        episode = 0
        while len(rows) < n:
            obs, _ = env.reset(seed=seed + episode)
            episode += 1
            done = False
            while not done and len(rows) < n:
                rows.append(np.asarray(obs))
                obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
    finally:
        env.close()
    return model_obs(spec, np.stack(rows))


def bare_env_step_us(spec: Any, steps: int, seed: int = 0) -> dict[str, float]:
    """Per-call time of ``env.step`` alone (random actions drawn beforehand, resets untimed): the
    simulator's share of a frame, against which the loop's own overhead is judged."""
    env = make_env(spec)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(min(steps, 4096))]
    times = np.empty(steps, np.int64)
    clock = time.perf_counter_ns
    try:
        env.reset(seed=seed)
        for i in range(steps):
            action = actions[i % len(actions)]
            t0 = clock()
            _, _, terminated, truncated, _ = env.step(action)
            times[i] = clock() - t0
            if terminated or truncated:
                env.reset(seed=seed + i)
    finally:
        env.close()
    us = times / 1e3
    return {
        "p50": float(np.percentile(us, 50)),
        "p99": float(np.percentile(us, 99)),
        "mean": float(us.mean()),
    }
