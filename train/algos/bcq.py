"""Discrete Batch-Constrained Q-learning (Fujimoto, Conti, Ghavamzadeh & Pineau 2019, "BCQ for
discrete actions").

Two networks: a Q-net and an imitation head ``G(a|s)`` (a behaviour-cloning classifier). An action is
*allowed* in ``s`` when ``G(a|s) / max_a' G(a'|s) > τ`` (τ = ``bcq_threshold``, 0.3), i.e. when the data
makes it reasonably likely relative to the most likely action. Both the policy and the Bellman target
take the argmax over allowed actions only, so the Q-net is never asked to extrapolate to actions the
data does not support. Loss = Huber TD (Double-DQN target with the constrained argmax)
+ cross-entropy of G + 0.01·mean(logits²) (the paper's logit regulariser).

**What is deployed.** The constrained policy ``argmax_{a allowed} Q(s, a)`` needs both networks and a
softmax ratio test; no single plain ``MLPNet`` computes it exactly (its output is continuous in the input,
the mask is not). Exporting the Q-net alone would deploy the *unconstrained* argmax, a different policy
from the one evaluated. So :meth:`BCQ.deployable` distils the constrained policy into one network of the
same architecture: it starts from the Q-net's weights and regresses onto the *masked* Q-values (allowed
actions keep ``Q(s, a)`` but at least a small gap below the chosen one, masked ones get
``min_allowed Q(s, ·) − margin``) over the distinct training
observations, until its argmax agrees with the constrained policy on all of them (or a step budget runs
out). The checkpoint's info records that agreement, and the trainer evaluates the deployed network
itself, so the figures of ``best.safetensors`` are those of the file, not of the two-network policy.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from train.algos.base import Batch, QLearner, data_q
from train.networks import NetConfig, build_network

if TYPE_CHECKING:
    from train.trainer import TrainConfig

#: Weight of the logit regulariser on G, as in the paper's reference implementation.
LOGIT_PENALTY = 1e-2
#: Masked actions are distilled to this far below the lowest allowed Q-value.
DISTILL_MARGIN = 1.0
#: ... and the non-chosen allowed actions at least this far below the chosen one.
DISTILL_GAP = 0.05
DISTILL_MAX_STEPS = 2000
DISTILL_CHECK_EVERY = 50
DISTILL_BATCH = 4096


def allowed_actions(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """BCQ's mask ``G(a|s) / max_a' G(a'|s) > τ``, computed in log space; the most likely action always
    passes (its ratio is 1 > τ), so every row allows at least one action."""
    log_g = F.log_softmax(logits, dim=1)
    return (log_g - log_g.max(dim=1, keepdim=True).values) > torch.log(torch.tensor(threshold))


class ConstrainedQ(nn.Module):
    """``Q(s, ·)`` with the disallowed actions at −inf: its argmax is BCQ's policy (evaluation only)."""

    def __init__(self, q: nn.Module, imitation: nn.Module, threshold: float) -> None:
        super().__init__()
        self.q = q
        self.imitation = imitation
        self.threshold = threshold

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        allowed = allowed_actions(self.imitation(obs), self.threshold)
        return self.q(obs).masked_fill(~allowed, float("-inf"))


class BCQ(QLearner):
    description = "Discrete BCQ: Q-learning restricted to actions with G(a|s)/max G > τ"
    components = ("Bellman", "Imitation")

    def __init__(self, net: NetConfig, config: TrainConfig) -> None:
        super().__init__(net, config)
        self.imitation = build_network(net)
        self._policy = ConstrainedQ(self.q, self.imitation, config.bcq_threshold)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "imitation": self.imitation}

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q = self.q(batch.obs)
        with torch.no_grad():
            allowed_next = allowed_actions(self.imitation(batch.next_obs), self.config.bcq_threshold)
        bellman = self.td_loss(data_q(q, batch.actions), batch, allowed_next)
        logits = self.imitation(batch.obs)
        imitation = F.cross_entropy(logits, batch.actions) + LOGIT_PENALTY * logits.pow(2).mean()
        return bellman + imitation, {"Bellman": bellman, "Imitation": imitation}

    def policy_module(self) -> nn.Module:
        return self._policy

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self._policy(obs)

    def deployable(self, obs: torch.Tensor) -> tuple[nn.Module, dict[str, object]]:
        """Distil the constrained policy into one plain network (see the module docstring)."""
        states = torch.unique(obs, dim=0)
        with torch.no_grad():
            masked = self._policy(states)
            allowed = torch.isfinite(masked)
            want = masked.argmax(dim=1)
            best = masked.gather(1, want.unsqueeze(1))
            lowest_allowed = torch.where(allowed, masked, float("inf")).min(dim=1, keepdim=True).values
            # Allowed actions keep their Q-value but sit at least DISTILL_GAP below the chosen one, so an
            # exact fit cannot flip a near-tie; masked actions go below every allowed one.
            target = torch.where(
                allowed, masked.clamp(max=best - DISTILL_GAP), lowest_allowed - DISTILL_MARGIN
            )
            target.scatter_(1, want.unsqueeze(1), best)
        student = copy.deepcopy(self.q).requires_grad_(True)
        student.train()
        opt = torch.optim.Adam(student.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(self.config.seed)
        agreement, steps = 0.0, 0
        for steps in range(DISTILL_MAX_STEPS + 1):
            if steps % DISTILL_CHECK_EVERY == 0:
                with torch.no_grad():
                    agreement = float((student(states).argmax(dim=1) == want).float().mean())
                if agreement == 1.0 or steps == DISTILL_MAX_STEPS:
                    break
            # Full batch over the distinct states when they are few (the gridworld has ≤ 400).
            idx = (
                torch.randint(len(states), (DISTILL_BATCH,), generator=gen)
                if len(states) > DISTILL_BATCH
                else slice(None)
            )
            loss = F.mse_loss(student(states[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        student.eval().requires_grad_(False)
        notes: dict[str, object] = {
            "policy": "plain network distilled from BCQ's constrained policy (Q-net masked by G)",
            "distill_states": len(states),
            "distill_steps": steps,
            "distill_agreement": agreement,
            "bcq_threshold": self.config.bcq_threshold,
        }
        return student, notes
