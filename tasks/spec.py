"""The task spec (docs/contracts.md#the-task-spec): everything the pipeline needs to run a policy where it
acts, as JSON.

A spec goes into the manifest, so the device can rebuild the env, feed the model and turn its outputs into
actions without the training stack. ``to_dict()`` gives exactly the JSON shape documented there (plain lists,
ints, floats, strings); ``from_dict()`` reads it back and refuses malformed input with a ``ValueError`` that
names the field (``task.action.n: …``) and what is expected, because a manifest is user input. Every dataclass
validates itself on construction too, so a spec built in code is held to the same rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.preprocess import check_step

OUTPUTS = ("q", "logits", "action")
"""What a network may return: Q-values or logits (action = argmax) or a continuous action."""
ARGMAX_OUTPUTS = ("q", "logits")
ACTION_KINDS = ("discrete", "box")
EVALUATION_KINDS = ("exact", "episodes")
OBSERVATION_DTYPES = ("float32", "uint8")
"""What a model takes (docs/contracts.md#the-manifest): float32, or uint8 for images (scaled inside the
graph)."""
DEFAULT_EPISODES = 50
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class EnvSpec:
    """How to make the environment: ``gymnasium.make(id, max_episode_steps=…, **kwargs)``."""

    id: str
    """Registered Gymnasium id, e.g. ``CartPole-v1`` or ``NeuroQuant/GridWorld-v0``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the env's constructor; JSON values only, since they go into the manifest."""
    max_episode_steps: int | None = None
    """Truncation limit; None keeps the env's own (an episode evaluation needs one, or it may never end)."""

    def __post_init__(self) -> None:
        _check_str(self.id, "task.env.id")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ValueError(f"task.env.kwargs: expected an object with string keys, got {self.kwargs!r}")
        try:
            kwargs = json.loads(json.dumps(dict(self.kwargs), allow_nan=False))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"task.env.kwargs: expected JSON values (numbers, strings, lists, objects), got "
                f"{self.kwargs!r} ({err})"
            ) from err
        object.__setattr__(self, "kwargs", kwargs)
        if self.max_episode_steps is not None:
            _check_int(self.max_episode_steps, "task.env.max_episode_steps", minimum=1, or_null=True)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kwargs": dict(self.kwargs), "max_episode_steps": self.max_episode_steps}

    @classmethod
    def from_dict(cls, data: Any) -> EnvSpec:
        data = _check_keys(data, "task.env", required=("id",), optional=("kwargs", "max_episode_steps"))
        return cls(data["id"], data.get("kwargs", {}), data.get("max_episode_steps"))


