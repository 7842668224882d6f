"""Play the gridworld with the keyboard, through the Gymnasium env, in a pygame window.

    python -m gridworld.play [--layout default|procedural] [--obs-mode vector|image] [--fps 10]

Left/A turn left, Up/W forward, Right/D turn right, R resets, Esc/Q or closing the window quits.
Each step prints the step number, the reward and the episode return. pygame is imported only when a
window opens, so ``KEY_TO_ACTION`` and ``play`` can be imported (and tested) without a display.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from common.cli import ExampleFormatter
from gridworld.core import ACTION_NAMES, FORWARD, MAX_STEPS, OBS_MODES, TURN_LEFT, TURN_RIGHT

EventSource = Callable[[], Iterable[Any]]
"""Returns the pygame events that arrived since the last call (``pygame.event.get`` by default)."""


@lru_cache(maxsize=1)
def _key_tables() -> tuple[Mapping[int, int], frozenset[int], frozenset[int]]:
    import pygame

    key_to_action = {
        pygame.K_LEFT: TURN_LEFT,
        pygame.K_a: TURN_LEFT,
        pygame.K_UP: FORWARD,
        pygame.K_w: FORWARD,
        pygame.K_RIGHT: TURN_RIGHT,
        pygame.K_d: TURN_RIGHT,
    }
    return MappingProxyType(key_to_action), frozenset({pygame.K_r}), frozenset({pygame.K_ESCAPE, pygame.K_q})


_LAZY_TABLES = {"KEY_TO_ACTION": 0, "RESET_KEYS": 1, "QUIT_KEYS": 2}


def __getattr__(name: str) -> Any:
    """Build the pygame key tables on first access (PEP 562), so importing this module needs no pygame."""
    if name in _LAZY_TABLES:
        return _key_tables()[_LAZY_TABLES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class PlayResult:
    """What a play session did; returned so tests and scripts can check it without parsing stdout."""

    frames: int
    steps: int
    episodes: int
    episode_return: float
    agent: tuple[int, int, int]
    quit_reason: str


class _Session:
    """The env plus the counters a keypress updates; kept apart from the loop so each stays short."""

    def __init__(self, env: Any, echo: Callable[[str], None]) -> None:
        self.env, self.echo = env, echo
        self.steps, self.episodes = 0, 1
        self.episode_return, self.episode_over = 0.0, False

    def reset(self) -> None:
        self.env.reset()
        self.episodes += 1
        self.episode_return, self.episode_over = 0.0, False
        self.echo(f"reset: episode {self.episodes}, agent (x, y, heading) = {self.env.core.agent}")

    def act(self, action: int) -> None:
        if self.episode_over:  # the last frame stayed on screen; the next action key starts over
            self.reset()
            return
        _, reward, terminated, truncated, _ = self.env.step(action)
        self.steps += 1
        self.episode_return += float(reward)
        self.echo(
            f"step {self.env.core.steps:3d}  {ACTION_NAMES[action]:<10}  reward {reward:+.1f}  "
            f"return {self.episode_return:+.1f}"
        )
        if terminated or truncated:
            self.episode_over = True
            outcome = "reached the goal" if terminated else "ran out of steps"
            self.echo(f"episode {self.episodes} over: {outcome}; press any action key or R to play again")


def play(
    layout: str = "default",
    layout_seed: int = 0,
    obs_mode: str = "vector",
    seed: int | None = None,
    fps: float = 10,
    max_frames: int | None = None,
    max_steps: int = MAX_STEPS,
    start: tuple[int, int, int] | None = None,
    events: EventSource | None = None,
    echo: Callable[[str], None] = print,
) -> PlayResult:
    """Run the keyboard loop until the user quits or ``max_frames`` frames have been shown.

    ``events`` lets a test inject key presses; ``start`` = (x, y, heading) fixes the first start state.
    After an episode ends the next action key (or R) starts a new one, so the final frame stays visible.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be ≥ 1, got {max_frames}")
    import pygame

    from gridworld.env import GridWorldEnv
    from gridworld.render import PygameWindow

    key_to_action, reset_keys, quit_keys = _key_tables()
    next_events: EventSource = events if events is not None else pygame.event.get
    env = GridWorldEnv(
        layout=layout,
        obs_mode=obs_mode,
        layout_seed=layout_seed,
        max_steps=max_steps,
        render_mode="rgb_array",
    )
    env.reset(seed=seed, options={"start": start} if start is not None else None)
    session = _Session(env, echo)
    frame = env.render()
    window = PygameWindow(frame.shape[1], frame.shape[0], fps=fps, title="NeuroQuant GridWorld — play")
    frames = 0
    quit_reason = "max-frames"
    echo("Left/A turn left, Up/W forward, Right/D turn right, R reset, Esc/Q quit")
    try:
        while max_frames is None or frames < max_frames:
            window.show(frame)
            frames += 1
            for event in next_events():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key in quit_keys):
                    quit_reason = "quit"
                    break
                if event.type == pygame.KEYDOWN and event.key in reset_keys:
                    session.reset()
                elif event.type == pygame.KEYDOWN and event.key in key_to_action:
                    session.act(key_to_action[event.key])
            if quit_reason == "quit":
                break
            frame = env.render()
    finally:
        window.close()
        env.close()
    return PlayResult(
        frames, session.steps, session.episodes, session.episode_return, env.core.agent, quit_reason
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gridworld.play",
        description=(
            "Play the NeuroQuant gridworld with the keyboard: Left/A turn left, Up/W forward, "
            "Right/D turn right, R reset, Esc/Q or closing the window quits."
        ),
        epilog="Example: python -m gridworld.play --layout procedural --layout-seed 3",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument(
        "--layout",
        choices=("default", "procedural"),
        default="default",
        help="'default': the fixed 10x10 map; 'procedural': a random solvable map (default: %(default)s)",
    )
    parser.add_argument(
        "--layout-seed", type=int, default=0, help="seed of the procedural map (default: %(default)s)"
    )
    parser.add_argument(
        "--obs-mode",
        choices=OBS_MODES,
        default="vector",
        help="observation the env produces; the window always shows the whole grid (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the start-state draws (default: random)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=10,
        help="frame-rate cap of the window, 0 = uncapped (default: %(default)s)",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="exit after this many frames, e.g. for a headless smoke test (default: run until quit)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=MAX_STEPS,
        help="steps before an episode is truncated (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = play(
        layout=args.layout,
        layout_seed=args.layout_seed,
        obs_mode=args.obs_mode,
        seed=args.seed,
        fps=args.fps,
        max_frames=args.max_frames,
        max_steps=args.max_steps,
    )
    print(
        f"{result.frames} frames, {result.steps} steps, {result.episodes} episodes; "
        f"last return {result.episode_return:+.1f} ({result.quit_reason})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
