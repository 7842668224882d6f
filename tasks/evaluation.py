"""A policy's reward figure on its task (docs/contracts.md#the-task-spec): exact on the gridworld, seeded
episodes elsewhere.

``policy`` is anything that maps a batch ``[N, *obs_shape]`` (the spec's observation dtype) to network
outputs, e.g. ``backend.infer``; the task's action rule turns them into actions. Episode evaluation runs
one episode per seed through a vector env, so each step is one batched policy call; sub-env ``i`` is
reset once with seed ``i`` of the list, and an env whose episode has ended stops contributing (its
later, auto-reset steps are ignored), so the figures equal those of running each seed alone.

numpy only (no scipy on the edge path): the Student t critical value comes from a table and, above 30
degrees of freedom, a series that is accurate to 1e-7.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridworld.core import MAX_STEPS, build_model
from gridworld.oracle import Evaluation, evaluate_policy
from tasks.actions import expected_output_shape, select_actions
from tasks.envs import gridworld_kwargs, make_env
from tasks.spec import TaskSpec

Policy = Callable[[np.ndarray], np.ndarray]
"""Observations ``[N, *obs_shape]`` → network outputs ``[N, n]`` (q/logits) or ``[N, *action_shape]``."""

#: Student t critical values t_{0.975, df} for df = 1..30 (two-sided 95%), to 6 decimals.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z975 = 1.959963984540054  # the normal quantile the t quantile tends to


def t_critical_975(df: int) -> float:
    """t_{0.975, df}: the half-width factor of a two-sided 95% CI of a mean from ``df + 1`` samples.

    Table for df ≤ 30; above, the Cornish–Fisher expansion around the normal quantile (Abramowitz &
    Stegun 26.7.5, four terms), whose error is below 3e-8 from df = 31 on.
    """
    if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
        raise ValueError(f"degrees of freedom must be an integer ≥ 1, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    n = float(df)
    return z + g1 / n + g2 / n**2 + g3 / n**3 + g4 / n**4


def confidence_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float, tuple[float, float]]:
    """(mean, sample std, 95% CI of the mean) with Student's t; needs at least two values."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(x) < 2:
        raise ValueError(f"a 95% confidence interval needs at least 2 episodes, got {len(x)}")
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = t_critical_975(len(x) - 1) * std / float(np.sqrt(len(x)))
    return mean, std, (mean - half, mean + half)


@dataclass(frozen=True)
class EpisodeEvaluation:
    """Seeded-episode evaluation: the return's mean, spread and 95% CI, and the per-seed figures."""

    mean_return: float
    std: float
    """Sample standard deviation of the episode returns (ddof = 1)."""
    ci95: tuple[float, float]
    """95% confidence interval of the mean return (Student's t)."""
    episodes: int
    success_rate: float | None
    """Fraction of episodes that ended with ``info["is_success"]`` true; None if the env never reports it."""
    mean_length: float
    seeds: tuple[int, ...]
    returns: tuple[float, ...]
    """Return of each episode, in seed order."""
    lengths: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """The manifest's ``eval`` figures (docs/contracts.md#the-manifest)."""
        return {
            "mean_return": self.mean_return,
            "std": self.std,
            "ci95": [self.ci95[0], self.ci95[1]],
            "episodes": self.episodes,
            "success_rate": self.success_rate,
        }


