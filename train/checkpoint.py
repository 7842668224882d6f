"""Checkpoints as single self-describing safetensors files: weights plus the network config in the header.

No pickle anywhere: the config travels as JSON in the safetensors metadata, so a checkpoint from an
untrusted source can be loaded safely, and a pruned (re-shaped) network rebuilds from its own file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from common.fileio import atomic_write, file_sha256
from train.networks import NetConfig, build_network

FORMAT = "neuroquant-checkpoint/1"

__all__ = ["CheckpointError", "file_sha256", "load_checkpoint", "read_checkpoint", "save_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the fix."""


def save_checkpoint(
    path: str | Path, model: nn.Module, config: NetConfig, info: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights and ``config`` (+ free ``info``) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "network": json.dumps(config.to_dict()), "info": json.dumps(info or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_checkpoint(path: str | Path) -> tuple[NetConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read (config, state_dict, info) without building the network."""
    path = Path(path)
    fix = "point --checkpoint at a .safetensors file written by `python -m train` or re-train"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err}); {fix}") from err
    if meta.get("format") != FORMAT or "network" not in meta:
        raise CheckpointError(f"{path}: safetensors file without a NeuroQuant network config; {fix}")
    try:
        network, info = json.loads(meta["network"]), json.loads(meta.get("info", "{}"))
        if not isinstance(network, dict) or not isinstance(info, dict):
            raise TypeError("network and info must be JSON objects")
        config = NetConfig.from_dict(network)
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt network config in the header ({err}); {fix}") from err
    return config, tensors, info


def load_checkpoint(path: str | Path) -> tuple[nn.Module, NetConfig, dict[str, Any]]:
    """Rebuild the network from its config and load its weights (shapes must match exactly)."""
    config, tensors, info = read_checkpoint(path)
    model = build_network(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not match the stored config {config.hidden} ({err})"
        ) from err
    model.eval()
    return model, config, info
