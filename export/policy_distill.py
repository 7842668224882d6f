"""The distilled variant of a policy source: a student at ≤ 10 % of the teacher's parameters.

The gridworld's student (``train.distill``) learns from a dataset and every reachable state; a policy
source brings neither. Here the student learns the teacher's outputs on states both of them visit
(DESIGN.md §3b): first the teacher's own noisy rollouts (the calibration states), then the states the
half-trained student reaches when it acts, labelled by the teacher — one round of DAgger, so the student
also learns what to do where its own mistakes take it, which its teacher never shows it.

The student is the teacher's MLP family (``export.policies.modules.mlp_like``: same activation,
normalisation, squash and unscaling) with every hidden layer narrowed by one factor, the widest that
keeps it within :data:`STUDENT_SHARE` of the parameters. A teacher that is only a graph (an ``onnx:``
policy) gets a two-layer ReLU student of that budget, with its observations standardised by the
calibration states' mean and variance and, for box actions, a tanh unscaled to the bounds. Fine-tuning
reuses the pruning's loop and loss (``export.prune``): argmax policies keep the teacher's ranking, box
policies its actions.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

import tasks
from export.onnx_export import torch_q_values
from export.policies.modules import ObsNormalize, Unscale, fresh_layers, mlp_like, mlp_policy
from export.prune import (
    FINETUNE_THREADS,
    Objective,
    action_objective,
    argmax_objective,
    fit_to_teacher,
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


def objective_for(task: TaskSpec) -> Objective:
    """The fine-tuning objective of a task's policy: argmax ranking, or actions scaled by their range."""
    if task.action.kind == "discrete":
        return argmax_objective()
    low, high = tasks.action_bounds(task)
    return action_objective(high - low)


def student_widths(model: nn.Sequential, share: float = STUDENT_SHARE) -> tuple[int, ...]:
    """The teacher's hidden widths, all scaled by the largest factor whose student keeps ≤ ``share`` of
    the teacher's parameters (each width at least 1)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hidden = [m.out_features for m in linears[:-1]]
    return _scaled(hidden, linears[0].in_features, linears[-1].out_features, share * params_of(model))


def _scaled(hidden: list[int], n_in: int, n_out: int, budget: float) -> tuple[int, ...]:
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


def distill_policy(
    teacher: nn.Sequential,
    task: TaskSpec,
    calib_obs: np.ndarray,
    steps: int = DISTILL_STEPS,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a student of :func:`student_widths` on the teacher's outputs; return it (eval) and info."""
    started = time.perf_counter()
    objective = objective_for(task)
    if _is_chain(teacher):
        widths = student_widths(teacher)
    else:
        n_in = int(np.prod(task.observation.shape))
        n_out = int(np.prod(tasks.actions.expected_output_shape(task)))
        widths = _scaled([GRAPH_STUDENT_WIDTH] * 2, n_in, n_out, STUDENT_SHARE * params_of(teacher))
    with torch_threads(FINETUNE_THREADS), torch.inference_mode(False), torch.enable_grad():
        teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        student = (
            mlp_like(teacher, widths, seed=seed)
            if _is_chain(teacher)
            else graph_student(task, calib_obs, widths, seed)
        )
        generator = torch.Generator().manual_seed(seed)
        own = np.ascontiguousarray(calib_obs, dtype=np.float32).reshape(len(calib_obs), -1)
        first, second = steps // 2, steps - steps // 2
        fit_to_teacher(student, *_labelled(teacher, own), first, LR, objective, generator)
        visited = rollout_states(
            task,
            lambda o: torch_q_values(student, o).reshape(len(o), -1),
            seed=seed + DAGGER_SEED,
            n_states=len(own),
        )
        both = np.concatenate([own, visited])
        fit_to_teacher(student, *_labelled(teacher, both), second, LR, objective, generator, keep_best=True)
    student.eval()
    info = {
        "method": "distillation on the teacher's rollouts, then one DAgger round on the student's",
        "hidden_before": [m.out_features for m in teacher.modules() if isinstance(m, nn.Linear)][:-1] or None,
        "hidden_after": list(widths),
        "params_before": params_of(teacher),
        "params_after": params_of(student),
        "states": {"teacher_rollouts": len(own), "student_rollouts": len(visited)},
        "steps": steps,
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
    x = torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32))
    with torch.no_grad():
        return x, teacher(x)
