"""``python -m train --algo cql|bcq|td3bc|bc --dataset data/replay_buffer.npz --out runs/cql``

Every flag comes from a :class:`train.trainer.TrainConfig` field and its docstring, so ``--help``
documents each one and a new field is a new flag. Bad input (an unknown algorithm, a number out of
range, an unreadable dataset) ends with one ``error:`` line and exit status 2 before training starts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common.cli import dataclass_parser, parse_dataclass
from train.algos import algo_names
from train.dataset import DatasetError
from train.trainer import TrainConfig, format_summary, train

DESCRIPTION = (
    "Train a policy offline (CQL, BCQ, TD3+BC or BC) on a replay buffer and evaluate it exactly against "
    "the BFS oracle. Writes best/last .safetensors, config.json, summary.json, metrics.csv, "
    "loss_curves.png and TensorBoard events to --out."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataclass_parser(
        TrainConfig,
        prog="python -m train",
        description=DESCRIPTION,
        epilog="Example: python -m train --algo cql --dataset data/replay_buffer.npz --out runs/cql",
        overrides={"algo": {"choices": algo_names()}},
    )
    config: TrainConfig = parse_dataclass(
        TrainConfig, parser, None if argv is None else list(argv), outputs={"out": "dir"}
    )
    try:
        result = train(config)
    except DatasetError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{parser.prog}: interrupted; best/last checkpoints so far are in {config.out}", file=sys.stderr
        )
        return 130
    print(format_summary(result.summary))
    print(f"wrote {result.out}/: best.safetensors, last.safetensors, config.json, summary.json, metrics.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
