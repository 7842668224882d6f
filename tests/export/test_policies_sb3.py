"""``sb3:`` policy source: every SB3 family loads without unpickling and matches SB3's own ``predict``.

Each model is trained for a few hundred steps only: the test checks that the loaded module computes what
SB3 computes on the same weights (docs/contracts.md#tests-that-hold-on-every-host: behaviour, never training
luck), not that the policy is good. Loading runs with ``pickle``/``cloudpickle`` loading patched to raise, so
a pass proves nothing was unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import sb3_contrib
import stable_baselines3 as sb3
import torch

import tasks
from export.onnx_export import export_onnx, onnx_q_values
from export.policies import LoadedPolicy, kinds, load_policy, parse_policy
from export.policies.sb3 import load_sb3
from tests.no_pickle import Unpickled, forbid_unpickling

N_OBS = 200
BOX_TOL = 1e-5
ONNX_TOL = 1e-5


@dataclass(frozen=True)
class Recipe:
    algo: str
    env_id: str
    steps: int
    kwargs: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    "dqn": Recipe("DQN", "CartPole-v1", 300, {"learning_starts": 100}),
    "qrdqn": Recipe(
        "QRDQN", "CartPole-v1", 300, {"learning_starts": 100, "policy_kwargs": {"n_quantiles": 10}}
    ),
    "ppo-discrete": Recipe("PPO", "CartPole-v1", 256, {"n_steps": 128, "batch_size": 64, "n_epochs": 2}),
    "ppo-box": Recipe("PPO", "Pendulum-v1", 256, {"n_steps": 128, "batch_size": 64, "n_epochs": 2}),
    "ppo-sde": Recipe(
        "PPO", "Pendulum-v1", 256, {"n_steps": 128, "batch_size": 64, "n_epochs": 2, "use_sde": True}
    ),
    "a2c": Recipe("A2C", "CartPole-v1", 200, {}),
    "sac": Recipe("SAC", "Pendulum-v1", 200, {"learning_starts": 100, "batch_size": 64}),
    "sac-sde": Recipe("SAC", "Pendulum-v1", 200, {"learning_starts": 100, "batch_size": 64, "use_sde": True}),
    "td3": Recipe("TD3", "Pendulum-v1", 200, {"learning_starts": 100, "batch_size": 64}),
    "ddpg": Recipe("DDPG", "Pendulum-v1", 200, {"learning_starts": 100, "batch_size": 64}),
}


@dataclass
class Trained:
    model: Any
    """The SB3 model as trained (the reference: never reloaded from the zip)."""
    path: Path
    env_id: str


def train(recipe: Recipe, path: Path, env: Any = None, **kwargs: Any) -> Trained:
    algo = getattr(sb3_contrib if recipe.algo == "QRDQN" else sb3, recipe.algo)
    model = algo("MlpPolicy", env or recipe.env_id, seed=0, device="cpu", **{**recipe.kwargs, **kwargs})
    model.learn(recipe.steps)
    model.save(path)
    return Trained(model, path, recipe.env_id)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """``zoo(name)`` → a model of that recipe trained and saved once per module."""
    root = tmp_path_factory.mktemp("sb3")
    done: dict[str, Trained] = {}

    def get(name: str) -> Trained:
        if name not in done:
            done[name] = train(RECIPES[name], root / f"{name}.zip")
        return done[name]

    return get


@pytest.fixture(scope="module")
def loaded(zoo: Callable[[str], Trained]) -> Callable[[str], LoadedPolicy]:
    """``loaded(name)`` → that model read by ``load_sb3`` with unpickling forbidden."""
    done: dict[str, LoadedPolicy] = {}

    def get(name: str) -> LoadedPolicy:
        if name not in done:
            trained = zoo(name)
            with forbid_unpickling():
                done[name] = load_sb3(trained.path, trained.env_id)
        return done[name]

    return get


def observations(env_id: str, n: int = N_OBS, seed: int = 0) -> np.ndarray:
    """Half from random-action rollouts, half sampled from the observation space (unbounded dims
    clipped to ±10, so the inputs stay in the range a policy meets)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
    rows, (obs, _) = [], env.reset(seed=seed)
    while len(rows) < n // 2:
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    rows += [np.clip(env.observation_space.sample(), -10, 10) for _ in range(n - len(rows))]
    env.close()
    return np.asarray(rows, dtype=np.float32)


