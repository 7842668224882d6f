"""The interface every offline algorithm implements, and the Double-DQN machinery three of them share.

The trainer loop (:mod:`train.trainer`) only sees :class:`Algo`: it asks for the trainable parameters,
calls :meth:`Algo.loss` on a minibatch, steps one Adam over all of them, then :meth:`Algo.after_step`.
Losses of separate networks (a critic and an actor, a Q-net and an imitation head) are simply summed:
their parameter sets are disjoint, so one Adam over the sum is the same as one Adam per network.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from train.networks import NetConfig, build_network

if TYPE_CHECKING:
    from train.trainer import TrainConfig


#: A detached loss value: a 0-dim tensor (autograd) or a float (a hand-written gradient).
Loss = torch.Tensor | float


class Batch(NamedTuple):
    """A minibatch of transitions as tensors (views of the sampler's gathered rows, see the trainer)."""

    obs: torch.Tensor
    """``[B, obs_dim]`` float32."""
    actions: torch.Tensor
    """``[B]`` int64: the dataset (behaviour) actions."""
    rewards: torch.Tensor
    """``[B]`` float32."""
    next_obs: torch.Tensor
    """``[B, obs_dim]`` float32."""
    not_done: torch.Tensor
    """``[B]`` float32: 0 where the episode *terminated* (no bootstrap), 1 otherwise — a timeout is not a
    terminal state, so its target still bootstraps from the next observation."""
    index: torch.Tensor
    """``[B]`` int64: the rows of the training set these transitions are (lets an algorithm cache per-row
    values, e.g. target-network outputs)."""
    obs_and_next: torch.Tensor | None = None
    """``[2B, obs_dim]``: ``obs`` stacked on ``next_obs`` (whose views they are), when the sampler has it —
    one forward pass covers both (CQL's hand-written step)."""


class Algo(ABC):
    """One offline algorithm: its networks, its loss, and the policy it defines.

    Subclasses set :attr:`description` (one line for ``--help`` and the checkpoint info) and implement
    :meth:`modules`, :meth:`loss`, :meth:`policy_module` and :meth:`deployable`.
    """

    description: ClassVar[str] = ""
    #: Loss components the algorithm reports (``Loss/<name>`` in the logs), besides ``Loss/Total``.
    components: ClassVar[tuple[str, ...]] = ()

    def __init__(self, net: NetConfig, config: TrainConfig) -> None:
        self.net_config = net
        self.config = config

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Every network the algorithm holds (target networks included), by a stable name."""

    def frozen(self) -> set[str]:
        """Names in :meth:`modules` that are not trained by gradient (target networks)."""
        return set()

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates."""
        frozen = self.frozen()
        return [p for name, m in self.modules().items() if name not in frozen for p in m.parameters()]

    @abstractmethod
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss to minimise, its components by name) for one minibatch."""

    def grad_step(self, batch: Batch) -> tuple[Loss, dict[str, Loss]]:
        """:meth:`loss` on ``batch`` and its gradient left in every trainable parameter's ``.grad``
        (the trainer has cleared them); returns the detached loss and its components.

        Autograd by default (the losses are then 0-dim tensors); an algorithm may override it with a
        hand-written gradient (CQL does for MLPs, returning floats) and then says so in
        :attr:`hand_written_gradient`.
        """
        loss, parts = self.loss(batch)
        loss.backward()
        return loss.detach(), {name: value.detach() for name, value in parts.items()}

    @property
    def hand_written_gradient(self) -> bool:
        """Whether :meth:`grad_step` bypasses autograd for this instance's networks."""
        return False

    @property
    def gradient_path(self) -> str:
        """How :meth:`grad_step` computes the gradient, in words (benchmarks print it)."""
        return "hand-written" if self.hand_written_gradient else "autograd"

    def after_step(self, step: int) -> None:  # noqa: B027 (optional hook)
        """Called after each optimizer step with the 1-based step count (target-network updates)."""

    @abstractmethod
    def policy_module(self) -> nn.Module:
        """A module whose argmax over its ``[N, n_actions]`` output is the algorithm's greedy policy.

        Used for evaluation; it need not be exportable (BCQ's is a Q-net masked by its imitation head).
        """

    def q_values(self, obs: torch.Tensor) -> torch.Tensor | None:
        """``Q(s, ·)`` as the algorithm estimates it, or ``None`` when it has no critic (BC)."""
        return None

    @abstractmethod
    def deployable(self, obs: torch.Tensor) -> tuple[nn.Module, dict[str, object]]:
        """A plain ``MLPNet``/``CNNNet`` whose argmax is the policy, plus notes for the checkpoint info.

        ``obs`` are the training observations, for algorithms whose policy has to be distilled into a
        single network first (BCQ).
        """

    def bind(self, next_obs: torch.Tensor) -> None:  # noqa: B027 (optional hook)
        """Receive every training next-observation (row ``i`` is ``Batch.index == i``) before training."""

    def sync_targets(self) -> None:  # noqa: B027 (optional hook)
        """Make target networks equal to their online networks (after the trainer re-initialises them)."""

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """A detached copy of every network's weights (for keeping the best snapshot in memory)."""
        return {
            name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in self.modules().items()
        }

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, m in self.modules().items():
            m.load_state_dict(state[name])


