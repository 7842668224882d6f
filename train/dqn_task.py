"""Double DQN with uniform or prioritized replay on any Gymnasium task of discrete actions (``--env``).

    python -m train.dqn --env ALE/Breakout-v5 [--per] --steps 100000 --out runs/dqn/breakout-per

The gridworld loop (:func:`train.dqn.train_dqn`) evaluates exactly over every start state; a Gymnasium task
has no oracle, so this loop records what the Ms. Pac-Man seed compared PER and uniform replay by: the
return of every training episode, and every ``--eval-every`` transitions the greedy policy's mean return
over ``--eval-episodes`` seeded episodes of the task as the device plays it (no life-loss terminal).

What differs from the gridworld loop, and why:

- The task comes from :func:`tasks.from_env` and its env from :func:`tasks.make_env` with
  ``training=True``: for an ALE game the spec's Atari preprocessing with a lost life as terminal, so the
  agent trains on the frames the device will show it. Rewards of an ALE game are clipped to their sign
  (Mnih et al., 2015); the recorded returns are the game's own.
- Image observations (uint8 ``[C, H, W]``) get NatureCNN (three convs, 512 hidden units), scaling the
  frames by 1/255 inside the network, and are stored in the buffer as uint8 (28 KB a frame, not 113 KB);
  vector observations get an MLP of ``--hidden``.
- The vector env resets a finished sub-env on the *next* step (Gymnasium's default); the step that only
  resets is not a transition and is not stored.
- ``best.safetensors`` holds the best evaluation's Q-network weights (safetensors: no pickle) and
  ``q_network.json`` how to build it again (:func:`load_q_network`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import tasks
from common.fileio import atomic_write, atomic_write_json
from tasks import preprocess
from train.networks import ScaleImage
from train.per import LinearSchedule, make_buffer

if TYPE_CHECKING:
    from train.dqn import DQNConfig

NETWORK_FILE = "q_network.json"


def q_network(obs_shape: tuple[int, ...], n_actions: int, hidden: tuple[int, ...] = (512,)) -> nn.Sequential:
    """NatureCNN for image observations ``[C, H, W]`` (Mnih et al., 2015: 32×8×8/4, 64×4×4/2, 64×3×3/1, then
    ``hidden``), an MLP of ``hidden`` for flat ones; the last layer is ``out``. Named children as the SB3
    loader names them, so pruning and the other derived variants treat both alike."""
    children: list[tuple[str, nn.Module]] = []
    if len(obs_shape) == 3:
        channels = obs_shape[0]
        for i, (width, kernel, stride) in enumerate(((32, 8, 4), (64, 4, 2), (64, 3, 1))):
            children += [(f"conv{i}", nn.Conv2d(channels, width, kernel, stride)), (f"cact{i}", nn.ReLU())]
            channels = width
        children = [("scale", ScaleImage()), *children, ("flatten", nn.Flatten(1))]
        with torch.no_grad():
            n_in = int(
                nn.Sequential(OrderedDict(children))(torch.zeros(1, *obs_shape, dtype=torch.uint8)).shape[1]
            )
    else:
        n_in = math.prod(obs_shape)
        children.append(("flatten", nn.Flatten(1)))
    for i, width in enumerate(hidden):
        children += [(f"fc{i}", nn.Linear(n_in, width)), (f"act{i}", nn.ReLU())]
        n_in = width
    children.append(("out", nn.Linear(n_in, n_actions)))
    return nn.Sequential(OrderedDict(children))


def load_q_network(folder: str | Path = "runs/dqn") -> nn.Sequential:
    """The Q-network a ``--env`` run saved in ``folder`` (weights only, from safetensors)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    spec = json.loads((folder / NETWORK_FILE).read_text())
    model = q_network(tuple(spec["obs_shape"]), int(spec["n_actions"]), tuple(spec["hidden"]))
    model.load_state_dict(load_file(folder / "best.safetensors"), strict=True)
    return model.eval()


@dataclass
class TaskDQNResult:
    """What a ``--env`` run achieved; also written to ``summary.json``."""

    env: str
    per: bool
    transitions: int
    gradient_steps: int
    wall_s: float
    params: int
    best_eval: dict[str, Any]
    best_step: int
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    """``{"step", "mean_return", "ci95", "episodes"}`` every ``--eval-every`` transitions."""
    train_episodes: list[tuple[int, float]] = field(default_factory=list)
    """(transitions so far, the game's return) of every finished training episode."""


def _greedy(model: nn.Module) -> tasks.Policy:
    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(obs))).numpy()

    return policy


