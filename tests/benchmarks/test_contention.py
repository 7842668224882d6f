"""The contention counters the benchmarks print read real /proc values."""

from __future__ import annotations

import sys
import time

import pytest

from benchmarks.contention import contention_ms, contention_since


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat and schedstat are Linux's")
def test_contention_counters_are_cumulative_milliseconds() -> None:
    first = contention_ms()
    assert first is not None and set(first) == {"host_steal", "run_queue_wait"}
    time.sleep(0.05)
    second = contention_ms()
    assert second is not None
    for key in first:
        assert 0.0 <= first[key] <= second[key]
    # Since boot, not since the call: a process that has run this far has waited for a CPU at least once.
    assert second["run_queue_wait"] > 0
    since = contention_since(second)
    assert since is not None and all(0.0 <= v < second[k] for k, v in since.items())
    assert contention_since(None) is None
