"""The action rule: argmax for q/logits, clip for box, and no action from a non-finite output."""

from __future__ import annotations

import numpy as np
import pytest

import tasks
from tasks.spec import ActionSpec, EnvSpec, ObservationSpec, TaskSpec


@pytest.fixture
def box() -> TaskSpec:
    return TaskSpec(
        "arm", EnvSpec("Arm-v0"), ObservationSpec((3,)), ActionSpec.box([-2.0, 0.0], [2.0, 1.0]), "action"
    )


def test_argmax_for_q_values() -> None:
    spec = tasks.get("gridworld")
    q = np.array([[0.1, 0.5, -1.0], [3.0, 2.0, 2.5], [-1.0, -1.0, 0.0]], dtype=np.float32)
    actions = tasks.select_actions(spec, q)
    assert actions.dtype == np.int64
    np.testing.assert_array_equal(actions, [1, 0, 2])


def test_box_actions_are_clipped_to_the_bounds(box: TaskSpec) -> None:
    out = np.array([[-5.0, 0.5], [1.5, 7.0], [2.0, -0.25]], dtype=np.float32)
    actions = tasks.select_actions(box, out)
    assert actions.dtype == np.float32
    np.testing.assert_array_equal(actions, [[-2.0, 0.5], [1.5, 1.0], [2.0, 0.0]])
    low, high = tasks.action_bounds(box)
    np.testing.assert_array_equal(low, [-2.0, 0.0])
    np.testing.assert_array_equal(high, [2.0, 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_a_non_finite_output_raises(bad: float, kind: str, box: TaskSpec) -> None:
    spec = tasks.get("gridworld") if kind == "discrete" else box
    width = 3 if kind == "discrete" else 2
    out = np.zeros((4, width), dtype=np.float32)
    out[2, 1] = bad
    with pytest.raises(tasks.NonFiniteAction, match=r"non-finite action: .*rows \[2\]"):
        tasks.select_actions(spec, out)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_output_per_frame_is_clipped_like_the_batch_and_refused_when_not_finite(
    bad: float, box: TaskSpec
) -> None:
    low, high = tasks.action_bounds(box)
    rng = np.random.default_rng(0)
    for out in rng.normal(0.0, 3.0, size=(50, 2)).astype(np.float32):
        np.testing.assert_array_equal(tasks.clip_action(out, low, high), np.clip(out, low, high))
    with pytest.raises(tasks.NonFiniteAction, match=r"the network returned \[0.5, (nan|inf|-inf)\]"):
        tasks.clip_action(np.array([0.5, bad], np.float32), low, high)
    with pytest.raises(tasks.NonFiniteAction):  # +inf and −inf: their sum is NaN
        tasks.clip_action(np.array([np.inf, -np.inf], np.float32), low, high)
    huge = np.array([1e308, 1e308])  # finite, though their float sum overflows: clipped, not refused
    np.testing.assert_array_equal(tasks.clip_action(huge, low, high), high)


@pytest.mark.parametrize("shape", [(3,), (4, 2), (4, 3, 1)])
def test_outputs_of_the_wrong_shape_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected network outputs of shape \[N, 3\]"):
        tasks.select_actions(tasks.get("gridworld"), np.zeros(shape, dtype=np.float32))
