"""CQL's hand-written gradient equals autograd's on real minibatches, on both of its paths (one compiled
call through torch's MKL, train/fused_cql.py; torch calls, train/mlp_grad.py), and the trainer falls back
to autograd where it does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.layer_norm import perturb_layer_norms
from train import fused_cql
from train.algos.base import Algo
from train.collect import CollectConfig, collect
from train.dataset import Dataset
from train.evaluate import env_model_from_metadata
from train.mlp_grad import mlp_layers
from train.networks import CNNNet, MLPNet, NetConfig
from train.trainer import StepRunner, TrainConfig, TransitionSampler, build_algo, network_config


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return collect(CollectConfig(episodes=30, policy="mixed", seed=3, out="unused.npz", quiet=True))


@pytest.fixture(params=["fused", "torch"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which hand-written path CQL takes: ``fused`` needs torch's MKL (x86-64 Linux wheels)."""
    if request.param == "fused":
        if not fused_cql.available():
            pytest.skip("this torch build exports no MKL sgemm_")
    else:
        monkeypatch.setattr(fused_cql, "available", lambda: False)
    return request.param


def _algo(
    dataset: Dataset, hidden: tuple[int, ...], layer_norm: bool = False, **overrides: object
) -> tuple[Algo, TransitionSampler]:
    config = TrainConfig(
        algo="cql", hidden=hidden, batch_size=64, out="unused", layer_norm=layer_norm, **overrides
    )
    net = network_config(dataset, env_model_from_metadata(dataset.metadata), hidden, layer_norm)
    sampler = TransitionSampler(dataset, np.arange(len(dataset)), seed=1)
    torch.manual_seed(0)
    return build_algo(config, net, sampler), sampler


def _grads(algo: Algo) -> list[torch.Tensor]:
    return [p.grad.clone() for p in algo.parameters()]


@pytest.mark.parametrize(
    ("hidden", "overrides"),
    [
        ((32, 32), {}),
        ((16, 24, 8), {"alpha": 0.7, "bc_weight": 0.3}),  # three layers, BC on, uneven widths
        ((32,), {"alpha": 0.0}),  # pure Double-DQN
        ((32,), {"tau": 0.05}),  # Polyak targets: no per-sync cache, the target net runs on each batch
    ],
)
def test_hand_written_gradient_and_losses_equal_autograd(
    dataset: Dataset, hidden: tuple[int, ...], overrides: dict[str, float], path: str
) -> None:
    algo, sampler = _algo(dataset, hidden, **overrides)
    assert algo.hand_written_gradient
    assert algo.gradient_path == ("hand-written, fused" if path == "fused" else "hand-written")
    _check_against_autograd(algo, sampler, (64, 64, 40), atol=1e-6)


def _check_against_autograd(
    algo: Algo, sampler: TransitionSampler, sizes: tuple[int, ...], atol: float
) -> None:
    """``grad_step``'s gradients, total and loss parts equal autograd's on minibatches of ``sizes`` rows,
    with a step between them so the weights are not the init's (a smaller last batch makes the fused path
    size its buffers again)."""
    for size in sizes:
        batch = sampler.sample(size)
        for p in algo.parameters():
            p.grad = None
        total, parts = algo.grad_step(batch)
        fast = _grads(algo)
        for p in algo.parameters():
            p.grad = None
        ref_total, ref_parts = algo.loss(batch)
        ref_total.backward()
        for got, want in zip(fast, _grads(algo), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=atol)
        assert total == pytest.approx(float(ref_total.detach()), rel=1e-5, abs=1e-6)
        assert parts.keys() == ref_parts.keys()
        for name, value in parts.items():
            assert value == pytest.approx(float(ref_parts[name].detach()), rel=1e-5, abs=1e-6)
        with torch.no_grad():
            for p in algo.parameters():
                p.sub_(0.05 * p.grad)


@pytest.mark.skipif(not fused_cql.available(), reason="this torch build exports no MKL sgemm_")
@pytest.mark.parametrize(
    ("hidden", "overrides"),
    [((32, 32), {}), ((16, 24, 8), {"alpha": 0.7, "bc_weight": 0.3}), ((32,), {"tau": 0.05})],
)
def test_fused_layer_norm_gradient_equals_autograd(
    dataset: Dataset, hidden: tuple[int, ...], overrides: dict[str, float]
) -> None:
    """The fused step's LayerNorm forward and backward (gains and shifts moved off their 1 and 0 init, so
    a backward that ignored them would fail) give autograd's gradients for every parameter."""
    algo, sampler = _algo(dataset, hidden, layer_norm=True, **overrides)
    assert algo.gradient_path == "hand-written, fused"
    assert perturb_layer_norms(algo.q, seed=7) == len(hidden)
    _check_against_autograd(algo, sampler, (64, 40), atol=1e-5)


