"""Q-networks / policy heads for the gridworld, rebuilt from a JSON-able :class:`NetConfig`.

Every network takes a float32 batch ``[N, obs_dim]`` (image observations are flattened 3×3 windows) and
returns ``[N, n_actions]`` Q-values or logits, which is also the ONNX contract
(docs/contracts.md#the-manifest). Hidden sizes live in the config, so a pruned (re-shaped) network rebuilds
from its own config.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

KINDS = ("mlp", "cnn")


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a policy network."""

    kind: str = "mlp"
    """``mlp`` for vector observations, ``cnn`` for the 3×3 egocentric image."""
    obs_dim: int = 6
    """Length of the flat float32 input (6 for ``vector``, 9 for ``image``)."""
    n_actions: int = 3
    """Number of discrete actions (outputs)."""
    hidden: tuple[int, ...] = (256, 256)
    """Width of each hidden layer (after the convolution for ``cnn``)."""
    channels: int = 16
    """Convolution channels (``cnn`` only)."""
    layer_norm: bool = False
    """A ``LayerNorm`` (with its scale and shift) between each hidden ``Linear`` and its ReLU: it bounds
    the features the output layer sees, so Q-values cannot grow without limit where the data has no
    say (see ``train.trainer.TrainConfig.layer_norm``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes carried with the weights (e.g. how a pruned net was made)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown network kind {self.kind!r}; use one of {KINDS}")
        if self.kind == "cnn" and self.obs_dim != 9:
            raise ValueError(f"the cnn expects a flattened 3×3 image (obs_dim 9), got {self.obs_dim}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _mlp(in_dim: int, hidden: tuple[int, ...], layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), *([nn.LayerNorm(width)] if layer_norm else []), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class MLPNet(nn.Module):
    """``obs → [Linear (→ LayerNorm) → ReLU] × len(hidden) → out``; ``out`` is kept whole when pruning."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.body = _mlp(config.obs_dim, config.hidden, config.layer_norm)
        self.out = nn.Linear(config.hidden[-1], config.n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(obs))


class CNNNet(nn.Module):
    """A 3×3 conv over the egocentric window, then an MLP head."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        side = math.isqrt(config.obs_dim)
        self.side = side
        self.conv = nn.Sequential(nn.Conv2d(1, config.channels, kernel_size=3, padding=1), nn.ReLU())
        self.body = _mlp(config.channels * side * side, config.hidden, config.layer_norm)
        self.out = nn.Linear(config.hidden[-1], config.n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.conv(obs.reshape(-1, 1, self.side, self.side))
        return self.out(self.body(x.flatten(1)))


class ScaleImage(nn.Module):
    """uint8 pixels → float32, divided by 255 when ``normalize`` (SB3's ``preprocess_obs`` for images: the
    same ``float() / 255.0``, so the graph's outputs equal ``predict``'s on the same machine). The first
    layer of an image policy, loaded (``export.policies``) or trained here (``train.dqn_task``)."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.to(torch.float32)
        return obs / 255.0 if self.normalize else obs

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"


def build_network(config: NetConfig) -> nn.Module:
    return MLPNet(config) if config.kind == "mlp" else CNNNet(config)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def anchor_first_layer(
    net: nn.Module, obs: torch.Tensor | np.ndarray, scale: float, generator: torch.Generator
) -> None:
    """Steepen an MLP's first layer and make every unit's ReLU kink pass through a training observation.

    With PyTorch's default init the first-layer hyperplanes are shallow and mostly miss the data, so the
    network starts out smooth over the grid; grid positions are only 1/9 apart and the Q-function jumps at
    walls, and fitting it took many thousand steps. Multiplying the weights by ``scale`` and setting
    ``b_j = −w_j·o_j`` for a random training observation ``o_j`` gives sharp features placed where the data
    is (like random ReLU features), which cut the steps needed to fit Q* several-fold in our runs.
    Networks whose first layer is not a ``Linear`` (the CNN) are left alone.
    """
    first = next(iter(net.body)) if hasattr(net, "body") and isinstance(net.body, nn.Sequential) else None
    if scale <= 0 or not isinstance(first, nn.Linear) or first.in_features != obs.shape[1]:
        return
    obs = torch.as_tensor(np.ascontiguousarray(obs, dtype=np.float32)) if isinstance(obs, np.ndarray) else obs
    with torch.no_grad():
        anchors = obs[torch.randint(len(obs), (first.out_features,), generator=generator)]
        first.weight.mul_(scale)
        first.bias.copy_(-(first.weight * anchors).sum(dim=1))
