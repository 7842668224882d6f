"""The zoo: real Gymnasium tasks trained here with Stable-Baselines3, ready for ``export --policy sb3:``.

    python -m train.zoo --task cartpole [--steps N] [--seed 0] [--out runs/zoo/cartpole]

:data:`RECIPES` is the one list of zoo names: each maps to an env id, an SB3 algorithm, hyperparameters
known to work (rl-baselines3-zoo's tuned settings, checked here), a step budget sized for 2 CPU cores and
the target return of issues 19 and 21. Every policy is SB3's ``MlpPolicy`` (``CnnPolicy``, NatureCNN, on
Atari) with its default settings, so the saved zip has no pickled ``policy_kwargs`` and exports without
``--trust-pickle``. Atari trains on the task's own preprocessed env (``tasks.make_env``), the pixels the
device will see.

Writes ``<out>/model.zip`` and ``<out>/zoo.json`` (recipe, steps, seed, wall time, the return's mean, std
and 95% CI, whether the target is met, library versions). The return is measured on the *saved file*: it
is read back through :func:`export.policies.sb3.load_sb3` (weights only, no unpickling) and that torch
module is evaluated with :func:`tasks.evaluate`, so the figure belongs to exactly what export starts from.
The zip is evaluated under a temporary name and renamed only then, so an interrupted or failed run leaves
no ``model.zip`` (nor a ``zoo.json`` describing another one) behind.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

import tasks
from common.cli import dataclass_parser, parse_dataclass
from common.fileio import atomic_write, atomic_write_json, file_sha256, output_problem
from train.trainer import configure_torch

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

PROG = "python -m train.zoo"
MODEL_FILE = "model.zip"
SUMMARY_FILE = "zoo.json"
UNEVALUATED_FILE = "model.unevaluated.zip"
INSTALL_ZOO = 'pip install -c constraints.txt -e ".[zoo]"'
DESCRIPTION = (
    "Train a zoo policy (Stable-Baselines3 MlpPolicy, CnnPolicy on Atari) on a real Gymnasium task, "
    "evaluate the saved "
    "model.zip the way export reads it, and write zoo.json with the return's 95% CI beside it."
)

ALGORITHMS: dict[str, str] = {
    "ppo": "stable_baselines3:PPO",
    "dqn": "stable_baselines3:DQN",
    "sac": "stable_baselines3:SAC",
    "td3": "stable_baselines3:TD3",
}
"""Recipe algorithm → ``"module:Class"``, imported on first use (every family ``export`` reads)."""

#: Distributions whose versions go into zoo.json; a recipe adds its simulator's.
VERSIONED = ("stable-baselines3", "torch", "gymnasium", "numpy")


@dataclass(frozen=True)
class Recipe:
    """One zoo task: what to train, how, for how long, and the mean return that counts as solved."""

    env_id: str
    algorithm: str
    """Key of :data:`ALGORITHMS`."""
    steps: int
    """Default budget in env steps, sized for 2 CPU cores (the wall time measured here is in ``budget``)."""
    target: float
    """Mean evaluation return the trained policy should reach (the zoo table in docs/training.md)."""
    hyperparameters: Mapping[str, Any]
    """Keyword arguments of the SB3 algorithm, JSON values only (they go into zoo.json as written):
    ``{"linear": x}`` is a schedule decaying linearly from x to 0 over training; ``action_noise_std`` is
    Gaussian exploration noise for TD3, in units of the action range's half-width."""
    n_envs: int = 1
    """Envs stepped together (a DummyVecEnv: on 2 cores, subprocesses cost more than they give)."""
    simulator: str | None = None
    """Distribution that provides the env's physics (its version goes into zoo.json)."""
    budget: str = ""
    """Measured cost of the default budget on 2 cores, and where the settings come from."""
    policy: str = "MlpPolicy"
    """SB3 policy class: ``MlpPolicy``, or ``CnnPolicy`` (NatureCNN) for image tasks."""
    threads: int = 1
    """torch intra-op threads unless ``--threads`` says otherwise (a CNN's convolutions use both cores)."""


