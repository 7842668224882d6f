"""Named tasks: ``tasks.get("gridworld")``. One map from name to a spec factory, so the names live here only.

Factories, not specs, so a task whose spec needs work to build (a zoo task reading its env's spaces)
costs nothing until it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gridworld import ENV_ID
from gridworld.core import MAX_STEPS, N_ACTIONS, VECTOR_OBS_DIM
from tasks.spec import ActionSpec, EnvSpec, EvaluationSpec, ObservationSpec, TaskSpec

#: Length of a flattened observation per gridworld ``obs_mode``: what its networks take as float32.
GRIDWORLD_OBS_DIM = {"vector": VECTOR_OBS_DIM, "image": 9}


def gridworld(
    obs_mode: str = "vector", env_id: str = ENV_ID, kwargs: dict[str, Any] | None = None
) -> TaskSpec:
    """The embedded default (docs/contracts.md#the-gridworld): Q-values, exact evaluation; vector observations
    unless ``obs_mode`` says ``image`` (the 3×3 window, flattened to 9 floats as the networks take it).
    ``kwargs``: further env kwargs (``layout``, ``layout_seed``) of the dataset the policy was trained on."""
    if obs_mode not in GRIDWORLD_OBS_DIM:
        raise ValueError(f"gridworld obs_mode: expected one of {sorted(GRIDWORLD_OBS_DIM)}, got {obs_mode!r}")
    return TaskSpec(
        name="gridworld",
        env=EnvSpec(env_id, {**(kwargs or {}), "obs_mode": obs_mode}, MAX_STEPS),
        observation=ObservationSpec((GRIDWORLD_OBS_DIM[obs_mode],), "float32"),
        action=ActionSpec.discrete(N_ACTIONS),
        output="q",
        evaluation=EvaluationSpec("exact"),
    )


NAMED: dict[str, Callable[[], TaskSpec]] = {"gridworld": gridworld}


def names() -> list[str]:
    return sorted(NAMED)


def get(name: str) -> TaskSpec:
    """The named task's spec; an unknown name raises ``ValueError`` listing the known ones."""
    factory = NAMED.get(name)
    if factory is None:
        raise ValueError(
            f"unknown task {name!r}; named tasks are {names()} (any Gymnasium id works through "
            f"tasks.from_env(id, **kwargs))"
        )
    return factory()
