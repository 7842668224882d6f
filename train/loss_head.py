"""CQL's loss head as one compiled loop: Double-DQN target, Huber TD error, conservative gap and ∂L/∂Q.

Why it exists: the head works on ``[B, n_actions]`` arrays (256 × 3 at the benchmark's batch size). Written
as torch ops it is about twenty of them (argmax, gather, log_softmax, clamp, dot, scatter_add, …), and on
two CPU cores each of those costs 10–30 µs inside a training step whatever its size: ~360 µs of a ~2.3 ms
step on the 256×256 net, more than the Adam update. The same arithmetic as one numba-compiled loop over
the rows takes ~25 µs a call, numba's argument dispatch included. The loop checks its indices (an
out-of-range action or row raises ``IndexError`` rather than reading or writing past an array), which
costs ~3 µs. :mod:`train.fused_cql` calls it from its compiled step; :mod:`train.mlp_grad` leaves the
matrix products to torch around it.

The definition it computes is :meth:`train.algos.cql.CQL.loss` (autograd); ``tests/train/test_mlp_grad.py``
compares the two. With ``q = Q(s, ·)``, ``y = r + γ·not_done·Q_target(s', argmax_a Q(s', a))``,
``δ = q[a_data] − y``, its Huber slope ``g = clamp(δ, −1, 1)``, ``w = α + bc_weight`` and
``p = softmax(q)``:

- Bellman (Huber) loss: ``mean g·(δ − g/2)``;
- conservative gap: ``mean logsumexp(q) − q[a_data]`` (also the BC cross-entropy, hence one ``w``);
- ``∂L/∂q = (w·p + onehot(a_data)·(g − w)) / B``.

numba compiles the loop on first use (about a second) and caches the machine code next to this file.
"""

from __future__ import annotations

import math

import numba
import torch


@numba.njit(cache=True, nogil=True, boundscheck=True)
def _head(q_all, actions, rewards, not_done, table, table_rows, gamma, w, grad_q):
    n, n_actions = grad_q.shape
    bellman = 0.0
    gap = 0.0
    for i in range(n):
        # Double DQN: the online network picks the next action, the target network's table scores it.
        q_next = q_all[n + i]
        best = 0
        for a in range(1, n_actions):
            if q_next[a] > q_next[best]:
                best = a
        y = rewards[i] + gamma * not_done[i] * table[table_rows[i], best]
        q = q_all[i]
        top = q[0]
        for a in range(1, n_actions):
            top = max(top, q[a])
        total = 0.0
        for a in range(n_actions):
            e = math.exp(q[a] - top)
            grad_q[i, a] = e
            total += e
        a_data = actions[i]
        gap += top + math.log(total) - q[a_data]
        delta = q[a_data] - y
        slope = min(max(delta, -1.0), 1.0)
        bellman += slope * (delta - 0.5 * slope)
        scale = w / (n * total)
        for a in range(n_actions):
            grad_q[i, a] *= scale
        grad_q[i, a_data] += (slope - w) / n
    return bellman / n, gap / n


def cql_head(
    q_all: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    not_done: torch.Tensor,
    table: torch.Tensor,
    table_rows: torch.Tensor,
    gamma: float,
    w: float,
) -> tuple[torch.Tensor, float, float]:
    """(∂L/∂Q ``[B, A]``, Bellman loss, conservative gap) for one minibatch.

    ``q_all`` is the online network's output on ``[obs; next_obs]`` (``[2B, A]``); the target network's
    values at the next observations are ``table[table_rows]`` (its per-sync cache and the batch's row
    indices, or a ``[B, A]`` evaluation and ``0 … B−1``). ``w`` is α + bc_weight.
    """
    n = len(actions)
    if q_all.shape[0] != 2 * n or table_rows.shape != (n,):
        raise ValueError(f"expected {2 * n} stacked Q rows and {n} table rows for {n} actions")
    grad_q = torch.empty(n, q_all.shape[1], dtype=torch.float32)
    bellman, gap = _head(
        q_all.numpy(),
        actions.numpy(),
        rewards.numpy(),
        not_done.numpy(),
        table.numpy(),
        table_rows.numpy(),
        float(gamma),
        float(w),
        grad_q.numpy(),
    )
    return grad_q, float(bellman), float(gap)
