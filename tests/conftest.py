"""Suite-wide setup: pygame runs headless (set before any test imports pygame); under pytest-xdist each
worker keeps to one BLAS/OpenMP thread (set before any test imports torch or numpy)."""

import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the 2 cores: a second thread each would only oversubscribe them (a
    # BCQ test run took 194 s instead of 50 s with two 2-thread workers side by side).
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, "1")


@pytest.fixture
def learning_seed() -> int:
    """The training seed of the tests whose outcome is a training result: 0, unless
    ``tests/learning_spread.py`` sets ``NQ_LEARNING_SEED`` to measure their spread over seeds and float
    paths (those tests report their outcome with ``record_property``, which that script reads back)."""
    return int(os.environ.get("NQ_LEARNING_SEED", "0"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) a module's tests stay on one worker, so its
    module- and session-scoped fixtures (an export, a trained policy) are built once; modules that share a
    costly session fixture name one group for all of them (``pytestmark = pytest.mark.xdist_group(…)``)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))
