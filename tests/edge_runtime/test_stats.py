"""Timing statistics in fixed memory: numpy's percentiles to 0.05 %, exact count, mean, min and max."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.latency import summarize_ns
from edge_runtime.stats import Histogram


def _latencies(n: int, seed: int = 0) -> np.ndarray:
    """Inference-like times: ~4 µs with a long tail, and a few stalls of milliseconds."""
    rng = np.random.default_rng(seed)
    ns = np.round(rng.lognormal(np.log(4_000), 0.3, n)).astype(np.int64)
    ns[rng.choice(n, size=n // 1000, replace=False)] = rng.integers(1_000_000, 5_000_000, n // 1000)
    return ns


@pytest.mark.parametrize(
    "values", [_latencies(100_000), np.arange(0, 5_000), np.array([7]), np.array([3, 9])]
)
def test_percentiles_are_numpys_to_the_bucket_width(values: np.ndarray) -> None:
    histogram = Histogram()
    for block in np.array_split(values, 7):  # a block at a time, as the frame log is read
        histogram.add(block)
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert histogram.percentile(q) == pytest.approx(np.percentile(values, q), rel=5e-4, abs=1e-9)
    assert histogram.count == len(values) and histogram.min == values.min() and histogram.max == values.max()
    assert histogram.mean == pytest.approx(values.mean(), rel=1e-12)
    assert histogram.std == pytest.approx(values.std(), rel=1e-9, abs=1e-9)


def test_memory_does_not_grow_with_the_values() -> None:
    histogram = Histogram()
    size = histogram.counts.nbytes
    for seed in range(20):
        histogram.add(_latencies(50_000, seed))
    assert histogram.counts.nbytes == size <= 256 * 1024 and histogram.count == 1_000_000


def test_an_empty_histogram_has_no_figures() -> None:
    histogram = Histogram()
    histogram.add(np.empty(0, np.int64))
    assert histogram.count == 0 and histogram.percentile(50) is None and histogram.mean is None


def test_a_benchmark_row_from_a_histogram_matches_the_row_from_the_values() -> None:
    values = _latencies(20_000)
    histogram = Histogram()
    histogram.add(values)
    exact, binned = summarize_ns(values), summarize_ns(histogram)
    assert exact.keys() == binned.keys() and binned["iterations"] == 20_000
    for key in ("lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_p999_us", "lat_mean_us", "lat_std_us"):
        assert binned[key] == pytest.approx(exact[key], rel=5e-4, abs=1e-3), key
    assert binned["lat_max_us"] == exact["lat_max_us"]
