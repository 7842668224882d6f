"""Rules of the gridworld: walls, goal, rewards, truncation, observations, determinism, layouts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gridworld.core import (
    FORWARD,
    GOAL_REWARD,
    MAX_STEPS,
    STEP_REWARD,
    TURN_LEFT,
    TURN_RIGHT,
    GridWorldCore,
    build_model,
    states_from_vector_obs,
)
from gridworld.layouts import GOAL, WALL, LayoutError, make_layout, parse_layout, procedural_layout

CORRIDOR = ["#....", "#.#G.", "....."]


def test_forward_into_wall_and_border_stays_put() -> None:
    core = GridWorldCore(layout=CORRIDOR)
    core.reset(start=(1, 0, 2))  # facing west, a wall at x=0
    core.step(FORWARD)
    assert core.agent == (1, 0, 2)
    core.reset(start=(1, 0, 3))  # facing north, outside the grid
    core.step(FORWARD)
    assert core.agent == (1, 0, 3)
    core.reset(start=(1, 0, 1))  # facing south: (1, 1) and (1, 2) are open
    core.step(FORWARD)
    assert core.agent == (1, 1, 1)
    core.step(FORWARD)
    assert core.agent == (1, 2, 1)


def test_turns_change_heading_only() -> None:
    core = GridWorldCore(layout=CORRIDOR)
    core.reset(start=(1, 0, 0))
    core.step(TURN_RIGHT)
    assert core.agent == (1, 0, 1)  # east → south
    core.step(TURN_LEFT)
    core.step(TURN_LEFT)
    assert core.agent == (1, 0, 3)  # → north


def test_goal_terminates_with_plus_ten_and_steps_cost() -> None:
    core = GridWorldCore(layout=CORRIDOR)
    core.reset(start=(2, 0, 0))
    _, r, term, trunc = core.step(FORWARD)  # (3, 0)
    assert (r, term, trunc) == (STEP_REWARD, False, False)
    core.step(TURN_RIGHT)
    _, r, term, trunc = core.step(FORWARD)  # (3, 1) is the goal
    assert (r, term, trunc) == (GOAL_REWARD, True, False)


def test_truncation_at_max_steps() -> None:
    core = GridWorldCore()
    core.reset(seed=0)
    flags = [core.step(TURN_LEFT)[2:] for _ in range(MAX_STEPS)]
    assert all(f == (False, False) for f in flags[:-1])
    assert flags[-1] == (False, True)


@pytest.mark.parametrize(
    "make", [lambda: GridWorldCore(max_steps=7), lambda: GridWorldCore(model=build_model(max_steps=7))]
)
def test_the_env_and_its_model_share_one_episode_limit(make) -> None:
    """Given to the env or to its model, the limit is the same for both: the env truncates where exact
    evaluations of ``core.model`` (which read ``model.max_steps``) stop."""
    core = make()
    assert core.max_steps == core.model.max_steps == 7
    core.reset(seed=0)
    flags = [core.step(TURN_LEFT)[2:] for _ in range(7)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])


def test_vector_observation_encodes_position_goal_heading() -> None:
    model = build_model(CORRIDOR)
    core = GridWorldCore(model=model)
    obs = core.reset(start=(4, 1, 3))
    # width 5, height 3: x/4, y/2; goal (3, 1); north = (0, -1)
    np.testing.assert_allclose(obs, [1.0, 0.5, 0.75, 0.5, 0.0, -1.0])
    assert obs.dtype == np.float32
    states = states_from_vector_obs(model, model.observations)
    np.testing.assert_array_equal(states, np.arange(model.n_states))


def test_image_observation_is_egocentric() -> None:
    model = build_model(CORRIDOR, obs_mode="image")
    core = GridWorldCore(model=model)
    east = core.reset(start=(2, 0, 0))
    # facing east from (2, 0): ahead (3, 0) is empty, ahead-left is outside (wall), ahead-right the goal
    assert east.dtype == np.int8 and east.shape == (3, 3)
    assert east[0].tolist() == [WALL, 0, GOAL]
    assert east[1].tolist() == [WALL, 0, WALL]  # left is outside, right is the wall at (2, 1)
    south = core.reset(start=(2, 0, 1))
    # facing south: ahead is the wall (2, 1); ahead-right (west side) is (1, 1) empty; ahead-left (3, 1) goal
    assert south[0].tolist() == [GOAL, WALL, 0]


def test_same_seed_same_episode_and_different_seed_differs() -> None:
    def episode(seed: int) -> list[tuple]:
        core = GridWorldCore()
        out = [tuple(core.reset(seed=seed))]
        rng = np.random.default_rng(7)
        for _ in range(50):
            obs, r, term, trunc = core.step(int(rng.integers(3)))
            out.append((*obs.tolist(), r, term, trunc))
            if term or trunc:
                out.append(tuple(core.reset()))
        return out

    assert episode(3) == episode(3)
    assert episode(3) != episode(4)


def test_reset_rejects_bad_start_and_step_bad_action() -> None:
    core = GridWorldCore(layout=CORRIDOR)
    with pytest.raises(ValueError, match="not a valid start"):
        core.reset(start=(0, 0, 0))  # a wall
    core.reset(seed=0)
    with pytest.raises(ValueError, match="action must be"):
        core.step(3)


def test_start_states_exclude_walls_and_goal() -> None:
    model = build_model()
    cells = model.start_states // 4
    grid = model.layout.reshape(-1)
    assert (grid[cells] == 0).all()
    assert len(model.start_states) == 4 * int((model.layout == 0).sum())


def test_layout_errors_are_readable() -> None:
    with pytest.raises(LayoutError, match="exactly one goal"):
        parse_layout(["....", "...."])
    with pytest.raises(LayoutError, match="unknown layout characters"):
        parse_layout(["..X.", "..G."])
    with pytest.raises(LayoutError, match="cannot reach the goal"):
        parse_layout([".#..", "#..G"])
    with pytest.raises(LayoutError, match="unknown layout"):
        make_layout("maze")
    with pytest.raises(ValueError, match="unknown obs_mode"):
        build_model(obs_mode="pixels")


@pytest.mark.parametrize("seed", range(20))
def test_procedural_layouts_are_solvable_and_seeded(seed: int) -> None:
    grid = procedural_layout(seed)
    assert grid.shape == (10, 10) and (grid == GOAL).sum() == 1
    np.testing.assert_array_equal(grid, procedural_layout(seed))
    from gridworld.oracle import Oracle

    model = build_model(grid)
    assert (Oracle(model).distance[model.start_states] > 0).all()


def test_core_imports_without_gymnasium() -> None:
    code = (
        "import sys; import gridworld, gridworld.core, gridworld.oracle, gridworld.layouts; "
        "assert 'gymnasium' not in sys.modules and 'pygame' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
