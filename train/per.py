"""Replay buffers for online DQN: uniform, and prioritized (Schaul et al. 2016, proportional variant).

Both buffers store transitions in preallocated numpy arrays (a ring of ``capacity`` rows) and hand out
:class:`Batch` objects with the same fields, so the DQN loop does not branch on the buffer type: the
uniform buffer returns weights of 1 and ignores priority updates.

The prioritized buffer keeps priorities ``p_i = (|δ_i| + ε)^α`` in an array-based binary tree whose
leaves are the priorities and whose inner nodes hold the sum (for sampling) and the minimum (for the
importance-weight normaliser) of their subtree. Leaves live at ``[P, 2P)`` for ``P`` the next power of two
≥ capacity, so every leaf has the same depth and a whole batch descends the tree together, one numpy
operation per level: sampling and updates are O(B log n) with no Python loop over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """A sampled minibatch; ``indices`` identify the rows for :meth:`ReplayBuffer.update_priorities`."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    weights: np.ndarray
    """Importance-sampling weights (float32, max 1); all ones for the uniform buffer."""
    indices: np.ndarray


class SumTree:
    """Priorities with O(log n) point updates, prefix-sum search, running total and minimum.

    ``_sum[1]`` is the total and ``_min[1]`` the smallest stored priority. Unused leaves hold 0 in the
    sum tree (never sampled) and +inf in the min tree (never the minimum).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self._leaves = 1 << max(0, (capacity - 1).bit_length())
        self._depth = self._leaves.bit_length() - 1
        self._sum = np.zeros(2 * self._leaves, dtype=np.float64)
        self._min = np.full(2 * self._leaves, np.inf, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self._sum[1])

    @property
    def min(self) -> float:
        return float(self._min[1])

    def __getitem__(self, indices: np.ndarray | int) -> np.ndarray:
        return self._sum[np.asarray(indices) + self._leaves]

    def update(self, indices: np.ndarray | int, priorities: np.ndarray | float) -> None:
        """Set leaf priorities and refresh their ancestors bottom-up (sums are recomputed from children,
        not patched with deltas, so no floating-point drift accumulates over millions of updates)."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        pri = np.broadcast_to(np.asarray(priorities, dtype=np.float64), idx.shape)
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= self.capacity:
            raise IndexError(f"priority index out of range 0..{self.capacity - 1}")
        if not np.isfinite(pri).all() or (pri < 0).any():
            raise ValueError("priorities must be finite and ≥ 0")
        node = idx + self._leaves
        # With duplicate indices numpy keeps the last write; every parent is then recomputed from the
        # final children, so the tree stays consistent.
        self._sum[node] = pri
        self._min[node] = pri
        for _ in range(self._depth):
            node = node >> 1
            left, right = 2 * node, 2 * node + 1
            self._sum[node] = self._sum[left] + self._sum[right]
            self._min[node] = np.minimum(self._min[left], self._min[right])

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index for each cumulative mass in ``[0, total)``: the leaf i with
        ``sum(p[:i]) <= mass < sum(p[:i+1])``, descending all queries one level at a time.

        A query only moves right into a subtree with positive mass, so rounding at the top never lands
        on an empty (zero-priority or unused) leaf.
        """
        mass = np.array(mass, dtype=np.float64, copy=True)
        node = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_sum = self._sum[left]
            go_right = (mass >= left_sum) & (self._sum[left + 1] > 0)
            mass = np.where(go_right, mass - left_sum, np.minimum(mass, left_sum))
            node = left + go_right
        return node - self._leaves


class ReplayBuffer:
    """Uniform experience replay over a ring of ``capacity`` transitions."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.float32,
        seed: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self.observations = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_observations = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminals = np.zeros(capacity, dtype=np.float32)
        self.rng = np.random.default_rng(seed)
        self._pos = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminals: np.ndarray,
    ) -> np.ndarray:
        """Append a batch of transitions (one per vector sub-env); returns the rows they were written to.

        ``terminals`` marks true terminations only: a time-limit truncation must still bootstrap.
        """
        n = len(actions)
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions to a buffer of capacity {self.capacity}")
        rows = (self._pos + np.arange(n)) % self.capacity
        self.observations[rows] = obs
        self.actions[rows] = actions
        self.rewards[rows] = rewards
        self.next_observations[rows] = next_obs
        self.terminals[rows] = terminals
        self._pos = (self._pos + n) % self.capacity
        self._size = min(self._size + n, self.capacity)
        self._on_add(rows)
        return rows

    def _on_add(self, rows: np.ndarray) -> None:
        """Hook for subclasses that track per-row state (priorities)."""

    def _gather(self, indices: np.ndarray, weights: np.ndarray) -> Batch:
        return Batch(
            observations=self.observations[indices],
            actions=self.actions[indices],
            rewards=self.rewards[indices],
            next_observations=self.next_observations[indices],
            terminals=self.terminals[indices],
            weights=weights,
            indices=indices,
        )

    def _check_sample(self, batch_size: int) -> None:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """``batch_size`` rows drawn uniformly with replacement; ``beta`` is accepted and ignored."""
        self._check_sample(batch_size)
        indices = self.rng.integers(0, self._size, size=batch_size)
        return self._gather(indices, np.ones(batch_size, dtype=np.float32))

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """No-op: uniform replay has no priorities (kept so the training loop needs no branch)."""


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay.

    ``P(i) = p_i / Σ_k p_k`` with ``p_i = (|δ_i| + eps)^alpha``; new transitions get the largest priority
    seen so far, so each is replayed at least once soon after it arrives. Importance weights
    ``w_i = (N·P(i))^(−β) / max_j w_j`` correct the bias of non-uniform sampling; the maximum weight over
    the whole buffer belongs to the smallest priority, ``max_j w_j = (N·p_min/Σp)^(−β)``, so weights lie in
    (0, 1] and do not depend on what else happens to be in the batch.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.float32,
        alpha: float = 0.6,
        eps: float = 1e-3,
        seed: int | None = None,
    ) -> None:
        super().__init__(capacity, obs_shape, obs_dtype, seed)
        if alpha < 0:
            raise ValueError(f"alpha must be ≥ 0, got {alpha}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 so no transition starves, got {eps}")
        self.alpha = alpha
        self.eps = eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0
        """Largest priority ever stored, already raised to ``alpha``; given to new transitions."""

    def _on_add(self, rows: np.ndarray) -> None:
        self.tree.update(rows, self.max_priority)

    def sample(self, batch_size: int, beta: float = 0.4) -> Batch:
        """Stratified sampling: the total mass is cut into ``batch_size`` equal segments and one point is
        drawn uniformly in each, which covers the distribution more evenly than independent draws."""
        self._check_sample(batch_size)
        if beta < 0:
            raise ValueError(f"beta must be ≥ 0, got {beta}")
        total = self.tree.total
        segment = total / batch_size
        mass = (np.arange(batch_size) + self.rng.random(batch_size)) * segment
        indices = self.tree.find(np.minimum(mass, np.nextafter(total, 0.0)))
        probs = self.tree[indices] / total
        weights = (self._size * probs) ** (-beta)
        max_weight = (self._size * self.tree.min / total) ** (-beta)
        return self._gather(indices, (weights / max_weight).astype(np.float32))

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set ``p_i = (|δ_i| + eps)^alpha`` for the sampled rows after a gradient step."""
        priorities = (np.abs(np.asarray(td_errors, dtype=np.float64)) + self.eps) ** self.alpha
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))


class LinearSchedule:
    """A value moved linearly from ``start`` to ``end`` over ``duration`` steps, then held (β annealing:
    importance correction matters most near convergence, so β reaches 1 at the end of training)."""

    def __init__(self, start: float, end: float, duration: int) -> None:
        if duration < 1:
            raise ValueError(f"duration must be ≥ 1, got {duration}")
        self.start, self.end, self.duration = start, end, duration

    def __call__(self, step: int) -> float:
        frac = min(max(step, 0) / self.duration, 1.0)
        return self.start + frac * (self.end - self.start)


def make_buffer(
    prioritized: bool,
    capacity: int,
    obs_shape: tuple[int, ...],
    obs_dtype: np.dtype | type = np.float32,
    alpha: float = 0.6,
    eps: float = 1e-3,
    seed: int | None = None,
) -> ReplayBuffer:
    """The one place that picks the buffer class from the ``--per`` switch."""
    if prioritized:
        return PrioritizedReplayBuffer(capacity, obs_shape, obs_dtype, alpha=alpha, eps=eps, seed=seed)
    return ReplayBuffer(capacity, obs_shape, obs_dtype, seed=seed)
