"""The distilled variant of a policy source: a student at ≤ 10 % of the teacher's parameters.

The gridworld's student (``train.distill``) learns from a dataset and every reachable state; a policy
source brings neither. Here the student learns the teacher's outputs on states both of them visit
(docs/contracts.md#policy-sources): first the teacher's own noisy rollouts (the calibration states), then the
states the half-trained student reaches when it acts, labelled by the teacher — one round of DAgger, so the
student also learns what to do where its own mistakes take it, which its teacher never shows it.

The student is the teacher's MLP family (``export.policies.modules.mlp_like``: same activation,
normalisation, squash and unscaling) with every hidden layer narrowed by one factor, the widest that
keeps it within :data:`STUDENT_SHARE` of the parameters. A teacher that is only a graph (an ``onnx:``
policy) gets a two-layer ReLU student of that budget, with its observations standardised by the
calibration states' mean and variance and, for box actions, a tanh unscaled to the bounds. An image
policy's student is its CNN with every channel count and hidden width scaled by one factor
(``export.policies.modules.scaled_like``), trained from scratch on the frames. Fine-tuning reuses the
pruning's loop and loss (``export.prune``): argmax policies keep the teacher's ranking, box policies its
actions.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

import tasks
from export.onnx_export import torch_q_values
from export.policies.modules import ObsNormalize, Unscale, fresh_layers, mlp_like, mlp_policy, scaled_like
from export.prune import (
    MLP_BUDGET,
    Budget,
    Objective,
    action_objective,
    argmax_objective,
    fit_to_teacher,
    hidden_widths,
    policy_inputs,
    torch_threads,
)
from export.rollouts import rollout_states
from export.sources import params_of
from tasks import TaskSpec

GRAPH_STUDENT_WIDTH = 256
"""Widest hidden layer tried for a graph teacher's student (two layers; the budget narrows them)."""
STUDENT_SHARE = 0.10
"""The student's parameters as a share of the teacher's, at most (the issue's ≤ 10 %)."""
DISTILL_STEPS = 4000
"""Adam steps in all, half on the teacher's states and half on both sets after the student's rollouts."""
LR = 3e-3
"""Adam's learning rate, cosine-annealed per round (as in pruning's fine-tuning)."""
DAGGER_SEED = 1
"""Rollout seed of the student's own states (the calibration rollouts use the export's ``--seed``)."""
CNN_DISTILL = Budget(steps=2000, batch=64, threads=2)
"""A CNN student's training: it starts from scratch, unlike a pruned CNN (``export.prune.CNN_BUDGET``),
but at a tenth of the teacher's parameters a step costs about a sixth of the teacher's."""


IMAGE_LOGITS_TEMPERATURE = 1.0
"""τ of an image policy's logits: its softmax at τ = 1 *is* the policy's action distribution, and matching it
kept more of the Breakout CNN's choices than the sharp τ = 0.01 tuned on the gridworld's Q-values (pruned-50
on unseen frames, strict agreement: 90.7 % vs 86.7 % after 600 steps, 93.1 % vs 90.0 % after 3,000). MLP
policies keep τ = 0.01, with which their pruned variants were measured."""


def objective_for(task: TaskSpec) -> Objective:
    """The fine-tuning objective of a task's policy: argmax ranking, or actions scaled by their range."""
    if task.action.kind == "discrete":
        if task.output == "logits" and len(task.observation.shape) == 3:
            return argmax_objective(IMAGE_LOGITS_TEMPERATURE)
        return argmax_objective()
    low, high = tasks.action_bounds(task)
    return action_objective(high - low)


