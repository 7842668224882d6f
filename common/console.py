"""The ``neuroquant`` console script: one command in front of every stage's ``python -m`` module.

``neuroquant <command> [its flags]`` runs the stage's own ``main(argv)``, so the flags, ``--help`` and exit
statuses are exactly those of ``python -m <module>`` (docs/contracts.md#the-command-line): nothing is parsed
twice and nothing can drift. Each stage is imported only when its command runs, so ``neuroquant run`` on a
device imports neither torch nor the exporter.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    target: str
    """``module:function`` taking ``argv`` and returning the exit status."""
    module: str
    """The ``python -m`` module it is the same as (shown in the help)."""
    summary: str
    example: str


COMMANDS: dict[str, Command] = {
    "collect": Command(
        "train.collect:main", "train.collect", "collect the gridworld's offline dataset",
        "neuroquant collect --episodes 100 --policy mixed --out data/replay_buffer.npz",
    ),
    "train": Command(
        "train.__main__:main", "train", "offline RL on a dataset (CQL, BCQ, TD3+BC, BC)",
        "neuroquant train --algo cql --dataset data/replay_buffer.npz --out runs/cql",
    ),
    "distill": Command(
        "train.distill:main", "train.distill", "distil a trained policy into a small student",
        "neuroquant distill --teacher runs/cql/best.safetensors --out runs/distilled",
    ),
    "export": Command(
        "export.__main__:main", "export", "every variant x format of a target, gated against the float",
        "neuroquant export --target x86",
    ),
    "run": Command(
        "edge_runtime.cli:main", "edge_runtime", "a fixed-FPS session of one artifact on this device",
        "neuroquant run --manifest artifacts/x86/manifest.json --variant int8-static --backend onnxruntime",
    ),
    "bench": Command(
        "benchmarks.__main__:main", "benchmarks", "the benchmark matrix: variants x backends x scenarios",
        "neuroquant bench --manifest artifacts/x86/manifest.json --out results/benchmark",
    ),
    "search": Command(
        "export.search:main", "export.search", "the best variant under a budget, by an Optuna search",
        "neuroquant search --task cartpole --target x86 --trials 40 --pick fastest --min-return-ratio 0.99",
    ),
    "report": Command(
        "reports.build:main", "reports", "tables, bubble chart and HTML from the results",
        "neuroquant report --results results --out reports/out",
    ),
}  # fmt: skip
"""Command name → the stage it runs; the single list of commands."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: neuroquant <command> [flags]   (neuroquant <command> --help: that command's flags)",
        "",
        "Export, quantize, prune and benchmark reinforcement-learning policies for edge hardware.",
        "",
        "commands (each is the same as python -m <module>):",
    ]
    for name, cmd in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {cmd.summary} (python -m {cmd.module})")
        lines.append(f"  {'':<{width}}    e.g. {cmd.example}")
    lines += ["", f"Example: {COMMANDS['export'].example}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"neuroquant: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, _, function = command.target.partition(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
