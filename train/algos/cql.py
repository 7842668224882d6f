"""Discrete Conservative Q-Learning (Kumar et al. 2020, the CQL(H) variant for discrete actions).

Loss = Huber TD error against the Double-DQN target
     + α · E_s[logsumexp_a Q(s, a) − Q(s, a_data)]          (the conservative term)
     + bc_weight · cross-entropy(softmax Q(s, ·), a_data)     (optional behaviour cloning)

The conservative term pushes Q down on every action in proportion to its softmax weight and up on the
action the dataset took, so actions the data never shows cannot keep an optimistic value that the
greedy policy would then chase: the failure mode of plain Q-learning on a fixed dataset. The deployed
network is the Q-net itself; its argmax is the policy.

For an MLP the trainer takes :meth:`CQL.grad_step`, the same loss with its gradient written out
(:mod:`train.mlp_grad`); :meth:`CQL.loss` is the autograd definition it is tested against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from train import fused_cql, mlp_grad
from train.algos.base import Batch, Loss, QLearner, data_q
from train.loss_head import cql_head
from train.networks import NetConfig

if TYPE_CHECKING:
    from train.trainer import TrainConfig


class CQL(QLearner):
    description = "Conservative Q-Learning: Double-DQN + α·(logsumexp Q − Q(s, a_data)) [+ BC]"
    components = ("Bellman", "Conservative", "BC")

    def __init__(self, net: NetConfig, config: TrainConfig) -> None:
        super().__init__(net, config)
        # Hand-written gradients: the fused step (plain or LayerNorm MLP, where torch has MKL), else the
        # torch-call path (plain MLP only), else autograd.
        parts = None if config.autograd else fused_cql.mlp_parts(self.q)
        fused = parts is not None and fused_cql.available()
        self._fused = fused_cql.FusedCQLStep(*parts) if fused else None
        self._layers = None if config.autograd or fused else mlp_grad.mlp_layers(self.q)

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

    @property
    def hand_written_gradient(self) -> bool:
        return self._fused is not None or self._layers is not None

    @property
    def gradient_path(self) -> str:
        return "hand-written, fused" if self._fused is not None else super().gradient_path

    def grad_step(self, batch: Batch) -> tuple[Loss, dict[str, Loss]]:
        """:meth:`loss` and its gradient without autograd, for an MLP Q-net (autograd otherwise).

        One forward pass over ``[obs; next_obs]``, the loss head and ``∂L/∂Q`` in closed form
        (:mod:`train.loss_head`, which has the formulas), then the backward pass through the layers:
        all in one compiled call where torch has MKL (:mod:`train.fused_cql`), else as torch calls
        (:mod:`train.mlp_grad`). The losses come back as floats.
        """
        if self._fused is None and self._layers is None:
            return super().grad_step(batch)
        stacked = batch.obs_and_next
        if stacked is None:
            stacked = torch.cat([batch.obs, batch.next_obs])
        table, table_rows = self.target_table(batch)
        w = self.config.alpha + self.config.bc_weight
        head = (batch.actions, batch.rewards, batch.not_done, table, table_rows, self.config.gamma, w)
        if self._fused is not None:  # one compiled call (train/fused_cql.py)
            bellman, gap = self._fused(stacked, *head)
        else:
            acts = mlp_grad.forward(self._layers, stacked)
            grad_q, bellman, gap = cql_head(acts[-1], *head)
            mlp_grad.backward(self._layers, acts, grad_q)
        parts = {"Bellman": bellman, "Conservative": gap}
        if self.config.bc_weight > 0:
            parts["BC"] = gap  # the BC cross-entropy equals the conservative gap
        return bellman + w * gap, parts

    def policy_module(self) -> nn.Module:
        return self.q

    def deployable(self, obs: torch.Tensor) -> tuple[nn.Module, dict[str, object]]:
        return self.q, {"policy": "argmax of the CQL Q-network"}
