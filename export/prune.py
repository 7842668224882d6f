"""Pruned variants: structured (torch-pruning, physically smaller) and masked (L1 unstructured, same size).

``structured_prune`` removes whole hidden units (and, for the CNN, conv channels) with torch-pruning, so
the network really gets smaller: fewer parameters, fewer MACs, a smaller ONNX file. It prunes
iteratively and, after every pruning step, distils the pruned network back towards a frozen copy of the
unpruned one on calibration observations, because the export gates compare Q-values and greedy actions
with the float policy, not just returns.

``masked_prune`` is the contrast the issue asks for: ``torch.nn.utils.prune.l1_unstructured`` zeroes half
the weights but keeps every tensor dense, so the file, the parameter count and the latency stay the same.

Both work on a deep copy, return a fresh :class:`NetConfig` (its ``hidden``/``channels`` read off the
real layers, so ``save_checkpoint``/``load_checkpoint`` rebuild the pruned shape) and an ``info`` dict for
the manifest.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from train.networks import NetConfig, build_network, count_params

#: Softmax temperature of the fine-tuning KL. The Q gap between the best two actions is ~0.05–0.2 on a
#: Q scale of ~9, so at τ = 1 the teacher's softmax is nearly uniform and says little about which action
#: is best (the same finding as ``train.distill``'s τ; its sweep: docs/training.md#the-softmax-temperature).
TEMPERATURE = 0.01

#: Weight of the Q-value MSE next to the (τ²-scaled) KL term in the distillation loss. The KL keeps the
#: action *ranking*; the small MSE anchors the Q-values to the teacher's (without it the student drifts
#: off and collapses: weight 0 at ratio 0.7 gave 65 % agreement and a negative return). Too much of it
#: crowds out the ranking: at 3e-4 two default CQL policies kept strict agreement 1 at ratios 0.3–0.7 (and
#: 100 % of the return at 0.7; measurements: docs/export.md#the-q-value-mse-weight).
Q_MSE_WEIGHT = 3e-4

#: Total fine-tuning steps over all pruning rounds: 100 % of the default policy's return and 99.7 %
#: agreement at ratio 0.5, ~7 s on one thread (measurements: docs/export.md#fine-tuning-steps-and-budgets).
FINETUNE_STEPS = 3000

#: During the last round the student is scored (argmax agreement with the teacher on the calibration
#: observations) every this many steps and the best snapshot is kept: the last step is not always the best,
#: since a Q-network's greedy action flips wherever two Q-values lie a few hundredths apart.
SNAPSHOT_EVERY = 100

#: Learning rate of the optional masked fine-tune (the structured default; the masks keep zeros at zero).
MASKED_LR = 3e-3

#: The fine-tuning learning rate decays (cosine) to this fraction of ``lr`` by the end of each round.
FINAL_LR_FACTOR = 0.05

#: Calibration batches larger than this are sampled in minibatches of this size (seeded).
MAX_BATCH = 1024

#: One thread: the networks and batches are tiny, and on a shared 2-core machine more threads oversubscribe
#: the CPU (measured: ~6 ms per 256×256 step on one thread, 30–100 ms on two under load).
FINETUNE_THREADS = 1


@dataclass(frozen=True)
class Budget:
    """How much fine-tuning a network gets: Adam steps in all, minibatch rows, torch threads."""

    steps: int
    batch: int
    threads: int


#: An MLP's: the figures above.
MLP_BUDGET = Budget(FINETUNE_STEPS, MAX_BATCH, FINETUNE_THREADS)
#: A CNN's (NatureCNN on 4×84×84 frames, 9.4 M MACs a frame): batches of 64 frames (the MLP's 1,024 would
#: cost ~2 s a step), two threads, 3,000 steps: ~60 s a network here, after which Breakout pruned-50 agreed
#: with the float policy on 97.0 % of unseen frames at τ = 1 (docs/export.md#fine-tuning-steps-and-budgets).
CNN_BUDGET = Budget(3000, 64, 2)


def budget_for(inputs: torch.Tensor) -> Budget:
    """:data:`CNN_BUDGET` for a policy that takes frames (``[N, C, H, W]`` inputs), else :data:`MLP_BUDGET`
    (the gridworld's own small CNN takes a flat observation and fine-tunes like an MLP)."""
    return CNN_BUDGET if inputs.ndim == 4 else MLP_BUDGET


@dataclass(frozen=True)
class Objective:
    """What fine-tuning pulls a pruned or distilled network towards, and how a snapshot is scored.

    ``loss(student_out, teacher_out)`` is minimised; ``score(student_out, teacher_out)`` (higher is
    better) picks the snapshot that is kept. Argmax policies keep the teacher's action ranking
    (:func:`argmax_objective`); box policies keep its actions (:func:`action_objective`).
    """

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], float]
    describe: str


