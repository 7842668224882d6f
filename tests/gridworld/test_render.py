"""Rendering, GIFs, the human window and keyboard play, all headless (SDL dummy driver)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gridworld.core import FORWARD, TURN_RIGHT, GridWorldCore, build_model
from gridworld.env import GridWorldEnv
from gridworld.oracle import Oracle
from gridworld.render import render_episode_gif, render_rgb

CELL = 32


def _cell(frame: np.ndarray, x: int, y: int) -> np.ndarray:
    return frame[y * CELL : (y + 1) * CELL, x * CELL : (x + 1) * CELL]


def test_rgb_frame_shape_and_cell_colours() -> None:
    model = build_model()
    frame = render_rgb(model.layout, 0, 0, 0, cell_px=CELL)
    assert frame.shape == (10 * CELL, 10 * CELL, 3) and frame.dtype == np.uint8
    centre = CELL // 2
    wall, goal, empty = _cell(frame, 2, 2), _cell(frame, *model.goal), _cell(frame, 5, 0)
    colours = {tuple(c[centre, centre]) for c in (wall, goal, empty)}
    assert len(colours) == 3  # wall, goal and empty cells are told apart


def test_agent_moves_and_turns_in_the_picture() -> None:
    core = GridWorldCore()
    core.reset(start=(0, 0, 0))
    before = render_rgb(core.model.layout, *core.agent)
    core.step(FORWARD)
    after = render_rgb(core.model.layout, *core.agent)
    changed = np.argwhere((before != after).any(axis=2))
    cells = {(int(x) // CELL, int(y) // CELL) for y, x in changed}
    assert cells == {(0, 0), (1, 0)}  # the agent left (0, 0) and appeared in (1, 0)
    core.step(TURN_RIGHT)
    turned = render_rgb(core.model.layout, *core.agent)
    assert not np.array_equal(_cell(after, 1, 0), _cell(turned, 1, 0))


def test_env_rgb_array_mode_matches_render_rgb() -> None:
    env = GridWorldEnv(render_mode="rgb_array")
    env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), render_rgb(env.model.layout, *env.core.agent))


def test_gif_has_one_frame_per_step_plus_the_first(tmp_path: Path) -> None:
    model = build_model()
    start = (0, 0, 0)
    steps = int(Oracle(model).distance[model.state_index(*start)])
    path = tmp_path / "episode.gif"
    frames = render_episode_gif(path, policy=Oracle(model).policy(), start=start)
    assert frames == steps + 1
    with Image.open(path) as gif:
        assert gif.n_frames == steps + 1
        assert gif.info["duration"] == 100  # 10 FPS
    assert [p.name for p in tmp_path.iterdir()] == ["episode.gif"]


def test_gif_from_fixed_actions_and_argument_errors(tmp_path: Path) -> None:
    assert (
        render_episode_gif(tmp_path / "a.gif", actions=[FORWARD, FORWARD, TURN_RIGHT], start=(0, 0, 0)) == 4
    )
    with pytest.raises(ValueError):
        render_episode_gif(tmp_path / "b.gif")
    with pytest.raises(ValueError):
        render_episode_gif(tmp_path / "c.gif", policy=lambda o: np.zeros(len(o), int), actions=[1])


def test_failing_policy_leaves_no_partial_gif(tmp_path: Path) -> None:
    def broken(obs: np.ndarray) -> np.ndarray:
        raise RuntimeError("policy crashed")

    with pytest.raises(RuntimeError):
        render_episode_gif(tmp_path / "x.gif", policy=broken)
    assert list(tmp_path.iterdir()) == []


def test_human_mode_opens_and_closes_headless() -> None:
    env = GridWorldEnv(render_mode="human")
    env.reset(seed=0)
    env.step(FORWARD)
    assert env._window is not None and env._window.is_open
    env.close()
    assert env._window is None


def test_keyboard_play_moves_the_agent_and_quits_on_escape() -> None:
    import pygame

    from gridworld.play import play

    script = [
        [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_UP)],
        [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_d)],
        [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_w)],
        [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE)],
        [],
    ]
    feed = iter(script)
    lines: list[str] = []
    result = play(start=(0, 0, 0), fps=1000, events=lambda: next(feed), echo=lines.append)
    assert result.quit_reason == "quit"
    assert result.steps == 3
    assert result.agent == (1, 1, 1)  # forward east, turn right (south), forward
    assert result.episode_return == pytest.approx(-0.3)


def test_play_help_exits_zero() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridworld.play", "--help"], capture_output=True, text=True, check=True
    )
    assert "--max-frames" in out.stdout


def test_play_reads_posted_pygame_events_by_default() -> None:
    import pygame

    from gridworld.play import KEY_TO_ACTION, play

    assert KEY_TO_ACTION[pygame.K_LEFT] == 0 and KEY_TO_ACTION[pygame.K_UP] == FORWARD
    pygame.display.init()  # the event queue needs the video subsystem; play's window reuses it
    for key in (pygame.K_LEFT, pygame.K_UP, pygame.K_q):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    result = play(start=(0, 1, 0), fps=0, max_frames=50, echo=lambda _: None)
    assert result.quit_reason == "quit"
    assert result.agent == (0, 0, 3)  # turn left (north), forward


def test_play_cli_stops_after_max_frames() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridworld.play", "--max-frames", "3", "--fps", "0", "--seed", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "3 frames" in out.stdout
