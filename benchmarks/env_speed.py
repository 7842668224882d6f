"""Environment throughput: single-env steps/s and batched env-steps/s.

    python -m benchmarks.env_speed [--seconds 2] [--envs 4096] [--repeats 5] [--json PATH]

Actions are drawn before the clock starts (a Python list for the single env, a few ``[N]`` arrays cycled
for the vector env), so the figures measure the env, not the random number generator. Each benchmark is
warmed up, then timed ``--repeats`` times; the median is the headline figure and min/max show the noise
of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.cli import ExampleFormatter
from gridworld.core import N_ACTIONS, GridWorldCore

#: Targets from the issue (steps/s); benchmarks without a target are informational.
SINGLE_TARGET = 300_000
VECTOR_TARGET = 20_000_000
VECTOR_TARGET_ENVS = 4096
_ACTION_POOL = 1 << 14  # pre-drawn single-env actions, reused cyclically
_ACTION_BLOCKS = 8  # pre-drawn [N] action arrays for the vector env, cycled


@dataclass
class Result:
    """Steps per second of one benchmark over its repeats."""

    name: str
    unit: str
    median: float
    min: float
    max: float
    repeats: list[float] = field(repr=False)
    target: float | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.median >= self.target


def _timed(run_chunk: Callable[[], int], seconds: float) -> float:
    """Call ``run_chunk`` (returns the steps it took) until ``seconds`` elapse; return steps per second."""
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        steps += run_chunk()
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def measure_rate(
    name: str,
    unit: str,
    run_chunk: Callable[[], int],
    seconds: float,
    repeats: int,
    target: float | None = None,
) -> Result:
    """Median steps/s of ``run_chunk`` over ``repeats`` blocks of ``seconds``, after a short warm-up."""
    _timed(run_chunk, min(0.2, seconds))  # warm-up: caches, branch predictors, CPU frequency
    rates = [_timed(run_chunk, seconds) for _ in range(repeats)]
    return Result(name, unit, statistics.median(rates), min(rates), max(rates), rates, target)


def single_env_chunk(seed: int = 0) -> Callable[[], int]:
    """Steps through ``gymnasium.make(...).unwrapped.step``: the env's own cost, without wrapper checks."""
    import gymnasium as gym

    import gridworld.env  # noqa: F401  (registers NeuroQuant/GridWorld-v0)

    env = gym.make("NeuroQuant/GridWorld-v0").unwrapped
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(N_ACTIONS, size=_ACTION_POOL).tolist()
    step, reset = env.step, env.reset

    def chunk() -> int:
        for a in actions:
            _, _, terminated, truncated, _ = step(a)
            if terminated or truncated:
                reset()
        return len(actions)

    return chunk


def core_chunk(seed: int = 0) -> Callable[[], int]:
    """Steps through the gymnasium-free ``GridWorldCore``: the floor the wrapper adds to."""
    core = GridWorldCore()
    core.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(N_ACTIONS, size=_ACTION_POOL).tolist()
    step, reset = core.step, core.reset

    def chunk() -> int:
        for a in actions:
            _, _, terminated, truncated = step(a)
            if terminated or truncated:
                reset()
        return len(actions)

    return chunk


def vector_env_chunk(num_envs: int, seed: int = 0, steps_per_chunk: int = 64) -> Callable[[], int]:
    """Batched steps of ``GridWorldVectorEnv`` (NEXT_STEP autoreset); returns env-steps per chunk."""
    from gymnasium.vector import AutoresetMode

    from gridworld.vector import GridWorldVectorEnv

    venv = GridWorldVectorEnv(num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)
    venv.reset(seed=seed)
    rng = np.random.default_rng(seed)
    blocks = [rng.integers(N_ACTIONS, size=num_envs) for _ in range(_ACTION_BLOCKS)]
    schedule = [blocks[i % _ACTION_BLOCKS] for i in range(steps_per_chunk)]
    step = venv.step

    def chunk() -> int:
        for actions in schedule:
            step(actions)
        return steps_per_chunk * num_envs

    return chunk


def host_info() -> dict[str, Any]:
    """Where the figures were taken: they only compare within one host."""
    import gymnasium

    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable_cpus = None
    cpu_model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
    }


def run_benchmarks(
    seconds: float = 2.0, envs: int = VECTOR_TARGET_ENVS, repeats: int = 5, sizes: Sequence[int] = (64, 512)
) -> list[Result]:
    """All env benchmarks; ``seconds`` is the time budget of each benchmark, split over its repeats."""
    if seconds <= 0 or repeats < 1 or envs < 1:
        raise ValueError("--seconds must be > 0, --repeats ≥ 1 and --envs ≥ 1")
    per_repeat = seconds / repeats
    vector_target = VECTOR_TARGET if envs == VECTOR_TARGET_ENVS else None
    results = [
        measure_rate(
            "single env.unwrapped.step", "steps/s", single_env_chunk(), per_repeat, repeats, SINGLE_TARGET
        ),
        measure_rate("single GridWorldCore.step", "steps/s", core_chunk(), per_repeat, repeats),
        measure_rate(
            f"vector x{envs}", "env-steps/s", vector_env_chunk(envs), per_repeat, repeats, vector_target
        ),
    ]
    for n in sorted(set(sizes) - {envs}):
        results.append(measure_rate(f"vector x{n}", "env-steps/s", vector_env_chunk(n), per_repeat, repeats))
    return results


def format_table(results: Sequence[Result]) -> str:
    rows = [("benchmark", "median", "min", "max", "unit", "target")]
    for r in results:
        target = "-" if r.target is None else f"{r.target:,.0f} {'ok' if r.passed else 'MISSED'}"
        rows.append((r.name, f"{r.median:,.0f}", f"{r.min:,.0f}", f"{r.max:,.0f}", r.unit, target))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in (0, 4, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.env_speed",
        description="Measure gridworld throughput: single-env steps/s and vector env-steps/s.",
        epilog="Example: python -m benchmarks.env_speed --seconds 2 --json results/env_speed.json",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="timed seconds per benchmark, split evenly over the repeats (default: %(default)s)",
    )
    parser.add_argument(
        "--envs",
        type=int,
        default=VECTOR_TARGET_ENVS,
        help="sub-envs of the headline vector benchmark; the target applies at 4096 (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats; the median is reported (default: %(default)s)"
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(v) for v in s.split(",") if v],
        default=[64, 512],
        help="further vector-env sizes, comma-separated (default: 64,512)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results and host info here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run_benchmarks(args.seconds, args.envs, args.repeats, args.sizes)
    except ValueError as err:
        build_parser().error(str(err))
    host = host_info()
    print(f"host: {host['cpu_model']} ({host['usable_cpus']} usable CPUs), numpy {host['numpy']}")
    print(format_table(results))
    if args.json is not None:
        payload = {
            "host": host,
            "settings": {"seconds": args.seconds, "envs": args.envs, "repeats": args.repeats},
            "results": [asdict(r) | {"passed": r.passed} for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
