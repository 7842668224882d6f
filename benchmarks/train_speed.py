"""Offline-trainer throughput: gradient steps per second of the real inner loop.

    python -m benchmarks.train_speed [--steps 2000] [--batch 256] [--hidden 256,256] [--layer-norm]
                                     [--algo cql] [--threads 2] [--repeats 5] [--warmup 300]
                                     [--compare-autograd] [--dataset PATH] [--json PATH]

It times :class:`train.trainer.StepRunner` — a minibatch from the sampler's chunked gather, loss and its
gradient (hand-written for CQL on an MLP: one compiled call through torch's MKL, train/fused_cql.py, or
torch calls, train/mlp_grad.py; autograd otherwise), torch's fused Adam kernel (train/optim.py), target
update, loss bookkeeping — exactly what ``python -m train`` runs between evaluations.
``--compare-autograd`` times the autograd path of the same configuration in interleaved blocks.
Without ``--dataset`` the default buffer (100 ``mixed`` episodes, seed 0) is collected in
memory first. After a warm-up, ``--repeats`` blocks of ``--steps`` steps are timed; the median is the
headline figure and min/max show the noise of a shared machine. The load average, the host's steal time and
the rate of a fixed matrix product timed after every block (:func:`reference_gflops`) are recorded too,
so that runs taken minutes apart on a shared host can be compared.
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

from benchmarks.contention import contention_ms, contention_since
from benchmarks.env_speed import host_info
from common.cli import HelpFormatter
from train.algos import algo_names
from train.dataset import Dataset, DatasetError, load_dataset
from train.evaluate import env_model_from_metadata
from train.trainer import (
    StepRunner,
    TrainConfig,
    TransitionSampler,
    build_algo,
    configure_torch,
    network_config,
    parse_hidden,
)

#: The target rate for batch 256 with a 256×256 MLP on 2 cores (docs/training.md).
TARGET_STEPS_PER_S = 500.0

#: Shape of the reference matrix product timed after every block: the trainer's largest one at batch 256
#: on a 256×256 MLP (the stacked [obs; next_obs] forward through the hidden×hidden layer).
REFERENCE_SHAPE = (512, 256, 256)


def reference_gflops(products: int = 100) -> float:
    """GFLOP/s of a fixed float32 matrix product (:data:`REFERENCE_SHAPE`) on this host, right now.

    Other tenants of a shared host slow the same code down by a quarter or more for minutes at a time,
    and mostly not through steal time (they share the cores' caches and execution units). A block's
    steps/s next to this rate, measured in the same minute, tells a slow host from a slow trainer.
    """
    m, k, n = REFERENCE_SHAPE
    a, b = torch.rand(m, k), torch.rand(k, n)
    for _ in range(10):
        a.mm(b)
    start = time.perf_counter()
    for _ in range(products):
        a.mm(b)
    return 2 * m * k * n * products / (time.perf_counter() - start) / 1e9


def default_dataset() -> Dataset:
    """The pipeline's default buffer (100 mixed episodes, seed 0), collected in memory."""
    from train.collect import CollectConfig, collect

    return collect(CollectConfig(episodes=100, policy="mixed", seed=0, out="unused.npz", quiet=True))


def _runner(
    dataset: Dataset,
    algo: str,
    batch: int,
    hidden: tuple[int, ...],
    threads: int,
    autograd: bool,
    layer_norm: bool = False,
) -> StepRunner:
    """The trainer's step runner for this configuration, on every row of ``dataset``, seeded like a run."""
    config = TrainConfig(
        algo=algo,
        batch_size=batch,
        hidden=hidden,
        threads=threads,
        autograd=autograd,
        layer_norm=layer_norm,
        out="unused",
    )
    torch.manual_seed(0)
    env_model = env_model_from_metadata(dataset.metadata)
    net = network_config(dataset, env_model, config.hidden, layer_norm)
    sampler = TransitionSampler(dataset, np.arange(len(dataset)), 0)
    return StepRunner(build_algo(config, net, sampler), sampler, config)


def measure(
    dataset: Dataset,
    algo: str = "cql",
    steps: int = 2000,
    batch: int = 256,
    hidden: tuple[int, ...] = (256, 256),
    threads: int = 2,
    repeats: int = 5,
    warmup: int = 300,
    compare_autograd: bool = False,
    layer_norm: bool = False,
) -> dict[str, Any]:
    """Median gradient steps/s over ``repeats`` timed blocks of ``steps`` steps, after ``warmup`` steps.

    ``layer_norm`` times the trainer's default network (a LayerNorm in each hidden layer); without it the
    network is the plain MLP of the 500 steps/s target and of the d3rlpy comparison.

    With ``compare_autograd`` the same configuration with ``--autograd`` is timed too, its blocks
    interleaved with the default path's, so both see the same machine load; the ratio of the medians is
    reported.
    """
    configure_torch(threads)
    paths = {"default": False, "autograd": True} if compare_autograd else {"default": False}
    runners = {
        name: _runner(dataset, algo, batch, hidden, threads, ag, layer_norm) for name, ag in paths.items()
    }
    done = dict.fromkeys(runners, 0)

    def run(name: str, n: int) -> float:
        runner = runners[name]
        start = time.perf_counter()
        for _ in range(n):
            done[name] += 1
            runner.step(done[name])
        runner.pop_losses()  # the float conversion the trainer does every log_every steps
        return n / (time.perf_counter() - start)

    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for name in runners:
        run(name, warmup)
    timed_from = contention_ms()
    reference: list[float] = []
    for _ in range(repeats):
        for name in runners:
            rates[name].append(run(name, steps))
        reference.append(reference_gflops())
    lost = contention_since(timed_from)
    result = {
        "algo": algo,
        "batch": batch,
        "hidden": list(hidden),
        "layer_norm": layer_norm,
        "threads": threads,
        "steps_per_repeat": steps,
        "warmup": warmup,
        "gradient": runners["default"].algo.gradient_path,
        "median_steps_per_s": statistics.median(rates["default"]),
        "min_steps_per_s": min(rates["default"]),
        "max_steps_per_s": max(rates["default"]),
        "repeats": rates["default"],
        "target_steps_per_s": (
            TARGET_STEPS_PER_S if (batch, tuple(hidden), layer_norm) == (256, (256, 256), False) else None
        ),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        # CPU time the hypervisor took from this VM (both vCPUs) during the timed blocks: a slow median
        # with seconds of steal says more about the host than about the trainer.
        "host_steal_ms": None if lost is None else round(lost["host_steal"]),
        # The reference product's rate after each block (same threads): see reference_gflops.
        "reference_gflops": [round(x, 1) for x in reference],
        "torch": torch.__version__,
        "host": host_info(),
    }
    if compare_autograd:
        result["autograd"] = {
            "median_steps_per_s": statistics.median(rates["autograd"]),
            "repeats": rates["autograd"],
            "speedup": statistics.median(rates["default"]) / statistics.median(rates["autograd"]),
        }
    return result


def format_result(r: dict[str, Any]) -> str:
    target = r["target_steps_per_s"]
    verdict = (
        ""
        if target is None
        else f"  target ≥ {target:.0f}: {'ok' if r['median_steps_per_s'] >= target else 'MISSED'}"
    )
    autograd = r.get("autograd")
    versus = (
        f"autograd, interleaved: median {autograd['median_steps_per_s']:.0f} steps/s; the default path is "
        f"{autograd['speedup']:.2f}× that\n"
        if autograd
        else ""
    )
    return versus + (
        f"{r['algo']} batch {r['batch']} hidden {'x'.join(map(str, r['hidden']))}"
        f"{' with LayerNorm' if r.get('layer_norm') else ''} on {r['threads']} threads: "
        f"median {r['median_steps_per_s']:.0f} steps/s (min {r['min_steps_per_s']:.0f}, max "
        f"{r['max_steps_per_s']:.0f}, {len(r['repeats'])} × {r['steps_per_repeat']} steps, {r['gradient']} "
        f"gradient){verdict}\n"
        f"load average before/after: {r['load_average_before'][0]:.2f} / {r['load_average_after'][0]:.2f} "
        f"on {r['host']['usable_cpus']} CPUs ({r['host']['cpu_model']})"
        + (
            ""
            if r["host_steal_ms"] is None
            else f"; host steal during the timed blocks {r['host_steal_ms']} ms"
        )
        + _format_reference(r["reference_gflops"], r["median_steps_per_s"])
    )


def _format_reference(rates: list[float], steps_per_s: float) -> str:
    m, k, n = REFERENCE_SHAPE
    median = statistics.median(rates)
    return (
        f"\nreference {m}×{k}·{k}×{n} float32 product after each block: median "
        f"{median:.0f} GFLOP/s (min {min(rates):.0f}, max {max(rates):.0f}), "
        f"{steps_per_s / median:.2f} steps/s per GFLOP/s; compare runs by it, the host's speed changes "
        "from minute to minute"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_speed",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Example: python -m benchmarks.train_speed --algo cql --steps 2000 --threads 1",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per timed repeat")
    parser.add_argument("--batch", type=int, default=256, help="minibatch size")
    parser.add_argument("--hidden", default="256,256", help="hidden layer widths")
    parser.add_argument(
        "--layer-norm",
        action="store_true",
        help="time the trainer's default network (LayerNorm in each hidden layer) instead of a plain MLP",
    )
    parser.add_argument("--algo", default="cql", choices=algo_names(), help="algorithm whose step is timed")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed steps first")
    parser.add_argument(
        "--compare-autograd",
        action="store_true",
        help="also time the same step with --autograd (blocks interleaved) and print the ratio",
    )
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
        dataset,
        args.algo,
        args.steps,
        args.batch,
        hidden,
        args.threads,
        args.repeats,
        args.warmup,
        args.compare_autograd,
        args.layer_norm,
    )
    print(format_result(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
