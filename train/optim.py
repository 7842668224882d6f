"""Adam for the trainer's inner loop: torch's fused CPU kernel, called without ``torch.optim``'s bookkeeping.

``torch.optim.Adam(fused=True)`` already updates every parameter in one kernel, but each ``step()`` first
walks its parameter groups, hooks, state dictionaries and dtype checks in Python: about 220 µs per call
here against 100 µs for the kernel itself on the 256×256 CQL net (two cores), which is several percent of
a training step. :class:`LeanAdam` holds the same state (``exp_avg``, ``exp_avg_sq`` and a step count per
parameter) and calls the same kernel, ``torch._fused_adam_``, so it computes what ``torch.optim.Adam
(fused=True)`` computes, bit for bit (``tests/train/test_optim.py`` checks it, also with a learning rate
that changes and a parameter that gets no gradient on some steps). It supports what the trainer uses:
a learning rate you may change between steps, no weight decay, no AMSGrad.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class LeanAdam:
    """Adam over ``params`` with ``torch._fused_adam_``; parameters whose ``.grad`` is ``None`` are skipped
    (their state and step count stay put, as in ``torch.optim.Adam``)."""

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in self.params):
            raise ValueError("LeanAdam takes float32 CPU parameters")
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # Per-parameter step counts as views of one tensor: the usual step (every parameter has a
        # gradient) increments them all with one small op.
        self._step_counts = torch.zeros(len(self.params), dtype=torch.float32)
        self.steps = list(self._step_counts.unbind())

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        params, avg, avg_sq, steps = self.params, self.exp_avg, self.exp_avg_sq, self.steps
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            live = [i for i, g in enumerate(grads) if g is not None]
            if not live:
                return
            params, avg, avg_sq, steps = ([xs[i] for i in live] for xs in (params, avg, avg_sq, steps))
            grads = [grads[i] for i in live]
            for count in steps:
                count.add_(1.0)
        else:
            self._step_counts.add_(1.0)
        torch._fused_adam_(
            params,
            grads,
            avg,
            avg_sq,
            [],
            steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )
