"""``torch:policy.pt`` (TorchScript) or ``torch:my_pkg.module:factory`` + ``--weights state.safetensors``.

A PyTorch policy from anywhere (CleanRL, RSL-RL, one's own code) as a float module mapping float32
``[N, *obs_shape]`` to the task's output: Q-values or logits ``[N, n]`` for a discrete action (argmax), or
the action itself ``[N, *shape]`` in the env's units for a box one (docs/contracts.md#policy-sources). Nothing
is unpickled:

- a TorchScript file is read by ``torch.jit.load``, whose code runs in TorchScript's interpreter (torch
  ops only, no Python objects rebuilt);
- a factory is the user's own Python (they named it on the command line), called without arguments to
  build the module, whose weights then come from a safetensors file, strictly (every key, every shape).

When the module is a plain chain — ``Linear``, activation, …, ``Linear``, optionally a final ``Tanh`` —
of one activation kind (ReLU, Tanh, ELU, SiLU, GELU, LeakyReLU), it is rebuilt as an
``export.policies.modules.mlp_policy`` (checked to compute the same outputs), which pruning and
distillation know how to shrink. Any other module exports as it is, and its pruned, masked and distilled
variants are recorded ``skipped`` with that reason.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import tasks
from common.fileio import file_sha256
from export.policies import LoadedPolicy
from export.policies.modules import mlp_policy

KIND = "torch"
FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""``package.module:function``: a factory, as opposed to a file path."""
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ReLU": nn.ReLU,
    "Tanh": nn.Tanh,
    "ELU": nn.ELU,
    "SiLU": nn.SiLU,
    "GELU": nn.GELU,
    "LeakyReLU": nn.LeakyReLU,
}
"""Activations a chain may use to be rebuilt as an ``mlp_policy`` (default arguments only)."""
REBUILD_TOLERANCE = 1e-5
"""Largest |Δoutput| (relative to max(1, |output|)) between the module and its rebuilt chain."""


def is_factory(spec: str) -> bool:
    return bool(FACTORY.match(spec)) and not Path(spec).exists()


def load_torch(
    path: Path, env_id: str, trust_pickle: bool = False, weights: Path | None = None, **_: Any
) -> LoadedPolicy:
    """A TorchScript file, or a factory (``path`` is then ``module:function``) plus ``weights``."""
    spec = str(path)
    if is_factory(spec):
        if weights is None:
            raise ValueError(
                f"policy torch:{spec} builds the module; its weights come from --weights STATE.safetensors "
                f"(save them with safetensors.torch.save_file(model.state_dict(), ...))"
            )
        module, source = _from_factory(spec, weights), weights
    else:
        if weights is not None:
            raise ValueError(f"--weights {weights} applies to torch:module:factory policies, not to a file")
        module, source = _from_torchscript(path), path
    task = tasks.from_env(env_id)
    if task.observation.dtype != "float32":
        raise ValueError(
            f"{env_id}: {task.observation.dtype} observations; torch: policies take float32 vectors"
        )
    _check_fits(module, task, env_id, spec)
    chain, why = as_chain(module)
    info: dict[str, Any] = {
        "format": "torchscript" if not is_factory(spec) else "factory + safetensors",
        "module": _kind(module),
        "rebuilt_as_mlp": chain is not None,
    }
    if why:
        info["not_derivable"] = why
    model = (chain if chain is not None else module).eval()
    return LoadedPolicy(model, task, KIND, spec, file_sha256(source), info, underivable=why)


def _from_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"policy torch:{path}: not a TorchScript file ({str(err).split('. ')[0]}); save one with "
            f"torch.jit.save(torch.jit.script(model), path), or pass torch:package.module:factory --weights"
        ) from None


def _from_factory(spec: str, weights: Path) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    module_name, _, function = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"policy torch:{spec}: cannot import {function} from {module_name}: {err}") from None
    model = factory()
    if not isinstance(model, nn.Module):
        got = type(model).__name__
        raise ValueError(f"policy torch:{spec}: {function}() returned {got}, not an nn.Module")
    if not weights.is_file():
        raise ValueError(f"--weights {weights} does not exist")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"--weights {weights}: not a safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise ValueError(f"--weights {weights} do not fit {spec}(): {detail}") from None
    return model.eval()


def _check_fits(module: nn.Module, task: tasks.TaskSpec, env_id: str, spec: str) -> None:
    """One forward pass on two zero observations: the output must have the task's shape."""
    expected = tasks.actions.expected_output_shape(task)
    obs = torch.zeros(2, *task.observation.shape)
    try:
        with torch.inference_mode():
            out = module(obs)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(
            f"policy torch:{spec} does not take {env_id}'s observations "
            f"[N, {', '.join(map(str, task.observation.shape))}]: {str(err).strip().splitlines()[-1]}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != tuple(expected) or out.shape[0] != 2:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        what = f"{task.action.n} action values" if task.action.kind == "discrete" else "an action"
        raise ValueError(
            f"policy torch:{spec} returns {got} for 2 observations; {env_id} needs [2, "
            f"{', '.join(map(str, expected))}] ({what} per observation)"
        )


def _kind(module: nn.Module) -> str:
    return module.original_name if isinstance(module, torch.jit.ScriptModule) else type(module).__name__


def as_chain(module: nn.Module) -> tuple[nn.Sequential | None, str | None]:
    """(the module rebuilt as an ``mlp_policy``, None) if it is a plain Linear/activation chain, else
    (None, why not)."""
    if _kind(module) != "Sequential":
        kind = _kind(module)
        return None, f"pruning and distillation need an nn.Sequential of Linear/activation layers, not {kind}"
    children = list(module.children())
    kinds = [_kind(c) for c in children]
    squash = len(kinds) >= 2 and kinds[-1] == "Tanh" and kinds[-2] == "Linear"
    body = children[:-1] if squash else children
    body_kinds = kinds[:-1] if squash else kinds
    linears = body[0::2]
    acts = set(body_kinds[1::2])
    if (
        not body
        or len(body) % 2 == 0
        or any(k != "Linear" for k in body_kinds[0::2])
        or not acts <= set(ACTIVATIONS)
        or len(acts) > 1
    ):
        return None, f"pruning and distillation need Linear, activation, …, Linear (one activation): {kinds}"
    activation = ACTIVATIONS[acts.pop()] if acts else nn.ReLU
    layers = [(m.weight.detach(), None if m.bias is None else m.bias.detach()) for m in linears]
    after = [("squash", nn.Tanh())] if squash else []
    chain = mlp_policy(layers, activation, after=after)
    probe = np.random.default_rng(0).normal(size=(64, layers[0][0].shape[1])).astype(np.float32)
    with torch.inference_mode():
        ours, theirs = chain(torch.from_numpy(probe)), module(torch.from_numpy(probe))
    if ours.shape != theirs.shape or float((ours - theirs).abs().max()) > REBUILD_TOLERANCE * max(
        1.0, float(theirs.abs().max())
    ):
        return None, "the module's layers do not compute its output as a plain chain (a custom forward?)"
    return chain, None
