"""The pieces a loaded policy is built from: an MLP with what surrounds it in the original library baked in.

A foreign policy is more than its layers: observation normalisation before them (SB3's VecNormalize),
and after them a squash, an unscaling from [−1, 1] to the env's bounds, or a clip that the library applies
outside the network in ``predict``. All of it goes inside the exported graph
(docs/contracts.md#policy-sources), so the device runs one model and only clips; each piece is a module with
its constants as buffers (graph constants in ONNX) and ops every runtime has (Sub/Div/Clip, Mul/Add, Min/Max).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from train.networks import ScaleImage  # noqa: F401 (re-exported: the policy pieces are all here)


class ObsNormalize(nn.Module):
    """``clip((obs − mean) / std, −clip, clip)`` with fixed statistics (SB3 ``VecNormalize.normalize_obs``).

    ``std`` is ``sqrt(var + eps)`` computed in float64 when built, as SB3 computes it, then stored float32.
    """

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float, clip: float) -> None:
        super().__init__()
        mean64 = np.asarray(mean, dtype=np.float64)
        std64 = np.sqrt(np.asarray(var, dtype=np.float64) + float(epsilon))
        self.register_buffer("mean", torch.from_numpy(mean64.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std64.astype(np.float32)))
        self.clip = float(clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp((obs - self.mean) / self.std, -self.clip, self.clip)

    def extra_repr(self) -> str:
        return f"shape={list(self.mean.shape)}, clip={self.clip}"


class Unscale(nn.Module):
    """[−1, 1] → [low, high], in the operation order of SB3's ``unscale_action`` (float32), so the graph's
    action equals ``predict``'s to the last bit on the same machine."""

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        low32 = np.asarray(low, dtype=np.float32)
        high32 = np.asarray(high, dtype=np.float32)
        self.register_buffer("low", torch.from_numpy(low32))
        self.register_buffer("span", torch.from_numpy(high32 - low32))

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        return self.low + 0.5 * (scaled + 1.0) * self.span


class ClipToBounds(nn.Module):
    """Per-dimension clip to [low, high] as Max then Min (ONNX ``Clip`` takes scalar bounds only)."""

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("low", torch.from_numpy(np.asarray(low, dtype=np.float32)))
        self.register_buffer("high", torch.from_numpy(np.asarray(high, dtype=np.float32)))

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(action, self.low), self.high)


