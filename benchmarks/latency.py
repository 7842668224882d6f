"""Timing helpers of the matrix: a warmed-up call timer and percentiles that refuse thin samples.

Why a quantile is left empty below a sample size: with ``n`` samples the chance that none lies beyond the
true q-quantile is ``q**n``; below ``n = ln(0.0013) / ln(q)`` (662 for p99, 6,643 for p99.9) that chance
exceeds 0.13 % (3 σ) and the "p99" is just the maximum of too few calls. An empty cell says so; a number
would look like a measurement.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_runtime.stats import Histogram

#: Accepted chance that no sample lies beyond the quantile (1 − 0.99**662 ≈ 0.9987).
_TAIL_MISS = 0.0013
#: Calls between two checks of the stop conditions: keeps the clock reads out of the timed region.
_CHUNK = 100


def min_samples(q: float) -> int:
    """Fewest samples for which the ``q``-th percentile (0–100) is quoted: 662 for 99, 6,643 for 99.9."""
    return math.ceil(math.log(_TAIL_MISS) / math.log(q / 100.0))


def quantile_us(ns: np.ndarray | Histogram, q: float) -> float | None:
    """The ``q``-th percentile in µs of per-call times in ns (an array, or a session's
    :class:`~edge_runtime.stats.Histogram`), or None when the sample is too small to support it."""
    histogram = isinstance(ns, Histogram)
    if (ns.count if histogram else ns.size) < min_samples(q):
        return None
    return round(float(ns.percentile(q) if histogram else np.percentile(ns, q)) / 1e3, 3)


def summarize_ns(ns: np.ndarray | Histogram) -> dict[str, Any]:
    """Row fields ``iterations, lat_p50_us … lat_std_us`` of per-call times in ns (empty where too few)."""
    if isinstance(ns, Histogram):
        size, high, mean, std = ns.count, ns.max, ns.mean, ns.std
    else:
        ns = np.asarray(ns, dtype=np.int64)
        size = int(ns.size)
        high, mean, std = (ns.max(), ns.mean(), ns.std()) if size else (None, None, None)
    out: dict[str, Any] = {"iterations": size}
    for q, key in ((50, "lat_p50_us"), (90, "lat_p90_us"), (99, "lat_p99_us"), (99.9, "lat_p999_us")):
        out[key] = quantile_us(ns, q)
    if size:
        out.update(
            lat_max_us=round(float(high) / 1e3, 3),
            lat_mean_us=round(float(mean) / 1e3, 3),
            lat_std_us=round(float(std) / 1e3, 3),
        )
    return out


def time_calls(
    call: Callable[[Any], Any],
    inputs: Sequence[Any],
    *,
    min_iters: int,
    min_seconds: float,
    warmup_ms: float,
    max_seconds: float,
) -> np.ndarray:
    """Per-call wall time (ns) of ``call(x)`` over ``inputs`` cycled in order.

    First ``warmup_ms`` of untimed calls (caches, branch predictors, CPU frequency), then timed calls until
    at least ``min_iters`` calls AND ``min_seconds`` have passed — or ``max_seconds``, whichever is first,
    so a slow backend ends with fewer calls (and empty tail percentiles) instead of a cell timeout.
    """
    if not inputs:
        raise ValueError("time_calls needs at least one input")
    clock = time.perf_counter_ns
    n = len(inputs)
    k = 0
    warm_end = clock() + int(warmup_ms * 1e6)
    while clock() < warm_end:
        call(inputs[k])
        k = k + 1 if k + 1 < n else 0
    times = array("q")
    append = times.append
    start = clock()
    min_end, max_end = start + int(min_seconds * 1e9), start + int(max_seconds * 1e9)
    while True:
        missing = min_iters - len(times)
        for _ in range(min(_CHUNK, missing) if missing > 0 else _CHUNK):
            x = inputs[k]
            k = k + 1 if k + 1 < n else 0
            t0 = clock()
            call(x)
            append(clock() - t0)
        now = clock()
        if (len(times) >= min_iters and now >= min_end) or now >= max_end:
            return np.frombuffer(times, dtype=np.int64).copy()
