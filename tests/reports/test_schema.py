"""The report reads the files the producers write: its copies of their schemas must not drift.

``reports`` may only read files (DESIGN.md §1), so it spells the benchmark columns and the host-only
scenarios out instead of importing them from ``benchmarks``; this test, which may import everything, keeps
the copies equal to what ``python -m benchmarks`` and ``python -m edge_runtime`` really write.
"""

from __future__ import annotations

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