def student_widths(model: nn.Sequential, share: float = STUDENT_SHARE) -> tuple[int, ...]:
    """The teacher's hidden widths, all scaled by the largest factor whose student keeps ≤ ``share`` of
    the teacher's parameters (each width at least 1)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hidden = [m.out_features for m in linears[:-1]]
    return scaled_widths(hidden, linears[0].in_features, linears[-1].out_features, share * params_of(model))


def scaled_widths(hidden: list[int], n_in: int, n_out: int, budget: float) -> tuple[int, ...]:
    """``hidden`` scaled by the largest factor (in units of its widest layer) within ``budget`` params."""

    def params(widths: list[int]) -> int:
        sizes = [n_in, *widths, n_out]
        return sum((a + 1) * b for a, b in itertools.pairwise(sizes))

    best = [1] * len(hidden)
    for width in range(1, max(hidden, default=1) + 1):  # the factor, in units of the widest layer
        widths = [max(1, math.floor(h * width / max(hidden))) for h in hidden]
        if params(widths) > budget:
            break
        best = widths
    return tuple(best)


def cnn_student(
    teacher: nn.Sequential, example: torch.Tensor, share: float = STUDENT_SHARE, seed: int = 0
) -> nn.Sequential:
    """The widest :func:`~export.policies.modules.scaled_like` copy of a CNN ``teacher`` (factor in
    hundredths) with at most ``share`` of its parameters."""
    budget = share * params_of(teacher)

    def build(hundredths: int) -> nn.Sequential:
        return scaled_like(teacher, example, hundredths / 100, seed)

    # parameters grow with the factor: bisect for the largest that fits (7 builds, not up to 100)
    low, high = 0, 100  # build(low) fits (or low == 0: none tried yet), build(high + 1) does not
    while low < high:
        mid = (low + high + 1) // 2
        if params_of(build(mid)) <= budget:
            low = mid
        else:
            high = mid - 1
    if low > 0:
        return build(low)
    raise ValueError(
        f"no CNN of the teacher's shape fits in {share:.0%} of its {params_of(teacher)} parameters"
    )


def distill_policy(
    teacher: nn.Sequential,
    task: TaskSpec,
    calib_obs: np.ndarray,
    steps: int | None = None,
    seed: int = 0,
    share: float = STUDENT_SHARE,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a student of :func:`student_widths` (:func:`cnn_student` for an image policy), at most
    ``share`` of the teacher's parameters, on the teacher's outputs; return it (eval) and info. ``steps``
    defaults to :data:`DISTILL_STEPS`, a CNN's to :data:`CNN_DISTILL`'s."""
    started = time.perf_counter()
    objective = objective_for(task)
    own_tensor = policy_inputs(teacher, calib_obs)
    cnn = own_tensor.ndim == 4  # frames: the student is a CNN too
    budget = CNN_DISTILL if cnn else replace(MLP_BUDGET, steps=DISTILL_STEPS)
    steps = budget.steps if steps is None else steps
    with torch_threads(budget.threads), torch.inference_mode(False), torch.enable_grad():
        teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        if cnn:
            student = cnn_student(teacher, own_tensor[:1], share, seed)
        elif _is_chain(teacher):
            student = mlp_like(teacher, student_widths(teacher, share), seed=seed)
        else:
            n_in = int(np.prod(task.observation.shape))
            n_out = int(np.prod(tasks.actions.expected_output_shape(task)))
            widths = scaled_widths([GRAPH_STUDENT_WIDTH] * 2, n_in, n_out, share * params_of(teacher))
            student = graph_student(task, calib_obs, widths, seed)
        generator = torch.Generator().manual_seed(seed)
        own = own_tensor.numpy()
        first, second = steps // 2, steps - steps // 2
        fit_args = (LR, objective, generator)
        fit_to_teacher(student, *_labelled(teacher, own), first, *fit_args, batch=budget.batch)
        visited = rollout_states(
            task,
            lambda o: torch_q_values(student, o).reshape(len(o), -1),
            seed=seed + DAGGER_SEED,
            n_states=len(own),
        )
        both = np.concatenate(
            [own, visited.astype(own.dtype, copy=False).reshape(len(visited), *own.shape[1:])]
        )
        fit_to_teacher(
            student, *_labelled(teacher, both), second, *fit_args, keep_best=True, batch=budget.batch
        )
    student.eval()
    info = {
        "method": "distillation on the teacher's rollouts, then one DAgger round on the student's",
        "hidden_before": list(hidden_widths(teacher, teacher.out).values()) if _is_chain(teacher) else None,
        "hidden_after": list(hidden_widths(student, student.out).values()),
        "params_before": params_of(teacher),
        "params_after": params_of(student),
        "share": share,
        "states": {"teacher_rollouts": len(own), "student_rollouts": len(visited)},
        "steps": steps,
        "batch": min(budget.batch, len(both)),
        "loss": objective.describe,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return student, info


def _is_chain(model: nn.Module) -> bool:
    """An ``mlp_policy`` (``fc0``, ``act0`` …, ``out``), whose family the student can copy."""
    return isinstance(model, nn.Sequential) and isinstance(getattr(model, "out", None), nn.Linear)


def graph_student(task: TaskSpec, calib_obs: np.ndarray, widths: tuple[int, ...], seed: int) -> nn.Sequential:
    """A ReLU MLP for a teacher that is only a graph: observations standardised by ``calib_obs``'s
    statistics; box actions squashed by tanh and unscaled to the bounds (the env's units)."""
    obs = np.asarray(calib_obs, dtype=np.float64).reshape(len(calib_obs), -1)
    before = [("normalize", ObsNormalize(obs.mean(axis=0), obs.var(axis=0), 1e-8, 10.0))]
    n_out = int(np.prod(tasks.actions.expected_output_shape(task)))
    after: list[tuple[str, nn.Module]] = []
    if task.action.kind == "box":
        low, high = tasks.action_bounds(task)
        after = [("squash", nn.Tanh()), ("unscale", Unscale(low.reshape(-1), high.reshape(-1)))]
    layers = fresh_layers([obs.shape[1], *widths, n_out], seed)
    return mlp_policy(layers, nn.ReLU, before, after)


def _labelled(teacher: nn.Module, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = policy_inputs(teacher, obs)
    with torch.no_grad():
        return x, teacher(x)
