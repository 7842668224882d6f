"""Forward and backward of an :class:`~train.networks.MLPNet` written out by hand, as torch calls.

CQL takes this path where :mod:`train.fused_cql` (the same step as one compiled call through torch's MKL)
is not available: torch builds without MKL, such as arm64 and macOS.

Why it exists: on two CPU cores one CQL step with autograd spends more time around the matrix products
than in them (graph nodes, a second forward for the Double-DQN argmax, a dozen small loss-head ops and
their backward nodes). Written out, a step is one stacked forward for ``[obs; next_obs]`` (one matrix
product per layer instead of two), the loss gradient ``∂L/∂Q`` in closed form (one compiled loop, see
:mod:`train.loss_head`), and one matrix product per weight and per hidden input on the way back.
``python -m benchmarks.train_speed --compare-autograd`` times both paths in interleaved blocks
(``python -m train --autograd`` trains with autograd).

Nothing here is approximate: it computes the same numbers autograd does, up to float summation order,
and ``tests/train/test_mlp_grad.py`` compares the two on real minibatches.
"""

from __future__ import annotations

import torch
from torch import nn

from train.networks import MLPNet


def mlp_layers(net: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a plain ``MLPNet`` (Linear → ReLU … → Linear), or ``None`` for anything else."""
    if type(net) is not MLPNet:
        return None
    body = list(net.body)
    linears = body[0::2]
    shape_ok = all(isinstance(m, nn.Linear) for m in linears) and all(
        isinstance(m, nn.ReLU) for m in body[1::2]
    )
    return [*linears, net.out] if shape_ok and len(body) == 2 * len(linears) else None


def forward(layers: list[nn.Linear], x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's input and the output: ``[x, relu(h1), …, q]`` (the ReLUs applied in place)."""
    acts = [x]
    last = len(layers) - 1
    with torch.no_grad():
        for i, layer in enumerate(layers):
            h = torch.addmm(layer.bias, acts[-1], layer.weight.t())
            acts.append(h.clamp_min_(0.0) if i < last else h)
    return acts


def backward(layers: list[nn.Linear], acts: list[torch.Tensor], grad_out: torch.Tensor) -> None:
    """Set every ``weight.grad``/``bias.grad`` to the gradient of a loss whose ``∂L/∂q`` is ``grad_out``.

    ``grad_out`` covers the first ``len(grad_out)`` rows of the forward batch; the remaining rows (the
    stacked next observations, used without gradient) take no part. Gradients are assigned, not
    accumulated, like a backward after ``zero_grad(set_to_none=True)``.
    """
    rows = len(grad_out)
    g = grad_out
    with torch.no_grad():
        for i in range(len(layers) - 1, -1, -1):
            layer, inp = layers[i], acts[i][:rows]
            layer.weight.grad = g.t().mm(inp)
            layer.bias.grad = g.sum(dim=0)
            if i > 0:
                # ReLU'(h) = 1 where its output is positive: acts[i] holds that output.
                g = torch.ops.aten.threshold_backward(g.mm(layer.weight), inp, 0.0)
