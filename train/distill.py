"""Policy distillation: a big offline-trained teacher → a small student MLP for the edge.

    python -m train.distill --teacher runs/cql/best.safetensors --dataset data/replay_buffer.npz \\
        --out runs/distilled [--hidden 40,40] [--temperature 0.003] [--steps 3000]

Loss (Hinton et al. 2015; Rusu et al. 2016 for Q-value teachers), averaged over the training states s::

    L = τ² · KL( softmax(q_T(s)/τ) ‖ softmax(q_S(s)/τ) )
      = τ² · Σ_a p_T(a|s) · (log p_T(a|s) − log p_S(a|s))

Both Q-vectors are divided by the same temperature τ, so the student's outputs stay on the teacher's
Q scale (up to a per-state constant, which softmax ignores) and its argmax is the policy, like every other
network in the pipeline. The gradient is ∂L/∂q_S = τ·(p_S − p_T); the τ² factor is Hinton's, which keeps
loss values comparable across temperatures, and Adam's per-parameter normalisation makes the overall
gradient scale irrelevant anyway.

A *low* τ is what works for Q-value teachers: the Q gap between the best and the second-best action
here is ~0.1–0.2 (one extra step of −0.1, discounted), so at τ = 1 the targets are nearly uniform and
say almost nothing about which action is best. At the default τ = 0.003 the targets are close to the
teacher's argmax wherever it has a clear preference and stay soft only at near-ties (gaps ≲ 0.01), where
either action is about as good by the teacher's own estimate: a 64×64 student matched the exact return
of each of four teachers at 0.997–1.000 argmax agreement (measurements:
docs/training.md#the-softmax-temperature).

Training states are the distinct observations of the dataset **and** of every reachable decision state
of the env (``Oracle(model).distance > 0``; the goal itself is terminal, no action is taken there). The
exact evaluation starts from every valid start state, so the student must match the teacher everywhere,
not only where the behaviour policy happened to go. The set is small (≤ 400 states for the default
10×10 vector env), so each step is a full-batch step unless ``--batch-size`` is set.

Writes ``student.safetensors`` (the best student by exact return capped at the teacher's, then by teacher
agreement; this is the checkpoint ``export`` picks up as the ``distilled`` variant), ``config.json``,
``summary.json``, ``metrics.csv``, ``loss_curves.png`` and TensorBoard events.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from common.cli import dataclass_parser, parse_dataclass
from common.fileio import atomic_write_json, file_sha256
from gridworld.core import GridModel
from gridworld.oracle import Oracle
from train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from train.dataset import Dataset, DatasetError, load_dataset
from train.evaluate import env_model_from_metadata, evaluate_model, flat_obs
from train.networks import NetConfig, anchor_first_layer, build_network, count_params
from train.runlog import RunLogger
from train.trainer import configure_torch

STUDENT_FILE = "student.safetensors"
PROG = "python -m train.distill"


class DistillError(ValueError):
    """A teacher and dataset that cannot be combined (e.g. different observation sizes)."""


@dataclass
class DistillConfig:
    """How a student is distilled from a teacher; saved as ``config.json`` next to ``student.safetensors``."""

    teacher: str = "runs/cql/best.safetensors"
    """Teacher checkpoint (any NeuroQuant .safetensors Q-network or policy, e.g. from `python -m train`)."""
    dataset: str = "data/replay_buffer.npz"
    """Replay buffer whose states are distilled on; its metadata also names the env to evaluate on."""
    out: str = "runs/distilled"
    """Output folder for student.safetensors, config.json, summary.json, metrics.csv and TensorBoard."""
    hidden: tuple[int, ...] = (40, 40)
    """Hidden widths of the student: 40,40 (2,043 params) is 6.0% of the default 128,128,128 teacher and
    matched the exact return of every teacher tried (measurements: docs/training.md#the-students-width)."""
    temperature: float = 0.003
    """Softmax temperature τ applied to both teacher and student Q-values (see the module docstring)."""
    steps: int = 3000
    """Gradient steps."""
    input_init: float = 20.0
    """First-layer init of the student (see train.networks.anchor_first_layer): weights × this, ReLU kinks
    through training states; 0 = torch's default init."""
    lr: float = 3e-3
    """Adam learning rate at the start; cosine-annealed to lr_final over the steps."""
    lr_final: float = 1e-4
    """Learning rate at the last step (a low final rate settles the near-tied actions)."""
    batch_size: int = 0
    """States per step; 0 = all training states every step (full batch, they are few)."""
    channels: int = 8
    """Convolution channels of a CNN student (image observations only)."""
    eval_every: int = 250
    """Steps between exact evaluations of the student (return over every start state, agreement)."""
    log_every: int = 50
    """Steps between distillation-loss log rows."""
    seed: int = 0
    """Seed of the student's initial weights and of minibatch sampling."""
    threads: int = 1
    """torch intra-op threads. One is fastest for these small nets (measured: a 128×128 update at batch
    256 takes 2.4 ms on 1 thread vs 2.8 ms on 2, and 2 threads collapse when other jobs share the cores)."""
    progress: bool = True
    """Show a tqdm progress bar (hidden anyway when stderr is not a terminal)."""
    tensorboard: bool = True
    """Write TensorBoard event files next to metrics.csv."""

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"--hidden needs positive widths, got {self.hidden}")
        if self.input_init < 0:
            raise ValueError(f"--input-init must be ≥ 0 (0 = default init), got {self.input_init}")
        for name in ("steps", "eval_every", "log_every", "threads", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if self.batch_size < 0:
            raise ValueError(f"--batch-size must be ≥ 0 (0 = full batch), got {self.batch_size}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        if not (self.lr > 0 and 0 <= self.lr_final <= self.lr):
            raise ValueError(f"need lr > 0 and 0 ≤ lr_final ≤ lr, got {self.lr}, {self.lr_final}")


def distill_loss(student_q: torch.Tensor, teacher_q: torch.Tensor, temperature: float) -> torch.Tensor:
    """``τ² · KL(softmax(q_T/τ) ‖ softmax(q_S/τ))``, averaged over the batch."""
    log_p_student = F.log_softmax(student_q / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_q / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def training_observations(dataset: Dataset, env_model: GridModel) -> np.ndarray:
    """Distinct flat observations of the dataset's states and of every reachable decision state."""
    oracle = Oracle(env_model)
    reachable = env_model.observations[np.flatnonzero(oracle.distance > 0)]
    obs = np.concatenate([flat_obs(dataset.observations), flat_obs(reachable)])
    return np.unique(obs, axis=0)


def student_config(teacher: NetConfig, config: DistillConfig, teacher_sha256: str) -> NetConfig:
    """The teacher's architecture family and I/O shape with the student's (small) widths."""
    extra = {"variant": "distilled", "teacher_sha256": teacher_sha256, "temperature": config.temperature}
    channels = min(config.channels, teacher.channels)
    # A plain MLP: the student has no extrapolation to bound (it copies the teacher's choices on every
    # reachable state) and runs on the edge, where a LayerNorm is one more op per layer.
    return replace(teacher, hidden=config.hidden, channels=channels, layer_norm=False, extra=extra)


def agreement(student: nn.Module, obs: torch.Tensor, teacher_actions: torch.Tensor) -> float:
    """Share of training states where the student's argmax equals the teacher's."""
    was_training = student.training
    student.eval()
    try:
        with torch.inference_mode():
            return float((student(obs).argmax(dim=1) == teacher_actions).float().mean())
    finally:
        student.train(was_training)


def distill(config: DistillConfig) -> dict[str, Any]:
    """Train a student on the teacher's softened Q-values; write the outputs; return the summary.

    Raises :class:`CheckpointError` (teacher), :class:`DatasetError` (dataset) or :class:`DistillError`
    before anything is written.
    """
    t_start = time.perf_counter()
    configure_torch(config.threads)
    torch.manual_seed(config.seed)
    try:
        teacher, teacher_cfg, teacher_info = load_checkpoint(config.teacher)
    except CheckpointError as err:
        raise CheckpointError(f"teacher: {err}") from err
    dataset = load_dataset(config.dataset)
    env_model = env_model_from_metadata(dataset.metadata)
    obs_dim = int(np.prod(env_model.obs_shape))
    if teacher_cfg.obs_dim != obs_dim or dataset.observations[0].size != obs_dim:
        raise DistillError(
            f"the teacher takes {teacher_cfg.obs_dim} inputs, the dataset has observations of shape "
            f"{dataset.observations.shape[1:]} and its env ({env_model.obs_mode}) {env_model.obs_shape}: "
            "distil with a teacher trained on this dataset's env"
        )
    teacher_sha = file_sha256(config.teacher)
    dataset_sha = file_sha256(config.dataset)

    obs = torch.from_numpy(training_observations(dataset, env_model))
    with torch.inference_mode():
        teacher_q = teacher(obs).clone()
    teacher_actions = teacher_q.argmax(dim=1)

    net_config = student_config(teacher_cfg, config, teacher_sha)
    student = build_network(net_config)
    if config.input_init > 0:
        anchor_first_layer(student, obs, config.input_init, torch.Generator().manual_seed(config.seed))
    teacher_params, student_params = count_params(teacher), count_params(student)
    untrained_agreement = agreement(student, obs, teacher_actions)
    teacher_eval = evaluate_model(teacher, env_model)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"stage": "distill", **asdict(config)})
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr, fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.steps, eta_min=config.lr_final
    )
    generator = torch.Generator().manual_seed(config.seed)
    n = len(obs)

    best_key: tuple[float, float] | None = None
    best: dict[str, Any] = {}
    history: list[dict[str, float]] = []
    loss_sum, loss_count = torch.zeros(()), 0

    def info(step: int, student_eval: dict[str, float], agree: float) -> dict[str, Any]:
        return {
            "stage": "distill",
            "variant": "distilled",
            "step": step,
            "teacher": str(config.teacher),
            "teacher_sha256": teacher_sha,
            "teacher_info": {k: teacher_info[k] for k in ("algo", "dataset", "step") if k in teacher_info},
            "teacher_params": teacher_params,
            "student_params": student_params,
            "param_ratio": student_params / teacher_params,
            "teacher_eval": teacher_eval.as_dict(),
            "eval": student_eval,
            "teacher_agreement": agree,
            "return_ratio": _ratio(student_eval["mean_return"], teacher_eval.mean_return),
            "temperature": config.temperature,
            "dataset": str(config.dataset),
            "dataset_sha256": dataset_sha,
            "env_kwargs": dataset.metadata.get("env_kwargs", {}),
            "obs_mode": env_model.obs_mode,
        }

    logger = RunLogger(out, tensorboard=config.tensorboard)
    show_bar = config.progress and sys.stderr.isatty()
    with logger, tqdm(total=config.steps, desc="distill", unit="step", disable=not show_bar) as bar:
        for step in range(1, config.steps + 1):
            if config.batch_size:
                idx = torch.randint(n, (config.batch_size,), generator=generator)
                batch_obs, batch_q = obs[idx], teacher_q[idx]
            else:
                batch_obs, batch_q = obs, teacher_q
            loss = distill_loss(student(batch_obs), batch_q, config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum, loss_count = loss_sum + loss.detach(), loss_count + 1
            if step % config.log_every == 0 or step == config.steps:
                logger.log(step, {"Loss/Distill": float(loss_sum) / loss_count})
                loss_sum, loss_count = torch.zeros(()), 0
            if step % config.eval_every == 0 or step == config.steps:
                ev = evaluate_model(student, env_model).as_dict()
                agree = agreement(student, obs, teacher_actions)
                logger.log(
                    step,
                    {
                        "Eval/Return": ev["mean_return"],
                        "Eval/OracleRatio": ev["oracle_ratio"],
                        "Eval/TeacherAgreement": agree,
                    },
                )
                history.append({"step": step, **ev, "teacher_agreement": agree})
                bar.set_postfix(ret=f"{ev['mean_return']:.3f}", agree=f"{agree:.3f}", refresh=False)
                # Returns above the teacher's count as equal, so among students that match the teacher the
                # most faithful copy wins, not one that happens to beat a weak teacher by acting differently.
                key = (round(min(ev["mean_return"], teacher_eval.mean_return), 9), agree)
                if best_key is None or key > best_key:
                    best_key = key
                    best = info(step, ev, agree)
                    save_checkpoint(out / STUDENT_FILE, student, net_config, best)
            bar.update(1)

    summary = {
        "student": str(out / STUDENT_FILE),
        **{k: v for k, v in best.items() if k not in ("stage", "env_kwargs")},
        "untrained_agreement": untrained_agreement,
        "training_states": n,
        "student_network": net_config.to_dict(),
        "teacher_network": teacher_cfg.to_dict(),
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "history": history,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _ratio(value: float, reference: float) -> float | None:
    """``value / reference``, or None where the reference return is not positive (no meaningful ratio)."""
    return value / reference if reference > 0 else None


def format_summary(summary: dict[str, Any]) -> str:
    ratio = summary["return_ratio"]
    ratio_text = f"{ratio:.2%}" if ratio is not None else "n/a (teacher return ≤ 0)"
    return (
        f"student {summary['student_params']:,} params ÷ teacher {summary['teacher_params']:,} = "
        f"{summary['param_ratio']:.2%}\n"
        f"student return {summary['eval']['mean_return']:.3f} ÷ teacher "
        f"{summary['teacher_eval']['mean_return']:.3f}"
        f" = {ratio_text} (oracle ratio student {summary['eval']['oracle_ratio']:.4f}, "
        f"teacher {summary['teacher_eval']['oracle_ratio']:.4f})\n"
        f"teacher agreement {summary['teacher_agreement']:.3f} (untrained student "
        f"{summary['untrained_agreement']:.3f}) on {summary['training_states']} states; best at step "
        f"{summary['step']}; {summary['wall_seconds']:.1f} s"
    )


def build_parser() -> argparse.ArgumentParser:
    """``--flag`` per :class:`DistillConfig` field, documented from the field docstrings."""
    return dataclass_parser(
        DistillConfig,
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=f"Example: {PROG} --teacher runs/cql/best.safetensors --dataset data/replay_buffer.npz "
        "--out runs/distilled",
    )


def main(argv: Sequence[str] | None = None) -> int:
    config: DistillConfig = parse_dataclass(
        DistillConfig, build_parser(), list(argv) if argv is not None else None, outputs={"out": "dir"}
    )
    try:
        summary = distill(config)
    except (CheckpointError, DatasetError, DistillError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {summary['student']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
