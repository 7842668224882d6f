"""The reward figure: exact on the gridworld, seeded episodes with a Student-t 95% CI elsewhere."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tasks
from gridworld.core import build_model
from gridworld.oracle import Oracle, evaluate_policy
from tasks.spec import EvaluationSpec
from tests.tasks.conftest import COIN_ID


def lean_controller(gain: float):
    """CartPole: push toward the pole's lean (logits whose argmax is int(theta + gain * theta_dot > 0))."""

    def policy(obs: np.ndarray) -> np.ndarray:
        assert obs.dtype == np.float32 and obs.ndim == 2
        lean = obs[:, 2] + gain * obs[:, 3]
        return np.stack([np.zeros_like(lean), lean], axis=1)

    return policy


def one_seed_alone(spec: tasks.TaskSpec, policy, seed: int) -> tuple[float, int]:
    """The reference: one plain env, reset once with ``seed``, one observation per policy call."""
    env = tasks.make_env(spec)
    obs, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        action = tasks.select_actions(spec, policy(obs[None].astype(np.float32)))[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
    env.close()
    return total, steps


# --- the t critical value and the CI -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "t"), [(1, 12.706), (2, 4.303), (9, 2.262), (30, 2.042), (49, 2.010), (120, 1.980)]
)
def test_t_critical_values(df: int, t: float) -> None:
    assert tasks.t_critical_975(df) == pytest.approx(t, abs=5e-4)


def test_t_critical_matches_scipy_where_it_is_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 80), 100, 1000, 10**6]:
        assert tasks.t_critical_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-6)


def test_confidence_interval_of_a_known_array() -> None:
    mean, std, (low, high) = tasks.confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert std == pytest.approx(np.sqrt(2.5))
    # scipy.stats.t.interval(0.95, 4, loc=3, scale=sem) = (1.03676, 4.96324)
    assert (low, high) == pytest.approx((1.0367568, 4.9632432), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 episodes"):
        tasks.confidence_interval([1.0])


# --- exact (gridworld) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["oracle", "linear"])
def test_the_gridworld_figure_is_the_exact_evaluation(which: str) -> None:
    model = build_model(obs_mode="vector")
    if which == "oracle":
        actions = Oracle(model).policy()
        q_policy = lambda obs: np.eye(3, dtype=np.float32)[actions(obs)]  # noqa: E731
    else:  # an imperfect deterministic policy, so the figure is not trivially the optimum
        weights = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
        q_policy = lambda obs: obs @ weights  # noqa: E731
        actions = lambda obs: (obs @ weights).argmax(axis=1)  # noqa: E731
    result = tasks.evaluate(tasks.get("gridworld"), q_policy)
    assert result == evaluate_policy(model, actions)
    if which == "oracle":
        assert result.oracle_ratio == 1.0


def test_exact_evaluation_is_for_the_gridworld_only() -> None:
    spec = dataclasses.replace(tasks.from_env("CartPole-v1"), evaluation=EvaluationSpec("exact"))
    with pytest.raises(ValueError, match="exact evaluation exists for the NeuroQuant gridworld only"):
        tasks.evaluate(spec, lean_controller(0.5))


# --- seeded episodes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gain", [0.0, 0.5], ids=["falls", "balances"])
def test_cartpole_episodes_are_reproducible_and_batching_changes_nothing(gain: float) -> None:
    spec = tasks.from_env("CartPole-v1", episodes=10)
    policy = lean_controller(gain)
    first = tasks.evaluate(spec, policy)
    assert tasks.evaluate(spec, policy) == first
    assert tasks.evaluate(spec, policy, max_batch=3) == first
    alone = [one_seed_alone(spec, policy, seed) for seed in range(10)]
    assert first.returns == tuple(r for r, _ in alone)
    assert first.lengths == tuple(n for _, n in alone)
    assert first.episodes == 10 and first.seeds == tuple(range(10))
    assert first.mean_return == pytest.approx(np.mean(first.returns))
    assert first.mean_length == pytest.approx(np.mean(first.lengths))
    assert first.success_rate is None  # CartPole does not report is_success
    if gain == 0.5:
        assert first.returns == (500.0,) * 10 and first.ci95 == (500.0, 500.0)
    else:  # episodes of different lengths: finished envs must stop counting while others run
        assert len(set(first.lengths)) > 3 and max(first.lengths) < 500
        assert first.ci95[0] < first.mean_return < first.ci95[1]


def test_as_dict_is_the_manifest_eval_shape() -> None:
    result = tasks.evaluate(tasks.from_env("CartPole-v1"), lean_controller(0.0), episodes=5)
    mean, std, ci95 = tasks.confidence_interval(result.returns)
    assert result.as_dict() == {
        "mean_return": mean,
        "std": std,
        "ci95": [ci95[0], ci95[1]],
        "episodes": 5,
        "success_rate": None,
    }
    assert all(type(v) in (float, int, type(None), list) for v in result.as_dict().values())
    assert all(type(v) is float for v in result.as_dict()["ci95"])


def test_pendulum_box_actions_are_clipped_and_run_every_step() -> None:
    spec = tasks.from_env("Pendulum-v1", episodes=4)
    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs)
        return (-50.0 * obs[:, 2:3]).astype(np.float32)  # far outside ±2: the rule must clip

    result = tasks.evaluate(spec, policy)
    assert result.lengths == (200,) * 4  # Pendulum only truncates
    assert len(seen) == 200 and all(batch.shape == (4, 3) for batch in seen)
    alone = [one_seed_alone(spec, policy, seed)[0] for seed in range(4)]
    assert result.returns == tuple(alone)


def test_success_rate_where_the_env_reports_it() -> None:
    spec = tasks.from_env(COIN_ID, episodes=20)
    right = tasks.evaluate(spec, lambda obs: np.concatenate([-obs, obs], axis=1))
    assert right.success_rate == 1.0 and right.mean_return == 1.0
    heads = tasks.evaluate(spec, lambda obs: np.tile(np.float32([0.0, 1.0]), (len(obs), 1)))
    assert heads.success_rate == pytest.approx(np.mean(heads.returns))
    assert 0.0 < heads.success_rate < 1.0


def test_episode_evaluation_refusals() -> None:
    spec = tasks.from_env("CartPole-v1", episodes=5)
    policy = lean_controller(0.5)
    with pytest.raises(ValueError, match=r"episodes: expected an integer in 2\.\.5"):
        tasks.evaluate(spec, policy, episodes=6)
    with pytest.raises(ValueError, match=r"max_batch: expected an integer ≥ 1"):
        tasks.evaluate(spec, policy, max_batch=0)
    limitless = dataclasses.replace(spec, env=dataclasses.replace(spec.env, max_episode_steps=None))
    with pytest.raises(ValueError, match="max_episode_steps is not set"):
        tasks.evaluate(limitless, policy)
    with pytest.raises(ValueError, match=r"policy returned outputs of shape \[1, 2\] for 5 observations"):
        tasks.evaluate(spec, lambda obs: np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(tasks.NonFiniteAction, match="non-finite action"):
        tasks.evaluate(spec, lambda obs: np.full((len(obs), 2), np.nan, dtype=np.float32))
