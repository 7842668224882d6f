"""The report reads the files the producers write: its copies of their schemas must not drift.

``reports`` may only read files (docs/contracts.md#layout-and-dependency-rules), so it spells the benchmark
columns and the host-only scenarios out instead of importing them from ``benchmarks``; this test, which may
import everything, keeps the copies equal to what ``python -m benchmarks`` and ``python -m edge_runtime``
really write.
"""

from __future__ import annotations

import pytest

from benchmarks.rows import COLUMNS, HOST_SCENARIOS
from edge_runtime.session import CSV_COLUMNS
from reports.load import BENCH_COLUMNS, NON_MODEL_SCENARIOS
from tests.reports.factory import HEADER, SESSION_HEADER


def test_benchmark_columns_match_the_writer() -> None:
    assert BENCH_COLUMNS == COLUMNS
    assert tuple(HEADER) == COLUMNS  # the fixtures write what the real writer writes


def test_host_only_scenarios_match_the_writer() -> None:
    assert set(NON_MODEL_SCENARIOS) == set(HOST_SCENARIOS)


def test_session_fixture_columns_match_the_session_writer() -> None:
    assert tuple(SESSION_HEADER) == CSV_COLUMNS


def test_search_columns_match_the_search_writer() -> None:
    """trials.csv and fixed.csv as ``python -m export.search`` writes them (skipped where that module is
    not there yet)."""
    writer = pytest.importorskip("export.search")
    from reports.search import FIXED_COLUMNS, TRIAL_COLUMNS

    assert TRIAL_COLUMNS == writer.TRIAL_CSV
    assert FIXED_COLUMNS == writer.FIXED_CSV