def train_dqn_task(config: DQNConfig) -> TaskDQNResult:
    """Run Double DQN on ``config.env``; write ``best.safetensors``, ``q_network.json``, ``summary.json``."""
    from safetensors.torch import save_file

    from train.dqn import DoubleDQN, epsilon_at, start_run

    spec = tasks.from_env(config.env, episodes=max(2, config.eval_episodes))
    if spec.action.kind != "discrete":
        raise ValueError(f"--env {config.env}: DQN needs discrete actions, the task's are {spec.action.kind}")
    rng, out = start_run(config)

    shape, dtype = tasks.model_input(spec)
    hidden = (512,) if len(shape) == 3 else config.hidden
    network = {"obs_shape": list(shape), "n_actions": spec.action.n, "hidden": list(hidden)}
    agent = DoubleDQN(None, config, q_network(shape, spec.action.n, hidden))
    buffer = make_buffer(
        config.per,
        config.buffer_size,
        shape,
        dtype,
        alpha=config.per_alpha,
        eps=config.per_eps,
        seed=config.seed,
    )
    beta = LinearSchedule(config.per_beta_start, config.per_beta_end, config.steps)
    clip = preprocess.is_ale(spec.env.id)

    env = tasks.make_env(spec, num_envs=config.num_envs, training=True)
    raw, _ = env.reset(seed=[config.seed * config.num_envs + i for i in range(config.num_envs)])
    obs = tasks.model_obs(spec, raw)
    resetting = np.zeros(config.num_envs, dtype=bool)  # sub-envs whose next step only resets them
    running = np.zeros(config.num_envs)
    train_episodes: list[tuple[int, float]] = []
    evaluations: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_step, transitions, iteration, next_eval = 0, 0, 0, config.eval_every
    start = time.perf_counter()
    bar = tqdm(
        total=config.steps,
        desc=f"dqn{'+per' if config.per else ''} {spec.name}",
        unit="tr",
        disable=not (config.progress and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
    try:
        while transitions < config.steps:
            actions = agent.act(obs, epsilon_at(config, transitions), rng)
            raw, rewards, terminated, truncated, _ = env.step(actions)
            next_obs = tasks.model_obs(spec, raw)
            real = ~resetting
            stored = np.sign(rewards) if clip else rewards
            buffer.add(
                obs[real], actions[real], stored[real].astype(np.float32), next_obs[real], terminated[real]
            )
            running[real] += rewards[real]
            done = (terminated | truncated) & real
            train_episodes += [(transitions + int(real.sum()), float(r)) for r in running[done]]
            running[done] = 0.0
            resetting = done
            obs = next_obs
            transitions += int(real.sum())
            iteration += 1
            bar.update(int(real.sum()))

            if transitions >= config.learning_starts and iteration % config.train_every == 0:
                for _ in range(config.gradient_steps):
                    agent.update(buffer, beta(transitions))
            if transitions >= next_eval or transitions >= config.steps:
                next_eval += config.eval_every
                ev = tasks.evaluate(spec, _greedy(agent.q))
                row = {"step": transitions, "mean_return": ev.mean_return, "ci95": list(ev.ci95)}
                evaluations.append({**row, "episodes": ev.episodes})
                bar.set_postfix(eval=f"{ev.mean_return:.1f}", refresh=False)
                if bar.disable:  # a background run (no terminal): one line per evaluation instead of a bar
                    elapsed = time.perf_counter() - start
                    print(
                        f"{transitions} transitions, {elapsed:.0f} s: greedy return {ev.mean_return:.2f} "
                        f"[{ev.ci95[0]:.2f}, {ev.ci95[1]:.2f}]",
                        file=sys.stderr,
                        flush=True,
                    )
                if best is None or ev.mean_return > best["mean_return"]:
                    best, best_step = row, transitions
                    weights = {k: v.contiguous() for k, v in agent.q.state_dict().items()}
                    atomic_write(out / "best.safetensors", lambda tmp, w=weights: save_file(w, tmp))
                    atomic_write_json(out / NETWORK_FILE, network)
    finally:
        bar.close()
        env.close()
    assert best is not None  # the last iteration always evaluates
    result = TaskDQNResult(
        env=config.env,
        per=config.per,
        transitions=transitions,
        gradient_steps=agent.updates,
        wall_s=round(time.perf_counter() - start, 1),
        params=sum(p.numel() for p in agent.q.parameters()),
        best_eval=best,
        best_step=best_step,
        evaluations=evaluations,
        train_episodes=train_episodes,
    )
    atomic_write_json(out / "summary.json", asdict(result))
    return result
