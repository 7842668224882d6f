"""Evaluation of torch policies: the exact oracle evaluation plus agreement with the oracle's actions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gridworld.core import MAX_STEPS, GridModel, build_model
from gridworld.oracle import Evaluation, Oracle, Policy, evaluate_policy
from tasks import flat_obs


def env_model_from_metadata(metadata: dict[str, Any]) -> GridModel:
    """The gridworld a dataset was collected on (``env_kwargs`` in its metadata, its episode limit
    included; defaults otherwise)."""
    kwargs = dict(metadata.get("env_kwargs", {}))
    return build_model(
        kwargs.get("layout", "default"),
        kwargs.get("obs_mode", "vector"),
        int(kwargs.get("layout_seed", 0)),
        int(kwargs.get("max_steps", MAX_STEPS)),
    )


def q_values(model: nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(flat_obs(obs))).numpy()


def greedy_policy(model: nn.Module) -> Policy:
    """argmax-Q (or argmax-logit) batch policy over raw observations."""
    return lambda obs: q_values(model, obs).argmax(axis=1)


def evaluate_model(model: nn.Module, env_model: GridModel) -> Evaluation:
    """Exact mean return / success / oracle ratio of the greedy policy over every start state."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_policy(env_model, greedy_policy(model))
    finally:
        model.train(was_training)


def oracle_agreement(model: nn.Module, env_model: GridModel) -> float:
    """Share of reachable non-terminal states where the model picks an optimal action (ties count)."""
    oracle = Oracle(env_model)
    states = np.flatnonzero(oracle.distance > 0)
    actions = greedy_policy(model)(env_model.observations[states])
    return float(oracle.optimal_mask[states, actions].mean())
