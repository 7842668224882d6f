"""The task spec: the JSON shape of docs/contracts.md#the-task-spec, a lossless round trip, and refusals that
name the field."""

from __future__ import annotations

import copy
import json

import pytest

import tasks
from tasks.spec import ActionSpec, EnvSpec, EvaluationSpec, ObservationSpec, TaskSpec


def _cartpole_dict() -> dict:
    """The example of docs/contracts.md#the-task-spec, verbatim but for the seed list."""
    return {
        "name": "cartpole",
        "env": {"id": "CartPole-v1", "kwargs": {}, "max_episode_steps": 500},
        "observation": {"shape": [4], "dtype": "float32", "preprocess": []},
        "action": {"kind": "discrete", "n": 2},
        "output": "logits",
        "evaluation": {"kind": "episodes", "seeds": list(range(50))},
    }


def _box_spec() -> TaskSpec:
    return TaskSpec(
        name="arm",
        env=EnvSpec("Arm-v0", {"reach": 0.5, "mode": "fast", "links": [1, 2]}, 200),
        observation=ObservationSpec((3, 84, 84), "uint8", ({"op": "atari", "frame_skip": 4},)),
        action=ActionSpec.box([[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]),
        output="action",
        evaluation=EvaluationSpec("episodes", (3, 1, 4)),
    )


def test_the_design_example_round_trips_exactly() -> None:
    data = _cartpole_dict()
    spec = TaskSpec.from_dict(data)
    assert spec.to_dict() == data
    assert spec.evaluation.seeds == tuple(range(50))


@pytest.mark.parametrize("make", [lambda: tasks.get("gridworld"), _box_spec], ids=["gridworld", "box-2d"])
def test_round_trip_through_json_text(make) -> None:
    spec = make()
    text = json.dumps(spec.to_dict(), allow_nan=False)
    assert TaskSpec.from_dict(json.loads(text)) == spec
    assert json.loads(text) == spec.to_dict()


def test_box_bounds_are_nested_lists_of_the_action_shape() -> None:
    action = _box_spec().to_dict()["action"]
    assert action == {
        "kind": "box",
        "shape": [2, 3],
        "low": [[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]],
        "high": [[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]],
    }


def test_the_gridworld_task() -> None:
    assert tasks.get("gridworld").to_dict() == {
        "name": "gridworld",
        "env": {"id": "NeuroQuant/GridWorld-v0", "kwargs": {"obs_mode": "vector"}, "max_episode_steps": 100},
        "observation": {"shape": [6], "dtype": "float32", "preprocess": []},
        "action": {"kind": "discrete", "n": 3},
        "output": "q",
        "evaluation": {"kind": "exact"},
    }
    assert "gridworld" in tasks.names()


def test_an_unknown_task_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'cartpol'.*\['gridworld'") as info:
        tasks.get("cartpol")
    assert "from_env" in str(info.value)


def test_defaults_are_fifty_seeds_and_json_safe_kwargs() -> None:
    assert EvaluationSpec().seeds == tuple(range(50))
    assert EvaluationSpec("exact").seeds == ()
    data = _cartpole_dict()
    del data["evaluation"], data["env"]["kwargs"], data["env"]["max_episode_steps"]
    spec = TaskSpec.from_dict(data)
    assert (
        spec.evaluation == EvaluationSpec() and spec.env.kwargs == {} and spec.env.max_episode_steps is None
    )


def _broken(path: str, value: object) -> dict:
    """The example with ``path`` (dotted) set to ``value``, or deleted when value is ``...``."""
    data = copy.deepcopy(_cartpole_dict())
    *parents, key = path.split(".")
    node = data
    for parent in parents:
        node = node[parent]
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", "Cart Pole", r"task\.name: expected lowercase"),
        ("name", "../x", r"task\.name"),
        ("env", ..., r"task\.env: missing"),
        ("env", [], r"task\.env: expected an object"),
        ("env.id", "", r"task\.env\.id: expected a non-empty string"),
        ("env.kwargs", {"f": float("nan")}, r"task\.env\.kwargs: expected JSON values"),
        ("env.kwargs", {"f": object()}, r"task\.env\.kwargs: expected JSON values"),
        ("env.max_episode_steps", 0, r"task\.env\.max_episode_steps: expected an integer ≥ 1 or null"),
        ("env.max_episode_step", 5, r"task\.env: unknown keys \['max_episode_step'\]"),
        ("observation.shape", "4", r"task\.observation\.shape: expected a list of integers"),
        ("observation.shape", [4.0], r"task\.observation\.shape\[0\]: expected an integer ≥ 1"),
        ("observation.dtype", "float64", r"task\.observation\.dtype: expected one of \('float32', 'uint8'\)"),
        ("observation.preprocess", [{"frame_skip": 4}], r"task\.observation\.preprocess\[0\]: .*'op'"),
        ("action.kind", "multidiscrete", r"task\.action\.kind: expected one of \('discrete', 'box'\)"),
        ("action.n", 0, r"task\.action\.n: expected an integer ≥ 1"),
        ("action.n", True, r"task\.action\.n: expected an integer ≥ 1"),
        ("action.n", ..., r"task\.action\.n: missing"),
        ("action", {"kind": "box", "shape": [1], "low": [-1]}, r"task\.action\.high: missing"),
        (
            "action",
            {"kind": "box", "shape": [2], "low": [-1], "high": [1, 1]},
            r"task\.action\.low: .*shape \[2\]",
        ),
        (
            "action",
            {"kind": "box", "shape": [1], "low": [1], "high": [-1]},
            r"task\.action: expected low ≤ high",
        ),
        (
            "action",
            {"kind": "box", "shape": [1], "low": [None], "high": [1]},
            r"task\.action\.low: expected finite",
        ),
        ("action", {"kind": "box", "shape": [1], "low": [-1], "high": [1], "n": 2}, r"not 'n'"),
        ("output", "probs", r"task\.output: expected one of \('q', 'logits', 'action'\)"),
        ("output", "action", r"task\.output: a discrete action needs 'q' or 'logits'"),
        ("evaluation.kind", "sampled", r"task\.evaluation\.kind: expected one of \('exact', 'episodes'\)"),
        ("evaluation.seeds", [0, -1], r"task\.evaluation\.seeds\[1\]: expected an integer ≥ 0"),
        ("evaluation.seeds", [0, 0], r"task\.evaluation\.seeds: expected distinct seeds"),
        ("evaluation.seeds", [], r"task\.evaluation\.seeds: an episode evaluation needs at least one seed"),
        ("evaluation", {"kind": "exact", "seeds": [1]}, r"task\.evaluation\.seeds: an exact evaluation"),
        ("color", "red", r"task: unknown keys \['color'\]"),
    ],
)
def test_malformed_specs_are_refused_naming_the_field(path: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskSpec.from_dict(_broken(path, value))


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match=r"task: expected an object, got list"):
        TaskSpec.from_dict([])


def test_a_box_action_needs_output_action() -> None:
    with pytest.raises(ValueError, match=r"task\.output: a box action needs 'action', got 'q'"):
        TaskSpec("arm", EnvSpec("Arm-v0"), ObservationSpec((3,)), ActionSpec.box([-1.0], [1.0]), "q")


def test_specs_are_immutable() -> None:
    spec = tasks.get("gridworld")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
