"""The Gymnasium env and the batched vector env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import gridworld.env
import gridworld.vector
from gridworld.env import ENV_ID, GridWorldEnv
from gridworld.vector import GridWorldVectorEnv

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (warnings are errors: a double registration warns)."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "env_id", [ENV_ID, "NeuroQuant/GridWorld-Image-v0", "NeuroQuant/GridWorld-Procedural-v0"]
)
def test_check_env_passes(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.metadata["render_fps"] == 10
    assert env.spec.max_episode_steps == 100


@pytest.mark.parametrize("obs_mode", ["vector", "image"])
def test_make_with_kwargs(obs_mode: str) -> None:
    env = gym.make(ENV_ID, obs_mode=obs_mode, layout="procedural", layout_seed=3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    expected = (6,) if obs_mode == "vector" else (3, 3)
    assert obs.shape == expected


def test_reset_with_start_option() -> None:
    env = GridWorldEnv()
    _, info = env.reset(seed=0, options={"start": (0, 0, 0)})
    assert env.core.agent == (0, 0, 0)
    assert info["state"] == env.core.state


def _rollout_single(n: int, seed: int, steps: int, actions: np.ndarray, mode: AutoresetMode, obs_mode: str):
    envs = SyncVectorEnv([lambda: GridWorldEnv(obs_mode=obs_mode) for _ in range(n)], autoreset_mode=mode)
    return _trace(envs, seed, steps, actions)


def _trace(envs, seed: int, steps: int, actions: np.ndarray) -> list:
    obs, _ = envs.reset(seed=seed)
    out = [obs.copy()]
    for t in range(steps):
        obs, r, term, trunc, info = envs.step(actions[t])
        final = info.get("final_obs")
        if final is not None:
            mask = info["_final_obs"]
            final = np.stack([np.asarray(f) for f in final[mask]])
        out.append((obs.copy(), np.asarray(r, dtype=np.float64), term.copy(), trunc.copy(), final))
    return out


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("obs_mode", ["vector", "image"])
@pytest.mark.parametrize("draw_block", [64, 2])
def test_vector_env_equals_n_single_envs(
    mode: AutoresetMode, obs_mode: str, draw_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a block of 2 pre-drawn start uniforms makes every env refill its block several times
    monkeypatch.setattr(gridworld.vector, "_DRAW_BLOCK", draw_block)
    n, steps = 8, 400  # long enough for truncations (100 steps) and goal terminations
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 3, (steps, n))
    actions[:, :2] = 1  # a couple of envs walk forward a lot, reaching walls and sometimes the goal
    expected = _rollout_single(n, 42, steps, actions, mode, obs_mode)
    got = _trace(GridWorldVectorEnv(n, obs_mode=obs_mode, autoreset_mode=mode), 42, steps, actions)
    np.testing.assert_array_equal(got[0], expected[0])
    saw_done = False
    for g, e in zip(got[1:], expected[1:], strict=True):
        for a, b in zip(g[:4], e[:4], strict=True):
            np.testing.assert_array_equal(a, b)
        if e[4] is not None:
            saw_done = True
            np.testing.assert_array_equal(g[4], e[4])
    assert saw_done or mode is AutoresetMode.NEXT_STEP


def test_vector_env_spaces_and_errors() -> None:
    env = GridWorldVectorEnv(4)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (4,)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="actions must be"):
        env.step(np.full(4, 3))
    with pytest.raises(ValueError, match="seeds"):
        env.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="not supported"):
        GridWorldVectorEnv(2, autoreset_mode=AutoresetMode.DISABLED)


@pytest.mark.parametrize(
    ("imports", "env_id"),
    [
        ("import gymnasium as gym, gridworld", ENV_ID),
        # gymnasium imported after gridworld: registered when it loads, not before.
        ("import gridworld, sys; assert 'gymnasium' not in sys.modules; import gymnasium as gym", ENV_ID),
        ("import gymnasium as gym", f"gridworld:{ENV_ID}"),  # Gymnasium imports the module itself
        ("import gridworld.env, gymnasium as gym, gridworld", "NeuroQuant/GridWorld-Image-v0"),
    ],
)
def test_importing_the_package_registers_the_envs(imports: str, env_id: str) -> None:
    code = f"{imports}\nenv = gym.make({env_id!r})\nenv.reset(seed=0)\nprint(env.spec.id)"
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == env_id.removeprefix("gridworld:")


def test_registration_is_idempotent() -> None:
    """Every path that registers may run in one process (``-W error``: re-registering would warn)."""
    code = (
        "import importlib, gymnasium as gym, gridworld, gridworld.env, gridworld.vector\n"
        "gridworld.env.register_envs()\n"
        "importlib.reload(gridworld)\n"
        "print(sorted(i for i in gym.registry if i.startswith('NeuroQuant/')))"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(gridworld.registration.VARIANTS))


def test_package_imports_and_builds_without_gymnasium() -> None:
    """Where gymnasium cannot be imported, ``import gridworld`` registers nothing and the core works."""
    code = (
        "import sys\n"
        "sys.modules['gymnasium'] = None\n"
        "import gridworld\n"
        "assert gridworld.build_model().obs_shape == (6,)\n"
        "try:\n"
        "    import gymnasium\n"
        "except ImportError:\n"
        "    print('no gymnasium')\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no gymnasium"
