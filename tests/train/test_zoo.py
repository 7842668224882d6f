"""``python -m train.zoo``: the recipe table, a tiny CLI run, refusals, and nothing half-written.

No test trains a policy to quality (docs/contracts.md#tests-that-hold-on-every-host; that is ``make zoo``'s
job): the CartPole run takes 512 steps, and the checks are on what is written and how the saved zip is read
back.
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import stable_baselines3
from stable_baselines3.common.base_class import BaseAlgorithm

import tasks
from common.fileio import file_sha256
from export.policies.sb3 import load_sb3
from tests.no_pickle import forbid_unpickling
from train import zoo

REPO = Path(__file__).resolve().parents[2]
TINY = ["--task", "cartpole", "--steps", "512", "--eval-episodes", "5", "--no-progress"]
# What each algorithm can act in: DQN needs discrete actions, SAC and TD3 box ones, PPO takes both.
ACTION_KINDS = {"ppo": {"discrete", "box"}, "dqn": {"discrete"}, "sac": {"box"}, "td3": {"box"}}


def test_recipes_cover_the_issue_table() -> None:
    assert set(zoo.names()) >= {"cartpole", "lunarlander", "pendulum", "halfcheetah"}
    assert set(ACTION_KINDS) == set(zoo.ALGORITHMS)


@pytest.mark.parametrize("name", zoo.names())
def test_recipe_is_consistent(name: str) -> None:
    """Env id registered, algorithm known to SB3 and suited to the action space, hyperparameters JSON
    values that the algorithm accepts, a finite target and a positive budget."""
    recipe = zoo.RECIPES[name]
    if recipe.env_id.startswith("ALE/"):  # the ALE registers its ids when imported
        gymnasium.register_envs(pytest.importorskip("ale_py"))
    gymnasium.spec(recipe.env_id)  # registered, whatever simulator is installed
    cls = zoo.algorithm_class(recipe.algorithm)
    assert issubclass(cls, BaseAlgorithm)
    assert math.isfinite(recipe.target) and recipe.steps >= 1 and recipe.n_envs >= 1
    json.dumps(dict(recipe.hyperparameters))  # zoo.json records them as written
    accepted = set(inspect.signature(cls.__init__).parameters)
    built = zoo.algorithm_kwargs(recipe, (1,))
    assert set(built) <= accepted, f"{name}: {sorted(set(built) - accepted)} are not {cls.__name__} arguments"
    try:
        spec = tasks.from_env(recipe.env_id)
    except tasks.TaskUnavailable as err:
        pytest.skip(str(err))
    assert spec.action.kind in ACTION_KINDS[recipe.algorithm]


def test_tiny_cartpole_run_writes_an_exportable_zip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cartpole"
    assert zoo.main([*TINY, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.zip", "zoo.json"]  # no temp files left
    summary = json.loads((out / "zoo.json").read_text())
    assert summary["task"] == "cartpole" and summary["env_id"] == "CartPole-v1"
    assert summary["algorithm"] == "ppo" and summary["seed"] == 0
    assert summary["steps"] == 512 and summary["trained_steps"] >= 512
    assert summary["episodes"] == 5 and summary["target"] == 475.0
    assert isinstance(summary["met"], bool) and summary["met"] == (summary["mean_return"] >= 475.0)
    low, high = summary["ci95"]
    assert low <= summary["mean_return"] <= high and summary["std"] >= 0
    assert summary["wall_seconds"] >= 0 and summary["versions"]["stable-baselines3"]
    assert summary["hyperparameters"] == dict(zoo.RECIPES["cartpole"].hyperparameters)
    assert summary["model_sha256"] == file_sha256(out / "model.zip")
    random = summary["random_policy"]  # uniform random actions on the same five seeds
    assert random["episodes"] == 5 and random["ci95"][0] <= random["mean_return"] <= random["ci95"][1]
    assert 8 <= random["mean_return"] <= 60  # CartPole under random pushes falls within a few dozen steps
    printed = capsys.readouterr().out
    assert "mean return" in printed and "a random policy on the same seeds" in printed

    with forbid_unpickling():
        loaded = load_sb3(out / "model.zip", "CartPole-v1")
    assert loaded.info["unpickled"] == [] and loaded.info["algorithm"] == "PPO"

    # The recorded return is that of SB3's own deterministic predict on the same seeds.
    model = stable_baselines3.PPO.load(out / "model.zip", device="cpu")
    spec = tasks.from_env("CartPole-v1", episodes=5)

    def predict(obs: np.ndarray) -> np.ndarray:
        return np.eye(2, dtype=np.float32)[model.predict(obs, deterministic=True)[0]]

    assert tasks.evaluate(spec, predict).mean_return == pytest.approx(summary["mean_return"])


def test_unknown_task_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert zoo.main(["--task", "cartpol", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'cartpol'" in err
    assert all(name in err for name in zoo.names())
    assert not (tmp_path / "x").exists()


def test_missing_simulator_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Box2D absent (simulated the way gymnasium reports it): exit 2, one line naming what to install."""
    real_make = gymnasium.make

    def make(env_id: Any, *args: Any, **kwargs: Any) -> Any:
        if env_id == "LunarLander-v3":
            raise gymnasium.error.DependencyNotInstalled(
                'Box2D is not installed, run `pip install "gymnasium[box2d]"`'
            )
        return real_make(env_id, *args, **kwargs)

    monkeypatch.setattr(gymnasium, "make", make)
    out = tmp_path / "lunarlander"
    assert zoo.main(["--task", "lunarlander", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install box2d" in err
    assert not out.exists()


def test_bad_flag_values_exit_2(tmp_path: Path) -> None:
    for flags in (["--eval-episodes", "1"], ["--steps", "0"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            zoo.main(["--task", "cartpole", "--out", str(tmp_path), *flags])
        assert exit_info.value.code == 2


def test_interrupted_training_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(stable_baselines3.PPO, "learn", interrupted)
    out = tmp_path / "cartpole"
    assert zoo.main([*TINY, "--out", str(out)]) == 130
    assert not (out / "model.zip").exists() and not (out / "zoo.json").exists()


def test_failed_evaluation_keeps_the_previous_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The zip is evaluated under a temp name: a failure there leaves the old model.zip and its zoo.json,
    and keeps the newly trained model beside them as model.unevaluated.zip (training may take an hour)."""
    out = tmp_path / "cartpole"
    out.mkdir()
    (out / "model.zip").write_bytes(b"previous model")
    (out / "zoo.json").write_text('{"previous": true}')

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(zoo, "evaluate_zip", broken)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        zoo.train_zoo(
            zoo.ZooConfig(task="cartpole", steps=256, out=str(out), eval_episodes=2, progress=False)
        )
    assert (out / "model.zip").read_bytes() == b"previous model"
    assert json.loads((out / "zoo.json").read_text()) == {"previous": True}
    assert sorted(p.name for p in out.iterdir()) == ["model.unevaluated.zip", "model.zip", "zoo.json"]
    assert (out / "model.unevaluated.zip").read_bytes()[:2] == b"PK"  # the new SB3 zip


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_zoo_passes_the_task() -> None:
    dry = subprocess.run(["make", "-n", "zoo", "TASK=pendulum"], cwd=REPO, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert '-m train.zoo --task "pendulum"' in dry.stdout