@dataclass(frozen=True)
class ObservationSpec:
    """What the model is fed: one observation's shape and dtype, and the steps that make it."""

    shape: tuple[int, ...]
    """One observation's shape; the model takes a batch ``[N, *shape]``."""
    dtype: str = "float32"
    """The model input's dtype: ``float32``, or ``uint8`` for images."""
    preprocess: tuple[dict[str, Any], ...] = ()
    """Steps the device runs before inference, torch-free, each ``{"op": name, …}`` (:mod:`tasks.preprocess`:
    ``atari``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _int_tuple(self.shape, "task.observation.shape"))
        if self.dtype not in OBSERVATION_DTYPES:
            raise ValueError(
                f"task.observation.dtype: expected one of {OBSERVATION_DTYPES}, got {self.dtype!r}"
            )
        if isinstance(self.preprocess, (str, Mapping)) or not isinstance(self.preprocess, Iterable):
            raise ValueError(
                f"task.observation.preprocess: expected a list of steps, got {self.preprocess!r}"
            )
        steps = tuple(self.preprocess)
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping) or not isinstance(step.get("op"), str):
                raise ValueError(
                    f"task.observation.preprocess[{i}]: expected an object with an 'op' name, got {step!r}"
                )
        checked = tuple(check_step(s, f"task.observation.preprocess[{i}]") for i, s in enumerate(steps))
        object.__setattr__(self, "preprocess", checked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "preprocess": [dict(step) for step in self.preprocess],
        }

    @classmethod
    def from_dict(cls, data: Any) -> ObservationSpec:
        data = _check_keys(data, "task.observation", required=("shape",), optional=("dtype", "preprocess"))
        return cls(data["shape"], data.get("dtype", "float32"), data.get("preprocess", ()))


@dataclass(frozen=True)
class ActionSpec:
    """What the env accepts: ``discrete`` (``n`` choices) or ``box`` (``shape``, finite ``low``/``high``).

    ``low``/``high`` are stored flat (row-major) and written as nested lists of the action's shape.
    Bounds must be finite: the box gates scale action errors by ``high − low``
    (docs/contracts.md#export-gates).
    """

    kind: str
    """``discrete`` or ``box``."""
    n: int | None = None
    """Number of discrete actions (``discrete`` only)."""
    shape: tuple[int, ...] | None = None
    """One action's shape (``box`` only)."""
    low: tuple[float, ...] | None = None
    """Lower bounds, flattened (``box`` only)."""
    high: tuple[float, ...] | None = None
    """Upper bounds, flattened (``box`` only)."""

    def __post_init__(self) -> None:
        if self.kind == "discrete":
            _check_int(self.n, "task.action.n", minimum=1)
            if (self.shape, self.low, self.high) != (None, None, None):
                raise ValueError("task.action: a discrete action has only 'n', not shape/low/high")
        elif self.kind == "box":
            if self.n is not None:
                raise ValueError("task.action: a box action has shape/low/high, not 'n'")
            shape = _int_tuple(self.shape, "task.action.shape")
            low = _bounds(self.low, shape, "task.action.low")
            high = _bounds(self.high, shape, "task.action.high")
            if any(lo > hi for lo, hi in zip(low, high, strict=True)):
                raise ValueError(f"task.action: expected low ≤ high everywhere, got low={low} high={high}")
            object.__setattr__(self, "shape", shape)
            object.__setattr__(self, "low", low)
            object.__setattr__(self, "high", high)
        else:
            raise ValueError(f"task.action.kind: expected one of {ACTION_KINDS}, got {self.kind!r}")

    @classmethod
    def discrete(cls, n: int) -> ActionSpec:
        return cls("discrete", n=n)

    @classmethod
    def box(cls, low: Any, high: Any) -> ActionSpec:
        """From bound arrays (anything ``numpy.asarray`` takes, e.g. a ``gymnasium.spaces.Box``'s)."""
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        return cls("box", shape=low.shape, low=tuple(low.ravel().tolist()), high=tuple(high.ravel().tolist()))

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "discrete":
            return {"kind": "discrete", "n": self.n}
        return {
            "kind": "box",
            "shape": list(self.shape),
            "low": _nest(self.low, self.shape),
            "high": _nest(self.high, self.shape),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ActionSpec:
        data = _check_keys(data, "task.action", required=("kind",), optional=("n", "shape", "low", "high"))
        if data["kind"] == "box":
            for key in ("shape", "low", "high"):
                if key not in data:
                    raise ValueError(f"task.action.{key}: missing (a box action needs shape, low and high)")
            shape = _int_tuple(data["shape"], "task.action.shape")
            low = _flatten(data["low"], shape, "task.action.low")
            high = _flatten(data["high"], shape, "task.action.high")
            return cls("box", data.get("n"), shape, low, high)
        if data["kind"] == "discrete" and "n" not in data:
            raise ValueError("task.action.n: missing (a discrete action needs the number of actions)")
        return cls(data["kind"], data.get("n"), data.get("shape"), data.get("low"), data.get("high"))


@dataclass(frozen=True)
class EvaluationSpec:
    """How the reward figure is measured: ``exact`` (the gridworld: every start state, deterministic)
    or ``episodes`` (one episode per seed; mean, std and a 95% CI of the return)."""

    kind: str = "episodes"
    """``exact`` or ``episodes``."""
    seeds: tuple[int, ...] | None = None
    """Reset seeds, one episode each (``episodes`` only); None gives 0..49. Empty for ``exact``."""

    def __post_init__(self) -> None:
        if self.kind not in EVALUATION_KINDS:
            raise ValueError(f"task.evaluation.kind: expected one of {EVALUATION_KINDS}, got {self.kind!r}")
        if self.seeds is None:
            seeds: tuple[int, ...] = tuple(range(DEFAULT_EPISODES)) if self.kind == "episodes" else ()
        else:
            if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Iterable):
                raise ValueError(f"task.evaluation.seeds: expected a list of integers, got {self.seeds!r}")
            seeds = tuple(self.seeds)
            for i, seed in enumerate(seeds):
                _check_int(seed, f"task.evaluation.seeds[{i}]", minimum=0)
        if self.kind == "exact" and seeds:
            raise ValueError(
                "task.evaluation.seeds: an exact evaluation runs every start state; give no seeds"
            )
        if self.kind == "episodes" and not seeds:
            raise ValueError("task.evaluation.seeds: an episode evaluation needs at least one seed")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"task.evaluation.seeds: expected distinct seeds, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "exact":
            return {"kind": "exact"}
        return {"kind": "episodes", "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationSpec:
        data = _check_keys(data, "task.evaluation", required=("kind",), optional=("seeds",))
        return cls(data["kind"], data.get("seeds"))


@dataclass(frozen=True)
class TaskSpec:
    """One task: the env, what the model sees and returns, the action rule and how it is scored."""

    name: str
    """Short lowercase name (``gridworld``, ``cartpole``); it names folders, e.g. ``artifacts/<task>/``."""
    env: EnvSpec
    """How to make the env."""
    observation: ObservationSpec
    """What the model takes."""
    action: ActionSpec
    """What the env takes."""
    output: str
    """What the model returns: ``q`` or ``logits`` (action = argmax; discrete) or ``action`` (box)."""
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    """How the reward figure is measured."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"task.name: expected lowercase letters, digits, '.', '_' or '-' (it names folders), "
                f"got {self.name!r}"
            )
        for key, kind in (
            ("env", EnvSpec),
            ("observation", ObservationSpec),
            ("action", ActionSpec),
            ("evaluation", EvaluationSpec),
        ):
            if not isinstance(getattr(self, key), kind):
                raise ValueError(f"task.{key}: expected a {kind.__name__}, got {getattr(self, key)!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"task.output: expected one of {OUTPUTS}, got {self.output!r}")
        if self.action.kind == "discrete" and self.output not in ARGMAX_OUTPUTS:
            raise ValueError(f"task.output: a discrete action needs 'q' or 'logits', got {self.output!r}")
        if self.action.kind == "box" and self.output != "action":
            raise ValueError(f"task.output: a box action needs 'action', got {self.output!r}")

    def to_dict(self) -> dict[str, Any]:
        """The task's JSON object (docs/contracts.md#the-task-spec): what the manifest's ``task`` holds."""
        return {
            "name": self.name,
            "env": self.env.to_dict(),
            "observation": self.observation.to_dict(),
            "action": self.action.to_dict(),
            "output": self.output,
            "evaluation": self.evaluation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TaskSpec:
        """Read a task's JSON object (docs/contracts.md#the-task-spec); a malformed one raises ``ValueError``
        naming the field."""
        data = _check_keys(
            data,
            "task",
            required=("name", "env", "observation", "action", "output"),
            optional=("evaluation",),
        )
        evaluation = data.get("evaluation")
        return cls(
            name=data["name"],
            env=EnvSpec.from_dict(data["env"]),
            observation=ObservationSpec.from_dict(data["observation"]),
            action=ActionSpec.from_dict(data["action"]),
            output=data["output"],
            evaluation=EvaluationSpec() if evaluation is None else EvaluationSpec.from_dict(evaluation),
        )


# --- validation helpers: each names the field and what it expects -------------------------------------


def _check_keys(
    data: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected an object, got {type(data).__name__} {data!r}")
    for key in required:
        if key not in data:
            raise ValueError(f"{path}.{key}: missing")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; expected {sorted([*required, *optional])}")
    return data


def _check_str(value: Any, path: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{path}: expected a non-empty string, got {value!r}")


def _check_int(value: Any, path: str, minimum: int, or_null: bool = False) -> None:
    # bool is an int subclass; True as an action count is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        null = " or null" if or_null else ""
        raise ValueError(f"{path}: expected an integer ≥ {minimum}{null}, got {value!r}")


def _int_tuple(value: Any, path: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"{path}: expected a list of integers ≥ 1, got {value!r}")
    dims = tuple(value)
    for i, dim in enumerate(dims):
        _check_int(dim, f"{path}[{i}]", minimum=1)
    return dims


def _bounds(value: Any, shape: tuple[int, ...], path: str) -> tuple[float, ...]:
    size = math.prod(shape)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{path}: expected {size} finite numbers, got {value!r}")
    flat = tuple(value)
    if len(flat) != size:
        raise ValueError(f"{path}: expected {size} numbers for shape {list(shape)}, got {len(flat)}")
    for x in flat:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"{path}: expected finite numbers (box gates divide by high − low), got {x!r}")
    return tuple(float(x) for x in flat)


def _flatten(value: Any, shape: tuple[int, ...], path: str) -> tuple[Any, ...]:
    """A nested list of the given shape → its items row-major; anything else is refused."""
    if not shape:
        return (value,)
    if not isinstance(value, list) or len(value) != shape[0]:
        raise ValueError(f"{path}: expected a nested list of shape {list(shape)}, got {value!r}")
    return tuple(x for item in value for x in _flatten(item, shape[1:], path))


def _nest(flat: Sequence[float], shape: Sequence[int]) -> Any:
    if not shape:
        return flat[0]
    step = len(flat) // shape[0]
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def model_input(task: TaskSpec) -> tuple[tuple[int, ...], str]:
    """(one observation's shape as the model takes it, its dtype): an image task's uint8 ``[C, H, W]`` frames
    as they are (the graph scales them, docs/contracts.md#the-task-spec), anything else flattened to float32
    ``[obs_dim]``. ``backends.manifest.Manifest.model_input`` says the same from the manifest's JSON."""
    shape = tuple(task.observation.shape)
    if task.observation.dtype == "uint8" and len(shape) == 3:
        return shape, "uint8"
    return (math.prod(shape),), "float32"


def model_obs(task: TaskSpec, obs: np.ndarray) -> np.ndarray:
    """A batch of observations ``[N, *obs_shape]`` as the task's models take it (:func:`model_input`)."""
    shape, dtype = model_input(task)
    obs = np.asarray(obs)
    return np.ascontiguousarray(obs, dtype=dtype).reshape(len(obs), *shape)


def flat_obs(obs: np.ndarray) -> np.ndarray:
    """Observations as the float32 ``[N, obs_dim]`` batch every network (and every ONNX model) takes.

    Here, not in ``train``, so that what runs exported graphs (the gates, their worker processes) never
    imports torch for it."""
    obs = np.asarray(obs)
    return obs.reshape(len(obs), -1).astype(np.float32, copy=False)