def double_dqn_target(
    online: nn.Module,
    target_next_q: torch.Tensor,
    batch: Batch,
    gamma: float,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """``r + γ·(1−terminal)·Q_target(s', argmax_a' Q_online(s', a'))`` (van Hasselt et al. 2016).

    The online network picks the next action and the target network's values ``target_next_q``
    (``[B, n_actions]`` at ``batch.next_obs``) score it, which removes most of the max operator's
    overestimation. ``allowed`` (``[B, n_actions]`` bool) restricts the argmax — BCQ's constraint; every row
    must allow at least one action.
    """
    with torch.no_grad():
        return bootstrap_target(online(batch.next_obs), target_next_q, batch, gamma, allowed)


def bootstrap_target(
    q_next: torch.Tensor,
    target_next_q: torch.Tensor,
    batch: Batch,
    gamma: float,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`double_dqn_target` given the online values ``q_next`` at ``batch.next_obs`` already."""
    if allowed is not None:
        q_next = q_next.masked_fill(~allowed, float("-inf"))
    a_next = q_next.argmax(dim=1, keepdim=True)
    next_value = target_next_q.gather(1, a_next).squeeze(1)
    return torch.addcmul(batch.rewards, batch.not_done, next_value, value=gamma)


class QLearner(Algo):
    """Shared parts of the Q-learning algorithms: an online Q-net, its target copy, the Huber TD loss.

    The target network follows the online one either by a hard copy every ``target_update`` steps or,
    when ``tau > 0``, by Polyak averaging after every step. With hard copies the target network is frozen
    between syncs, so its values on the whole training set are computed once per sync and looked up by
    row index — the same numbers as evaluating it on every minibatch, for a fraction of the cost whenever
    the training set has fewer distinct next observations than ``target_update × batch_size`` (it is never
    used when it would cost more). Each distinct next observation is evaluated once: ``Q_target(s')``
    depends on ``s'`` alone, and a gridworld's buffer repeats its states (the default one has 308 distinct
    next observations in 3,696 transitions, which cut a refresh from 8.0 to 0.5 ms here).
    """

    def __init__(self, net: NetConfig, config: TrainConfig) -> None:
        super().__init__(net, config)
        self.q = build_network(net)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self._next_obs: torch.Tensor | None = None
        """The distinct training next observations, when the target values are cached (see the class)."""
        self._next_rows: torch.Tensor | None = None
        """For each training row, its next observation's row in :attr:`_next_obs`."""
        self._target_cache: torch.Tensor | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"q": self.q, "q_target": self.q_target}

    def frozen(self) -> set[str]:
        return {"q_target"}

    def bind(self, next_obs: torch.Tensor) -> None:
        self._next_obs = self._next_rows = self._target_cache = None
        if self.config.tau > 0:  # Polyak: the target network changes every step
            return
        distinct, rows = torch.unique(next_obs, dim=0, return_inverse=True)
        if len(distinct) <= self.config.target_update * self.config.batch_size:
            self._next_obs, self._next_rows = distinct, rows

    def sync_targets(self) -> None:
        self.q_target.load_state_dict(self.q.state_dict())
        self._target_cache = None

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        super().load_state_dict(state)
        self._target_cache = None

    def target_next_q(self, batch: Batch) -> torch.Tensor:
        """``Q_target(s', ·)`` for the batch, from the per-sync cache when there is one."""
        if self._next_obs is None:
            with torch.no_grad():
                return self.q_target(batch.next_obs)
        table, rows = self.target_table(batch)
        return table.index_select(0, rows)

    def target_table(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(table, rows)`` with ``table[rows]`` = ``Q_target(s', ·)`` for the batch: the per-sync cache
        and the batch's row indices, or (without a cache) the target network on ``batch.next_obs`` and
        ``0 … B−1``."""
        with torch.no_grad():
            if self._next_obs is None:
                return self.q_target(batch.next_obs), torch.arange(len(batch.next_obs))
            if self._target_cache is None:
                distinct = torch.cat([self.q_target(chunk) for chunk in self._next_obs.split(4096)])
                self._target_cache = distinct.index_select(0, self._next_rows)
            return self._target_cache, batch.index

    def td_loss(
        self, q_data: torch.Tensor, batch: Batch, allowed_next: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Huber loss between ``Q(s, a_data)`` and the Double-DQN target."""
        y = double_dqn_target(self.q, self.target_next_q(batch), batch, self.config.gamma, allowed_next)
        return F.smooth_l1_loss(q_data, y)

    def after_step(self, step: int) -> None:
        tau = self.config.tau
        if tau > 0:
            with torch.no_grad():
                for p_target, p in zip(self.q_target.parameters(), self.q.parameters(), strict=True):
                    p_target.lerp_(p, tau)
        elif step % self.config.target_update == 0:
            self.sync_targets()

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs)


def data_q(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``Q(s, a_data)`` from ``Q(s, ·)``: ``[B, A]``, ``[B]`` → ``[B]``."""
    return q.gather(1, actions.unsqueeze(1)).squeeze(1)
