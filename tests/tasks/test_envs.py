"""Specs from Gymnasium ids, the envs a spec makes, and the errors for ids that cannot work here."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

import tasks
from gridworld.vector import GridWorldVectorEnv
from tests.tasks.conftest import SPACES_ID


def test_from_env_discrete() -> None:
    spec = tasks.from_env("CartPole-v1")
    assert spec.to_dict() == {
        "name": "cartpole",
        "env": {"id": "CartPole-v1", "kwargs": {}, "max_episode_steps": 500},
        "observation": {"shape": [4], "dtype": "float32", "preprocess": []},
        "action": {"kind": "discrete", "n": 2},
        "output": "logits",
        "evaluation": {"kind": "episodes", "seeds": list(range(50))},
    }


def test_from_env_box() -> None:
    spec = tasks.from_env("Pendulum-v1", g=9.81)
    assert spec.name == "pendulum" and spec.output == "action"
    assert spec.env.to_dict() == {"id": "Pendulum-v1", "kwargs": {"g": 9.81}, "max_episode_steps": 200}
    assert spec.observation.shape == (3,)
    assert spec.action.to_dict() == {"kind": "box", "shape": [1], "low": [-2.0], "high": [2.0]}


def test_from_env_options() -> None:
    spec = tasks.from_env("CartPole-v1", output="q", name="pole", episodes=7, max_episode_steps=50)
    assert (spec.name, spec.output, spec.env.max_episode_steps) == ("pole", "q", 50)
    assert spec.evaluation.seeds == tuple(range(7))
    assert spec.env.kwargs == {}


@pytest.mark.parametrize(
    ("env_id", "name"),
    [
        ("CartPole-v1", "cartpole"),
        ("ALE/Breakout-v5", "breakout"),
        ("gridworld:NeuroQuant/GridWorld-v0", "gridworld"),
        ("MountainCarContinuous-v0", "mountaincarcontinuous"),
    ],
)
def test_task_names_from_ids(env_id: str, name: str) -> None:
    assert tasks.task_name(env_id) == name


@pytest.mark.parametrize("env_id", ["Cartpole-v1", "CartPole-v9", "NoSuchSpace/Thing-v0"])
def test_an_unknown_id_is_a_value_error_naming_it(env_id: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown Gymnasium env id '{env_id}'.*pprint_registry"):
        tasks.from_env(env_id)


def test_wrong_kwargs_are_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"'CartPole-v1' does not take the kwargs \{'gravity': 1\}"):
        tasks.from_env("CartPole-v1", gravity=1)


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="box2d is installed here")
def test_a_box2d_env_without_box2d_names_the_package() -> None:
    with pytest.raises(tasks.TaskUnavailable, match=r"'LunarLander-v3'.*pip install box2d") as info:
        tasks.from_env("LunarLander-v3")
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, gym.error.DependencyNotInstalled)


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is not None, reason="mujoco is installed here")
def test_a_mujoco_env_without_mujoco_names_the_package() -> None:
    with pytest.raises(tasks.TaskUnavailable, match=r"'HalfCheetah-v5'.*pip install mujoco imageio"):
        tasks.from_env("HalfCheetah-v5")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dict-observation", r"observation space Dict.*\(Dict\) is not supported"),
        ("multidiscrete-action", r"action space MultiDiscrete.*\(MultiDiscrete\) is not supported"),
        ("unbounded-box-action", r"action space Box.*is unbounded"),
        ("discrete-from-one", r"starts at 1"),
    ],
)
def test_unsupported_spaces_are_named(case: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tasks.from_env(SPACES_ID, case=case)


def test_a_tuple_observation_is_named() -> None:
    with pytest.raises(ValueError, match=r"'Blackjack-v1'.*\(Tuple\) is not supported"):
        tasks.from_env("Blackjack-v1")


def test_make_env_single_and_vector() -> None:
    spec = tasks.from_env("CartPole-v1", max_episode_steps=20)
    env = tasks.make_env(spec)
    assert env.spec.max_episode_steps == 20
    env.close()
    venv = tasks.make_env(spec, num_envs=3)
    assert isinstance(venv, gym.vector.SyncVectorEnv) and venv.num_envs == 3
    obs, _ = venv.reset(seed=[5, 6, 7])
    single = tasks.make_env(spec)
    np.testing.assert_array_equal(obs[1], single.reset(seed=6)[0])
    venv.close()
    single.close()
    with pytest.raises(ValueError, match=r"num_envs must be an integer ≥ 1"):
        tasks.make_env(spec, num_envs=0)


def test_the_gridworld_vector_env_is_the_batched_one() -> None:
    spec = tasks.get("gridworld")
    venv = tasks.make_env(spec, num_envs=4)
    assert isinstance(venv, GridWorldVectorEnv) and venv.max_steps == 100
    venv.close()
    env = tasks.make_env(spec)
    assert env.spec.id == "NeuroQuant/GridWorld-v0" and env.observation_space.shape == (6,)
    env.close()
