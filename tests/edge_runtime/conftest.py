"""Shared fixtures: the artifact set of tests/backends (built once per session, reused here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends.artifact_factory import build_artifacts


@pytest.fixture(scope="session")
def manifest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_artifacts(tmp_path_factory.getbasetemp() / "nq_artifacts")