def test_layer_norm_without_mkl_takes_autograd(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch-call path has no LayerNorm: without the fused step a LayerNorm net trains with autograd,
    and a body that is neither layout (a LayerNorm without its shift) is not taken for an MLP at all."""
    monkeypatch.setattr(fused_cql, "available", lambda: False)
    algo, _ = _algo(dataset, (16,), layer_norm=True)
    assert not algo.hand_written_gradient
    odd = MLPNet(NetConfig(hidden=(8, 8), layer_norm=True))
    odd.body[1] = torch.nn.LayerNorm(8, bias=False)
    assert fused_cql.mlp_parts(odd) is None
    assert fused_cql.mlp_parts(MLPNet(NetConfig(hidden=(8, 8)))) is not None


def test_next_observation_rows_carry_no_gradient(dataset: Dataset, path: str) -> None:
    """The next observations ride in the same forward pass, but only the first rows are differentiated:
    with every row terminal (no bootstrap) the gradient cannot depend on them."""
    algo, sampler = _algo(dataset, (16, 16), alpha=0.5)
    batch = sampler.sample(32)
    terminal = batch._replace(not_done=torch.zeros_like(batch.not_done))
    algo.grad_step(terminal)
    first = _grads(algo)
    noise = torch.randn_like(batch.next_obs)
    # Both views of the next observations change: the stacked tensor is what the forward pass reads.
    algo.grad_step(terminal._replace(next_obs=noise, obs_and_next=torch.cat([batch.obs, noise])))
    for a, b in zip(first, _grads(algo), strict=True):
        torch.testing.assert_close(a, b)


def test_a_batch_without_the_stacked_tensor_gives_the_same_gradient(dataset: Dataset, path: str) -> None:
    """Batches built elsewhere (no ``obs_and_next``) are stacked by ``grad_step`` itself."""
    algo, sampler = _algo(dataset, (16, 16), alpha=0.5)
    batch = sampler.sample(32)
    assert batch.obs_and_next is not None
    total, _ = algo.grad_step(batch)
    stacked = _grads(algo)
    unstacked_total, _ = algo.grad_step(batch._replace(obs_and_next=None))
    for a, b in zip(stacked, _grads(algo), strict=True):
        torch.testing.assert_close(a, b)
    assert total == unstacked_total


def test_loss_head_refuses_out_of_range_indices() -> None:
    """The compiled loop checks its indices: a bad action or table row raises instead of reading or
    writing outside an array."""
    from train.loss_head import cql_head

    q_all, table = torch.randn(8, 3), torch.randn(10, 3)
    actions, rows = torch.tensor([0, 1, 2, 1]), torch.arange(4)
    rewards, not_done = torch.zeros(4), torch.ones(4)
    grad_q, _, _ = cql_head(q_all, actions, rewards, not_done, table, rows, 0.9, 1.0)
    assert torch.isfinite(grad_q).all()
    with pytest.raises(IndexError):
        cql_head(q_all, torch.tensor([0, 1, 2, 3]), rewards, not_done, table, rows, 0.9, 1.0)
    with pytest.raises(IndexError):
        cql_head(q_all, actions, rewards, not_done, table, torch.tensor([0, 1, 2, 10]), 0.9, 1.0)
    with pytest.raises(ValueError, match="stacked Q rows"):
        cql_head(q_all[:6], actions, rewards, not_done, table, rows, 0.9, 1.0)


@pytest.mark.skipif(not fused_cql.available(), reason="this torch build exports no MKL sgemm_")
@pytest.mark.parametrize(("m", "n", "k"), [(7, 5, 3), (512, 256, 6), (3, 256, 256), (256, 3, 256)])
def test_fused_gemm_equals_torch_for_every_transpose(m: int, n: int, k: int) -> None:
    """The row-major wrapper around MKL's column-major sgemm_, for the shapes a step uses (skinny included)
    and with beta = 1 (accumulate into C)."""
    gen = torch.Generator().manual_seed(m + n + k)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    scratch = fused_cql._scratch()
    for ta, a_in in ((fused_cql._N, a), (fused_cql._T, a.t().contiguous())):
        for tb, b_in in ((fused_cql._N, b), (fused_cql._T, b.t().contiguous())):
            out = torch.zeros(m, n)
            fused_cql.gemm(ta, tb, m, n, k, a_in.numpy(), b_in.numpy(), 0.0, out.numpy(), *scratch)
            torch.testing.assert_close(out, a @ b, rtol=1e-5, atol=1e-4)
            fused_cql.gemm(ta, tb, m, n, k, a_in.numpy(), b_in.numpy(), 1.0, out.numpy(), *scratch)
            torch.testing.assert_close(out, 2 * (a @ b), rtol=1e-5, atol=1e-4)


def test_no_torch_library_means_no_fused_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Where libtorch_cpu.so is not at torch's lib/ (macOS, Windows) the lookup gives None, not an error."""
    monkeypatch.setattr(torch, "__file__", str(tmp_path / "torch" / "__init__.py"))
    assert fused_cql._find_sgemm() is None


def test_fused_step_refuses_mismatched_rows(dataset: Dataset, path: str) -> None:
    algo, sampler = _algo(dataset, (16,))
    batch = sampler.sample(16)
    with pytest.raises(ValueError, match="stacked"):
        algo.grad_step(batch._replace(obs_and_next=batch.obs_and_next[:20]))
    with pytest.raises(IndexError):  # an action outside the Q-net's outputs
        algo.grad_step(batch._replace(actions=torch.full_like(batch.actions, 7)))


def test_autograd_flag_cnn_and_other_modules_take_the_autograd_path(dataset: Dataset) -> None:
    algo, _ = _algo(dataset, (16,), autograd=True)
    assert not algo.hand_written_gradient
    assert _algo(dataset, (16,))[0].hand_written_gradient
    assert mlp_layers(CNNNet(NetConfig(kind="cnn", obs_dim=9, hidden=(8,)))) is None
    assert mlp_layers(torch.nn.Linear(6, 3)) is None
    assert len(mlp_layers(MLPNet(NetConfig(hidden=(8, 8, 8)))) or []) == 4


def test_runner_steps_the_same_weights_on_either_path(dataset: Dataset, path: str) -> None:
    """Twenty trainer steps (Adam, target syncs, cosine LR) from the same init and sampling seed end at the
    same weights whether the gradient is hand-written or autograd's."""
    weights = []
    for autograd in (False, True):
        config = TrainConfig(
            algo="cql", hidden=(32, 32), batch_size=64, steps=20, target_update=5, autograd=autograd, out="x"
        )
        net = network_config(dataset, env_model_from_metadata(dataset.metadata), config.hidden)
        sampler = TransitionSampler(dataset, np.arange(len(dataset)), seed=1)
        torch.manual_seed(0)
        runner = StepRunner(build_algo(config, net, sampler), sampler, config)
        for step in range(1, 21):
            runner.step(step)
        losses = runner.pop_losses()
        weights.append(([p.detach().clone() for p in runner.params], losses))
    (fast, fast_losses), (ref, ref_losses) = weights
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    assert fast_losses.keys() == ref_losses.keys()
    for name in fast_losses:
        assert fast_losses[name] == pytest.approx(ref_losses[name], rel=1e-3, abs=1e-5)


def test_train_speed_times_both_paths_interleaved(dataset: Dataset, capsys) -> None:
    from benchmarks.train_speed import format_result, measure

    result = measure(dataset, steps=5, batch=32, hidden=(16,), repeats=2, warmup=1, compare_autograd=True)
    assert result["gradient"].startswith("hand-written") and len(result["repeats"]) == 2
    assert len(result["autograd"]["repeats"]) == 2
    assert result["autograd"]["speedup"] == pytest.approx(
        result["median_steps_per_s"] / result["autograd"]["median_steps_per_s"]
    )
    assert "autograd, interleaved" in format_result(result)
    # One reference product rate per repeat, printed with the result.
    assert len(result["reference_gflops"]) == 2 and min(result["reference_gflops"]) > 0
    assert "steps/s per GFLOP/s" in format_result(result)
    assert (
        measure(dataset, algo="bc", steps=2, batch=8, hidden=(8,), repeats=1, warmup=0)["gradient"]
        == "autograd"
    )
    normed = measure(dataset, steps=2, batch=8, hidden=(8,), repeats=1, warmup=0, layer_norm=True)
    assert normed["layer_norm"] and not result["layer_norm"]
    assert "hidden 8 with LayerNorm" in format_result(normed)
    assert normed["gradient"] == ("hand-written, fused" if fused_cql.available() else "autograd")
