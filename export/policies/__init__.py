"""Policy sources (docs/contracts.md#policy-sources): ``KIND:PATH`` → a float torch module, its task spec and
where it came from.

``SOURCES`` maps a kind to ``"module:function"``, imported on first use (like ``backends.registry``), so
``import export.policies`` loads neither stable_baselines3 nor anything a kind needs; it is the only list
of kind names. Every loader has the signature ``load(path, env_id, trust_pickle=False, **options)`` and
returns a :class:`LoadedPolicy`; what a user passed wrongly (unknown kind, missing or foreign file, a
policy that does not fit the env) is a ``ValueError`` whose message says what to do.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from tasks import TaskSpec

SOURCES: dict[str, str] = {
    "sb3": "export.policies.sb3:load_sb3",
    "torch": "export.policies.torch_source:load_torch",
    "onnx": "export.policies.onnx_source:load_onnx",
}
"""Policy kind → ``"module:function"`` of its loader (``neuroquant:`` is the gridworld path's
``--checkpoint``, ``export.pipeline``)."""
FACTORY_KINDS = ("torch",)
"""Kinds whose PATH may instead be ``package.module:function`` (a factory building the module)."""


@dataclass
class LoadedPolicy:
    """A policy ready for export: a float network, the task it acts in, and its provenance."""

    model: nn.Module
    """Float network in eval mode: float32 ``[N, *obs_shape]`` → ``task.output`` (``[N, n]`` Q-values or
    logits, or ``[N, *action_shape]`` actions already in the env's units); any observation normalisation
    is inside it."""
    task: TaskSpec
    """The task spec (spaces read from the env, ``output`` set by the policy's family)."""
    kind: str
    """The policy source kind (a key of :data:`SOURCES`)."""
    path: str
    """The policy file as given."""
    sha256: str
    """sha256 of the policy file (recorded in the manifest's ``source``)."""
    info: dict[str, Any] = field(default_factory=dict)
    """How the network was read (algorithm, layer sizes, activation, library version, normalisation …):
    JSON values only, it goes into the manifest."""
    underivable: str | None = None
    """Why pruned, masked and distilled networks cannot be made from :attr:`model` (not an
    ``mlp_policy`` chain); None when they can."""


def kinds() -> list[str]:
    return list(SOURCES)


def parse_policy(arg: str) -> tuple[str, Path]:
    """``"sb3:runs/zoo/cartpole/model.zip"`` → ``("sb3", Path(...))``; the kind must be known and the file
    must exist (or, for a factory kind, PATH be ``package.module:function``), so a typo fails before any env
    is made or anything is written."""
    kind, sep, rest = arg.partition(":")
    if not sep or not kind or not rest:
        raise ValueError(
            f"policy {arg!r}: expected KIND:PATH with KIND one of {', '.join(SOURCES)} "
            f"(e.g. sb3:runs/zoo/cartpole/model.zip)"
        )
    if kind not in SOURCES:
        raise ValueError(f"policy {arg!r}: unknown kind {kind!r}; known kinds: {', '.join(SOURCES)}")
    path = Path(rest)
    if kind in FACTORY_KINDS and not path.exists() and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", rest):
        return kind, path  # package.module:function, imported by the loader
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"policy {arg!r}: {path} {what}")
    return kind, path


def loader(kind: str) -> Callable[..., LoadedPolicy]:
    """Import and return a kind's loader; an unknown kind lists the known ones."""
    try:
        target = SOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown policy kind {kind!r}; known kinds: {', '.join(SOURCES)}") from None
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def load_policy(arg: str, env_id: str, trust_pickle: bool = False, **options: Any) -> LoadedPolicy:
    """``--policy KIND:PATH --env ENV_ID`` → a :class:`LoadedPolicy` (options go to the kind's loader)."""
    kind, path = parse_policy(arg)
    return loader(kind)(path, env_id, trust_pickle=trust_pickle, **options)
