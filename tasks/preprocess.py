"""Observation preprocessing a task declares (``task.observation.preprocess``), applied where the env is made.

One op so far, ``atari``: the standard Atari preprocessing of Mnih et al. (2015) as Gymnasium implements it
— noop reset (up to ``noop_max`` NOOPs), ``frame_skip`` frames per action with a max-pool over the last
two, ALE's grayscale screen resized to ``screen_size``² with OpenCV's area interpolation — then the last
``stack`` frames stacked, channel first: uint8 ``[stack, 84, 84]``, which the model scales inside its graph.
With ``fire_reset`` (``tasks.from_env`` sets it for games that have a FIRE action), FIRE is pressed once at
the start of every life, as OpenAI baselines' and SB3's ``FireResetEnv`` do.

Why Gymnasium's wrappers (``AtariPreprocessing`` + ``FrameStackObservation``) rather than our own: they are
torch-free numpy + ``opencv-python-headless``, so the device runs the very code the policy was trained and
evaluated on, and a hand-written copy could only drift from it. What this module owns is the mapping from
the manifest's JSON to those wrappers, its validation, and the training-only part: a life lost ends the
episode only in training (``training=True``), never in evaluation or on the device.

Why ``fire_reset``: in Breakout the ball is launched by FIRE. A policy trained with a lost life as terminal
only ever launches the first ball; on the device, where the game goes on, the zoo's first Breakout policy
never launched the second one, so its 50 evaluation episodes all ran to the 27,000-step cap (5.5 points in
19.7 min of evaluation). Pressing FIRE after a life is lost is part of the env, on the device as in training.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

#: The ``atari`` op's parameters and their defaults (the ones every Atari baseline since DQN uses).
ATARI_DEFAULTS: dict[str, Any] = {
    "noop_max": 30,
    "frame_skip": 4,
    "screen_size": 84,
    "stack": 4,
    "fire_reset": False,
}
#: What an ALE env must be made with under the op: its own frame skip off (the wrapper skips and pools).
ATARI_ENV_KWARGS: dict[str, Any] = {"frameskip": 1}
#: An Atari episode's cap in emulator frames (30 min of play at 60 Hz; the ALE's max_num_frames_per_episode);
#: with the op's frame skip of 4 that is 27,000 agent steps.
ATARI_MAX_FRAMES = 108_000
OPS = ("atari",)
ATARI_PACKAGES = ("ale-py", "opencv-python-headless")


def is_ale(env_id: str) -> bool:
    """An Arcade Learning Environment id (``ALE/Breakout-v5``)."""
    return env_id.rpartition(":")[2].startswith("ALE/")


def atari_step(**overrides: Any) -> dict[str, Any]:
    """The ``atari`` op with the standard parameters, ``overrides`` replacing some."""
    return check_step({"op": "atari", **ATARI_DEFAULTS, **overrides}, "task.observation.preprocess[0]")


def check_step(step: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A preprocessing step as the manifest may hold it, with defaults filled in; ``ValueError`` naming the
    field otherwise (a manifest is user input)."""
    op = step.get("op")
    if op not in OPS:
        raise ValueError(f"{where}.op: unknown preprocessing op {op!r}; known: {', '.join(OPS)}")
    unknown = sorted(set(step) - {"op", *ATARI_DEFAULTS})
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown} of op 'atari' (fields: {sorted(ATARI_DEFAULTS)})"
        )
    out = {"op": op, **ATARI_DEFAULTS, **step}
    for key, minimum in (("noop_max", 0), ("frame_skip", 1), ("screen_size", 8), ("stack", 1)):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{where}.{key}: expected an integer ≥ {minimum}, got {value!r}")
    if not isinstance(out["fire_reset"], bool):
        raise ValueError(f"{where}.fire_reset: expected true or false, got {out['fire_reset']!r}")
    return out


def has_fire(env: Any) -> bool:
    """Whether an ALE env's action set has FIRE (the game waits for it to start a life)."""
    return "FIRE" in env.unwrapped.get_action_meanings()


def observation_shape(steps: Sequence[Mapping[str, Any]], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The observation shape after ``steps`` of a raw observation of ``shape``."""
    for step in steps:
        if step["op"] == "atari":
            shape = (int(step["stack"]), int(step["screen_size"]), int(step["screen_size"]))
    return shape


def apply(env: Any, steps: Sequence[Mapping[str, Any]], training: bool = False) -> Any:
    """``env`` wrapped in the steps' Gymnasium wrappers; ``training`` ends episodes on a lost life."""
    if not steps:
        return env
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    for i, raw in enumerate(steps):
        step = check_step(raw, f"task.observation.preprocess[{i}]")
        env = AtariPreprocessing(
            env,
            noop_max=step["noop_max"],
            frame_skip=step["frame_skip"],
            screen_size=step["screen_size"],
            terminal_on_life_loss=training,
            grayscale_obs=True,
            scale_obs=False,
        )
        if step["fire_reset"]:
            env = fire_reset_wrapper()(env)
        env = FrameStackObservation(env, step["stack"])
    return env


@functools.cache
def fire_reset_wrapper() -> type:
    """The ``FireReset`` wrapper class (built on first use: importing :mod:`tasks` stays gymnasium-free)."""
    import gymnasium as gym

    class FireReset(gym.Wrapper):
        """Presses FIRE once after a reset and after each lost life that does not end the episode.

        Sits between ``AtariPreprocessing`` and the frame stack, so FIRE is one agent step (``frame_skip``
        frames) and the stack holds the frames after it; its reward counts toward the step's."""

        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            meanings = env.unwrapped.get_action_meanings()
            if "FIRE" not in meanings:
                raise ValueError(
                    f"preprocess op 'atari': fire_reset is set but {env.spec.id if env.spec else 'the game'} "
                    f"has no FIRE action (actions: {meanings}); set fire_reset to false"
                )
            self._fire = meanings.index("FIRE")
            self._lives = 0

        def _lives_now(self) -> int:
            return int(self.env.unwrapped.ale.lives())

        def reset(self, **kwargs: Any) -> Any:
            self.env.reset(**kwargs)
            obs, _, terminated, truncated, info = self.env.step(self._fire)
            if terminated or truncated:  # a game that ends on its first FIRE: start again, as baselines does
                return self.env.reset(**kwargs)
            self._lives = self._lives_now()
            return obs, info

        def step(self, action: Any) -> Any:
            obs, reward, terminated, truncated, info = self.env.step(action)
            lives = self._lives_now()
            if 0 < lives < self._lives and not (terminated or truncated):
                obs, fire_reward, terminated, truncated, info = self.env.step(self._fire)
                reward = float(reward) + float(fire_reward)
                lives = self._lives_now()
            self._lives = lives
            return obs, reward, terminated, truncated, info

    return FireReset
