"""Atari tasks: the spec's ``atari`` op gives exactly the observations of Gymnasium's own Atari wrappers,
evaluation and the device never end an episode on a lost life, and a malformed op is refused by name."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import tasks
from tasks import preprocess
from tasks.envs import env_packages
from tasks.spec import ObservationSpec, TaskSpec

ale_py = pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")
pytest.importorskip("cv2", reason="opencv-python-headless is in the zoo extra")
GAME = "ALE/Breakout-v5"


@pytest.fixture(scope="module")
def breakout() -> TaskSpec:
    return tasks.from_env(GAME, episodes=3)


def test_an_ale_id_gets_the_standard_preprocessing(breakout: TaskSpec) -> None:
    assert breakout.name == "breakout"
    assert breakout.env.kwargs == {"frameskip": 1} and breakout.env.max_episode_steps == 108_000
    assert breakout.observation.shape == (4, 84, 84) and breakout.observation.dtype == "uint8"
    assert breakout.observation.preprocess == (
        {"op": "atari", "noop_max": 30, "frame_skip": 4, "screen_size": 84, "stack": 4, "fire_reset": True},
    )
    assert breakout.action.kind == "discrete" and breakout.action.n == 4 and breakout.output == "logits"
    again = TaskSpec.from_dict(json.loads(json.dumps(breakout.to_dict())))
    assert again == breakout  # what the manifest holds rebuilds the same task on the device
    assert env_packages(GAME) == ("ale-py", "opencv-python-headless")


@pytest.fixture(scope="module")
def breakout_no_fire() -> TaskSpec:
    """Gymnasium's preprocessing alone (the bit-identity test's subject; FIRE-on-reset is ours)."""
    return tasks.from_env(GAME, episodes=3, preprocess_steps=[{"op": "atari"}])


def _gymnasium_reference() -> gym.Env:
    """Gymnasium's wrappers assembled by hand, as its documentation does."""
    gym.register_envs(ale_py)
    env = gym.make(GAME, frameskip=1, max_episode_steps=108_000)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
    return gym.wrappers.FrameStackObservation(env, 4)


def test_observations_are_bit_identical_to_gymnasiums_wrappers(breakout_no_fire: TaskSpec) -> None:
    ours, reference = tasks.make_env(breakout_no_fire), _gymnasium_reference()
    actions = np.random.default_rng(0).integers(0, 4, size=300)
    try:
        a, _ = ours.reset(seed=7)
        b, _ = reference.reset(seed=7)
        assert a.dtype == np.uint8 and a.shape == (4, 84, 84)
        np.testing.assert_array_equal(a, b)
        resets = 0
        for action in actions:
            a, ra, ta, tra, _ = ours.step(int(action))
            b, rb, tb, trb, _ = reference.step(int(action))
            np.testing.assert_array_equal(a, b)
            assert (ra, ta, tra) == (rb, tb, trb)
            if ta or tra:
                resets += 1
                a, _ = ours.reset(seed=100 + resets)
                b, _ = reference.reset(seed=100 + resets)
                np.testing.assert_array_equal(a, b)
        assert len(np.unique(a)) > 2, "the frames show the game, not a blank screen"
    finally:
        ours.close()
        reference.close()


def _steps_to_first_end(env: gym.Env, seed: int = 0) -> tuple[int, int]:
    """(agent steps until the episode ends, lives left then) under NOOP/FIRE alternation."""
    env.reset(seed=seed)
    for step in range(1, 20_000):
        _, _, terminated, truncated, info = env.step(step % 2)  # FIRE launches the ball, then it is missed
        if terminated or truncated:
            return step, int(info["lives"])
    raise AssertionError("no episode end in 20,000 steps")


def test_a_lost_life_ends_the_episode_only_in_training(breakout_no_fire: TaskSpec) -> None:
    training, _ = _steps_to_first_end(tasks.make_env(breakout_no_fire, training=True))
    evaluation, lives = _steps_to_first_end(tasks.make_env(breakout_no_fire))
    assert lives == 0 and training < evaluation


def _noop_episode(env: gym.Env, limit: int = 5_000) -> tuple[int, int, bool]:
    """(steps, lives left, ended) of an episode where the policy only ever presses NOOP."""
    env.reset(seed=3)
    lives = 5
    for step in range(1, limit + 1):
        _, _, terminated, truncated, info = env.step(0)
        lives = int(info["lives"])
        if terminated or truncated:
            return step, lives, True
    return limit, lives, False


def test_fire_reset_launches_every_ball_and_the_stack_shows_the_frames_after_it(
    breakout: TaskSpec, breakout_no_fire: TaskSpec
) -> None:
    # Without FIRE the ball never launches: a NOOP policy's game does not move on; with it, every life's
    # ball is launched and missed, so the game ends with all five lives lost.
    assert _noop_episode(tasks.make_env(breakout_no_fire)) == (5_000, 5, False)
    steps, lives, ended = _noop_episode(tasks.make_env(breakout))
    assert ended and lives == 0 and steps < 5_000
    # In training a lost life ends the episode, and the next reset launches the ball again.
    env = tasks.make_env(breakout, training=True)
    _, lives, ended = _noop_episode(env)
    assert ended and lives == 4
    obs, _ = env.reset(seed=4)
    assert not np.array_equal(obs[-1], tasks.make_env(breakout_no_fire).reset(seed=4)[0][-1])


def test_fire_reset_needs_a_game_with_fire() -> None:
    with pytest.raises(ValueError, match="has no FIRE action"):
        tasks.from_env("ALE/Freeway-v5", preprocess_steps=[{"op": "atari", "fire_reset": True}])
    # Freeway's chicken only crosses the road: its default step leaves fire_reset off
    freeway = tasks.from_env("ALE/Freeway-v5", episodes=1)
    assert freeway.observation.preprocess[0]["fire_reset"] is False


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"op": "atari", "stack": 0}, "preprocess[0].stack: expected an integer ≥ 1"),
        ({"op": "atari", "frame_skip": "4"}, "preprocess[0].frame_skip: expected an integer ≥ 1"),
        ({"op": "atari", "gray": True}, "unknown field(s) ['gray'] of op 'atari'"),
        ({"op": "resize"}, "preprocess[0].op: unknown preprocessing op 'resize'"),
        ({"op": "atari", "fire_reset": 1}, "preprocess[0].fire_reset: expected true or false"),
    ],
)
def test_a_malformed_step_is_refused_by_name(step: dict, says: str) -> None:
    with pytest.raises(ValueError) as err:
        ObservationSpec((4, 84, 84), "uint8", [step])
    assert says in str(err.value)


def test_the_defaults_fill_a_partial_step() -> None:
    spec = ObservationSpec((4, 84, 84), "uint8", [{"op": "atari"}])
    assert spec.preprocess[0] == preprocess.atari_step()
    assert preprocess.observation_shape(spec.preprocess, (210, 160, 3)) == (4, 84, 84)
