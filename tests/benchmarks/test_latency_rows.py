"""The timing helpers and the result-file writer on their own: thin-sample rule, stop rules, no overwrite."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.cell import HOST_MEASURES, MODEL_MEASURES
from benchmarks.latency import min_samples, summarize_ns, time_calls
from benchmarks.rows import COLUMNS, HOST_SCENARIOS, MODEL_SCENARIOS, write_pair


def test_p99_needs_662_samples_and_p999_6643() -> None:
    assert min_samples(99) == 662 and min_samples(99.9) == 6643
    ns = np.arange(1, 662, dtype=np.int64) * 1000  # 661 calls of 1 … 661 µs
    few = summarize_ns(ns)
    assert few["lat_p99_us"] is None and few["lat_p999_us"] is None
    assert few["lat_p50_us"] == 331.0 and few["lat_max_us"] == 661.0 and few["iterations"] == 661
    enough = summarize_ns(np.append(ns, 662_000))
    assert enough["lat_p99_us"] is not None and enough["lat_p999_us"] is None
    assert enough["lat_p50_us"] <= enough["lat_p90_us"] <= enough["lat_p99_us"] <= enough["lat_max_us"]


def test_time_calls_needs_both_the_count_and_the_time() -> None:
    calls: list[int] = []
    t0 = time.perf_counter()
    ns = time_calls(calls.append, [1, 2, 3], min_iters=50, min_seconds=0.05, warmup_ms=0, max_seconds=5)
    assert time.perf_counter() - t0 >= 0.05 and ns.size >= 50 and ns.size == len(calls)
    assert calls[:4] == [1, 2, 3, 1]  # the inputs are cycled in order
    exact = time_calls(lambda x: None, [0], min_iters=7, min_seconds=0, warmup_ms=0, max_seconds=5)
    assert exact.size == 7


def test_time_calls_stops_at_max_seconds_with_fewer_calls() -> None:
    ns = time_calls(
        lambda x: time.sleep(0.001), [0], min_iters=10**6, min_seconds=0, warmup_ms=0, max_seconds=0.05
    )
    assert 0 < ns.size < 10**6 and summarize_ns(ns)["lat_p99_us"] is None


def test_write_pair_never_replaces_a_pair(tmp_path: Path) -> None:
    started = datetime(2026, 11, 22, 1, 2, 3, tzinfo=timezone.utc)
    row = {"run_id": "a", "scenario": "latency", "status": "ok", "lat_p50_us": 1.5, "lat_p99_us": None}
    first = write_pair(tmp_path, "x86", "my.host", started, [row], {"schema": 1})
    second = write_pair(tmp_path, "x86", "my.host", started, [{**row, "run_id": "b"}], {"schema": 1})
    assert first[0].name == "bench_x86_my_host_20261122T010203Z.csv"
    assert second[0].name == "bench_x86_my_host_20261122T010204Z.csv"  # the next free second
    with open(first[0], newline="") as f:
        (read,) = list(csv.DictReader(f))
    assert tuple(read) == COLUMNS and read["run_id"] == "a"
    assert read["lat_p50_us"] == "1.5" and read["lat_p99_us"] == "" and read["load_ms"] == ""
    assert json.loads(second[1].read_text()) == {"schema": 1, "csv": second[0].name}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (*first, *second))


def test_every_scenario_has_a_measurement() -> None:
    assert tuple(MODEL_MEASURES) == MODEL_SCENARIOS and tuple(HOST_MEASURES) == HOST_SCENARIOS