# Sources: rl-baselines3-zoo's hyperparams/{ppo,sac}.yml (tuned entries for these envs), adapted as noted.
RECIPES: dict[str, Recipe] = {
    "cartpole": Recipe(
        env_id="CartPole-v1",
        algorithm="ppo",
        steps=100_000,
        target=475.0,
        hyperparameters={
            "n_steps": 32,
            "batch_size": 256,
            "n_epochs": 20,
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "ent_coef": 0.0,
            "learning_rate": {"linear": 1e-3},
            "clip_range": {"linear": 0.2},
        },
        n_envs=8,
        budget="rl-zoo's tuned PPO and budget; 100k steps took 19 s here (one thread), mean return 500",
    ),
    "lunarlander": Recipe(
        env_id="LunarLander-v3",
        algorithm="ppo",
        steps=1_000_000,
        target=200.0,
        hyperparameters={
            "n_steps": 1024,
            "batch_size": 64,
            "n_epochs": 4,
            "gamma": 0.999,
            "gae_lambda": 0.98,
            "ent_coef": 0.01,
        },
        n_envs=16,
        simulator="box2d",
        budget="rl-zoo's PPO for LunarLander-v2 (v3 fixes bugs, same dynamics) and budget; 1M steps took "
        "11 min here (return 260): Box2D's step averages ~0.45 ms under a policy that lands against ~0.03 "
        "ms under random actions, so training slows to ~1.5k steps/s once the policy learns to land",
    ),
    "pendulum": Recipe(
        env_id="Pendulum-v1",
        algorithm="sac",
        steps=20_000,
        target=-200.0,
        hyperparameters={"learning_rate": 1e-3},
        budget="rl-zoo's SAC (defaults, lr 1e-3) and budget; 20k steps took 4.3 min here (~78 steps/s, "
        "one gradient step each), return -133",
    ),
    "halfcheetah": Recipe(
        env_id="HalfCheetah-v5",
        algorithm="sac",
        steps=60_000,
        target=3000.0,
        hyperparameters={"learning_starts": 10_000},
        simulator="mujoco",
        budget="rl-zoo's SAC (defaults, 10k random warm-up steps), cut from 1M to 60k steps: 12 min here "
        "(~72 gradient steps/s on one thread), return 4618 ± 243 with seed 0; SAC on HalfCheetah varies "
        "by seed, so --steps 200000 (~47 min, inside the issue's 60) buys margin",
    ),
    "breakout": Recipe(
        env_id="ALE/Breakout-v5",
        algorithm="ppo",
        steps=1_000_000,
        target=10.0,
        hyperparameters={
            "n_steps": 128,
            "n_epochs": 4,
            "batch_size": 256,
            "learning_rate": {"linear": 2.5e-4},
            "clip_range": {"linear": 0.1},
            "vf_coef": 0.5,
            "ent_coef": 0.01,
        },
        n_envs=8,
        simulator="ale-py",
        policy="CnnPolicy",
        threads=2,
        budget="rl-zoo's PPO for Atari (8 envs, 128 steps, 4 epochs, lr and clip decaying linearly) cut from "
        "10M to 1M agent steps for 2 cores; Gymnasium's Atari preprocessing as the task declares it (the "
        "same wrappers the device runs), plus two training-only parts: a lost life ends the episode and "
        "rewards are clipped to their sign. Target: clearly above a random policy's ~1.5",
    ),
}
"""Zoo name → recipe: the only list of zoo names (the CLI, ``make zoo TASK=…`` and the tests use it)."""


