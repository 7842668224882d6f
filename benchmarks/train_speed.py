"""Offline-trainer throughput: gradient steps per second of the real inner loop.

    python -m benchmarks.train_speed [--steps 2000] [--batch 256] [--hidden 256,256] [--algo cql]
                                     [--threads 2] [--repeats 5] [--warmup 300] [--dataset PATH] [--json PATH]

It times :class:`train.trainer.StepRunner` — sample a minibatch from the packed dataset tensor, loss,
backward, fused Adam, target update, loss bookkeeping — exactly what ``python -m train`` runs between
evaluations. Without ``--dataset`` the default buffer (100 ``mixed`` episodes, seed 0) is collected in
memory first. After a warm-up, ``--repeats`` blocks of ``--steps`` steps are timed; the median is the
headline figure and min/max show the noise of a shared machine (the load average is recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.env_speed import host_info
from train.algos import algo_names
from train.dataset import Dataset, DatasetError, load_dataset
from train.evaluate import env_model_from_metadata
from train.trainer import StepRunner, TrainConfig, TransitionSampler, build_algo, network_config, parse_hidden

#: Issue 3's target for batch 256 with a 256×256 MLP on 2 cores.
TARGET_STEPS_PER_S = 500.0


def default_dataset() -> Dataset:
    """The pipeline's default buffer (100 mixed episodes, seed 0), collected in memory."""
    from train.collect import CollectConfig, collect

    return collect(CollectConfig(episodes=100, policy="mixed", seed=0, out="unused.npz", quiet=True))


def measure(
    dataset: Dataset,
    algo: str = "cql",
    steps: int = 2000,
    batch: int = 256,
    hidden: tuple[int, ...] = (256, 256),
    threads: int = 2,
    repeats: int = 5,
    warmup: int = 300,
) -> dict[str, Any]:
    """Median gradient steps/s over ``repeats`` timed blocks of ``steps`` steps, after ``warmup`` steps."""
    config = TrainConfig(algo=algo, batch_size=batch, hidden=hidden, threads=threads, out="unused")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    env_model = env_model_from_metadata(dataset.metadata)
    net = network_config(dataset, env_model, config.hidden)
    sampler = TransitionSampler(dataset, np.arange(len(dataset)), 0)
    runner = StepRunner(build_algo(config, net, sampler), sampler, config)
    done = 0

    def run(n: int) -> float:
        nonlocal done
        start = time.perf_counter()
        for _ in range(n):
            done += 1
            runner.step(done)
        runner.pop_losses()  # the float conversion the trainer does every log_every steps
        return n / (time.perf_counter() - start)

    load_before = os.getloadavg()
    run(warmup)
    rates = [run(steps) for _ in range(repeats)]
    return {
        "algo": algo,
        "batch": batch,
        "hidden": list(hidden),
        "threads": threads,
        "steps_per_repeat": steps,
        "warmup": warmup,
        "median_steps_per_s": statistics.median(rates),
        "min_steps_per_s": min(rates),
        "max_steps_per_s": max(rates),
        "repeats": rates,
        "target_steps_per_s": TARGET_STEPS_PER_S if (batch, tuple(hidden)) == (256, (256, 256)) else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "torch": torch.__version__,
        "host": host_info(),
    }


def format_result(r: dict[str, Any]) -> str:
    target = r["target_steps_per_s"]
    verdict = (
        ""
        if target is None
        else f"  target ≥ {target:.0f}: {'ok' if r['median_steps_per_s'] >= target else 'MISSED'}"
    )
    return (
        f"{r['algo']} batch {r['batch']} hidden {'x'.join(map(str, r['hidden']))} on {r['threads']} threads: "
        f"median {r['median_steps_per_s']:.0f} steps/s (min {r['min_steps_per_s']:.0f}, max "
        f"{r['max_steps_per_s']:.0f}, {len(r['repeats'])} × {r['steps_per_repeat']} steps){verdict}\n"
        f"load average before/after: {r['load_average_before'][0]:.2f} / {r['load_average_after'][0]:.2f} "
        f"on {r['host']['usable_cpus']} CPUs ({r['host']['cpu_model']})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_speed",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per timed repeat")
    parser.add_argument("--batch", type=int, default=256, help="minibatch size")
    parser.add_argument("--hidden", default="256,256", help="hidden layer widths")
    parser.add_argument("--algo", default="cql", choices=algo_names(), help="algorithm whose step is timed")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed steps first")
    parser.add_argument("--dataset", help="replay buffer .npz (default: 100 mixed episodes, in memory)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch, args.threads, args.repeats) < 1 or args.warmup < 0:
        parser.error("--steps, --batch, --threads and --repeats must be ≥ 1, --warmup ≥ 0")
    try:
        hidden = parse_hidden(args.hidden)
        dataset = load_dataset(args.dataset) if args.dataset else default_dataset()
    except (ValueError, DatasetError) as err:
        parser.error(str(err))
    result = measure(
        dataset, args.algo, args.steps, args.batch, hidden, args.threads, args.repeats, args.warmup
    )
    print(format_result(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