def forward(policy: LoadedPolicy, obs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return policy.model(torch.from_numpy(obs)).numpy()


def check_matches_predict(policy: LoadedPolicy, model: Any, obs: np.ndarray, sb3_obs: np.ndarray) -> float:
    """The task's action rule on the module's outputs against ``model.predict(sb3_obs, deterministic)``;
    returns the largest action difference (0 for discrete, where actions must be equal)."""
    expected, _ = model.predict(sb3_obs, deterministic=True)
    actions = tasks.select_actions(policy.task, forward(policy, obs))
    if policy.task.action.kind == "discrete":
        np.testing.assert_array_equal(actions, expected)
        return 0.0
    error = float(np.abs(actions - expected).max())
    assert error <= BOX_TOL, f"max |Δa| {error} against predict"
    # the module's own output is the action already in env units: the runtime's clip changes nothing
    np.testing.assert_array_equal(forward(policy, obs), actions)
    return error


EXPECTED = {
    # name: (algorithm, output, activation, post-processing after the last Linear)
    "dqn": ("DQN", "q", "ReLU", []),
    "qrdqn": ("QR-DQN", "q", "ReLU", []),  # the quantiles' mean folded into the output layer
    "ppo-discrete": ("PPO", "logits", "Tanh", []),
    "ppo-box": ("PPO", "action", "Tanh", ["clip"]),
    "ppo-sde": ("PPO", "action", "Tanh", ["clip"]),
    "a2c": ("A2C", "logits", "Tanh", []),
    "sac": ("SAC", "action", "ReLU", ["tanh", "unscale"]),
    "sac-sde": ("SAC", "action", "ReLU", ["hardtanh", "tanh", "unscale"]),  # gSDE clips the mean first
    "td3": ("TD3", "action", "ReLU", ["tanh", "unscale"]),
    "ddpg": ("DDPG", "action", "ReLU", ["tanh", "unscale"]),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_loads_without_unpickling_and_matches_predict(
    name: str, zoo: Callable[[str], Trained], loaded: Callable[[str], LoadedPolicy]
) -> None:
    trained, policy = zoo(name), loaded(name)
    algorithm, output, activation, after = EXPECTED[name]
    assert (policy.info["algorithm"], policy.task.output) == (algorithm, output)
    assert (policy.info["activation"], policy.info["after"]) == (activation, after)
    assert policy.info["unpickled"] == [] and policy.info["sb3_version"] == sb3.__version__
    assert policy.task.env.id == trained.env_id and policy.kind == "sb3" and len(policy.sha256) == 64
    obs = observations(trained.env_id)
    check_matches_predict(policy, trained.model, obs, obs)
    model = trained.model
    with torch.inference_mode():
        obs_t = torch.from_numpy(obs)
        if name == "dqn":
            np.testing.assert_allclose(forward(policy, obs), model.q_net(obs_t).numpy(), rtol=0, atol=1e-5)
        elif name == "qrdqn":  # predict's Q-values: the mean over quantiles
            expected = model.policy.quantile_net(obs_t).mean(dim=1).numpy()
            np.testing.assert_allclose(forward(policy, obs), expected, rtol=0, atol=1e-5)
        elif output == "logits":  # SB3's Categorical holds log-softmax-normalised logits
            reference = model.policy.get_distribution(obs_t).distribution.logits.numpy()
            ours = torch.log_softmax(policy.model(obs_t), dim=1).numpy()
            np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(RECIPES))
def test_onnx_export_matches_torch(name: str, loaded: Callable[[str], LoadedPolicy], tmp_path: Path) -> None:
    policy = loaded(name)
    obs = observations(policy.task.env.id, seed=1)
    n_obs = int(np.prod(policy.task.observation.shape))
    n_out = tasks.actions.expected_output_shape(policy.task)[0]
    path = export_onnx(policy.model, n_obs, n_out, tmp_path / "policy.onnx", {"source": policy.sha256})
    error = float(np.abs(onnx_q_values(path, obs) - forward(policy, obs)).max())
    assert error <= ONNX_TOL, f"max |Δ| onnxruntime vs torch {error}"


def test_box_clip_matches_predict_beyond_the_bounds(zoo: Callable[[str], Trained], tmp_path: Path) -> None:
    """A briefly trained PPO's means stay inside [−2, 2]; scaled-up output weights push most of them out,
    so the clip that ``predict`` applies (and the module replicates) is what decides the action."""
    trained = zoo("ppo-box")
    weight = trained.model.policy.action_net.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(300.0)
        trained.model.save(tmp_path / "wide.zip")
        with forbid_unpickling():
            policy = load_sb3(tmp_path / "wide.zip", "Pendulum-v1")
        obs = observations("Pendulum-v1")
        with torch.inference_mode():
            means = trained.model.policy.get_distribution(torch.from_numpy(obs)).distribution.mean.numpy()
        assert (np.abs(means) > 2.0).mean() > 0.25 and (np.abs(means) < 2.0).any()
        check_matches_predict(policy, trained.model, obs, obs)
    finally:
        with torch.no_grad():
            weight.copy_(saved)


# --- pickled policy_kwargs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ppo_relu(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """PPO with ``activation_fn=ReLU``: SB3 then pickles policy_kwargs (a class is not JSON)."""
    path = tmp_path_factory.mktemp("sb3-relu") / "ppo_relu.zip"
    return train(RECIPES["ppo-discrete"], path, policy_kwargs={"activation_fn": torch.nn.ReLU})


def test_pickled_activation_is_refused_without_trust(ppo_relu: Trained) -> None:
    with forbid_unpickling(), pytest.raises(ValueError, match=r"--trust-pickle") as err:
        load_sb3(ppo_relu.path, "CartPole-v1")
    assert "activation_fn" in str(err.value) and str(ppo_relu.path) in str(err.value)


def test_pickled_activation_with_trust_matches_predict(ppo_relu: Trained) -> None:
    with forbid_unpickling(), pytest.raises(Unpickled):  # the trusted path really unpickles
        load_sb3(ppo_relu.path, "CartPole-v1", trust_pickle=True)
    policy = load_sb3(ppo_relu.path, "CartPole-v1", trust_pickle=True)
    assert policy.info["activation"] == "ReLU" and policy.info["unpickled"] == ["policy_kwargs"]
    assert isinstance(policy.model.act0, torch.nn.ReLU)
    obs = observations("CartPole-v1")
    check_matches_predict(policy, ppo_relu.model, obs, obs)


# --- VecNormalize --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ppo_vecnormalize(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trained, Path, Any]:
    """PPO trained behind ``VecNormalize``; returns the model, the saved statistics and the wrapper."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    root = tmp_path_factory.mktemp("sb3-vecnorm")
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]), clip_obs=5.0)
    trained = train(RECIPES["ppo-discrete"], root / "ppo.zip", env=venv)
    venv.training = False
    stats = root / "vecnormalize.pkl"
    venv.save(stats)
    return trained, stats, venv


def test_vecnormalize_is_refused_without_trust(ppo_vecnormalize: tuple[Trained, Path, Any]) -> None:
    trained, stats, _ = ppo_vecnormalize
    with forbid_unpickling(), pytest.raises(ValueError, match=r"--trust-pickle") as err:
        load_sb3(trained.path, "CartPole-v1", vecnormalize=stats)
    assert str(stats) in str(err.value)


def test_vecnormalize_with_trust_is_baked_in(
    ppo_vecnormalize: tuple[Trained, Path, Any], tmp_path: Path
) -> None:
    trained, stats, venv = ppo_vecnormalize
    policy = load_sb3(trained.path, "CartPole-v1", trust_pickle=True, vecnormalize=stats)
    assert policy.info["unpickled"] == ["vecnormalize"]
    assert policy.info["normalization"]["clip_obs"] == 5.0
    obs = observations("CartPole-v1")
    normalized = venv.normalize_obs(obs)
    assert np.abs(normalized).max() == 5.0  # the sample reaches the clip, so the clip is checked too
    check_matches_predict(policy, trained.model, obs, normalized)
    with torch.inference_mode():
        ours = policy.model.normalize(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(ours, normalized, rtol=0, atol=1e-5)
    # the statistics are graph constants: the ONNX file alone reproduces the normalised policy
    path = export_onnx(policy.model, 4, 2, tmp_path / "policy.onnx", {"source": policy.sha256})
    assert float(np.abs(onnx_q_values(path, obs) - forward(policy, obs)).max()) <= ONNX_TOL


# --- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("Pendulum-v1", r"takes 4 inputs but Pendulum-v1 observations have 3"),
        ("Acrobot-v1", r"takes 4 inputs but Acrobot-v1 observations have 6"),
    ],
)
def test_policy_for_another_env_is_refused(zoo: Callable[[str], Trained], env_id: str, message: str) -> None:
    with forbid_unpickling(), pytest.raises(ValueError, match=message):
        load_sb3(zoo("ppo-discrete").path, env_id)


def test_discrete_policy_on_box_env_is_refused(zoo: Callable[[str], Trained]) -> None:
    # a DQN edited to take MountainCarContinuous's 2 inputs: the shapes fit, the action kind does not
    with pytest.raises(ValueError, match=r"discrete actions but MountainCarContinuous-v0 has box"):
        load_sb3(_retarget(zoo("dqn").path, 2), "MountainCarContinuous-v0")


def _retarget(path: Path, n_obs: int) -> Path:
    """A copy of an SB3 zip whose first layer takes ``n_obs`` inputs (weights edited, data untouched)."""
    import io
    import zipfile

    out = path.with_name(f"{path.stem}-{n_obs}obs.zip")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            payload = src.read(item)
            if item == "policy.pth":
                state = torch.load(io.BytesIO(payload), weights_only=True)
                for key in [k for k in state if k.endswith("q_net.0.weight")]:
                    state[key] = state[key][:, :n_obs].clone()
                buffer = io.BytesIO()
                torch.save(state, buffer)
                payload = buffer.getvalue()
            dst.writestr(item, payload)
    return out


def test_text_file_renamed_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_text("not a model\n")
    with pytest.raises(ValueError, match=r"not a zip archive") as err:
        load_sb3(path, "CartPole-v1")
    assert str(path) in str(err.value) and "model.save()" in str(err.value)


def test_zip_without_weights_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"no policy.pth") as err:
        load_sb3(path, "CartPole-v1")
    assert str(path) in str(err.value)


# --- the registry --------------------------------------------------------------------------------------


def test_registry_parses_and_dispatches(zoo: Callable[[str], Trained], tmp_path: Path) -> None:
    trained = zoo("ppo-discrete")
    assert "sb3" in kinds()
    assert parse_policy(f"sb3:{trained.path}") == ("sb3", trained.path)
    with forbid_unpickling():
        policy = load_policy(f"sb3:{trained.path}", "CartPole-v1")
    assert policy.info["algorithm"] == "PPO"
    with pytest.raises(ValueError, match=r"unknown kind 'keras'; known kinds: .*sb3"):
        parse_policy(f"keras:{trained.path}")
    with pytest.raises(ValueError, match=r"missing\.zip does not exist"):
        parse_policy(f"sb3:{tmp_path / 'missing.zip'}")
    with pytest.raises(ValueError, match=r"expected KIND:PATH"):
        parse_policy(str(trained.path))
