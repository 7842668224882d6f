"""The offline trainer loop shared by every algorithm in :mod:`train.algos`.

The loop knows nothing about algorithm names: it builds the class the registry maps ``config.algo`` to,
samples minibatches, steps one Adam, evaluates and checkpoints. Speed matters because the whole
pipeline runs on two CPU cores, so the dataset lives in a few tensors (observations and next
observations stacked, rewards with not-done flags, actions) and minibatches are gathered from them by
random indices, 64 at a time — no Python objects per sample, and a step takes views of that gather.

Evaluation is the exact oracle evaluation (every valid start state, docs/contracts.md#the-gridworld) plus
accuracy on held-out episodes, agreement with the oracle and the average Q. ``best.safetensors`` keeps the
best exact return (held-out accuracy breaks ties) and ``last.safetensors`` the final weights; both hold the
algorithm's *deployable* network, a plain ``MLPNet``/``CNNNet`` whose argmax is the policy, and the figures
recorded for them are measured on that network.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from common.fileio import atomic_write_text, file_sha256
from gridworld.core import N_ACTIONS, GridModel
from gridworld.oracle import Oracle
from train.algos import algo_names, get_algo
from train.algos.base import Algo, Batch, Loss
from train.ceiling import data_ceiling
from train.checkpoint import save_checkpoint
from train.dataset import Dataset, DatasetError, load_dataset, split_episodes
from train.evaluate import env_model_from_metadata, evaluate_model, flat_obs, oracle_agreement
from train.networks import NetConfig, anchor_first_layer, build_network, count_params
from train.optim import LeanAdam
from train.runlog import RunLogger

#: Oracle ratio whose first crossing the summary reports (the issue's "≥ 99 % of the oracle" target).
TARGET_RATIO = 0.99
#: Minibatches whose indices :class:`TransitionSampler` draws and gathers at once.
SAMPLE_CHUNK = 64


@dataclass
class TrainConfig:
    """How a policy is trained offline; saved as ``config.json`` next to the checkpoints it made."""

    algo: str = "cql"
    """Offline algorithm: one of the names in train.algos.ALGOS (cql, bcq, td3bc, bc)."""
    dataset: str = "data/replay_buffer.npz"
    """Replay buffer written by `python -m train.collect` (its metadata names the env to evaluate on)."""
    out: str = ""
    """Run folder for checkpoints, logs and plots; empty means runs/<algo>."""
    steps: int = 40_000
    """Gradient steps in total (with the cosine schedule, the LR is still ~40% of --lr halfway through). On
    the default mixed buffer with LayerNorm, seeds 0, 1, 3 and 4 first passed 0.99 of the oracle between steps
    14.5k and 26.5k (seeds 2 and 5 did not); 30k steps left seed 0 at 0.986 (docs/training.md)."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly with replacement."""
    lr: float = 1e-3
    """Adam learning rate (shared by every network of the algorithm)."""
    anneal_lr: bool = True
    """Cosine-anneal the learning rate from --lr to 0 over --steps: the Q-values must end precise to a few
    hundredths to rank actions whose values differ by ~0.2, which a constant step size's noise prevents."""
    gamma: float = 0.95
    """Discount factor of the Bellman targets. Any γ < 1 makes the shortest path optimal here (+10 at the
    goal, −0.1 per step); 0.95 keeps the smallest action gap (~0.2) while a Q error is amplified 20× rather
    than 100×, and errors on wall-bump self-loops shrink by γ per backup, so they die out faster."""
    hidden: tuple[int, ...] = (128, 128, 128)
    """Hidden layer widths (the teacher the distillation stage shrinks); three layers of 128 fitted the
    Q-function in fewer steps than two of 256, at half the multiply-adds per sample."""
    layer_norm: bool = True
    """LayerNorm between each hidden layer and its ReLU (``--no-layer-norm``: a plain MLP). It bounds the
    features the output layer sees, as in offline RL critics since Ball et al. 2023: on the default mixed
    buffer CQL's best oracle ratio on seeds 0–5 went from 0.986, 0.993, 0.986, 0.835, 0.986, 0.973 (plain, 20k
    steps) to 0.999, 0.999, 0.986, 0.999, 0.999, 0.973 (40k); plain at 40k gave 0.999, 0.986, 0.973, 0.940 on
    seeds 0–3 (docs/training.md). It costs about a fifth of a step on the default net."""
    target_update: int = 100
    """Copy the Q-net into its target network every this many steps (used when --tau is 0)."""
    tau: float = 0.0
    """Polyak factor for a soft target update after every step; 0 selects hard copies (--target-update)."""
    alpha: float = 0.1
    """CQL: weight of the conservative term logsumexp_a Q(s, a) − Q(s, a_data). Its fixed point shifts each
    Q(s, a) by about α·(softmax Q / empirical behaviour frequency − 1), and with ~10 samples per action the
    frequencies are noisy enough that α = 0.5 mis-ranks actions whose values differ by ~0.2 (the random
    buffer drops below random play); 0.1 still pushes down actions the data never shows."""
    bc_weight: float = 0.0
    """CQL: weight of an extra behaviour-cloning cross-entropy on the Q-values (0 = off)."""
    bcq_threshold: float = 0.3
    """BCQ: an action is allowed when G(a|s) / max_a G(a|s) exceeds this (τ in Fujimoto et al. 2019)."""
    td3bc_alpha: float = 2.5
    """TD3+BC: α in λ = α / mean|Q|, the weight of the RL term against behaviour cloning."""
    holdout: float = 0.1
    """Share of episodes held out of training to measure policy accuracy (0 = measure on training data)."""
    eval_every: int = 500
    """Evaluate (exact return, accuracy, oracle agreement, average Q) every this many steps."""
    log_every: int = 50
    """Log the mean of the loss components over this many steps."""
    init_scale: float = 60.0
    """Scale of the first layer's initial weights, whose ReLU kinks are placed through random training
    observations (0 = PyTorch's default init); see train.networks.anchor_first_layer for why."""
    max_grad_norm: float = 0.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    autograd: bool = False
    """Compute every gradient with autograd, also where a hand-written one exists (CQL on an MLP, see
    train/fused_cql.py): the same numbers, ~1.6× fewer steps per second at 256×256 here; for checking."""
    seed: int = 0
    """Seed of the weight init, the hold-out split and minibatch sampling."""
    threads: int = 1
    """torch intra-op threads. One is fastest for these small nets on 2 cores, as for distill and DQN (a
    second thread collapses when another job shares the cores: `make test` runs two workers side by side)."""
    progress: bool = True
    """Show a progress bar (hidden anyway when stderr is not a terminal)."""
    tensorboard: bool = True
    """Write TensorBoard event files into the run folder."""

    def __post_init__(self) -> None:
        """Refuse a bad configuration before anything runs, naming the flag and what it accepts."""
        if self.algo not in algo_names():
            raise ValueError(f"unknown --algo {self.algo!r}; use one of {', '.join(algo_names())}")
        if not self.out:
            self.out = f"runs/{self.algo}"
        self.hidden = parse_hidden(self.hidden)
        positive_ints = ("steps", "batch_size", "target_update", "eval_every", "log_every", "threads")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{_flag(name)} must be a whole number ≥ 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"--gamma must be in (0, 1], got {self.gamma!r}")
        if not 0.0 < self.bcq_threshold < 1.0:
            raise ValueError(f"--bcq-threshold must be in (0, 1), got {self.bcq_threshold!r}")
        for name in ("alpha", "bc_weight", "td3bc_alpha", "max_grad_norm", "init_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"--{_flag(name)} must be a finite number ≥ 0, got {value!r}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"--tau must be in [0, 1] (0 = hard target updates), got {self.tau!r}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"--holdout must be a share of episodes in [0, 1), got {self.holdout!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


def _flag(name: str) -> str:
    return name.replace("_", "-")


def parse_hidden(value: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``"256,256"`` or a sequence → ``(256, 256)``; ``ValueError`` for anything but positive widths."""
    try:
        widths = (
            tuple(int(part) for part in value.split(",") if part.strip())
            if isinstance(value, str)
            else tuple(int(v) for v in value)
        )
    except (TypeError, ValueError):
        raise ValueError(
            f"--hidden takes comma-separated layer widths such as 256,256; got {value!r}"
        ) from None
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"--hidden needs at least one positive width, got {value!r}")
    return widths


def configure_torch(threads: int) -> None:
    """Intra-op threads, and subnormal floats flushed to zero.

    Adam's first moment decays by 0.9 per step wherever a gradient is zero (a dead ReLU unit's weights):
    after ~800 such steps it is subnormal, and arithmetic on subnormals is many times slower on x86. In
    a 1,000-step CQL run on the 256×256 net, 55,644 of layer 2's 65,536 moments were subnormal; flushing
    them raised the steps/s by about a third (``benchmarks.train_speed``). Values below 1.2e-38 carry no
    information for training.
    """
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


# --------------------------------------------------------------------------------------------- data


class TransitionSampler:
    """The training transitions as tensors; :meth:`sample` returns a :class:`Batch` of views.

    Indices are drawn for :data:`SAMPLE_CHUNK` minibatches at once, gathered with one ``index_select`` per
    table and cut into per-step views together, so a step pays none of the draw, gather, dtype conversion and
    view ops it would otherwise need (cutting the views per chunk rather than per step took ``sample()`` from
    43.7 to 25.7 µs a call at batch 256). Every minibatch is still ``B`` independent uniform draws with
    replacement. The observations and next observations of a minibatch come stacked (``Batch.obs_and_next``),
    ready for a single forward pass over both.
    """

    def __init__(self, dataset: Dataset, rows: np.ndarray, seed: int) -> None:
        obs = torch.from_numpy(flat_obs(dataset.observations[rows]))
        self.obs_dim = obs.shape[1]
        self.states = torch.cat([obs, torch.from_numpy(flat_obs(dataset.next_observations[rows]))])
        """``[2N, obs_dim]``: every observation, then every next observation."""
        scalars = [dataset.rewards[rows], (~dataset.terminals[rows]).astype(np.float32)]
        self.scalars = torch.from_numpy(np.ascontiguousarray(np.stack(scalars, axis=1), dtype=np.float32))
        """``[N, 2]``: reward, not-done."""
        self.actions = torch.from_numpy(dataset.actions[rows].astype(np.int64))
        self.generator = torch.Generator().manual_seed(seed)
        self._batches: list[Batch] = []
        """The minibatches of the current chunk (views of one gather), handed out in order."""
        self._batch_size = 0
        self._next = 0

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def observations(self) -> torch.Tensor:
        return self.states[: len(self)]

    @property
    def next_observations(self) -> torch.Tensor:
        return self.states[len(self) :]

    def sample(self, batch_size: int) -> Batch:
        if self._next == len(self._batches) or self._batch_size != batch_size:
            self._draw(batch_size)
        batch = self._batches[self._next]
        self._next += 1
        return batch

    def _draw(self, batch_size: int) -> None:
        n = len(self)
        idx = torch.randint(n, (SAMPLE_CHUNK, batch_size), generator=self.generator)
        both = torch.cat([idx, idx + n], dim=1).view(-1)
        stacked = self.states.index_select(0, both).view(SAMPLE_CHUNK, 2 * batch_size, self.obs_dim)
        flat = idx.view(-1)
        scalars = self.scalars.index_select(0, flat).view(SAMPLE_CHUNK, batch_size, 2)
        actions = self.actions.index_select(0, flat).view(SAMPLE_CHUNK, batch_size)
        # Every minibatch's views at once: one unbind per field rather than eight view ops per step.
        fields = {
            "obs": stacked[:, :batch_size],
            "actions": actions,
            "rewards": scalars[:, :, 0],
            "next_obs": stacked[:, batch_size:],
            "not_done": scalars[:, :, 1],
            "index": idx,
            "obs_and_next": stacked,
        }
        assert tuple(fields) == Batch._fields  # named above, built by position below (no dict per batch)
        self._batches = list(map(Batch._make, zip(*(f.unbind() for f in fields.values()), strict=True)))
        self._batch_size, self._next = batch_size, 0


def network_config(
    dataset: Dataset, env_model: GridModel, hidden: tuple[int, ...], layer_norm: bool = False
) -> NetConfig:
    """MLP for ``vector`` observations, CNN for the 3×3 ``image``; refuses data that does not fit the env."""
    obs_shape = tuple(dataset.observations.shape[1:])
    if obs_shape != env_model.obs_shape:
        raise DatasetError(
            f"observations have shape {obs_shape} but the env in the dataset metadata "
            f"({env_model.obs_mode}) produces {env_model.obs_shape}; "
            "re-collect it with `python -m train.collect`"
        )
    kind = "cnn" if env_model.obs_mode == "image" else "mlp"
    obs_dim = int(np.prod(obs_shape))
    return NetConfig(kind=kind, obs_dim=obs_dim, n_actions=N_ACTIONS, hidden=hidden, layer_norm=layer_norm)


def build_algo(config: TrainConfig, net: NetConfig, sampler: TransitionSampler) -> Algo:
    """The registered algorithm, bound to the training set, its networks initialised for training."""
    algo = get_algo(config.algo)(net, config)
    obs = sampler.observations
    algo.bind(sampler.next_observations.contiguous())
    generator = torch.Generator().manual_seed(config.seed)
    frozen = algo.frozen()
    for name, module in algo.modules().items():
        if name not in frozen:
            anchor_first_layer(module, obs, config.init_scale, generator)
    algo.sync_targets()
    return algo


class StepRunner:
    """One gradient step: sample, loss, backward, (clip,) Adam, target update, loss bookkeeping.

    Shared by :func:`train` and ``benchmarks.train_speed``, so the benchmark times the real inner loop.
    Each step's loss components are kept as they are (0-dim tensors, or floats from a hand-written
    gradient); :meth:`pop_losses`, called every ``log_every`` steps, sums them at once and turns them into
    floats — no tensor op per step.
    """

    def __init__(self, algo: Algo, sampler: TransitionSampler, config: TrainConfig) -> None:
        self.algo = algo
        self.sampler = sampler
        self.batch_size = config.batch_size
        self.max_grad_norm = config.max_grad_norm
        self.params = algo.parameters()
        # torch's fused Adam kernel without torch.optim's per-step Python (train/optim.py).
        self.optimizer = LeanAdam(self.params, lr=config.lr)
        self._losses: dict[tuple[str, ...], list[Loss]] = {}
        self._count = 0
        self._lr = config.lr
        self._total_steps = config.steps if config.anneal_lr else 0

    def step(self, step: int) -> None:
        """The ``step``-th (1-based) gradient step."""
        if self._total_steps:
            lr = 0.5 * self._lr * (1.0 + math.cos(math.pi * (step - 1) / self._total_steps))
            self.optimizer.lr = lr
        self.optimizer.zero_grad()
        loss, parts = self.algo.grad_step(self.sampler.sample(self.batch_size))
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.algo.after_step(step)
        self._losses.setdefault(("Total", *parts), []).extend((loss, *parts.values()))
        self._count += 1

    def pop_losses(self) -> dict[str, float]:
        """Mean of each loss component since the last call."""
        means: dict[str, float] = {}
        for names, values in self._losses.items():
            if isinstance(values[0], torch.Tensor):
                sums = torch.stack(values).view(-1, len(names)).sum(dim=0).tolist()
            else:  # floats from a hand-written gradient
                sums = np.reshape(values, (-1, len(names))).sum(axis=0).tolist()
            for name, value in zip(names, sums, strict=True):
                means[name] = value / self._count
        self._losses, self._count = {}, 0
        return means


# ------------------------------------------------------------------------------------------ evaluation


def evaluate(algo: Algo, env_model: GridModel, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, float]:
    """Exact return/success/oracle ratio, oracle agreement, and accuracy + average Q on ``obs``."""
    return _evaluate_module(algo.policy_module(), env_model, obs, actions, algo.q_values)


def _evaluate_module(
    policy: nn.Module,
    env_model: GridModel,
    obs: torch.Tensor,
    actions: torch.Tensor,
    q_values: Any = None,
) -> dict[str, float]:
    exact = evaluate_model(policy, env_model)
    was_training = policy.training
    policy.eval()
    try:
        with torch.inference_mode():
            chosen = policy(obs).argmax(dim=1)
            figures = {
                "Return": exact.mean_return,
                "OracleRatio": exact.oracle_ratio,
                "SuccessRate": exact.success_rate,
                "PolicyAccuracy": float((chosen == actions).float().mean()),
                "OracleAgreement": oracle_agreement(policy, env_model),
            }
            q = q_values(obs) if q_values is not None else None
            if q is not None:
                figures["AvgQ"] = float(q.gather(1, chosen.unsqueeze(1)).mean())
    finally:
        policy.train(was_training)
    return figures


# ---------------------------------------------------------------------------------------------- loop


@dataclass
class TrainResult:
    """What :func:`train` produced: the run folder and the summary written to ``summary.json``."""

    out: Path
    summary: dict[str, Any] = field(default_factory=dict)


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.algo`` on ``config.dataset``; write checkpoints, logs and a summary to ``config.out``.

    Raises :class:`DatasetError` for an unusable dataset before anything is written.
    """
    t_start = time.perf_counter()
    configure_torch(config.threads)
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.dataset)
    env_model = env_model_from_metadata(dataset.metadata)
    net_config = network_config(dataset, env_model, config.hidden, config.layer_norm)

    train_rows, held_rows = split_episodes(dataset.episode_ids, config.holdout, config.seed)
    sampler = TransitionSampler(dataset, train_rows, config.seed)
    eval_rows = held_rows if len(held_rows) else train_rows
    eval_obs = torch.from_numpy(flat_obs(dataset.observations[eval_rows]))
    eval_actions = torch.from_numpy(dataset.actions[eval_rows])

    algo = build_algo(config, net_config, sampler)
    runner = StepRunner(algo, sampler, config)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    base_info = {
        "algo": config.algo,
        "algo_description": type(algo).description,
        "dataset": str(config.dataset),
        "dataset_sha256": file_sha256(config.dataset),
        "env_id": dataset.metadata.get("env_id", "NeuroQuant/GridWorld-v0"),
        "env_kwargs": dataset.metadata.get("env_kwargs", {}),
        "obs_mode": env_model.obs_mode,
        "train_config": config.to_dict(),
    }

    def save(name: str, step: int) -> dict[str, Any]:
        """Write the deployable network as ``<name>.safetensors``; return the figures of that file."""
        algo.train(False)
        policy_eval = evaluate(algo, env_model, eval_obs, eval_actions)
        model, notes = algo.deployable(sampler.observations)
        same = model is algo.policy_module()
        deployed = policy_eval if same else _evaluate_module(model, env_model, eval_obs, eval_actions)
        info = {**base_info, **notes, "step": step, "eval": deployed, "policy_eval": policy_eval}
        save_checkpoint(out / f"{name}.safetensors", model, net_config, info)
        algo.train(True)
        return {"step": step, "eval": deployed, "policy_eval": policy_eval}

    best = _Best()
    first_target: dict[str, float] | None = None
    history: list[dict[str, float]] = []
    train_seconds = eval_seconds = 0.0
    step = 0
    interrupted = False
    with RunLogger(out, tensorboard=config.tensorboard) as logger:

        def run_eval() -> dict[str, float]:
            nonlocal first_target
            algo.train(False)
            figures = evaluate(algo, env_model, eval_obs, eval_actions)
            algo.train(True)
            logger.log(step, {f"Eval/{k}": v for k, v in figures.items()})
            history.append({"step": step, **figures})
            best.offer(step, figures, algo)
            if first_target is None and figures["OracleRatio"] >= TARGET_RATIO:
                first_target = {"step": step, "seconds": round(time.perf_counter() - t_start, 3)}
            return figures

        bar = tqdm(
            total=config.steps, disable=not (config.progress and sys.stderr.isatty()), desc=config.algo
        )
        try:
            t0 = time.perf_counter()
            run_eval()
            eval_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            for step in range(1, config.steps + 1):
                runner.step(step)
                if step % config.log_every == 0 or step == config.steps:
                    logger.log(step, {f"Loss/{k}": v for k, v in runner.pop_losses().items()})
                if step % config.eval_every == 0 or step == config.steps:
                    t1 = time.perf_counter()
                    train_seconds += t1 - t0
                    figures = run_eval()
                    bar.set_postfix(ret=f"{figures['Return']:.2f}", ratio=f"{figures['OracleRatio']:.3f}")
                    t0 = time.perf_counter()
                    eval_seconds += t0 - t1
                bar.update(1)
        except KeyboardInterrupt:
            # Ctrl-C keeps what was trained: best and last checkpoints are still written below.
            interrupted = True
            train_seconds += time.perf_counter() - t0
        finally:
            bar.close()
        t1 = time.perf_counter()
        last_state = algo.state_dict()
        if best.key is None:  # interrupted before the first evaluation finished
            best.step, best.state = step, last_state
        algo.load_state_dict(best.state)
        best_entry = save("best", best.step)
        algo.load_state_dict(last_state)
        last_entry = save("last", step)
        save_seconds = time.perf_counter() - t1

    wall = time.perf_counter() - t_start
    summary = {
        "algo": config.algo,
        "dataset": str(config.dataset),
        "transitions": {"train": len(train_rows), "held_out": len(held_rows)},
        "network": net_config.to_dict(),
        "params": count_params(build_network(net_config)),
        "oracle_return": float(Oracle(env_model).returns().mean()),
        "data_ceiling": data_ceiling(env_model, dataset, train_rows),
        "best": best_entry,
        "last": last_entry,
        "first_at_target": first_target,
        "target_ratio": TARGET_RATIO,
        "steps_done": step,
        "interrupted": interrupted,
        "wall_seconds": round(wall, 3),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "save_seconds": round(save_seconds, 3),
        "steps_per_second": round(step / train_seconds, 1) if train_seconds > 0 else None,
        "threads": config.threads,
        "history": history,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if interrupted:
        raise KeyboardInterrupt
    return TrainResult(out=out, summary=summary)


@dataclass
class _Best:
    """The best evaluation so far (exact return first, held-out accuracy as the tie-break) and its weights."""

    key: tuple[float, float] | None = None
    step: int = 0
    state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def offer(self, step: int, figures: dict[str, float], algo: Algo) -> None:
        # Exact returns are deterministic sums; rounding only absorbs float summation noise.
        key = (round(figures["Return"], 9), figures["PolicyAccuracy"])
        if self.key is None or key > self.key:
            self.key, self.step, self.state = key, step, algo.state_dict()


def format_summary(summary: dict[str, Any]) -> str:
    """The final table the CLI prints: best and last checkpoint, exact figures of the saved networks."""
    header = (
        f"{'checkpoint':<11}{'step':>7}{'return':>9}{'oracle':>8}{'success':>9}{'accuracy':>10}{'agree':>7}"
    )
    lines = [header, "-" * len(header)]
    for name in ("best", "last"):
        entry = summary[name]
        e = entry["eval"]
        lines.append(
            f"{name:<11}{entry['step']:>7}{e['Return']:>9.3f}{e['OracleRatio']:>8.3f}{e['SuccessRate']:>9.3f}"
            f"{e['PolicyAccuracy']:>10.3f}{e['OracleAgreement']:>7.3f}"
        )
    reached = summary["first_at_target"]
    ratio = f"{summary['target_ratio']:.0%} of the oracle"
    target = (
        f"first ≥ {ratio} at step {reached['step']} ({reached['seconds']:.1f} s)"
        if reached
        else f"never reached {ratio}"
    )
    if summary.get("data_ceiling") is not None:
        target += f" (the training split allows {summary['data_ceiling']:.3f}: python -m train.ceiling)"
    lines.append(
        f"{summary['algo']}: oracle return {summary['oracle_return']:.3f}; {target}; wall "
        f"{summary['wall_seconds']:.1f} s (train {summary['train_seconds']:.1f} s at "
        f"{summary['steps_per_second']} steps/s, eval {summary['eval_seconds']:.1f} s)"
    )
    return "\n".join(lines)
