"""``python -m benchmarks --manifest artifacts/x86/manifest.json --out results/benchmark``

Every flag comes from a :class:`benchmarks.matrix.BenchConfig` field and its docstring. Bad input (no or
a corrupt manifest, an unknown variant/backend/cell/scenario in a filter) ends with one ``error:`` line and
exit status 2 before any cell runs, and writes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks.matrix import BenchConfig, BenchError, format_summary, run_matrix
from common.cli import dataclass_parser, parse_dataclass

PROG = "python -m benchmarks"
DESCRIPTION = (
    "Benchmark every (artifact x backend) cell of an export manifest — single-stream latency (batch 1), "
    "batch-100 throughput, the edge_runtime loop uncapped and paced, load and first-inference time, RSS "
    "and size — plus gridworld and trainer throughput, each cell in its own process. Writes a new "
    "bench_<target>_<host>_<UTC time>.csv (one row per cell and scenario) and .json (host, settings, "
    "cells) to --out."
)
EPILOG = (
    "Cells whose runtime is missing or whose TensorRT engine is pending-on-device are 'skipped' rows; a "
    "cell that crashes, times out or raises gives 'failed' rows with the reason and the others still run. "
    "With --executor ray every cell runs on a Ray node that offers target_<target> (docs/benchmarks.md, "
    "'Fleet'); a target no node offers for --ray-wait-s seconds gives 'skipped' rows. "
    "Exit status: 0 when the result files are written (whatever the cells' statuses), 2 on bad input "
    "(also: Ray not installed or its cluster unreachable), 130 when interrupted (nothing written).\n"
    "Example: python -m benchmarks --manifest artifacts/x86/manifest.json --out results/benchmark"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataclass_parser(BenchConfig, prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    config: BenchConfig = parse_dataclass(
        BenchConfig,
        parser,
        None if argv is None else list(argv),
        outputs={"out": "dir", "sessions_dir": "dir"},
    )
    try:
        result = run_matrix(config)
    except BenchError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no result files written", file=sys.stderr)
        return 130
    print(format_summary(result))
    print(f"{len(result.rows)} rows from {len(result.cells)} cells in {result.seconds:.1f} s")
    print(f"wrote {result.csv_path}\nwrote {result.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
