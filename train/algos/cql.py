"""Discrete Conservative Q-Learning (Kumar et al. 2020, the CQL(H) variant for discrete actions).

Loss = Huber TD error against the Double-DQN target
     + α · E_s[logsumexp_a Q(s, a) − Q(s, a_data)]          (the conservative term)
     + bc_weight · cross-entropy(softmax Q(s, ·), a_data)     (optional behaviour cloning)

The conservative term pushes Q down on every action in proportion to its softmax weight and up on the
action the dataset took, so actions the data never shows cannot keep an optimistic value that the
greedy policy would then chase: the failure mode of plain Q-learning on a fixed dataset. The deployed
network is the Q-net itself; its argmax is the policy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.algos.base import Batch, QLearner, data_q


class CQL(QLearner):
    description = "Conservative Q-Learning: Double-DQN + α·(logsumexp Q − Q(s, a_data)) [+ BC]"
    components = ("Bellman", "Conservative", "BC")

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q = self.q(batch.obs)
        q_data = data_q(q, batch.actions)
        bellman = self.td_loss(q_data, batch)
        # Logged unscaled (the gap itself), so runs with different α stay comparable.
        conservative = (torch.logsumexp(q, dim=1) - q_data).mean()
        total = bellman + self.config.alpha * conservative
        parts = {"Bellman": bellman, "Conservative": conservative}
        if self.config.bc_weight > 0:
            bc = F.cross_entropy(q, batch.actions)
            total = total + self.config.bc_weight * bc
            parts["BC"] = bc
        return total, parts

    def policy_module(self) -> nn.Module:
        return self.q

    def deployable(self, obs: torch.Tensor) -> tuple[nn.Module, dict[str, object]]:
        return self.q, {"policy": "argmax of the CQL Q-network"}
