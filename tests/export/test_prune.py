"""Structured pruning really removes units and keeps the policy; masking keeps every shape (issue 4)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from export.prune import Objective, argmax_objective, fit_to_teacher, masked_prune, structured_prune
from gridworld.core import GridModel, build_model
from gridworld.oracle import Oracle
from tests.fixtures.make_fixtures import load_fixture
from train.checkpoint import load_checkpoint, save_checkpoint
from train.evaluate import evaluate_model, flat_obs, q_values
from train.networks import NetConfig, build_network, count_params


def reachable_obs(env_model: GridModel) -> np.ndarray:
    return flat_obs(env_model.observations[Oracle(env_model).distance >= 0])


def random_mlp(
    hidden: tuple[int, ...] = (256, 256), seed: int = 0, layer_norm: bool = False
) -> tuple[nn.Module, NetConfig]:
    torch.manual_seed(seed)
    config = NetConfig(kind="mlp", obs_dim=6, n_actions=3, hidden=hidden, layer_norm=layer_norm)
    return build_network(config), config


def linear_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.fixture(scope="module")
def vector_env() -> GridModel:
    return build_model("default", "vector")


@pytest.fixture(scope="module")
def oracle_teacher() -> tuple[nn.Module, NetConfig]:
    """The committed 256×256 teacher: optimal with a Q margin ≥ 0.5 in every acting state, the same bits on
    every host (a teacher fitted here would prune differently on each float order)."""
    model = load_fixture("teacher_256x256")
    return model, model.config


# --------------------------------------------------------------------------------------------- structured


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_structured_prune_physically_removes_units(vector_env: GridModel, ratio: float) -> None:
    model, config = random_mlp()
    pruned, new_config, info = structured_prune(model, config, ratio, reachable_obs(vector_env), steps=6)
    keep = int(256 * (1 - ratio))
    assert linear_shapes(pruned) == [(keep, 6), (keep, keep), (3, keep)]
    assert new_config.hidden == (keep, keep) == tuple(info["hidden_after"])
    assert info["hidden_before"] == [256, 256]
    expected = (6 * keep + keep) + (keep * keep + keep) + (keep * 3 + 3)
    assert info["params_after"] == count_params(pruned) == expected
    assert info["params_before"] == count_params(model) == 6 * 256 + 256 + 256 * 256 + 256 + 256 * 3 + 3
    assert pruned.body[2].weight.numel() / (256 * 256) == pytest.approx((1 - ratio) ** 2, abs=0.01)
    assert info["macs_after"] < info["macs_before"]
    assert info["ratio"] == ratio and info["finetune_steps"] == 6
    assert new_config.extra["pruning"]["ratio"] == ratio
    assert pruned.config == new_config and not pruned.training
    q = pruned(torch.zeros(4, 6))
    assert q.shape == (4, 3)


def test_structured_prune_leaves_the_callers_model_alone(vector_env: GridModel) -> None:
    model, config = random_mlp((64, 64))
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    structured_prune(model, config, 0.5, reachable_obs(vector_env), steps=6)
    assert linear_shapes(model) == [(64, 6), (64, 64), (3, 64)]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training and model.config == config


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_structured_prune_works_when_the_caller_disabled_autograd(vector_env: GridModel, context) -> None:
    """torch-pruning traces through autograd; an exporter running under no_grad must not break it."""
    model, config = random_mlp((32, 32))
    with context():
        pruned, new_config, _ = structured_prune(model, config, 0.5, reachable_obs(vector_env), steps=4)
    assert new_config.hidden == (16, 16) and linear_shapes(pruned)[1] == (16, 16)


def test_pruned_model_round_trips_through_a_checkpoint(vector_env: GridModel, tmp_path) -> None:
    model, config = random_mlp((64, 32))
    obs = reachable_obs(vector_env)
    pruned, new_config, info = structured_prune(model, config, 0.5, obs, steps=6)
    path = save_checkpoint(tmp_path / "pruned-50.safetensors", pruned, new_config, info)
    loaded, loaded_config, loaded_info = load_checkpoint(path)
    assert loaded_config == new_config and loaded_config.hidden == (32, 16)
    assert linear_shapes(loaded) == [(32, 6), (16, 32), (3, 16)]
    np.testing.assert_array_equal(q_values(loaded, obs), q_values(pruned, obs))
    assert loaded_info["params_after"] == info["params_after"]


def test_structured_prune_removes_layer_norm_units_with_their_linear(vector_env: GridModel, tmp_path) -> None:
    """The trainer's default Q-net: torch-pruning's dependency graph drops each removed unit's LayerNorm
    gain and shift with it, and the result rebuilds from its own checkpoint."""
    model, config = random_mlp((64, 32), layer_norm=True)
    obs = reachable_obs(vector_env)
    pruned, new_config, info = structured_prune(model, config, 0.5, obs, steps=6)
    assert new_config.layer_norm and new_config.hidden == (32, 16)
    norms = [m for m in pruned.modules() if isinstance(m, nn.LayerNorm)]
    assert [tuple(m.weight.shape) for m in norms] == [(32,), (16,)]
    assert [m.normalized_shape for m in norms] == [(32,), (16,)]
    assert (
        info["params_after"] == count_params(pruned) == (6 * 32 + 3 * 32) + (32 * 16 + 3 * 16) + (16 * 3 + 3)
    )
    loaded, _, _ = load_checkpoint(save_checkpoint(tmp_path / "p.safetensors", pruned, new_config, info))
    np.testing.assert_array_equal(q_values(loaded, obs), q_values(pruned, obs))


def test_structured_prune_is_seeded(vector_env: GridModel) -> None:
    model, config = random_mlp((64, 64))
    obs = np.concatenate([reachable_obs(vector_env)] * 4)  # > MAX_BATCH rows: minibatches are sampled
    a, _, _ = structured_prune(model, config, 0.5, obs, steps=9, seed=3)
    b, _, _ = structured_prune(model, config, 0.5, obs, steps=9, seed=3)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_bad_ratio_is_refused(vector_env: GridModel, ratio: float) -> None:
    model, config = random_mlp((16, 16))
    with pytest.raises(ValueError, match="between 0 and 1"):
        structured_prune(model, config, ratio, reachable_obs(vector_env))


def test_bad_inputs_are_refused(vector_env: GridModel) -> None:
    model, config = random_mlp((16, 16))
    obs = reachable_obs(vector_env)
    with pytest.raises(ValueError, match="features per row"):
        structured_prune(model, config, 0.5, obs[:, :4])
    with pytest.raises(ValueError, match="empty"):
        structured_prune(model, config, 0.5, obs[:0])
    with pytest.raises(ValueError, match="remove every unit"):
        structured_prune(*random_mlp((1, 16)), 0.5, obs)
    with pytest.raises(ValueError, match=r"do not match config\.hidden"):
        structured_prune(model, NetConfig(hidden=(32, 16)), 0.5, obs)


def test_a_pruning_step_that_removes_nothing_raises(vector_env: GridModel, monkeypatch) -> None:
    """What a silent skip (``round_to`` on a small layer, an exhausted step count) would look like."""
    monkeypatch.setattr(tp.pruner.BasePruner, "step", lambda self, interactive=False: None)
    model, config = random_mlp((16, 16))
    with pytest.raises(RuntimeError, match="did not reach the requested widths"):
        structured_prune(model, config, 0.5, reachable_obs(vector_env), steps=3)


def test_finetuning_keeps_its_best_snapshot(vector_env: GridModel) -> None:
    """A fine-tune that wrecks the student (absurd learning rate) hands back the best weights it saw —
    here the starting ones, which agree with the teacher everywhere — and without keep_best it does not."""
    teacher, _ = random_mlp((32, 32))
    obs = torch.from_numpy(reachable_obs(vector_env))
    with torch.no_grad():
        target_q = teacher(obs)

    def finetuned(keep_best: bool) -> nn.Module:
        student = copy.deepcopy(teacher)
        objective = argmax_objective(0.01)
        fit_to_teacher(
            student, obs, target_q, 200, 50.0, objective, torch.Generator().manual_seed(0), keep_best
        )
        return student

    kept, wrecked = finetuned(True), finetuned(False)
    for name, value in teacher.state_dict().items():
        assert torch.equal(kept.state_dict()[name], value)
    with torch.no_grad():
        assert (wrecked(obs).argmax(1) == target_q.argmax(1)).float().mean() < 1.0


def test_finetuning_keeps_the_best_scored_snapshot_later_wins_ties(
    vector_env: GridModel, monkeypatch
) -> None:
    """Scored at the start and after every step (SNAPSHOT_EVERY = 1) with scripted agreements, the student
    ends with the weights of the best-scored step — the later of two equal bests — not the last step's."""
    import export.prune as prune

    teacher, _ = random_mlp((16, 16))
    obs = torch.from_numpy(reachable_obs(vector_env))
    with torch.no_grad():
        target_q = teacher(obs)
    student = copy.deepcopy(teacher)
    torch.nn.init.normal_(student.out.weight)  # something to learn, so every step changes the weights
    scores = iter([0.5, 0.7, 0.9, 0.6, 0.9, 0.8])  # start, then steps 1-5: step 4 is the later best
    seen: list[dict[str, torch.Tensor]] = []

    def scripted(outputs: torch.Tensor, target: torch.Tensor) -> float:
        seen.append({k: v.detach().clone() for k, v in student.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(prune, "SNAPSHOT_EVERY", 1)
    objective = Objective(loss=argmax_objective(0.01).loss, score=scripted, describe="scripted")
    fit_to_teacher(
        student, obs, target_q, 5, 1e-2, objective, torch.Generator().manual_seed(0), keep_best=True
    )
    assert len(seen) == 6
    final = student.state_dict()
    assert all(torch.equal(final[name], seen[4][name]) for name in final)  # step 4: the later of two 0.9s
    assert any(not torch.equal(final[name], seen[2][name]) for name in final)  # not step 2, the earlier
    assert any(not torch.equal(final[name], seen[5][name]) for name in final)  # nor the last step's


@pytest.mark.slow  # ~4 s per ratio to prune on a loaded 2-core machine
@pytest.mark.parametrize("ratio", [0.5, 0.7])
def test_pruning_keeps_the_teachers_return(
    oracle_teacher, vector_env: GridModel, ratio: float, learning_seed: int, record_property
) -> None:
    """The issue's target (≤ 30% of the float params with ≥ 99% of its exact return), also at the
    exporter's strongest default ratio."""
    model, config = oracle_teacher
    obs = reachable_obs(vector_env)
    before = evaluate_model(model, vector_env)
    assert before.oracle_ratio == pytest.approx(1.0)
    # the defaults the exporter uses (it passes seed 0)
    pruned, _, info = structured_prune(model, config, ratio, obs, seed=learning_seed)
    after = evaluate_model(pruned, vector_env)
    q_ref, q_new = q_values(model, obs), q_values(pruned, obs)
    agreement, drift = float((q_ref.argmax(1) == q_new.argmax(1)).mean()), float(np.abs(q_ref - q_new).max())
    record_property("return_ratio", after.mean_return / before.mean_return)
    record_property("agreement", agreement)
    record_property("max_abs_q_diff", drift)
    assert info["params_after"] <= (1 - ratio) ** 2 * 1.2 * info["params_before"]
    assert after.mean_return >= 0.99 * before.mean_return
    assert agreement >= 0.99
    # A pruned net is judged by its actions and return (the gate bounds Q drift only against its own torch
    # net); its Q-values stay within one target step (1.0) of the teacher's: 0.13-0.23 at ratio 0.5 and
    # 0.55-0.61 at 0.7 on three float paths (docs/test-margins.md).
    assert drift <= 1.0


# --------------------------------------------------------------------------------------------- CNN


@pytest.fixture(scope="module")
def image_obs() -> np.ndarray:
    env = build_model("default", "image")
    return flat_obs(env.observations[Oracle(env).distance >= 0])


def test_cnn_prunes_conv_channels_and_body(image_obs: np.ndarray, tmp_path) -> None:
    torch.manual_seed(0)
    config = NetConfig(kind="cnn", obs_dim=9, n_actions=3, hidden=(64, 32), channels=16)
    model = build_network(config)
    pruned, new_config, info = structured_prune(model, config, 0.5, image_obs, steps=6)
    assert linear_shapes(pruned) == [(8, 1, 3, 3), (32, 72), (16, 32), (3, 16)]
    assert new_config.channels == 8 and new_config.hidden == (32, 16)
    assert info["channels_before"] == 16 and info["channels_after"] == 8
    assert info["params_after"] == count_params(pruned) < info["params_before"]
    assert q_values(pruned, image_obs).shape == (len(image_obs), 3)
    loaded, loaded_config, _ = load_checkpoint(
        save_checkpoint(tmp_path / "cnn.safetensors", pruned, new_config)
    )
    assert loaded_config == new_config
    np.testing.assert_array_equal(q_values(loaded, image_obs), q_values(pruned, image_obs))
    assert linear_shapes(model)[0] == (16, 1, 3, 3)  # caller's model untouched


def test_cnn_masked(image_obs: np.ndarray) -> None:
    torch.manual_seed(0)
    config = NetConfig(kind="cnn", obs_dim=9, n_actions=3, hidden=(64, 32), channels=16)
    model = build_network(config)
    masked, _, info = masked_prune(model, config, 0.5)
    assert linear_shapes(masked) == linear_shapes(model)
    assert info["params_after"] == info["params_before"]
    assert info["zero_fraction"] == pytest.approx(0.5, abs=0.01)


# --------------------------------------------------------------------------------------------- masked


@pytest.mark.parametrize("amount", [0.3, 0.5])
def test_masked_prune_keeps_shapes_and_zeroes_weights(amount: float, tmp_path) -> None:
    model, config = random_mlp()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    masked, new_config, info = masked_prune(model, config, amount)
    assert linear_shapes(masked) == linear_shapes(model)
    assert info["params_after"] == info["params_before"] == count_params(model)
    assert info["zero_fraction"] == pytest.approx(amount, abs=0.005) and info["amount"] == amount
    for layer in (m for m in masked.modules() if isinstance(m, nn.Linear)):
        assert (layer.weight == 0).float().mean().item() == pytest.approx(amount, abs=0.01)
    # prune.remove made it permanent: plain parameters, no masks or hooks left to export.
    assert set(masked.state_dict()) == set(state)
    assert not any(m._forward_pre_hooks for m in masked.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert new_config.hidden == config.hidden and new_config.extra["pruning"]["method"] == "l1_unstructured"
    loaded, _, _ = load_checkpoint(save_checkpoint(tmp_path / "masked.safetensors", masked, new_config))
    assert linear_shapes(loaded) == linear_shapes(model)


def test_masked_finetune_keeps_the_zeros(vector_env: GridModel) -> None:
    model, config = random_mlp((64, 64))
    obs = reachable_obs(vector_env)
    plain, _, _ = masked_prune(model, config, 0.5)
    tuned, _, info = masked_prune(model, config, 0.5, calib_obs=obs, steps=20)
    for a, b in zip(plain.state_dict().values(), tuned.state_dict().values(), strict=True):
        assert torch.equal(a == 0, b == 0) or a.ndim == 1  # same mask on every weight matrix
    assert info["finetune_steps"] == 20


def test_masked_bad_arguments() -> None:
    model, config = random_mlp((16, 16))
    for amount in (0.0, 1.0, 2.0):
        with pytest.raises(ValueError, match="between 0 and 1"):
            masked_prune(model, config, amount)
    with pytest.raises(ValueError, match="needs calib_obs"):
        masked_prune(model, config, 0.5, steps=5)
