"""Pruned, masked and distilled networks of a policy source (``export.prune.prune_policy``,
``export.policy_distill``) and the int8 rule for a first layer fed uneven features.

What is asserted is structure and arithmetic — widths, parameter shares, what surrounds the layers, the
objectives on controlled inputs, which layer stays float — never how well a freshly fitted network fits
(docs/contracts.md#tests-that-hold-on-every-host): that is what the export gates judge, per host.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import tasks
from export.onnx_export import export_onnx, onnx_q_values, torch_q_values
from export.policies.modules import ClipToBounds, ObsNormalize, Unscale, mlp_like, mlp_policy
from export.policy_distill import distill_policy, objective_for, student_widths
from export.prune import action_objective, argmax_objective, masked_prune, prune_policy
from export.quantize import PRECISIONS, float_input_layers

CARTPOLE = tasks.from_env("CartPole-v1")
PENDULUM = tasks.from_env("Pendulum-v1")


def _policy(widths: tuple[int, ...], n_in: int, n_out: int, box: bool, seed: int = 0) -> nn.Sequential:
    """An ``mlp_policy`` as the sb3 loader builds one: normalisation before, tanh + unscale + clip after
    (box), Tanh activations, seeded weights."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [n_in, *widths, n_out]
    layers = [
        (torch.randn(b, a, generator=generator) / a**0.5, torch.randn(b, generator=generator) * 0.1)
        for a, b in itertools.pairwise(sizes)
    ]
    before = [("normalize", ObsNormalize(np.zeros(n_in), np.full(n_in, 4.0), 1e-8, 10.0))]
    after = []
    if box:
        low, high = np.full(n_out, -2.0), np.full(n_out, 2.0)
        after = [("squash", nn.Tanh()), ("unscale", Unscale(low, high)), ("clip", ClipToBounds(low, high))]
    return mlp_policy(layers, nn.Tanh, before, after)


def _states(n_in: int, n: int = 512) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, n_in)).astype(np.float32)


def test_objectives_on_controlled_inputs() -> None:
    teacher = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0]])
    argmax = argmax_objective()
    assert argmax.score(teacher, teacher) == 1.0
    assert argmax.score(torch.tensor([[0.0, 1.0, 0.5], [0.0, 2.0, 0.0]]), teacher) == 0.5
    box = action_objective(np.array([4.0, 2.0]))  # Pendulum-like range 4, and 2
    action = torch.tensor([[1.0, 0.5]])
    assert float(box.loss(action, action)) == 0.0 and box.score(action, action) == 0.0
    moved = action + torch.tensor([[0.4, 0.1]])  # 10 % and 5 % of the ranges
    assert box.score(moved, action) == pytest.approx(-0.075)
    assert float(box.loss(moved, action)) == pytest.approx((0.1**2 + 0.05**2) / 2)
    with pytest.raises(ValueError, match="finite and positive"):
        action_objective(np.array([0.0]))
    assert objective_for(PENDULUM).describe.startswith("MSE") and "KL" in objective_for(CARTPOLE).describe


def test_student_widths_are_the_widest_within_the_share() -> None:
    teacher = _policy((64, 64), 4, 2, box=False)
    widths = student_widths(teacher)

    def params(w: tuple[int, ...]) -> int:
        return sum((a + 1) * b for a, b in itertools.pairwise([4, *w, 2]))

    total = params((64, 64))
    assert widths == (17, 17) and params(widths) <= 0.1 * total < params((18, 18))
    uneven = student_widths(_policy((256, 128), 17, 6, box=True))
    assert uneven[0] == 2 * uneven[1] or uneven[0] == 2 * uneven[1] + 1  # one factor for every layer


def test_mlp_like_keeps_what_surrounds_the_layers() -> None:
    teacher = _policy((32, 32), 3, 1, box=True)
    student = mlp_like(teacher, (8, 4), seed=1)
    assert [n for n, _ in student.named_children()] == [n for n, _ in teacher.named_children()]
    assert [m.out_features for m in student.modules() if isinstance(m, nn.Linear)] == [8, 4, 1]
    for name in ("normalize", "unscale", "clip"):
        for (key, a), (_, b) in zip(
            teacher.get_submodule(name).state_dict().items(),
            student.get_submodule(name).state_dict().items(),
            strict=True,
        ):
            assert torch.equal(a, b), (name, key)
    again = mlp_like(teacher, (8, 4), seed=1)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), again.parameters(), strict=True))
    with pytest.raises(ValueError, match="one width per hidden layer"):
        mlp_like(teacher, (8,))


