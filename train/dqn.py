"""Online Double DQN on the batched gridworld, with uniform or prioritized experience replay.

    python -m train.dqn [--per] [--steps 100000] [--num-envs 4] [--out runs/dqn] [--save-at-ratio 0.5]
    python -m train.dqn --env ALE/Breakout-v5 [--per] ...   (any Gymnasium task: train.dqn_task)

A baseline for the offline algorithms, and the source of "medium" datasets: ``--save-at-ratio R`` writes
``medium.safetensors`` the first time the greedy policy's exact oracle ratio reaches R, and
:func:`medium_policy` turns such a checkpoint into an ε-greedy batch policy a collector can roll out.

Design notes (why, not what):

- Same-step autoreset: the vector env resets finished sub-envs inside the step and returns the true last
  observation in ``infos["final_obs"]``; that is what goes into the buffer as ``next_obs``, so no
  transition ever bootstraps from another episode's start state.
- Only ``terminated`` stops bootstrapping. A time-limit truncation is not a property of the state (the
  observation has no clock), so its target still bootstraps from the next state.
- Double DQN: the online net picks the next action, the target net values it, which removes most of the
  max-operator's over-estimation.
- Huber loss per sample, multiplied by the importance weights (all ones without ``--per``), and the
  absolute TD errors become the new priorities.
- ``--steps`` counts environment transitions (summed over sub-envs), like CleanRL's ``total_timesteps``,
  so runs with different ``--num-envs`` see the same amount of data.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode
from torch import nn
from tqdm import tqdm

from common.cli import dataclass_parser, parse_dataclass
from common.fileio import atomic_write_json
from gridworld import ENV_ID
from gridworld.core import N_ACTIONS, GridModel
from gridworld.oracle import Evaluation, Policy
from gridworld.vector import GridWorldVectorEnv
from train.algos.base import Batch, double_dqn_target
from train.checkpoint import load_checkpoint, save_checkpoint
from train.evaluate import evaluate_model, flat_obs
from train.networks import NetConfig, anchor_first_layer, build_network, count_params
from train.per import LinearSchedule, ReplayBuffer, make_buffer
from train.runlog import RunLogger
from train.trainer import configure_torch

# ---------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------


@dataclass
class DQNConfig:
    """Online Double DQN with optional prioritized replay on the NeuroQuant gridworld."""

    out: str = "runs/dqn"
    """Output folder: best/last(.safetensors), config.json, summary.json, metrics.csv, TensorBoard."""
    env: str = ""
    """A Gymnasium id to train on instead of the gridworld (train.dqn_task): discrete actions; an ALE game
    gets the Atari preprocessing and NatureCNN, e.g. --env ALE/Breakout-v5."""
    eval_episodes: int = 5
    """--env: seeded episodes of each greedy evaluation (every --eval-every transitions)."""
    per: bool = False
    """Prioritized experience replay (sum tree); uniform replay otherwise."""
    steps: int = 100_000
    """Environment transitions to collect, summed over the sub-envs."""
    num_envs: int = 4
    """Parallel sub-envs in the vector env (each vector step adds this many transitions)."""
    seed: int = 0
    """Seed for torch, the replay buffer, ε-greedy and the env's start states."""
    layout: str = "default"
    """Gridworld layout name ('default' or 'procedural')."""
    layout_seed: int = 0
    """Seed of a procedural layout."""
    obs_mode: str = "vector"
    """Observation mode: 'vector' (MLP) or 'image' (3×3 egocentric window, CNN)."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of the Q-network."""
    input_init: float = 10.0
    """First-layer init: weights × this, each unit's ReLU kink placed through an observed state (0 = torch's
    default init). The observations span [0, 1] in steps of 1/9, so default-init units are nearly linear
    over the grid and the net cannot resolve Q differences of ~0.1 between neighbouring cells."""
    lr: float = 5e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    batch_size: int = 256
    """Transitions per gradient step."""
    buffer_size: int = 50_000
    """Replay capacity in transitions (a ring: the oldest are overwritten)."""
    learning_starts: int = 1_000
    """Transitions collected with the initial ε before the first gradient step."""
    train_every: int = 1
    """Vector steps between updates."""
    gradient_steps: int = 1
    """Gradient steps per update."""
    target_update: int = 100
    """Gradient steps between hard target-network copies (used when tau = 1)."""
    tau: float = 1.0
    """Polyak coefficient: 1 = hard copy every target_update steps; < 1 = soft update after every step."""
    eps_start: float = 1.0
    """Initial ε of ε-greedy exploration."""
    eps_end: float = 0.05
    """Floor that ε decays towards."""
    eps_decay: float = 8_000.0
    """e-folding time of ε in transitions: ε = end + (start − end)·exp(−t / eps_decay)."""
    max_grad_norm: float = 10.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    huber_delta: float = 1.0
    """Huber loss threshold between quadratic and linear."""
    per_alpha: float = 0.6
    """PER priority exponent α (0 = uniform)."""
    per_beta_start: float = 0.4
    """PER importance-weight exponent β at the start; annealed linearly to per_beta_end over training."""
    per_beta_end: float = 1.0
    """PER β at the end of training (1 = full bias correction)."""
    per_eps: float = 1e-3
    """Added to |TD error| so that no transition's priority is ever zero."""
    eval_every: int = 2_500
    """Transitions between exact evaluations over every start state."""
    log_every: int = 500
    """Transitions between loss/ε log rows."""
    save_at_ratio: float | None = None
    """If set, write medium.safetensors the first time the exact oracle ratio reaches this value."""
    stop_at_ratio: float | None = None
    """If set, stop as soon as an evaluation reaches this oracle ratio (for steps-to-threshold runs)."""
    tensorboard: bool = True
    """Write TensorBoard event files next to metrics.csv."""
    progress: bool = True
    """Show a tqdm progress bar (hidden anyway when stderr is not a terminal)."""
    threads: int = 1
    """torch intra-op threads. One is fastest for these small nets (measured: a 128×128 update at batch
    256 takes 2.4 ms on 1 thread vs 2.8 ms on 2, and 2 threads collapse when other jobs share the cores)."""

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        positive = (
            "steps",
            "num_envs",
            "batch_size",
            "buffer_size",
            "train_every",
            "gradient_steps",
            "target_update",
            "eval_every",
            "log_every",
            "threads",
            "eval_episodes",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"--tau must be in (0, 1], got {self.tau}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"--gamma must be in [0, 1], got {self.gamma}")
        if not 0 <= self.eps_end <= self.eps_start <= 1:
            raise ValueError(f"need 0 ≤ eps_end ≤ eps_start ≤ 1, got {self.eps_end}, {self.eps_start}")
        if self.eps_decay <= 0:
            raise ValueError(f"--eps-decay must be > 0, got {self.eps_decay}")
        nonnegative = ("input_init", "per_alpha", "per_beta_start", "per_beta_end", "max_grad_norm")
        for name in nonnegative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 0, got {getattr(self, name)}")
        if not (self.per_eps > 0 and self.huber_delta > 0 and self.lr > 0):
            raise ValueError("--per-eps, --huber-delta and --lr must be > 0")
        if self.learning_starts < 0:
            raise ValueError(f"--learning-starts must be ≥ 0, got {self.learning_starts}")


def epsilon_at(config: DQNConfig, transitions: int) -> float:
    """Exponentially decaying exploration rate after ``transitions`` env transitions."""
    decay = math.exp(-transitions / config.eps_decay)
    return config.eps_end + (config.eps_start - config.eps_end) * decay


def net_config_for(model: GridModel, hidden: tuple[int, ...]) -> NetConfig:
    """MLP for vector observations, CNN for the 3×3 image; input is the flattened observation."""
    obs_dim = int(np.prod(model.obs_shape))
    kind = "mlp" if model.obs_mode == "vector" else "cnn"
    return NetConfig(kind=kind, obs_dim=obs_dim, n_actions=N_ACTIONS, hidden=hidden)


# ---------------------------------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------------------------------


class DoubleDQN:
    """Online/target Q-networks, optimiser and the Double-DQN update; no env or buffer logic."""

    def __init__(
        self, net_config: NetConfig | None, config: DQNConfig, network: nn.Module | None = None
    ) -> None:
        """The gridworld's network from ``net_config``, or ``network`` as given (a task's, ``--env``)."""
        self.config = config
        self.net_config = net_config
        if network is None:
            if net_config is None:
                raise ValueError("DoubleDQN needs a net_config or a network")
            network = build_network(net_config)
        self.q = network
        self.target = copy.deepcopy(network)
        self.n_actions = int(network.out.out_features)
        self.target.requires_grad_(False)
        # fused: one kernel over all parameters instead of a dozen small ops each (~0.4 ms of ~4 ms a step)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.lr, fused=True)
        self.updates = 0

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """ε-greedy actions for a batch of observations as the network takes them."""
        with torch.inference_mode():
            actions = self.q(torch.from_numpy(obs)).argmax(dim=1).numpy()
        explore = rng.random(len(actions)) < epsilon
        if explore.any():
            actions[explore] = rng.integers(0, self.n_actions, size=int(explore.sum()))
        return actions

    def update(self, buffer: ReplayBuffer, beta: float) -> float:
        """One gradient step on a sampled batch; feeds |TD| back to the buffer. Returns the loss."""
        cfg = self.config
        sample = buffer.sample(cfg.batch_size, beta)
        batch = Batch(
            obs=torch.from_numpy(sample.observations),
            actions=torch.from_numpy(sample.actions),
            rewards=torch.from_numpy(sample.rewards),
            next_obs=torch.from_numpy(sample.next_observations),
            not_done=1.0 - torch.from_numpy(sample.terminals),
            index=torch.from_numpy(sample.indices),
        )
        with torch.no_grad():
            target_next_q = self.target(batch.next_obs)
        targets = double_dqn_target(self.q, target_next_q, batch, cfg.gamma)
        q_taken = self.q(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        per_sample = F.huber_loss(q_taken, targets, reduction="none", delta=cfg.huber_delta)
        # Importance weights (ones for uniform replay) undo the sampling bias of PER.
        loss = (torch.from_numpy(sample.weights) * per_sample).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.q.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        buffer.update_priorities(sample.indices, (targets - q_taken).detach().abs().numpy())
        self.updates += 1
        self._sync_target()
        return float(loss.detach())

    def _sync_target(self) -> None:
        cfg = self.config
        if cfg.tau >= 1.0:
            if self.updates % cfg.target_update == 0:
                self.target.load_state_dict(self.q.state_dict())
            return
        with torch.no_grad():
            target_params = list(self.target.parameters())
            torch._foreach_lerp_(target_params, list(self.q.parameters()), cfg.tau)


@dataclass
class DQNResult:
    """What a run achieved; also written to ``summary.json``."""

    best: dict[str, float]
    last: dict[str, float]
    best_step: int
    steps_to_ratio: dict[str, int | None]
    """First evaluated transition count at which the oracle ratio reached each threshold."""
    transitions: int
    gradient_steps: int
    wall_s: float
    params: int
    per: bool
    medium_checkpoint: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)


THRESHOLDS = (0.5, 0.9, 0.99)


def step_vector_env(
    env: GridWorldVectorEnv, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step a same-step-autoreset vector env; returns flat (obs to act on next, true next obs, rewards,
    terminated). The two observations differ exactly where an episode ended: the env already shows the
    new episode's start, while the transition must store the state the episode ended in."""
    next_raw, rewards, terminated, _truncated, infos = env.step(actions)
    next_obs = flat_obs(next_raw)
    real_next = next_obs.copy()
    if "final_obs" in infos:
        done = np.asarray(infos["_final_obs"], dtype=bool)
        real_next[done] = flat_obs(np.stack(list(infos["final_obs"][done])))
    return next_obs, real_next, rewards, terminated


def start_run(config: DQNConfig) -> tuple[np.random.Generator, Path]:
    """Threads and seeds set, the output folder made with ``config.json`` in it; the run's rng and folder."""
    configure_torch(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"stage": "dqn", **asdict(config)})
    return np.random.default_rng(config.seed), out


def train_dqn(config: DQNConfig) -> DQNResult:
    """Run online DQN as configured, writing checkpoints and logs under ``config.out``."""
    rng, out = start_run(config)

    env = GridWorldVectorEnv(
        config.num_envs,
        config.layout,
        config.obs_mode,
        config.layout_seed,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    env_model = env.model
    net_config = net_config_for(env_model, config.hidden)
    agent = DoubleDQN(net_config, config)
    buffer = make_buffer(
        config.per,
        config.buffer_size,
        (net_config.obs_dim,),
        np.float32,
        alpha=config.per_alpha,
        eps=config.per_eps,
        seed=config.seed,
    )
    beta = LinearSchedule(config.per_beta_start, config.per_beta_end, config.steps)
    logger = RunLogger(out, tensorboard=config.tensorboard)

    def checkpoint_info(step: int, ev: Evaluation) -> dict[str, Any]:
        return {
            "stage": "dqn",
            "env_id": ENV_ID,
            "per": config.per,
            "step": step,
            "eval": ev.as_dict(),
            "env_kwargs": {
                "layout": config.layout,
                "obs_mode": config.obs_mode,
                "layout_seed": config.layout_seed,
            },
        }

    best: Evaluation | None = None
    best_step = 0
    last_eval: Evaluation | None = None
    reached: dict[str, int | None] = {f"{r:g}": None for r in THRESHOLDS}
    medium_path: str | None = None
    history: list[dict[str, float]] = []
    losses: list[float] = []
    next_eval, next_log = config.eval_every, config.log_every

    obs_raw, _ = env.reset(seed=config.seed)
    obs = flat_obs(obs_raw)
    transitions = 0
    start = time.perf_counter()
    bar = tqdm(
        total=config.steps,
        desc="dqn" + ("+per" if config.per else ""),
        unit="tr",
        disable=not (config.progress and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
    try:
        iteration = 0
        while transitions < config.steps:
            epsilon = epsilon_at(config, transitions)
            actions = agent.act(obs, epsilon, rng)
            next_obs, real_next, rewards, terminated = step_vector_env(env, actions)
            buffer.add(obs, actions, rewards, real_next, terminated)
            obs = next_obs
            transitions += config.num_envs
            iteration += 1
            bar.update(config.num_envs)

            if transitions >= config.learning_starts and iteration % config.train_every == 0:
                if agent.updates == 0 and config.input_init > 0:
                    anchor_first_layer(
                        agent.q,
                        buffer.observations[: len(buffer)].reshape(len(buffer), -1),
                        config.input_init,
                        torch.Generator().manual_seed(config.seed),
                    )
                    agent.target.load_state_dict(agent.q.state_dict())
                for _ in range(config.gradient_steps):
                    losses.append(agent.update(buffer, beta(transitions)))

            if transitions >= next_log:
                next_log += config.log_every
                scalars = {"Train/Epsilon": epsilon}
                if losses:
                    scalars["Loss/TD"] = float(np.mean(losses))
                    losses.clear()
                if config.per:
                    scalars["Train/Beta"] = beta(transitions)
                logger.log(transitions, scalars)

            final = transitions >= config.steps
            if transitions >= next_eval or final:
                next_eval += config.eval_every
                ev = evaluate_model(agent.q, env_model)
                last_eval = ev
                history.append({"step": transitions, **ev.as_dict()})
                logger.log(
                    transitions,
                    {
                        "Eval/Return": ev.mean_return,
                        "Eval/OracleRatio": ev.oracle_ratio,
                        "Eval/SuccessRate": ev.success_rate,
                    },
                )
                bar.set_postfix(ratio=f"{ev.oracle_ratio:.3f}", eps=f"{epsilon:.2f}", refresh=False)
                logger.flush()  # metrics.csv is current after every evaluation, even if the run is killed
                for r in THRESHOLDS:
                    if reached[f"{r:g}"] is None and ev.oracle_ratio >= r:
                        reached[f"{r:g}"] = transitions
                if best is None or ev.mean_return > best.mean_return:
                    best, best_step = ev, transitions
                    save_checkpoint(
                        out / "best.safetensors", agent.q, net_config, checkpoint_info(transitions, ev)
                    )
                if (
                    config.save_at_ratio is not None
                    and medium_path is None
                    and ev.oracle_ratio >= config.save_at_ratio
                ):
                    medium_path = str(out / "medium.safetensors")
                    save_checkpoint(
                        medium_path,
                        agent.q,
                        net_config,
                        {**checkpoint_info(transitions, ev), "medium_at_ratio": config.save_at_ratio},
                    )
                if config.stop_at_ratio is not None and ev.oracle_ratio >= config.stop_at_ratio:
                    break
    finally:
        bar.close()
        logger.close()
    wall = time.perf_counter() - start
    if last_eval is None or best is None:  # cannot happen: the final iteration always evaluates
        raise RuntimeError("DQN finished without an evaluation")
    save_checkpoint(out / "last.safetensors", agent.q, net_config, checkpoint_info(transitions, last_eval))
    result = DQNResult(
        best=best.as_dict(),
        last=last_eval.as_dict(),
        best_step=best_step,
        steps_to_ratio=reached,
        transitions=transitions,
        gradient_steps=agent.updates,
        wall_s=wall,
        params=count_params(agent.q),
        per=config.per,
        medium_checkpoint=medium_path,
        history=history,
    )
    atomic_write_json(out / "summary.json", asdict(result))
    return result


# ---------------------------------------------------------------------------------------------------
# "Medium" behaviour policies for dataset collection
# ---------------------------------------------------------------------------------------------------


def medium_policy(checkpoint: str | Path, epsilon: float = 0.1, seed: int | None = None) -> Policy:
    """An ε-greedy batch policy (observations ``[N, …]`` → actions ``[N]``) from a partly trained agent.

    Typical use: ``python -m train.dqn --save-at-ratio 0.5 --stop-at-ratio 0.5`` writes
    ``runs/dqn/medium.safetensors``; a collector then rolls out ``medium_policy(that_file, 0.1)`` to get a
    D4RL-style "medium" dataset (competent but clearly sub-optimal, with some action noise).
    Raises :class:`train.checkpoint.CheckpointError` for a missing or unreadable checkpoint.
    """
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    model, _, _ = load_checkpoint(checkpoint)
    rng = np.random.default_rng(seed)

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            actions = model(torch.from_numpy(flat_obs(obs))).argmax(dim=1).numpy()
        explore = rng.random(len(actions)) < epsilon
        actions[explore] = rng.integers(0, N_ACTIONS, size=int(explore.sum()))
        return actions

    return policy


def build_parser() -> argparse.ArgumentParser:
    """``--flag`` per :class:`DQNConfig` field, documented from the field docstrings."""
    return dataclass_parser(
        DQNConfig,
        prog="python -m train.dqn",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m train.dqn --env ALE/Breakout-v5 --steps 100000 --per "
        "--out runs/dqn/breakout-per",
    )


def main(argv: Sequence[str] | None = None) -> int:
    config: DQNConfig = parse_dataclass(
        DQNConfig, build_parser(), None if argv is None else list(argv), outputs={"out": "dir"}
    )
    if config.env:
        from train.dqn_task import train_dqn_task

        task_result = train_dqn_task(config)
        best = task_result.best_eval
        low, high = best["ci95"]
        print(
            f"dqn{' + PER' if config.per else ''} on {config.env}: best greedy return "
            f"{best['mean_return']:.2f} [{low:.2f}, {high:.2f}] at {task_result.best_step} transitions; "
            f"{task_result.gradient_steps} gradient steps in {task_result.wall_s:.1f} s"
        )
        print(f"wrote {Path(config.out) / 'best.safetensors'}")
        return 0
    result = train_dqn(config)
    steps = ", ".join(
        f"≥{k}: {v if v is not None else 'not reached'}" for k, v in result.steps_to_ratio.items()
    )
    print(
        f"dqn{' + PER' if config.per else ''}: best oracle ratio {result.best['oracle_ratio']:.4f} "
        f"(return {result.best['mean_return']:.3f}) at {result.best_step} transitions; "
        f"transitions to ratio {steps}; {result.gradient_steps} gradient steps in {result.wall_s:.1f} s"
    )
    print(f"wrote {Path(config.out) / 'best.safetensors'}")
    if result.medium_checkpoint:
        print(f"wrote {result.medium_checkpoint}")
    elif config.save_at_ratio is not None:
        print(f"note: the agent never reached ratio {config.save_at_ratio}; no medium.safetensors written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
