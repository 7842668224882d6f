"""The trainer's Adam (train/optim.py) computes what torch.optim.Adam(fused=True) computes, bit for bit,
and the sampler's chunked draws hand out rows that belong together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.collect import CollectConfig, collect
from train.evaluate import flat_obs
from train.optim import LeanAdam
from train.trainer import SAMPLE_CHUNK, TransitionSampler


def _params() -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2, 2)]
    return [torch.nn.Parameter(torch.randn(*s, generator=generator)) for s in shapes]


def test_lean_adam_equals_torch_fused_adam_with_a_changing_lr_and_missing_gradients() -> None:
    ours, theirs = _params(), _params()
    lean = LeanAdam(ours, lr=1e-2)
    reference = torch.optim.Adam(theirs, lr=1e-2, fused=True)
    generator = torch.Generator().manual_seed(1)
    for k in range(30):
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            # Parameter 1 gets no gradient for the first 4 steps, parameter 2 every third step: torch
            # skips them (their step counts lag), and so must LeanAdam.
            skip = (i == 1 and k < 4) or (i == 2 and k % 3 == 0)
            grad = torch.randn(p.shape, generator=generator)
            p.grad = None if skip else grad.clone()
            q.grad = None if skip else grad.clone()
        lr = 1e-2 * (1 - k / 40)
        lean.lr = lr
        for group in reference.param_groups:
            group["lr"] = lr
        lean.step()
        reference.step()
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p.detach(), q.detach())
    assert [float(s) for s in lean.steps] == [30.0, 26.0, 20.0]
    lean.zero_grad()
    assert all(p.grad is None for p in ours)


def test_lean_adam_refuses_what_its_kernel_does_not_take() -> None:
    with pytest.raises(ValueError, match="float32 CPU"):
        LeanAdam([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], lr=1e-3)


def test_sampler_batches_are_whole_transitions_across_chunks() -> None:
    dataset = collect(CollectConfig(episodes=5, policy="mixed", seed=2, out="unused.npz", quiet=True))
    rows = np.arange(1, len(dataset))  # not every row: index refers to the sampler's own numbering
    sampler = TransitionSampler(dataset, rows, seed=0)
    obs, next_obs = flat_obs(dataset.observations[rows]), flat_obs(dataset.next_observations[rows])
    seen = set()
    for k in range(SAMPLE_CHUNK + 3):  # past the first chunk
        size = 16 if k < SAMPLE_CHUNK + 1 else 8  # and a new batch size mid-chunk
        batch = sampler.sample(size)
        idx = batch.index.numpy()
        assert len(idx) == size and idx.min() >= 0 and idx.max() < len(rows)
        np.testing.assert_array_equal(batch.obs.numpy(), obs[idx])
        np.testing.assert_array_equal(batch.next_obs.numpy(), next_obs[idx])
        np.testing.assert_array_equal(batch.obs_and_next.numpy(), np.concatenate([obs[idx], next_obs[idx]]))
        np.testing.assert_array_equal(batch.rewards.numpy(), dataset.rewards[rows][idx])
        np.testing.assert_array_equal(batch.not_done.numpy(), ~dataset.terminals[rows][idx])
        np.testing.assert_array_equal(batch.actions.numpy(), dataset.actions[rows][idx])
        assert batch.actions.dtype == torch.int64
        seen.update(idx.tolist())
    assert len(seen) > 0.9 * len(rows)  # fresh draws, not one chunk's rows over and over
