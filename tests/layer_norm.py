"""Test helper: LayerNorm networks whose norms are off their init (scale 1, shift 0), so code that ignored a
norm's scale or shift would change the outputs and fail the test that uses them."""

from __future__ import annotations

import torch

from train.networks import MLPNet, NetConfig, build_network


def perturb_layer_norms(net: torch.nn.Module, seed: int = 0) -> int:
    """Draw every LayerNorm's scale from U(0.5, 1.5) and shift from U(-0.5, 0.5); returns how many."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(torch.empty_like(m.weight).uniform_(0.5, 1.5, generator=gen))
            m.bias.copy_(torch.empty_like(m.bias).uniform_(-0.5, 0.5, generator=gen))
    return len(norms)


def layer_norm_mlp(hidden: tuple[int, ...] = (32, 16), seed: int = 0) -> MLPNet:
    """A vector-observation MLP with a perturbed LayerNorm in each hidden layer, in eval mode."""
    torch.manual_seed(seed)
    net = build_network(NetConfig(obs_dim=6, hidden=hidden, layer_norm=True))
    assert perturb_layer_norms(net, seed) == len(hidden)
    return net.eval()
