"""Suite-wide setup: pygame runs headless (set before any test imports pygame)."""

import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


@pytest.fixture
def learning_seed() -> int:
    """The training seed of the tests whose outcome is a training result: 0, unless
    ``tests/learning_spread.py`` sets ``NQ_LEARNING_SEED`` to measure their spread over seeds and float
    paths (those tests report their outcome with ``record_property``, which that script reads back)."""
    return int(os.environ.get("NQ_LEARNING_SEED", "0"))
