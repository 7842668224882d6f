"""Named tasks: ``tasks.get("gridworld")``. One map from name to a spec factory, so the names live here only.

Factories, not specs, so a task whose spec needs work to build (a zoo task reading its env's spaces)
costs nothing until it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from gridworld import ENV_ID
from gridworld.core import MAX_STEPS, N_ACTIONS, VECTOR_OBS_DIM
from tasks.spec import ActionSpec, EnvSpec, EvaluationSpec, ObservationSpec, TaskSpec


def gridworld() -> TaskSpec:
    """The embedded default (DESIGN.md §3): vector observations, Q-values, exact evaluation."""
    return TaskSpec(
        name="gridworld",
        env=EnvSpec(ENV_ID, {"obs_mode": "vector"}, MAX_STEPS),
        observation=ObservationSpec((VECTOR_OBS_DIM,), "float32"),
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
