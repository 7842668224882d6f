"""Sum tree and replay buffers: the tree stays consistent, sampling follows priorities, weights are right."""

from __future__ import annotations

import numpy as np
import pytest

from train.per import LinearSchedule, PrioritizedReplayBuffer, ReplayBuffer, SumTree, make_buffer


def _fill(buffer: ReplayBuffer, n: int) -> None:
    obs = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    buffer.add(obs, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float32), obs, np.zeros(n, dtype=bool))


def _chi_square_critical(df: int, z: float = 3.29) -> float:
    """Upper critical value of χ²(df) at the normal quantile ``z`` (3.29 ≈ p 0.0005), Wilson–Hilferty."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("capacity", [1, 2, 5, 8, 37, 1000])
def test_sum_tree_total_and_min_after_updates(capacity: int) -> None:
    rng = np.random.default_rng(0)
    tree = SumTree(capacity)
    reference = np.zeros(capacity)
    written = np.zeros(capacity, dtype=bool)
    for _ in range(50):
        idx = rng.integers(0, capacity, size=rng.integers(1, 20))  # duplicates included on purpose
        pri = rng.random(len(idx)) * 10
        tree.update(idx, pri)
        for i, p in zip(idx, pri, strict=True):  # numpy keeps the last write for a repeated index
            reference[i] = p
        written[idx] = True
        assert tree.total == pytest.approx(reference.sum(), rel=1e-12)
        np.testing.assert_allclose(tree[np.arange(capacity)], reference)
        assert tree.min == reference[written].min()  # unused leaves never count as the minimum


def test_sum_tree_find_maps_mass_to_the_right_leaf() -> None:
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    cumulative = np.array([0.0, 0.5, 0.999, 1.0, 2.5, 3.0, 5.99, 6.0, 9.5, 9.999])
    expected = np.array([0, 0, 0, 2, 2, 3, 3, 4, 4, 4])
    np.testing.assert_array_equal(tree.find(cumulative), expected)
    # a zero-priority leaf is never returned, even at the boundary where rounding could land on it
    assert 1 not in tree.find(np.linspace(0, tree.total, 10_001)[:-1])


def test_sum_tree_refuses_bad_input() -> None:
    tree = SumTree(4)
    with pytest.raises(IndexError):
        tree.update(4, 1.0)
    with pytest.raises(ValueError, match="finite"):
        tree.update(0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        tree.update(0, float("nan"))


def test_sampling_frequency_is_proportional_to_priority() -> None:
    """χ² goodness of fit over 200 000 draws with a fixed seed; stratified sampling only lowers χ²."""
    n = 64
    buffer = PrioritizedReplayBuffer(n, (2,), alpha=0.7, eps=1e-3, seed=123)
    _fill(buffer, n)
    td = np.random.default_rng(1).gamma(2.0, 1.0, size=n)
    buffer.update_priorities(np.arange(n), td)
    priorities = (np.abs(td) + 1e-3) ** 0.7
    expected_p = priorities / priorities.sum()

    counts = np.zeros(n)
    draws = 200_000
    for _ in range(draws // 500):
        counts += np.bincount(buffer.sample(500, beta=0.4).indices, minlength=n)
    expected = expected_p * draws
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < _chi_square_critical(n - 1)
    np.testing.assert_allclose(counts / draws, expected_p, atol=0.003)


def test_update_changes_sampling() -> None:
    n = 16
    buffer = PrioritizedReplayBuffer(n, (2,), alpha=1.0, eps=1e-6, seed=0)
    _fill(buffer, n)
    # all new transitions carry the max priority: uniform at first
    first = np.bincount(buffer.sample(16_000).indices, minlength=n)
    assert first.min() > 800
    buffer.update_priorities(np.arange(n), np.where(np.arange(n) == 3, 100.0, 1.0))
    after = np.bincount(buffer.sample(16_000).indices, minlength=n) / 16_000
    assert after[3] == pytest.approx(100 / 115, abs=0.01)
    # and a later update moves the mass again
    buffer.update_priorities(np.array([3]), np.array([0.0]))
    again = np.bincount(buffer.sample(16_000).indices, minlength=n)
    assert again[3] / 16_000 < 0.001


def test_new_transitions_get_the_max_priority() -> None:
    buffer = PrioritizedReplayBuffer(8, (2,), alpha=0.5, eps=1e-3, seed=0)
    _fill(buffer, 4)
    buffer.update_priorities(np.arange(4), np.array([0.1, 9.0, 0.2, 0.3]))
    _fill(buffer, 2)
    assert buffer.max_priority == pytest.approx((9.0 + 1e-3) ** 0.5)
    np.testing.assert_allclose(buffer.tree[np.array([4, 5])], buffer.max_priority)


def test_importance_weights_formula_and_max_one() -> None:
    n = 10
    buffer = PrioritizedReplayBuffer(n, (2,), alpha=0.6, eps=0.01, seed=0)
    _fill(buffer, n)
    td = np.linspace(0.0, 4.5, n)
    buffer.update_priorities(np.arange(n), td)
    p = (td + 0.01) ** 0.6
    probs = p / p.sum()
    for beta in (0.0, 0.4, 0.7, 1.0):
        batch = buffer.sample(2000, beta=beta)
        w = (n * probs[batch.indices]) ** -beta
        w_max = (n * probs.min()) ** -beta  # the largest weight belongs to the smallest priority
        np.testing.assert_allclose(batch.weights, w / w_max, rtol=1e-5)
        assert batch.weights.max() <= 1.0 + 1e-6
        assert batch.weights.dtype == np.float32
        if 0 in batch.indices:  # the min-priority row carries weight exactly 1
            assert batch.weights[batch.indices == 0].max() == pytest.approx(1.0)
        if beta == 0:
            np.testing.assert_allclose(batch.weights, 1.0)


def test_beta_annealing_schedule() -> None:
    beta = LinearSchedule(0.4, 1.0, 1000)
    assert beta(0) == pytest.approx(0.4)
    assert beta(500) == pytest.approx(0.7)
    assert beta(1000) == pytest.approx(1.0)
    assert beta(5000) == pytest.approx(1.0)  # held after the end
    assert beta(-3) == pytest.approx(0.4)
    values = [beta(t) for t in range(0, 1001, 50)]
    assert values == sorted(values)


def test_uniform_buffer_shares_the_interface() -> None:
    buffer = make_buffer(False, 100, (2,), seed=0)
    assert type(buffer) is ReplayBuffer
    _fill(buffer, 30)
    batch = buffer.sample(5000, beta=0.4)
    assert batch.indices.max() < 30
    np.testing.assert_array_equal(batch.weights, np.ones(5000, dtype=np.float32))
    np.testing.assert_array_equal(batch.observations[:, 0], batch.indices.astype(np.float32))
    buffer.update_priorities(batch.indices, np.ones(5000))  # accepted, no effect
    assert isinstance(make_buffer(True, 10, (2,)), PrioritizedReplayBuffer)


def test_ring_buffer_wraps_and_keeps_priorities_consistent() -> None:
    buffer = PrioritizedReplayBuffer(10, (2,), seed=0)
    _fill(buffer, 7)
    rows = buffer.add(
        np.full((6, 2), 99, np.float32), np.ones(6, np.int64), np.ones(6, np.float32),
        np.full((6, 2), 99, np.float32), np.ones(6, bool),
    )  # fmt: skip
    np.testing.assert_array_equal(rows, [7, 8, 9, 0, 1, 2])
    assert len(buffer) == 10
    assert buffer.observations[0, 0] == 99 and buffer.observations[3, 0] == 3
    assert buffer.tree.total == pytest.approx(10 * buffer.max_priority)
    with pytest.raises(ValueError, match="empty"):
        PrioritizedReplayBuffer(4, (2,)).sample(2)