def argmax_objective(temperature: float = TEMPERATURE) -> Objective:
    """Q-values or logits: :func:`distillation_loss` at ``temperature``, scored by strict argmax agreement."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    def score(student: torch.Tensor, teacher: torch.Tensor) -> float:
        return float((student.argmax(dim=1) == teacher.argmax(dim=1)).float().mean())

    return Objective(
        loss=lambda s, t: distillation_loss(s, t, temperature),
        score=score,
        describe=f"tau^2*KL(tau={temperature}) + {Q_MSE_WEIGHT}*MSE(Q)",
    )


def action_objective(span: np.ndarray) -> Objective:
    """Box actions in the env's units: MSE of the action error as a fraction of each dimension's range
    ``span`` (high − low), scored by minus the mean |Δa| / span, the figure the box gate checks."""
    scale = torch.as_tensor(np.asarray(span, dtype=np.float32).reshape(1, -1))
    if not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
        raise ValueError(f"action ranges must be finite and positive, got {span}")

    def error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (student - teacher).reshape(len(student), -1) / scale

    return Objective(
        loss=lambda s, t: error(s, t).square().mean(),
        score=lambda s, t: -float(error(s, t).abs().mean()),
        describe="MSE(action / (high - low))",
    )


def structured_prune(
    model: nn.Module,
    config: NetConfig,
    ratio: float,
    calib_obs: np.ndarray,
    steps: int = FINETUNE_STEPS,
    iterative_steps: int = 5,
    lr: float = 3e-3,
    temperature: float = TEMPERATURE,
    seed: int = 0,
) -> tuple[nn.Module, NetConfig, dict[str, Any]]:
    """Remove ``ratio`` of every hidden layer's units (conv channels too), distilling after each step.

    ``ratio`` counts units (torch-pruning's ``pruning_ratio``), so ratio 0.5 leaves about a quarter of a
    hidden×hidden layer's weights. ``steps`` is the *total* number of fine-tuning steps over the
    ``iterative_steps`` pruning rounds, half of them after the last (:func:`finetune_schedule`); each round
    runs Adam at ``lr`` annealed to ``lr · FINAL_LR_FACTOR``. The loss is::

        τ² · KL(softmax(q_teacher / τ) ‖ softmax(q_student / τ)) + Q_MSE_WEIGHT · MSE(q_student, q_teacher)

    with the teacher a frozen copy of the unpruned ``model`` and τ = ``temperature``: the KL keeps the
    action ranking, the small MSE anchors the Q-values to the teacher's (:data:`Q_MSE_WEIGHT`).
    The last round keeps its best snapshot by argmax agreement with the teacher on ``calib_obs``
    (:data:`SNAPSHOT_EVERY`). ``steps=0`` prunes without fine-tuning (and loses most of the return).
    The defaults (3,000 steps, 5 rounds, lr 3e-3, τ = 0.01) keep 100 % of the default 128×128×128 CQL
    policy's exact return at ratios 0.3, 0.5 and 0.7 in ~7–11 s each on one thread.
    Returns the pruned model in eval mode, its config and an info dict (params/MACs before and after).
    """
    ratio = _check_fraction("ratio", ratio)
    if iterative_steps < 1:
        raise ValueError(f"iterative_steps must be ≥ 1, got {iterative_steps}")
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _output_layer(model)
    _calibration_tensor(calib_obs, config.obs_dim)  # validate before any work
    before = _widths(model)
    body_widths = tuple(before[f"body.{i}"] for i in range(len(before) - ("conv" in before)))
    if body_widths != config.hidden:
        raise ValueError(
            f"the model's hidden widths {body_widths} do not match config.hidden {config.hidden}"
        )
    expected = _expected_widths(before, ratio)

    objective = argmax_objective(temperature)
    obs = _calibration_tensor(calib_obs, config.obs_dim)
    student, counts, elapsed = _prune_rounds(model, obs, ratio, steps, iterative_steps, lr, objective, seed)
    after = _check_widths(before, _widths(student), expected)

    hidden_after = tuple(after[f"body.{i}"] for i in range(len(config.hidden)))
    fields: dict[str, Any] = {"hidden": hidden_after}
    if "conv" in after:
        fields["channels"] = after["conv"]
    notes = {
        "variant": f"pruned-{round(ratio * 100)}",
        "method": "torch-pruning structured (GroupMagnitudeImportance p=2, local, linear schedule)",
        "ratio": ratio,
        "iterative_steps": iterative_steps,
        "finetune_steps": steps,
        "finetune_loss": objective.describe,
        "hidden_before": list(config.hidden),
    }
    new_config = dataclasses.replace(config, extra={**config.extra, "pruning": notes}, **fields)
    _check_rebuilds(student, new_config)
    if hasattr(student, "config"):
        student.config = new_config  # the module's own copy must not keep advertising the old widths
    info = {
        **counts,
        "ratio": ratio,
        "hidden_before": list(config.hidden),
        "hidden_after": list(hidden_after),
        "finetune_steps": steps,
        "seconds": round(elapsed, 3),
    }
    if "conv" in after:
        info["channels_before"] = before["conv"]
        info["channels_after"] = after["conv"]
    return student, new_config, info


def masked_prune(
    model: nn.Module,
    config: NetConfig | None,
    amount: float = 0.5,
    calib_obs: np.ndarray | None = None,
    steps: int = 0,
    seed: int = 0,
    objective: Objective | None = None,
) -> tuple[nn.Module, NetConfig | None, dict[str, Any]]:
    """Zero the smallest ``amount`` of every Linear weight (L1 unstructured), then make it permanent.

    ``prune.remove`` folds each mask into a plain dense ``weight`` again, so the result exports and
    checkpoints like any network — and that is the point: the zeros are stored, the shapes and the
    parameter count do not change, and a dense runtime is no faster. With ``steps > 0`` (and
    ``calib_obs``) the masked network is distilled towards the original while the masks are still
    attached, so the zeros stay zero, towards ``objective`` (default :func:`argmax_objective`).
    ``config`` is None for a policy source's module (``export.policies``); the returned config is then
    None too.
    """
    amount = _check_fraction("amount", amount)
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
    if steps > 0 and calib_obs is None:
        raise ValueError("masked fine-tuning (steps > 0) needs calib_obs")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear layers to mask")
    obs = None
    if steps > 0 and calib_obs is not None:
        obs = (
            policy_inputs(model, calib_obs)
            if config is None
            else _calibration_tensor(calib_obs, _input_width(linears[0], config))
        )
    budget = MLP_BUDGET if obs is None else budget_for(obs)
    with torch_threads(budget.threads), torch.inference_mode(False), torch.enable_grad():
        masked = copy.deepcopy(model)  # a normal (trainable) copy even under the caller's inference_mode
        linears = [m for m in masked.modules() if isinstance(m, nn.Linear)]
        params_before = count_params(masked)
        for layer in linears:
            torch_prune.l1_unstructured(layer, name="weight", amount=amount)
        if obs is not None:
            teacher = copy.deepcopy(model).eval().requires_grad_(False)
            with torch.no_grad():
                target = teacher(obs)
            generator = torch.Generator().manual_seed(seed)
            objective = objective or argmax_objective()
            fit_to_teacher(
                masked,
                obs,
                target,
                steps,
                MASKED_LR,
                objective,
                generator,
                keep_best=True,
                batch=budget.batch,
            )
        for layer in linears:
            torch_prune.remove(layer, "weight")
    masked.eval()
    total = sum(layer.weight.numel() for layer in linears)
    zeros = sum(int((layer.weight == 0).sum()) for layer in linears)
    notes = {"variant": f"masked-{round(amount * 100)}", "method": "l1_unstructured", "amount": amount}
    new_config = config and dataclasses.replace(config, extra={**config.extra, "pruning": notes})
    if hasattr(masked, "config"):
        masked.config = new_config
    info = {
        "params_before": params_before,
        "params_after": count_params(masked),
        "zero_fraction": zeros / total,
        "zero_weights": zeros,
        "amount": amount,
        "finetune_steps": steps,
    }
    return masked, new_config, info


def prune_policy(
    model: nn.Module,
    ratio: float,
    calib_obs: np.ndarray,
    objective: Objective,
    steps: int | None = None,
    iterative_steps: int = 5,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`structured_prune` for a policy source's network (``export.policies.modules.mlp_policy``,
    a NatureCNN trunk before it for an image policy).

    Such a module has no :class:`NetConfig`; its prunable widths are every Conv2d's channels and every
    Linear's outputs but ``.out``, which is kept whole, like whatever surrounds the layers (observation
    normalisation or image scaling, tanh, unscaling: they act on the input and output widths, which pruning
    never touches). Fine-tuning pulls the pruned network towards the unpruned one's outputs on
    ``calib_obs`` (flat float32 states, or an image policy's uint8 frames) by ``objective``; ``steps``
    defaults to the network's :func:`budget_for`. Returns the pruned module in eval mode and an info dict
    (params/MACs and widths before and after).
    """
    ratio = _check_fraction("ratio", ratio)
    out = _output_layer(model)
    obs = policy_inputs(model, calib_obs)
    before = hidden_widths(model, out)
    if not before:
        raise ValueError(f"{type(model).__name__} has no hidden layer to prune (only `.out`)")
    expected = _expected_widths(before, ratio)
    budget = budget_for(obs)
    steps = budget.steps if steps is None else steps
    student, counts, elapsed = _prune_rounds(
        model, obs, ratio, steps, iterative_steps, lr, objective, seed, budget
    )
    after = _check_widths(before, hidden_widths(student, student.out), expected)
    info = {
        **counts,
        "ratio": ratio,
        "hidden_before": list(before.values()),
        "hidden_after": list(after.values()),
        "layers": list(before),
        "finetune_steps": steps,
        "finetune_batch": min(budget.batch, len(obs)),
        "finetune_loss": objective.describe,
        "seconds": round(elapsed, 3),
    }
    return student, info


def _prune_rounds(
    model: nn.Module,
    obs: torch.Tensor,
    ratio: float,
    steps: int,
    iterative_steps: int,
    lr: float,
    objective: Objective,
    seed: int,
    budget: Budget = MLP_BUDGET,
) -> tuple[nn.Module, dict[str, int], float]:
    """A pruned, fine-tuned copy of ``model`` (``.out`` kept), its params/MACs before and after, and the
    seconds it took."""
    started = time.perf_counter()
    # Everything that creates tensors runs with autograd on: torch-pruning traces its dependency graph
    # through autograd (PITFALLS.md), and copies made under the caller's inference_mode could never train.
    with torch_threads(budget.threads), torch.inference_mode(False), torch.enable_grad():
        obs = obs.clone()
        example = torch.zeros_like(obs[:1])  # the model's own input: flat float32 or uint8 frames
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        student = copy.deepcopy(model)
        macs_before, params_before = tp.utils.count_ops_and_params(student, example)
        with torch.no_grad():
            target = teacher(obs)
        pruner = tp.pruner.BasePruner(
            student,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            iterative_steps=iterative_steps,
            ignored_layers=[_output_layer(student)],  # an instance: a class or nothing prunes the actions too
        )
        generator = torch.Generator().manual_seed(seed)
        rounds = finetune_schedule(steps, iterative_steps)
        for i, n in enumerate(rounds):
            pruner.step()
            last = i == len(rounds) - 1
            fit_to_teacher(
                student, obs, target, n, lr, objective, generator, keep_best=last, batch=budget.batch
            )
    student.eval()
    macs_after, params_after = tp.utils.count_ops_and_params(student, example)
    counts = {
        "params_before": int(params_before),
        "params_after": int(params_after),
        "macs_before": int(macs_before),
        "macs_after": int(macs_after),
    }
    return student, counts, time.perf_counter() - started


def _expected_widths(before: dict[str, int], ratio: float) -> dict[str, int]:
    """The widths pruning ``ratio`` of every layer leaves; refused if a layer would keep no unit."""
    expected = {name: int(width * (1.0 - ratio)) for name, width in before.items()}
    too_far = {name: before[name] for name, keep in expected.items() if keep < 1}
    if too_far:
        raise ValueError(f"ratio {ratio} would remove every unit of {too_far}; use a smaller ratio")
    return expected


def _check_widths(before: dict[str, int], after: dict[str, int], expected: dict[str, int]) -> dict[str, int]:
    mismatched = {
        name: (before[name], after[name], expected[name]) for name in before if after[name] != expected[name]
    }
    if mismatched:
        # e.g. round_to, a torch-pruning upgrade, or a layer the dependency graph did not reach.
        raise RuntimeError(
            f"torch-pruning did not reach the requested widths (layer: before, after, expected): {mismatched}"
        )
    return after


def finetune_schedule(steps: int, rounds: int) -> list[int]:
    """Fine-tuning steps after each pruning round: half of them after the last, the rest spread evenly.

    The intermediate rounds only need to pull the network back close enough for the next magnitude
    ranking to be meaningful; the final network is what gets exported and gated, so it gets the most.
    """
    if rounds == 1:
        return [steps]
    early = (steps - (steps + 1) // 2) // (rounds - 1)
    return [early] * (rounds - 1) + [steps - early * (rounds - 1)]


def distillation_loss(q_student: torch.Tensor, q_teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """τ²·KL on softmax(q/τ) (the action ranking) plus a small MSE on Q (the anchor to the teacher)."""
    kl = F.kl_div(
        F.log_softmax(q_student / temperature, dim=1),
        F.log_softmax(q_teacher / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return temperature**2 * kl + Q_MSE_WEIGHT * F.mse_loss(q_student, q_teacher)


def fit_to_teacher(
    student: nn.Module,
    obs: torch.Tensor,
    target: torch.Tensor,
    steps: int,
    lr: float,
    objective: Objective,
    generator: torch.Generator,
    keep_best: bool = False,
    batch: int = MAX_BATCH,
) -> None:
    """Adam on ``objective.loss`` against the teacher's outputs ``target``, cosine-annealed to
    ``lr · FINAL_LR_FACTOR``.

    A fresh optimizer per round because pruning replaced the parameter tensors. The annealing matters:
    the greedy action flips where two Q-values lie ~0.1 apart, and a constant learning rate keeps
    jittering around that precision. With ``keep_best`` the student ends with the weights that scored best
    (``objective.score`` on ``obs``; at the start, every :data:`SNAPSHOT_EVERY` steps and at the end; the
    later snapshot wins a tie). Each step takes ``batch`` rows sampled from ``obs`` (all of them if fewer).
    """
    if steps == 0:
        return

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in student.state_dict().items()}

    # The starting weights compete too: fine-tuning never hands back a student worse than it received.
    best = (_score(student, obs, target, objective), snapshot()) if keep_best else None
    student.train()
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=steps, eta_min=lr * FINAL_LR_FACTOR
    )
    n = len(obs)
    for step in range(steps):
        if n > batch:
            idx = torch.randint(n, (batch,), generator=generator)
            x, y = obs[idx], target[idx]
        else:
            x, y = obs, target
        loss = objective.loss(student(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if best is not None and ((step + 1) % SNAPSHOT_EVERY == 0 or step + 1 == steps):
            score = _score(student, obs, target, objective)
            if score >= best[0]:
                best = (score, snapshot())
    if best is not None:
        student.load_state_dict(best[1])
    student.eval()


def _score(student: nn.Module, obs: torch.Tensor, target: torch.Tensor, objective: Objective) -> float:
    was_training = student.training
    student.eval()
    try:
        with torch.inference_mode():
            return objective.score(student(obs), target)
    finally:
        student.train(was_training)


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 < value < 1.0):  # also refuses NaN
        raise ValueError(f"{name} must lie strictly between 0 and 1 (e.g. 0.5 for pruned-50), got {value}")
    return value


def _output_layer(model: nn.Module) -> nn.Linear:
    out = getattr(model, "out", None)
    if not isinstance(out, nn.Linear):
        raise ValueError(
            f"{type(model).__name__} has no `.out` Linear layer; structured pruning keeps that layer whole "
            "and needs it (build the network with train.networks.build_network)"
        )
    return out


def _widths(model: nn.Module) -> dict[str, int]:
    """Prunable widths keyed by module path: each hidden Linear's outputs and the conv's channels."""
    widths: dict[str, int] = {}
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Sequential):
        raise ValueError(f"{type(model).__name__} has no `.body` Sequential of Linear/ReLU layers")
    for i, layer in enumerate(m for m in body if isinstance(m, nn.Linear)):
        widths[f"body.{i}"] = layer.out_features
    conv = getattr(model, "conv", None)
    if conv is not None:
        convs = [m for m in conv.modules() if isinstance(m, nn.Conv2d)]
        if len(convs) != 1:
            raise ValueError(f"expected one Conv2d in `.conv`, found {len(convs)}")
        widths["conv"] = convs[0].out_channels
    return widths


def hidden_widths(model: nn.Module, out: nn.Linear) -> dict[str, int]:
    """Channels of every Conv2d and output width of every Linear except ``out``, keyed by module path, in
    order."""
    widths = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            widths[name] = m.out_channels
        elif isinstance(m, nn.Linear) and m is not out:
            widths[name] = m.out_features
    return widths


def _input_width(first: nn.Linear, config: NetConfig | None) -> int:
    """Features per observation: the config's (a CNN's first Linear sits after the conv), else the first
    Linear's inputs."""
    return first.in_features if config is None else config.obs_dim


def policy_inputs(model: nn.Module, calib_obs: np.ndarray) -> torch.Tensor:
    """``calib_obs`` as the policy module takes it: an image policy's frames as they are (uint8
    ``[N, C, H, W]``, scaled inside the module), anything else flat float32 ``[N, features]``."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    obs = np.asarray(calib_obs)
    if first is None:  # a graph (an onnx: policy's module): it takes the flat observation
        return _calibration_tensor(obs, math.prod(obs.shape[1:]))
    if isinstance(first, nn.Linear):
        return _calibration_tensor(obs, first.in_features)
    if obs.ndim != 4 or obs.shape[0] == 0:
        raise ValueError(
            f"calib_obs of an image policy must be its frames [N, C, H, W] (N ≥ 1), got shape {obs.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(obs))


def _calibration_tensor(calib_obs: np.ndarray, obs_dim: int) -> torch.Tensor:
    obs = np.asarray(calib_obs)
    if obs.ndim == 0 or obs.shape[0] == 0:
        raise ValueError("calib_obs is empty; pass dataset observations plus every reachable state's")
    obs = obs.reshape(len(obs), -1).astype(np.float32, copy=False)
    if obs.shape[1] != obs_dim:
        raise ValueError(f"calib_obs has {obs.shape[1]} features per row, the network takes {obs_dim}")
    if not np.isfinite(obs).all():
        raise ValueError("calib_obs contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(obs))


def _check_rebuilds(model: nn.Module, config: NetConfig) -> None:
    """The pruned weights must load into ``build_network(config)``, or the checkpoint would not round-trip."""
    try:
        build_network(config).load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"pruned weights do not fit the derived config {config.hidden}: {err}") from err


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily cap torch's intra-op threads (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(n, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


__all__ = [
    "CNN_BUDGET",
    "FINETUNE_STEPS",
    "MLP_BUDGET",
    "Q_MSE_WEIGHT",
    "TEMPERATURE",
    "Budget",
    "Objective",
    "action_objective",
    "argmax_objective",
    "budget_for",
    "distillation_loss",
    "finetune_schedule",
    "masked_prune",
    "prune_policy",
    "structured_prune",
]