def names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The named recipe; an unknown name is a ``ValueError`` listing the known ones."""
    recipe = RECIPES.get(name)
    if recipe is None:
        given = f"unknown zoo task {name!r}" if name else "no zoo task given"
        raise ValueError(f"{given}; zoo tasks: {', '.join(RECIPES)} (--task NAME, or make zoo TASK=NAME)")
    return recipe


@dataclass
class ZooConfig:
    """One zoo training run; saved in zoo.json next to the model it made."""

    task: str
    """Zoo task to train (one of the names listed under usage)."""
    steps: int | None = None
    """Env steps to train; default: the recipe's budget, sized for 2 CPU cores."""
    seed: int = 0
    """Seed of the algorithm (network init, exploration) and of the training envs."""
    out: str | None = None
    """Output folder for model.zip and zoo.json; default runs/zoo/<task>."""
    eval_episodes: int = 50
    """Seeded evaluation episodes of the saved policy (seeds 0..N-1, at least 2 for the 95% CI)."""
    threads: int | None = None
    """torch intra-op threads; default the recipe's. One is faster for the MLP tasks here: SAC on
    HalfCheetah ran 71 steps/s on 1 thread vs 50 on 2, PPO on LunarLander 5.9k vs 4.4k (2 shared cores)."""
    progress: bool = True
    """Show a tqdm progress bar with the recent mean training return (hidden when stderr is no terminal)."""

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be ≥ 1 (or left out for the recipe's budget), got {self.steps}")
        if self.eval_episodes < 2:
            raise ValueError(f"--eval-episodes must be ≥ 2 (a 95% CI needs two), got {self.eval_episodes}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be ≥ 1, got {self.threads}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else Path("runs/zoo") / self.task


class ZooUnavailable(RuntimeError):
    """The zoo cannot run on this host (a package is missing); the message says what to install."""


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The SB3 class of a recipe algorithm, imported now (stable_baselines3 is the optional zoo extra)."""
    module_name, _, cls = ALGORITHMS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ZooUnavailable(f"the zoo needs {err.name!r}, which is not installed: {INSTALL_ZOO}") from err
    return getattr(module, cls)


def algorithm_kwargs(recipe: Recipe, action_shape: tuple[int, ...]) -> dict[str, Any]:
    """The recipe's JSON hyperparameters as SB3 arguments (schedules and noise objects built here)."""
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.utils import LinearSchedule

    kwargs: dict[str, Any] = {}
    for key, value in recipe.hyperparameters.items():
        if key == "action_noise_std":
            sigma = float(value) * np.ones(action_shape, dtype=np.float32)
            kwargs["action_noise"] = NormalActionNoise(np.zeros(action_shape, dtype=np.float32), sigma)
        elif isinstance(value, Mapping) and set(value) == {"linear"}:
            kwargs[key] = LinearSchedule(float(value["linear"]), 0.0, 1.0)
        else:
            kwargs[key] = value
    return kwargs


def training_env(spec: tasks.TaskSpec) -> Any:
    """One training env of a task that preprocesses its observations (Atari): the spec's env with the
    training-only parts — a lost life ends the episode, rewards clipped to their sign (as in DQN) — so
    the pixels are exactly those the evaluation and the device see."""
    from gymnasium.wrappers import TransformReward

    return TransformReward(tasks.make_env(spec, training=True), lambda r: float(np.sign(r)))


def build_model(recipe: Recipe, seed: int) -> BaseAlgorithm:
    """An untrained SB3 model of the recipe on its (vectorised, Monitor-wrapped) env, on the CPU."""
    cls = algorithm_class(recipe.algorithm)
    from stable_baselines3.common.env_util import make_vec_env

    spec = tasks.from_env(recipe.env_id)
    source: Any = (lambda: training_env(spec)) if spec.observation.preprocess else recipe.env_id
    env = make_vec_env(source, n_envs=recipe.n_envs, seed=seed)
    action_shape = env.action_space.shape or ()
    kwargs = algorithm_kwargs(recipe, tuple(action_shape))
    # device="cpu": the budgets are sized and measured on CPU cores; SB3's "auto" would take a GPU if present.
    return cls(recipe.policy, env, seed=seed, device="cpu", verbose=0, **kwargs)


def progress_callback(total: int, enabled: bool) -> Any:
    """An SB3 callback driving a tqdm bar, with the mean return of the last 100 training episodes."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
            self.next_postfix = 0

        def _on_step(self) -> bool:
            # SB3 may overshoot the total by part of a rollout; the bar stops at 100%.
            self.bar.update(min(self.num_timesteps, total) - self.bar.n)
            if self.num_timesteps >= self.next_postfix and self.model.ep_info_buffer:
                returns = [info["r"] for info in self.model.ep_info_buffer]
                self.bar.set_postfix(train_return=f"{np.mean(returns):.1f}", refresh=False)
                self.next_postfix = self.num_timesteps + 2048
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return Progress()


def evaluate_zip(path: str | Path, recipe: Recipe, episodes: int) -> tasks.EpisodeEvaluation:
    """The saved zip's return as export reads it: ``load_sb3`` (no unpickling), then ``tasks.evaluate``."""
    from export.policies.sb3 import load_sb3

    loaded = load_sb3(path, recipe.env_id)
    task = replace(loaded.task, evaluation=tasks.EvaluationSpec("episodes", tuple(range(episodes))))
    module = loaded.model.eval()

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(obs)).numpy()

    # A from_env task is always evaluated by episodes, never exactly.
    return cast(tasks.EpisodeEvaluation, tasks.evaluate(task, policy))


def random_baseline(env_id: str, episodes: int, seed: int = 0) -> tasks.EpisodeEvaluation:
    """A uniformly random policy's return on the same seeded episodes (what "clearly above random" is
    measured against): random logits for discrete actions, uniform actions within the bounds for box."""
    task = tasks.from_env(env_id, episodes=episodes)
    task = replace(task, output="logits" if task.action.kind == "discrete" else "action")
    rng = np.random.default_rng(seed)
    shape = tasks.actions.expected_output_shape(task)

    def policy(obs: np.ndarray) -> np.ndarray:
        if task.action.kind == "discrete":
            return rng.random((len(obs), *shape))
        low, high = tasks.action_bounds(task)
        return rng.uniform(low, high, size=(len(obs), *shape)).astype(np.float32)

    return cast(tasks.EpisodeEvaluation, tasks.evaluate(task, policy))


def versions(recipe: Recipe) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*VERSIONED, *([recipe.simulator] if recipe.simulator else [])):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def preflight(config: ZooConfig) -> Recipe:
    """Everything that can fail before training, checked first so a bad run costs one line, not minutes.

    Raises ``ValueError`` (unknown task, unwritable ``--out``), :class:`tasks.TaskUnavailable` (simulator
    missing) or :class:`ZooUnavailable` (stable_baselines3 missing).
    """
    recipe = get_recipe(config.task)
    if problem := output_problem(config.out_dir, "dir"):
        raise ValueError(f"--out: {problem}; choose another --out")
    tasks.from_env(recipe.env_id)
    algorithm_class(recipe.algorithm)
    return recipe


