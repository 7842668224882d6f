"""One report built from the fixture results, shared by the tests that only read its outputs."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from reports.build import main
from tests.reports.factory import make_results


@dataclass
class Built:
    results: Path
    out: Path
    stdout: str


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("reports")
    results = make_results(root / "results")
    out = root / "out"
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        assert main(["--results", str(results), "--out", str(out), "--sessions", "2"]) == 0
    return Built(results, out, stdout.getvalue())
