"""The BFS oracle is optimal and the exact evaluation is right."""

from __future__ import annotations

import numpy as np
import pytest

from gridworld.core import N_ACTIONS, GridWorldCore, build_model, states_from_vector_obs
from gridworld.layouts import procedural_layout
from gridworld.oracle import Oracle, evaluate_policy, return_for_distance, rollout_all_starts


@pytest.fixture(scope="module", params=["default", "procedural"])
def model(request):
    return build_model(request.param if request.param == "default" else procedural_layout(5))


def test_distances_satisfy_bellman_optimality(model) -> None:
    oracle = Oracle(model)
    for s in model.start_states:
        succ = oracle.distance[model.next_state[s]]
        assert oracle.distance[s] == 1 + succ[succ >= 0].min()
        assert oracle.optimal_mask[s, oracle.action[s]]


def test_oracle_returns_match_distances_when_played(model) -> None:
    """Playing the oracle's action from every start reaches the goal in exactly BFS-distance steps."""
    oracle = Oracle(model)
    core = GridWorldCore(model=model)
    for s, expected in zip(model.start_states, oracle.returns(), strict=True):
        core.reset(start=model.decode(s))
        total, steps, term = 0.0, 0, False
        while not term:
            _, r, term, _ = core.step(int(oracle.action[core.state]))
            total, steps = total + r, steps + 1
        assert steps == oracle.distance[s]
        assert total == pytest.approx(expected)


def test_no_policy_beats_the_oracle_from_any_start(model) -> None:
    oracle_returns = Oracle(model).returns()
    rng = np.random.default_rng(0)
    for _ in range(30):  # random deterministic (state-indexed) policies
        table = rng.integers(0, N_ACTIONS, model.n_states)
        # the vector observation identifies the state, so a state table is a deterministic policy
        returns, _, _ = rollout_all_starts(model, lambda obs, t=table: t[states_from_vector_obs(model, obs)])
        assert (returns <= oracle_returns + 1e-9).all()


def test_exact_evaluation_of_oracle_and_of_a_spinning_policy() -> None:
    model = build_model()
    oracle = Oracle(model)
    ev = evaluate_policy(model, oracle.policy())
    assert ev.success_rate == 1.0 and ev.oracle_ratio == pytest.approx(1.0)
    assert ev.n_starts == len(model.start_states)
    spin = evaluate_policy(model, lambda obs: np.zeros(len(obs), dtype=int))
    assert spin.success_rate == 0.0 and spin.mean_return == pytest.approx(-10.0)
    assert spin.mean_length == 100


def test_return_for_distance() -> None:
    np.testing.assert_allclose(return_for_distance(np.array([1, 2, 11])), [10.0, 9.9, 9.0])
    assert return_for_distance(101) == pytest.approx(-10.0)


def test_evaluation_rejects_bad_policy_output() -> None:
    model = build_model()
    with pytest.raises(ValueError, match="actions outside"):
        evaluate_policy(model, lambda obs: np.full(len(obs), 5))
    with pytest.raises(ValueError, match="actions for"):
        evaluate_policy(model, lambda obs: np.zeros(1, dtype=int))


def test_the_models_episode_limit_drives_exact_evaluation() -> None:
    """A dataset collected with --max-steps 10 is evaluated with 10-step episodes, not the default 100."""
    from gridworld.core import build_model as build
    from gridworld.oracle import return_for_distance
    from train.evaluate import env_model_from_metadata

    short = env_model_from_metadata({"env_kwargs": {"max_steps": 10}})
    assert short.max_steps == 10 and build().max_steps == 100
    oracle = Oracle(short)
    far = oracle.distance[short.start_states] > 10
    assert far.any()  # some starts cannot reach the goal in 10 steps
    assert np.array_equal(oracle.returns(), return_for_distance(oracle.distance[short.start_states], 10))
    ev = evaluate_policy(short, oracle.policy())
    assert ev.oracle_ratio == pytest.approx(1.0)
    assert ev.success_rate == pytest.approx(1.0 - far.mean())
    with pytest.raises(ValueError, match="max_steps"):
        build(max_steps=0)