def train_zoo(config: ZooConfig) -> dict[str, Any]:
    """Train, save atomically, evaluate the saved file; returns what zoo.json holds (checks first)."""
    recipe = preflight(config)
    threads = recipe.threads if config.threads is None else config.threads
    configure_torch(threads)
    steps = recipe.steps if config.steps is None else config.steps
    out = config.out_dir
    model = build_model(recipe, config.seed)

    show = config.progress and sys.stderr.isatty()
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=progress_callback(steps, show))
    train_seconds = time.perf_counter() - start

    model_path = out / MODEL_FILE
    summary_path = out / SUMMARY_FILE
    evaluation: list[tasks.EpisodeEvaluation] = []

    def save_and_evaluate(tmp: str) -> None:
        """Evaluate the file before it gets its name; drop a zoo.json that describes an older model. If the
        evaluation fails, the trained model is kept as ``model.unevaluated.zip`` (training may have taken an
        hour) and the error goes on."""
        with open(tmp, "wb") as f:
            model.save(f)
        try:
            evaluation.append(evaluate_zip(tmp, recipe, config.eval_episodes))
        except Exception:
            shutil.copyfile(tmp, out / UNEVALUATED_FILE)
            raise
        summary_path.unlink(missing_ok=True)

    start = time.perf_counter()
    atomic_write(model_path, save_and_evaluate)
    eval_seconds = time.perf_counter() - start
    result = evaluation[0]
    baseline = random_baseline(recipe.env_id, config.eval_episodes, config.seed)
    summary = {
        "task": config.task,
        "env_id": recipe.env_id,
        "algorithm": recipe.algorithm,
        "policy": recipe.policy,
        "hyperparameters": dict(recipe.hyperparameters),
        "n_envs": recipe.n_envs,
        "steps": steps,
        "trained_steps": int(model.num_timesteps),
        "seed": config.seed,
        "threads": threads,
        "wall_seconds": round(train_seconds, 1),
        "steps_per_second": round(model.num_timesteps / train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "evaluated": "model.zip read back by export.policies.sb3.load_sb3 (weights only), tasks.evaluate",
        **result.as_dict(),
        "mean_length": result.mean_length,
        "eval_seeds": [result.seeds[0], result.seeds[-1]],
        "random_policy": {k: baseline.as_dict()[k] for k in ("mean_return", "std", "ci95", "episodes")},
        "target": recipe.target,
        "met": bool(result.mean_return >= recipe.target),
        "model": MODEL_FILE,
        "model_sha256": file_sha256(model_path),
        "config": asdict(config),
        "versions": versions(recipe),
        "host": {"machine": platform.machine(), "cpus": _cpu_count()},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    atomic_write_json(summary_path, summary)
    return summary


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def format_summary(summary: dict[str, Any], out: Path) -> str:
    low, high = summary["ci95"]
    random = summary["random_policy"]
    r_low, r_high = random["ci95"]
    verdict = "met" if summary["met"] else "NOT met"
    return (
        f"{summary['task']}: {summary['algorithm'].upper()} on {summary['env_id']}, "
        f"{summary['trained_steps']:,} steps in {summary['wall_seconds']:.1f} s; mean return "
        f"{summary['mean_return']:.1f} ± {(high - low) / 2:.1f} (95% CI [{low:.1f}, {high:.1f}], "
        f"{summary['episodes']} episodes); target ≥ {summary['target']:g}: {verdict}\n"
        f"a random policy on the same seeds: {random['mean_return']:.1f} "
        f"(95% CI [{r_low:.1f}, {r_high:.1f}])\n"
        f"wrote {out / MODEL_FILE} and {out / SUMMARY_FILE}\n"
        f"export it: python -m export --target x86 --policy sb3:{out / MODEL_FILE} --env {summary['env_id']}"
    )


def build_parser() -> Any:
    return dataclass_parser(
        ZooConfig,
        prog=PROG,
        description=DESCRIPTION,
        epilog=f"Example: {PROG} --task cartpole --seed 0",
        overrides={"task": {"metavar": "|".join(RECIPES)}},
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI. Bad input (unknown task, missing simulator or SB3, unwritable --out) exits 2 with one line."""
    parser = build_parser()
    config: ZooConfig = parse_dataclass(
        ZooConfig, parser, None if argv is None else list(argv), outputs={"out": "dir"}
    )
    try:
        preflight(config)
    except (ValueError, tasks.TaskUnavailable, ZooUnavailable) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        summary = train_zoo(config)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written to {config.out_dir}", file=sys.stderr)
        return 130
    print(format_summary(summary, config.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