@pytest.mark.parametrize("box", [False, True])
def test_prune_policy_removes_hidden_units_and_keeps_the_io(box: bool) -> None:
    teacher = _policy((64, 48), 5, 3, box=box)
    objective = action_objective(np.full(3, 4.0)) if box else argmax_objective()
    obs = _states(5)
    pruned, info = prune_policy(teacher, 0.5, obs, objective, steps=20, iterative_steps=2)
    linears = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 32), (32, 24), (24, 3)]
    assert info["hidden_before"] == [64, 48] and info["hidden_after"] == [32, 24]
    assert info["params_after"] == sum(p.numel() for p in pruned.parameters()) < info["params_before"]
    assert torch.equal(pruned.normalize.std, teacher.normalize.std)  # normalisation kept, not pruned
    out = torch_q_values(pruned, obs)
    assert out.shape == (512, 3)
    if box:
        assert np.all(np.abs(out) <= 2.0)  # still squashed, unscaled and clipped to the bounds
    with pytest.raises(ValueError, match="would remove every unit"):
        prune_policy(_policy((2,), 5, 3, box=box), 0.7, obs, objective, steps=0)


def test_masked_prune_of_a_policy_has_no_config() -> None:
    teacher = _policy((32, 32), 4, 2, box=False)
    masked, config, info = masked_prune(teacher, None, 0.5, calib_obs=_states(4), steps=10)
    assert config is None and info["params_after"] == info["params_before"]
    assert sum(int((m.weight == 0).sum()) for m in masked.modules() if isinstance(m, nn.Linear)) > 0
    assert 0.45 <= info["zero_fraction"] <= 0.55


def test_distill_policy_on_cartpole() -> None:
    """A student of ≤ 10 % of the teacher's parameters, trained on the teacher's states and then on its
    own rollouts' (as many of each), that keeps the teacher's I/O."""
    teacher = _policy((64, 64), 4, 2, box=False)
    obs = _states(4, 256)
    student, info = distill_policy(teacher, CARTPOLE, obs, steps=40)
    assert (
        info["params_after"]
        <= 0.1 * info["params_before"]
        == 0.1 * sum(p.numel() for p in teacher.parameters())
    )
    assert info["hidden_after"] == [17, 17]
    assert info["states"] == {"teacher_rollouts": 256, "student_rollouts": 256}
    assert torch_q_values(student, obs).shape == (256, 2)


def test_a_first_layer_fed_uneven_features_stays_float_in_int8(tmp_path: Path) -> None:
    """Features peaking at 0.1 and 2 (CartPole's angle and angular velocity): the first Gemm keeps float
    weights and input in both int8 precisions; features within 2× of each other leave it quantized (it
    holds 9.5 % of the weights, more than a small first layer's 5 %)."""
    teacher = mlp_policy(
        [
            (torch.randn(16, 2), torch.zeros(16)),
            (torch.randn(16, 16), torch.zeros(16)),
            (torch.randn(3, 16), None),
        ],
        nn.ReLU,
    )
    src = export_onnx(teacher, 2, 3, tmp_path / "fp32.onnx", {})
    uneven = _states(2) * np.array([0.05, 1.0], np.float32)
    even = _states(2)
    model = onnx.load_model(str(src))
    first = next(n.name for n in model.graph.node if n.op_type == "Gemm")
    assert float_input_layers(model, uneven)[0] == [first]
    assert float_input_layers(model, even)[0] == []
    for precision in ("int8-dynamic", "int8-static"):
        info = PRECISIONS[precision].apply(src, tmp_path / f"{precision}.onnx", uneven)
        assert info["float_layers"][0] == first and info["input_spread"] > 2.0
        quantized = onnx.load_model(str(tmp_path / f"{precision}.onnx"))
        graph_input = quantized.graph.input[0].name
        assert not any(
            graph_input in n.input and n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear")
            for n in quantized.graph.node
        ), precision
        assert onnx_q_values(tmp_path / f"{precision}.onnx", uneven).shape == (512, 3)
        info = PRECISIONS[precision].apply(src, tmp_path / f"{precision}-even.onnx", even)
        assert first not in info["float_layers"]
