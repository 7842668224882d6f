"""TD3+BC (Fujimoto & Gu 2021) **adapted to discrete actions** — not the original continuous algorithm.

The original trains a deterministic actor to maximise ``λ·Q(s, π(s)) − (π(s) − a_data)²`` with
``λ = α / mean|Q|``. With three discrete actions there is no deterministic action to differentiate
through, so this adaptation uses:

- a softmax actor ``π(·|s)`` (an ``MLPNet``/``CNNNet`` producing logits) with loss
  ``−λ · E_{a∼π}[Q(s, a)] − log π(a_data|s)``, where the expectation is the exact sum over actions,
  ``Q`` is detached (the actor does not move the critic) and ``λ = α / mean_s|E_π Q(s, ·)|`` is
  detached too, so the RL term and the BC term keep a fixed ratio whatever the scale of Q;
- a critic trained with Double-DQN targets (online argmax, target network value) instead of TD3's
  clipped double-Q with target-policy smoothing, which exist for continuous actions;
- no policy delay: the actor is updated on every step, since the critic is a cheap single network here.

The policy is the actor's argmax, and the actor is the deployed network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from train.algos.base import Batch, QLearner, data_q
from train.networks import NetConfig, build_network

if TYPE_CHECKING:
    from train.trainer import TrainConfig


class TD3BC(QLearner):
    description = "TD3+BC for discrete actions: softmax actor −λ·E_π[Q] − log π(a_data|s), Double-DQN critic"
    components = ("Bellman", "Actor", "BC")

    def __init__(self, net: NetConfig, config: TrainConfig) -> None:
        super().__init__(net, config)
        self.actor = build_network(net)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "actor": self.actor}

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q = self.q(batch.obs)
        bellman = self.td_loss(data_q(q, batch.actions), batch)
        logits = self.actor(batch.obs)
        log_pi = F.log_softmax(logits, dim=1)
        q_pi = (log_pi.exp() * q.detach()).sum(dim=1)
        lam = self.config.td3bc_alpha / q_pi.detach().abs().mean().clamp_min(1e-6)
        actor = -(lam * q_pi).mean()
        bc = F.nll_loss(log_pi, batch.actions)
        return bellman + actor + bc, {"Bellman": bellman, "Actor": actor, "BC": bc}

    def policy_module(self) -> nn.Module:
        return self.actor

    def deployable(self, obs: torch.Tensor) -> tuple[nn.Module, dict[str, object]]:
        return self.actor, {"policy": "argmax of the TD3+BC softmax actor"}
