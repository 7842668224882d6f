"""Derived networks of an image policy and the binary variant, on tiny CNNs: torch-pruning removes conv
channels and hidden units and the network still takes the uint8 frames; the distilled student is the
teacher's CNN scaled down within 10 % of its parameters; binarized layers hold one ±α pair per channel
while the first and output layers stay float. What fine-tuning achieves is a property of the host's float
order and is not asserted (docs/contracts.md#tests-that-hold-on-every-host); what the code must have done to
the layers is."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import tasks
from export.binarize import ScaledSign, binarize, binary_layers
from export.policies.modules import ScaleImage, mlp_policy, nature_cnn, scaled_like
from export.policy_distill import cnn_student, distill_policy, objective_for
from export.prune import CNN_BUDGET, MLP_BUDGET, argmax_objective, budget_for, policy_inputs, prune_policy
from export.sources import params_of

FRAME = (4, 36, 36)  # NatureCNN's smallest input: 36 → 8 → 3 → 1


def tiny_cnn(seed: int = 0, shape: tuple[int, ...] = FRAME, n_actions: int = 4) -> nn.Sequential:
    """A NatureCNN-shaped policy (three convs, a hidden Linear, ``out``) of a few thousand weights, built by
    the same helpers the SB3 loader uses."""
    g = torch.Generator().manual_seed(seed)
    convs = [
        (torch.randn(8, shape[0], 8, 8, generator=g) * 0.1, torch.randn(8, generator=g) * 0.1, 4),
        (torch.randn(16, 8, 4, 4, generator=g) * 0.1, torch.randn(16, generator=g) * 0.1, 2),
        (torch.randn(16, 16, 3, 3, generator=g) * 0.1, torch.randn(16, generator=g) * 0.1, 1),
    ]
    side = ((shape[1] - 8) // 4 + 1 - 4) // 2 + 1 - 2
    feat = (torch.randn(32, 16 * side * side, generator=g) * 0.1, torch.randn(32, generator=g) * 0.1)
    head = [(torch.randn(n_actions, 32, generator=g) * 0.1, torch.zeros(n_actions))]
    return mlp_policy(head, nn.ReLU, [("scale", ScaleImage()), *nature_cnn(convs, feat)])


def frames(n: int = 64, shape: tuple[int, ...] = FRAME, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_an_image_policy_fine_tunes_on_its_frames_on_the_cnn_budget() -> None:
    model, obs = tiny_cnn(), frames()
    inputs = policy_inputs(model, obs)
    assert inputs.dtype == torch.uint8 and inputs.shape == (64, *FRAME)  # scaled inside the module
    assert budget_for(inputs) == CNN_BUDGET
    mlp = mlp_policy([(torch.zeros(8, 6), torch.zeros(8)), (torch.zeros(2, 8), None)], nn.ReLU)
    flat = policy_inputs(mlp, np.zeros((5, 6)))
    assert flat.dtype == torch.float32 and budget_for(flat) == MLP_BUDGET
    with pytest.raises(ValueError, match=r"frames \[N, C, H, W\]"):
        policy_inputs(model, obs.reshape(64, -1))


@pytest.mark.parametrize(("ratio", "kept"), [(0.5, [4, 8, 8, 16]), (0.7, [2, 4, 4, 9])])
def test_pruning_removes_conv_channels_and_hidden_units(ratio: float, kept: list[int]) -> None:
    model, obs = tiny_cnn(), frames()
    pruned, info = prune_policy(model, ratio, obs, argmax_objective(), steps=3)
    assert info["layers"] == ["conv0", "conv1", "conv2", "feat"]
    assert info["hidden_before"] == [8, 16, 16, 32] and info["hidden_after"] == kept
    assert [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)] == kept[:3]
    assert pruned.out.out_features == 4 and info["params_after"] == params_of(pruned) < info["params_before"]
    assert info["macs_after"] < info["macs_before"] and info["finetune_batch"] == 64
    with torch.inference_mode():
        assert pruned(torch.from_numpy(obs)).shape == (64, 4)  # still takes the uint8 frames
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 16]  # untouched


def test_the_cnn_student_is_the_teachers_shape_scaled_within_its_share() -> None:
    teacher = tiny_cnn()
    example = torch.zeros(1, *FRAME, dtype=torch.uint8)
    half = scaled_like(teacher, example, 0.5, seed=1)
    assert [n for n, _ in half.named_children()] == [n for n, _ in teacher.named_children()]
    assert [m.out_channels for m in half.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 8]
    assert half.feat.out_features == 16 and half.out.out_features == 4 and half.conv0.kernel_size == (8, 8)
    assert not torch.equal(half.conv0.weight, teacher.conv0.weight[:4])  # fresh, not copied
    student = cnn_student(teacher, example, share=0.3)
    assert params_of(student) <= 0.3 * params_of(teacher) < params_of(scaled_like(teacher, example, 0.6))
    with torch.inference_mode():
        assert student(torch.from_numpy(frames(3))).shape == (3, 4)


@pytest.fixture(scope="module")
def breakout() -> tasks.TaskSpec:
    pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")
    return tasks.from_env("ALE/Breakout-v5", episodes=2)


def test_distilling_an_image_policy_trains_a_small_cnn_on_the_frames_it_meets(
    breakout: tasks.TaskSpec,
) -> None:
    teacher = tiny_cnn(shape=(4, 84, 84))
    calib = frames(48, (4, 84, 84))
    student, info = distill_policy(teacher, breakout, calib, steps=4)
    assert isinstance(student.conv0, nn.Conv2d) and student.out.out_features == 4
    assert info["params_after"] <= 0.1 * info["params_before"]
    assert info["states"] == {"teacher_rollouts": 48, "student_rollouts": 48}  # one DAgger round on its own
    assert info["hidden_after"][:3] == [m.out_channels for m in student.modules() if isinstance(m, nn.Conv2d)]
    assert objective_for(breakout).describe.startswith("tau^2*KL")


def test_scaled_sign_is_alpha_sign_forward_and_the_identity_backward() -> None:
    weight = torch.tensor([[0.5, -0.1, 0.0], [-2.0, 1.0, 3.0]], requires_grad=True)
    binary = ScaledSign()(weight)
    expected = torch.tensor([[0.2, -0.2, 0.2], [-2.0, 2.0, 2.0]])
    torch.testing.assert_close(binary, expected)
    (binary * torch.arange(6.0).reshape(2, 3)).sum().backward()
    torch.testing.assert_close(weight.grad, torch.arange(6.0).reshape(2, 3))  # straight through


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_binarize_leaves_two_values_a_channel_in_the_hidden_layers_only(kind: str) -> None:
    if kind == "cnn":
        model, inputs = tiny_cnn(), policy_inputs(tiny_cnn(), frames())
        hidden = ["conv1", "conv2", "feat"]
    else:
        sizes = [6, 16, 16, 16, 3]
        g = torch.Generator().manual_seed(0)
        layers = [
            (torch.randn(b, a, generator=g), torch.randn(b, generator=g))
            for a, b in itertools.pairwise(sizes)
        ]
        model, inputs = mlp_policy(layers, nn.ReLU), torch.randn(128, 6, generator=g)
        hidden = ["fc1", "fc2"]
    binary, info = binarize(model, inputs, argmax_objective(), steps=5)
    assert list(binary_layers(model)) == hidden == info["binary_layers"]
    for name, layer in binary.named_modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        rows = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        values = [torch.unique(row.abs()).numel() for row in rows]
        if name in hidden:
            assert values == [1] * len(rows), name  # ±α: one magnitude a channel
            assert not any(isinstance(m, ScaledSign) for m in layer.modules())  # folded into plain weights
        else:
            assert max(values) > 1, name  # the first and output layers stay float
    assert info["packed_bytes"] < info["float_bytes"] and "no runtime here executes 1-bit" in info["runtime"]
    assert params_of(binary) == params_of(model)
    with pytest.raises(ValueError, match="no layer between its first and its output layer"):
        binarize(
            mlp_policy([(torch.zeros(4, 6), None), (torch.zeros(2, 4), None)], nn.ReLU),
            inputs,
            argmax_objective(),
        )


def test_an_image_policys_derived_networks_tune_on_more_rollout_frames(breakout: tasks.TaskSpec) -> None:
    from export.sources import SourceContext, SourceModel

    teacher = tiny_cnn(shape=(4, 84, 84))
    source = SourceModel(teacher, None, "tiny", "0" * 64)
    calib = frames(32, (4, 84, 84))
    ctx = SourceContext(source, None, calib, seed=0, task=breakout, finetune_frames=80)
    tuned = ctx.finetune_obs()
    assert tuned.shape == (80, 4, 84, 84) and tuned.dtype == np.uint8 and ctx.finetune_obs() is tuned
    assert not np.array_equal(tuned[:32], calib)  # the float policy's own rollouts, not the calibration
    flat = SourceContext(source, None, np.zeros((10, 6), np.float32), task=breakout, finetune_frames=80)
    assert flat.finetune_obs() is flat.calib_obs  # an MLP's calibration states are its fine-tuning states
