"""Registry of the offline algorithms: name → ``"module:Class"``, imported on first use.

This mapping is the only list of algorithm names: the trainer, the CLI's ``--algo`` choices and the
error for an unknown name all read it (docs/contracts.md#code-conventions). Adding an algorithm is one module
implementing :class:`train.algos.base.Algo` plus one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from train.algos.base import Algo

ALGOS: dict[str, str] = {
    "cql": "train.algos.cql:CQL",
    "bcq": "train.algos.bcq:BCQ",
    "td3bc": "train.algos.td3bc:TD3BC",
    "bc": "train.algos.bc:BC",
}


def algo_names() -> tuple[str, ...]:
    return tuple(ALGOS)


def get_algo(name: str) -> type[Algo]:
    """The class registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        target = ALGOS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; use one of {', '.join(ALGOS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
