"""Behaviour cloning: a classifier of the dataset's actions (cross-entropy), the offline-RL baseline.

It can only be as good as the behaviour in the data — on a ``mixed`` buffer it imitates the random
episodes as faithfully as the expert ones — which is exactly what the offline RL algorithms should beat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from train.algos.base import Algo, Batch
from train.networks import NetConfig, build_network

if TYPE_CHECKING:
    from train.trainer import TrainConfig


class BC(Algo):
    description = "Behaviour cloning: cross-entropy on the dataset actions"
    components = ("BC",)

    def __init__(self, net: NetConfig, config: TrainConfig) -> None:
        super().__init__(net, config)
        self.policy = build_network(net)

    def modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bc = F.cross_entropy(self.policy(batch.obs), batch.actions)
        return bc, {"BC": bc}

    def policy_module(self) -> nn.Module:
        return self.policy

    def deployable(self, obs: torch.Tensor) -> tuple[nn.Module, dict[str, object]]:
        return self.policy, {"policy": "argmax of the behaviour-cloning logits"}
