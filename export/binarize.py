"""The binary variant: 1-bit weights learnt by quantization-aware training, recorded for what it is.

Every Conv2d and Linear between the first layer and ``.out`` gets XNOR-Net's scaled sign as its weight
(Rastegari et al., 2016): ``α · sign(w)`` with one ``α = mean |w|`` per output channel, so a layer stores one
bit per weight and one float per channel. The first and the output layer stay float, as in XNOR-Net and
the binary networks after it: they hold few of the weights and most of the accuracy. Training is the
pruning's distillation loop (``export.prune.fit_to_teacher``) towards the float policy on the calibration
states, with the sign's gradient passed straight through to the latent float weights (the straight-through
estimator), which keep learning until the end; the sign is then folded into plain float32 weights.

What this variant is not: faster. No runtime here (onnxruntime, OpenVINO, TensorRT on CPU or GPU) runs
1-bit kernels, so the graph stores ``±α`` as float32 and its latency and file size are the float graph's.
Its ``info`` records what a bit-packed store would take (``packed_bytes``) beside the float one.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from export.prune import Objective, budget_for, fit_to_teacher, torch_threads

#: Adam's learning rate for the latent weights: high enough that weights near zero change sign, annealed
#: as in pruning's fine-tuning (the latent weights of these policies are ~0.01–0.1).
LR = 1e-3

RUNTIME_NOTE = (
    "no runtime here executes 1-bit kernels: the graph holds the ±α weights as float32, so its size and "
    "latency are the float graph's; packed_bytes is what 1 bit a weight plus a float32 α a channel would take"
)


class _StraightThroughSign(torch.autograd.Function):
    """``α · sign(w)`` forward (exactly: the folded weights hold two values a channel), identity backward."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor) -> torch.Tensor:
        alpha = weight.abs().mean(dim=tuple(range(1, weight.ndim)), keepdim=True)
        return torch.where(weight >= 0, alpha, -alpha)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class ScaledSign(nn.Module):
    """A weight parametrization: ``α · sign(w)`` per output channel in the forward pass, the identity's
    gradient in the backward pass (straight-through)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _StraightThroughSign.apply(weight)


def binary_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers the binary variant binarizes: every Conv2d and Linear but the first and ``.out``."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    out = getattr(model, "out", None)
    return {name: m for name, m in layers[1:] if m is not out}


def binarize(
    model: nn.Module, inputs: torch.Tensor, objective: Objective, steps: int | None = None, seed: int = 0
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` with :func:`binary_layers` trained to 1-bit weights towards ``model``'s outputs
    on ``inputs`` (as the model takes them); ``steps`` defaults to the inputs' fine-tuning budget
    (``export.prune.budget_for``). Returns the folded model (plain float32 weights of two values per
    channel) in eval mode and an info dict."""
    started = time.perf_counter()
    if not binary_layers(model):
        raise ValueError(
            f"{type(model).__name__} has no layer between its first and its output layer to binarize "
            "(those two stay float)"
        )
    budget = budget_for(inputs)
    steps = budget.steps if steps is None else steps
    with torch_threads(budget.threads), torch.inference_mode(False), torch.enable_grad():
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        student = copy.deepcopy(model)
        with torch.no_grad():
            target = teacher(inputs)
        layers = binary_layers(student)
        for layer in layers.values():
            parametrize.register_parametrization(layer, "weight", ScaledSign())
        generator = torch.Generator().manual_seed(seed)
        fit_to_teacher(
            student, inputs, target, steps, LR, objective, generator, keep_best=True, batch=budget.batch
        )
        for layer in layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    student.eval()
    binary = sum(layer.weight.numel() for layer in layers.values())
    channels = sum(layer.weight.shape[0] for layer in layers.values())
    total = sum(p.numel() for p in student.parameters())
    info = {
        "method": "XNOR-Net scaled sign per output channel, straight-through QAT by distillation",
        "binary_layers": list(layers),
        "binary_weights": binary,
        "binary_share": binary / total,
        "float_bytes": 4 * total,
        "packed_bytes": math.ceil(binary / 8) + 4 * channels + 4 * (total - binary),
        "finetune_steps": steps,
        "finetune_batch": min(budget.batch, len(inputs)),
        "finetune_loss": objective.describe,
        "runtime": RUNTIME_NOTE,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return student, info