class ChannelsFirst(nn.Module):
    """``[N, H, W, C]`` → ``[N, C, H, W]``: what SB3's VecTransposeImage does to channel-last images."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.permute(0, 3, 1, 2)


def nature_cnn(
    convs: Sequence[tuple[torch.Tensor, torch.Tensor, int]], linear: tuple[torch.Tensor, torch.Tensor | None]
) -> list[tuple[str, nn.Module]]:
    """NatureCNN's layers as named children (``conv0``, ``cact0`` …, ``flatten``, ``feat``, ``feat_act``),
    to go ``before`` an :func:`mlp_policy` head; the tensors are copied."""
    children: list[tuple[str, nn.Module]] = []
    for i, (weight, bias, stride) in enumerate(convs):
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[-2:]), stride=stride)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        children += [(f"conv{i}", conv), (f"cact{i}", nn.ReLU())]
    weight, bias = linear
    feat = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        feat.weight.copy_(weight)
        if bias is not None:
            feat.bias.copy_(bias)
    return [*children, ("flatten", nn.Flatten(1)), ("feat", feat), ("feat_act", nn.ReLU())]


def mlp_policy(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    activation: Callable[[], nn.Module],
    before: Sequence[tuple[str, nn.Module]] = (),
    after: Sequence[tuple[str, nn.Module]] = (),
) -> nn.Sequential:
    """A float ``nn.Sequential``: ``before`` → Linear, activation, … → last Linear (``out``) → ``after``.

    One flat Sequential with named children (``fc0``, ``act0`` …, ``out``), because that is what pruning
    and distillation expect of a policy (``model.out`` is the layer to keep) and what exports as a plain
    Gemm chain. ``layers`` are (weight ``[out, in]``, bias or None) in order; they are copied.
    """
    if not layers:
        raise ValueError("an MLP policy needs at least one Linear layer")
    children: list[tuple[str, nn.Module]] = list(before)
    last = len(layers) - 1
    for i, (weight, bias) in enumerate(layers):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        if i < last:
            children += [(f"fc{i}", linear), (f"act{i}", activation())]
        else:
            children.append(("out", linear))
    children += list(after)
    model = nn.Sequential(OrderedDict(children))
    return model.eval()


def mlp_like(model: nn.Sequential, widths: Sequence[int], seed: int = 0) -> nn.Sequential:
    """A freshly initialised :func:`mlp_policy` of ``model``'s family with hidden widths ``widths``.

    Same input and output widths, same activation, and copies of what surrounds the layers (observation
    normalisation before, squash/unscale/clip after), so a student distilled into it exports and runs like
    its teacher. ``model`` must be an ``mlp_policy`` (``fc0``, ``act0`` …, ``out``); ``widths`` has one entry
    per hidden layer. Initialisation is seeded (torch's default Linear init under ``manual_seed(seed)``).
    """
    names = [name for name, _ in model.named_children()]
    hidden = [name for name in names if name.startswith("fc")]
    if "out" not in names or len(hidden) != len(widths) or not all(w >= 1 for w in widths):
        raise ValueError(
            f"mlp_like needs an mlp_policy with one width per hidden layer: layers {names}, widths {widths}"
        )
    first, last = names.index(hidden[0] if hidden else "out"), names.index("out")
    before = [(n, copy.deepcopy(m)) for n, m in list(model.named_children())[:first]]
    after = [(n, copy.deepcopy(m)) for n, m in list(model.named_children())[last + 1 :]]
    activation = model.get_submodule("act0") if hidden else None
    sizes = [model.get_submodule(hidden[0] if hidden else "out").in_features, *widths, model.out.out_features]
    return mlp_policy(fresh_layers(sizes, seed), lambda: copy.deepcopy(activation), before, after)


def scaled_like(model: nn.Sequential, example: torch.Tensor, factor: float, seed: int = 0) -> nn.Sequential:
    """A freshly initialised copy of ``model``'s layer chain with every hidden width scaled by ``factor``.

    Each Conv2d keeps its kernel and stride and gets ``floor(channels · factor)`` channels (at least 1),
    each Linear but ``out`` ``floor(features · factor)`` outputs; the inputs follow from the layer before
    (the first Linear after a Flatten from the new channels, found by running ``example`` through), and
    ``out`` keeps the action width. Parameter-free children (image scaling, activations, Flatten, squash)
    are copied. A CNN student for distillation; init is torch's default under ``manual_seed(seed)``.
    """
    if not isinstance(getattr(model, "out", None), nn.Linear):
        raise ValueError(f"scaled_like needs a Sequential with an `.out` Linear, got {type(model).__name__}")
    children: list[tuple[str, nn.Module]] = []
    x = example
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name, child in model.named_children():
            if isinstance(child, nn.Conv2d):
                width = max(1, math.floor(child.out_channels * factor))
                new: nn.Module = nn.Conv2d(
                    x.shape[1],
                    width,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    bias=child.bias is not None,
                )
            elif isinstance(child, nn.Linear):
                width = (
                    child.out_features if name == "out" else max(1, math.floor(child.out_features * factor))
                )
                new = nn.Linear(x.shape[-1], width, bias=child.bias is not None)
            elif any(True for _ in child.parameters()):
                raise ValueError(f"scaled_like cannot scale layer {name!r} ({type(child).__name__})")
            else:
                new = copy.deepcopy(child)
            children.append((name, new))
            x = new(x)
    return nn.Sequential(OrderedDict(children)).eval()


def fresh_layers(sizes: Sequence[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of Linear layers ``sizes[i] → sizes[i+1]`` in nn.Linear's default init (Kaiming-
    uniform weights, U(−1/√in, 1/√in) biases), drawn from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for n_in, n_out in itertools.pairwise(sizes):
        weight = torch.empty(n_out, n_in)
        nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)
        bias = (torch.rand(n_out, generator=generator) * 2 - 1) / n_in**0.5
        layers.append((weight, bias))
    return layers
