"""Tasks (docs/contracts.md#the-task-spec): what the pipeline needs to run a policy in its environment,
torch-free.

- :class:`TaskSpec` — the JSON-serialisable spec that goes into the manifest (:mod:`tasks.spec`);
- :func:`get` — named tasks (``"gridworld"``); :func:`from_env` — a spec for any registered Gymnasium id;
- :func:`make_env` — the spec's env, single or vectorised;
- :func:`select_actions` — the action rule (argmax or clip; :class:`NonFiniteAction` on NaN/inf);
- :func:`evaluate` — the reward figure: exact on the gridworld, seeded episodes with a 95% CI elsewhere.

``import tasks`` loads numpy and the numpy gridworld only: gymnasium is imported inside the functions
that make envs, and torch never (the edge runtime imports this package).
"""

from tasks.actions import NonFiniteAction, action_bounds, clip_action, select_actions
from tasks.envs import TaskUnavailable, from_env, make_env, task_name
from tasks.evaluation import EpisodeEvaluation, Policy, confidence_interval, evaluate, t_critical_975
from tasks.named import get, names
from tasks.spec import (
    ActionSpec,
    EnvSpec,
    EvaluationSpec,
    ObservationSpec,
    TaskSpec,
    flat_obs,
    model_input,
    model_obs,
)

__all__ = [
    "ActionSpec",
    "EnvSpec",
    "EpisodeEvaluation",
    "EvaluationSpec",
    "NonFiniteAction",
    "ObservationSpec",
    "Policy",
    "TaskSpec",
    "TaskUnavailable",
    "action_bounds",
    "clip_action",
    "confidence_interval",
    "evaluate",
    "flat_obs",
    "from_env",
    "get",
    "make_env",
    "model_input",
    "model_obs",
    "names",
    "select_actions",
    "t_critical_975",
    "task_name",
]