def evaluate(
    spec: TaskSpec, policy: Policy, *, episodes: int | None = None, max_batch: int | None = None
) -> Evaluation | EpisodeEvaluation:
    """The task's reward figure for ``policy``.

    ``exact``: :func:`gridworld.oracle.evaluate_policy` over every start state (``episodes`` and
    ``max_batch`` do not apply and are ignored). ``episodes``: one episode per seed of the spec —
    the first ``episodes`` of them if given — at most ``max_batch`` envs at a time (default: all).
    """
    if spec.evaluation.kind == "exact":
        return _evaluate_exact(spec, policy)
    seeds = spec.evaluation.seeds
    if episodes is not None:
        if isinstance(episodes, bool) or not isinstance(episodes, int) or not 2 <= episodes <= len(seeds):
            raise ValueError(
                f"episodes: expected an integer in 2..{len(seeds)} (the spec's seeds), got {episodes!r}"
            )
        seeds = seeds[:episodes]
    if spec.env.max_episode_steps is None:
        raise ValueError(
            f"task {spec.name!r}: env.max_episode_steps is not set, so an episode may never end; "
            f"set it (tasks.from_env(id, max_episode_steps=N))"
        )
    batch = len(seeds) if max_batch is None else max_batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"max_batch: expected an integer ≥ 1, got {max_batch!r}")
    returns, lengths, successes = [], [], []
    for start in range(0, len(seeds), batch):
        chunk = _run_episodes(spec, policy, seeds[start : start + batch])
        for figures, out in zip(chunk, (returns, lengths, successes), strict=True):
            out.extend(figures.tolist())
    mean, std, ci95 = confidence_interval(returns)
    reported = [s for s in successes if s is not None]
    return EpisodeEvaluation(
        mean_return=mean,
        std=std,
        ci95=ci95,
        episodes=len(seeds),
        # An episode that did not report counts as a failure once any did.
        success_rate=float(sum(reported)) / len(seeds) if reported else None,
        mean_length=float(np.mean(lengths)),
        seeds=tuple(seeds),
        returns=tuple(returns),
        lengths=tuple(int(n) for n in lengths),
    )


def _evaluate_exact(spec: TaskSpec, policy: Policy) -> Evaluation:
    kwargs = gridworld_kwargs(spec)
    if kwargs is None:
        raise ValueError(
            f"task {spec.name!r}: an exact evaluation exists for the NeuroQuant gridworld only, not "
            f"{spec.env.id!r}; use evaluation kind 'episodes'"
        )
    unknown = sorted(set(kwargs) - {"layout", "obs_mode", "layout_seed", "max_steps", "render_mode"})
    if unknown:
        raise ValueError(f"task {spec.name!r}: the gridworld takes no kwargs {unknown}")
    model = build_model(
        kwargs.get("layout", "default"),
        kwargs.get("obs_mode", "vector"),
        kwargs.get("layout_seed", 0),
        kwargs.get("max_steps", MAX_STEPS),
    )
    dtype = np.dtype(spec.observation.dtype)
    return evaluate_policy(model, lambda obs: select_actions(spec, policy(np.asarray(obs, dtype=dtype))))


def _run_episodes(
    spec: TaskSpec, policy: Policy, seeds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One episode per seed in one vector env: per-seed (returns, lengths, success or None)."""
    n = len(seeds)
    dtype = np.dtype(spec.observation.dtype)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    success = np.full(n, None, dtype=object)
    live = np.ones(n, dtype=bool)
    # Rows of envs that have finished keep their last action: the vector env steps every sub-env.
    actions = select_actions(spec, np.zeros((n, *expected_output_shape(spec)), dtype=np.float32))
    env = make_env(spec, num_envs=n)
    try:
        obs, _ = env.reset(seed=[int(s) for s in seeds])
        while live.any():
            idx = np.flatnonzero(live)
            outputs = np.asarray(policy(np.ascontiguousarray(obs[idx], dtype=dtype)))
            if outputs.shape[:1] != (len(idx),):
                raise ValueError(
                    f"policy returned outputs of shape {list(outputs.shape)} for {len(idx)} observations"
                )
            actions[idx] = select_actions(spec, outputs)
            obs, reward, terminated, truncated, info = env.step(actions)
            returns[idx] += reward[idx]
            lengths[idx] += 1
            ended = idx[(terminated | truncated)[idx]]
            if "is_success" in info:
                reported = ended[info["_is_success"][ended]]
                for i in reported.tolist():
                    success[i] = bool(info["is_success"][i])
            live[ended] = False
    finally:
        env.close()
    return returns, lengths, success
