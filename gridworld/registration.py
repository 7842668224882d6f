"""The ``NeuroQuant/*`` Gymnasium ids, registered by ``import gridworld`` without importing gymnasium.

Why not just ``import gymnasium`` in ``gridworld/__init__.py`` (as ``import minigrid`` does): the edge
runtime imports the numpy core through this package and must never load gymnasium
(docs/contracts.md#layout-and-dependency-rules), even on a machine that has it. So registration waits for
gymnasium: done at once when it is already imported, otherwise by a one-shot import hook that registers right
after gymnasium's own ``__init__`` has run. Either way ``import gridworld`` then
``gym.make("NeuroQuant/GridWorld-v0")`` works in any import order, and where gymnasium is not installed
nothing happens. Registration names entry points as strings, so neither path imports :mod:`gridworld.env`
before ``gym.make`` needs it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from gridworld.core import MAX_STEPS

ENV_ID = "NeuroQuant/GridWorld-v0"
#: id → registration kwargs, variants like MiniGrid's.
VARIANTS: dict[str, dict[str, Any]] = {
    ENV_ID: {},
    "NeuroQuant/GridWorld-Image-v0": {"obs_mode": "image"},
    "NeuroQuant/GridWorld-Procedural-v0": {"layout": "procedural"},
}


def register_envs() -> None:
    """Register the NeuroQuant env ids with Gymnasium (imports it; idempotent)."""
    import gymnasium as gym

    for env_id, kwargs in VARIANTS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="gridworld.env:GridWorldEnv",
                max_episode_steps=MAX_STEPS,
                kwargs=kwargs,
            )


def register_when_gymnasium_loads() -> None:
    """Register now if gymnasium is imported, else as soon as it is; never import it here."""
    if sys.modules.get("gymnasium") is not None:
        register_envs()
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first ``import gymnasium`` it removes itself, lets the other finders
    locate gymnasium, and wraps the loader so that :func:`register_envs` runs after gymnasium's ``__init__``.
    A gymnasium that is missing or fails to import behaves exactly as without this hook."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "gymnasium":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps gymnasium's own loader (resources, reloads); only this first exec is wrapped.
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        self.inner.exec_module(module)
        register_envs()
