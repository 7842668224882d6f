"""Torch-level sources of the variants: the float policy, pruned/masked copies of it, the distilled student,
and a copy with 1-bit weights (``export.binarize``).

Each source is built once per export (``pruned-50`` feeds both ``pruned-50`` and ``pruned-50-int8``) and
never modifies the float policy, which stays the reference every gate compares against.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from train.networks import NetConfig, count_params

if TYPE_CHECKING:
    from tasks import TaskSpec

NO_DISTILLED = "no distilled checkpoint: run make distill"
MASKED_FINETUNE_STEPS = 1200
"""Distillation steps with the L1 masks attached. Zeroing half of every layer unaided wrecks the policy
(measured on the (256, 256) test policy: return −10.0, 36 % agreement), which would make masked-50 a
failed artifact instead of the same-size, same-speed comparison it is there to show; 300 steps gave 96.8 %
agreement, 600 97.8 %, 1200 99.7 % (~6–15 s on 2 cores). With the τ = 0.01 fine-tuning loss
(``export.prune.TEMPERATURE``) on the default 128×128×128 CQL policy: the float return, 99.65 % agreement."""


FINETUNE_SEED = 7_919
"""Offset of the fine-tuning rollouts' seed from the export's ``--seed``: other episodes than the
calibration's, whose frames the gates judge the artifacts on."""


class SourceUnavailable(RuntimeError):
    """A source that cannot be built here; its variants are recorded ``failed`` with this message."""


@dataclass
class SourceModel:
    """A network to export, and where it came from (recorded in the ONNX metadata and the manifest)."""

    model: nn.Module
    config: NetConfig | None
    """The NeuroQuant network config; None for a policy source (``--policy``), whose module has none."""
    checkpoint: str
    """The checkpoint this network is (or derives from)."""
    sha256: str
    """sha256 of that checkpoint."""
    info: dict[str, Any] = field(default_factory=dict)
    """How it was made (pruning counts, MACs …); goes to the artifact's ``extra["source"]``."""

    @property
    def params(self) -> int:
        return params_of(self.model)


def params_of(model: nn.Module) -> int:
    """Parameters of a network; an ONNX policy's (``export.policies.onnx_source``): its initializers'."""
    return getattr(model, "graph_params", None) or count_params(model)


@dataclass
class SourceContext:
    """Everything the source builders need; built once by the pipeline."""

    float_source: SourceModel
    distilled: SourceModel | None
    """The student from ``train.distill``, or None when its checkpoint does not exist."""
    calib_obs: np.ndarray
    """float32 ``[N, obs_dim]`` observations for pruning fine-tuning (dataset + every reachable state, or
    a policy source's noisy rollouts)."""
    seed: int = 0
    task: TaskSpec | None = None
    """A policy source's task (``export.task_export``): its pruned copies are fine-tuned by the task's
    objective and its student is distilled here (``export.policy_distill``); None for the gridworld's
    NeuroQuant checkpoint, whose student comes from ``make distill``."""
    finetune_steps: int | None = None
    """A policy source's fine-tuning steps for every derived network (``--finetune-steps``); None: each
    network's own budget (``export.prune.budget_for``)."""
    finetune_frames: int = 16_384
    """An image policy's derived networks fine-tune on this many rollout frames of the float policy (made
    once, on first use) instead of the 4,096 calibration frames: a CNN has far more weights to pin down than
    an MLP. Measured on the zoo's Breakout policy, pruned-50 after 3,000 steps agrees with the float policy
    on 97.0 % of unseen rollout frames (tie margin 5 %) when tuned on 4,096 frames, 98.1 % on 16,384."""
    dataset: str | None = None
    """The gridworld's replay buffer (``--dataset``), on which its students of other sizes are distilled
    (:func:`_student`); None for a policy source, whose students learn from rollouts."""
    _finetune_obs: np.ndarray | None = field(default=None, repr=False)

    def finetune_obs(self) -> np.ndarray:
        """The states derived networks are fine-tuned on: :attr:`calib_obs`, or an image policy's
        :attr:`finetune_frames` rollout frames (seeded apart from the calibration's)."""
        if (
            self.task is None
            or np.asarray(self.calib_obs).ndim != 4
            or self.finetune_frames <= len(self.calib_obs)
        ):
            return self.calib_obs
        if self._finetune_obs is None:
            from export.onnx_export import torch_q_values
            from export.rollouts import rollout_states

            model = self.float_source.model
            self._finetune_obs = rollout_states(
                self.task,
                lambda o: torch_q_values(model, o).reshape(len(o), -1),
                seed=self.seed + FINETUNE_SEED,
                n_states=self.finetune_frames,
            )
        return self._finetune_obs


def nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero: what masking changes while the parameter count stays put."""
    with torch.no_grad():
        return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))


def _float(ctx: SourceContext) -> SourceModel:
    return ctx.float_source


def _derived(
    ctx: SourceContext, model: nn.Module, config: NetConfig | None, info: dict[str, Any]
) -> SourceModel:
    base = ctx.float_source
    model.eval()
    info = {**info, "derived_from": base.checkpoint, "nonzero_params": nonzero_params(model)}
    return SourceModel(model, config, base.checkpoint, base.sha256, info)


def _pruned(ratio: float, ctx: SourceContext) -> SourceModel:
    # torch-pruning is imported only when a pruned variant is built
    from export.prune import prune_policy, structured_prune

    base = ctx.float_source
    if base.config is None:
        if ctx.task is None:
            raise SourceUnavailable("pruning a module without a NeuroQuant config needs its task")
        model, info = prune_policy(
            base.model, ratio, ctx.finetune_obs(), _objective(ctx), steps=ctx.finetune_steps, seed=ctx.seed
        )
        return _derived(ctx, model, None, {"method": "structured", **info})
    model, config, info = structured_prune(
        copy.deepcopy(base.model), base.config, ratio, ctx.calib_obs, seed=ctx.seed
    )
    return _derived(ctx, model, config, {"method": "structured", "ratio": ratio, **info})


def _masked(amount: float, ctx: SourceContext) -> SourceModel:
    from export.prune import CNN_BUDGET, masked_prune

    base = ctx.float_source
    frames = np.asarray(ctx.calib_obs).ndim == 4  # an image policy's: a CNN fine-tunes on its own budget
    model, config, info = masked_prune(
        copy.deepcopy(base.model),
        base.config,
        amount,
        calib_obs=ctx.finetune_obs(),
        steps=ctx.finetune_steps or (CNN_BUDGET.steps if frames else MASKED_FINETUNE_STEPS),
        seed=ctx.seed,
        objective=_objective(ctx),
    )
    return _derived(ctx, model, config, {"method": "l1-unstructured-mask", "amount": amount, **info})


def _objective(ctx: SourceContext) -> Any:
    """A policy source's fine-tuning objective (``export.policy_distill.objective_for``); None, the
    argmax default, for the gridworld checkpoint."""
    from export.policy_distill import objective_for

    return None if ctx.task is None else objective_for(ctx.task)


def _binary(ctx: SourceContext) -> SourceModel:
    from export.binarize import binarize
    from export.prune import argmax_objective, policy_inputs

    base = ctx.float_source
    if base.config is None:
        inputs = policy_inputs(base.model, ctx.finetune_obs())
    else:
        inputs = torch.from_numpy(np.ascontiguousarray(ctx.calib_obs, dtype=np.float32)).reshape(
            len(ctx.calib_obs), base.config.obs_dim
        )
    objective = _objective(ctx) or argmax_objective()
    model, info = binarize(base.model, inputs, objective, steps=ctx.finetune_steps, seed=ctx.seed)
    config = base.config and dataclasses.replace(base.config, extra={**base.config.extra, "binary": True})
    return _derived(ctx, model, config, info)


def _distilled(ctx: SourceContext) -> SourceModel:
    if ctx.distilled is None and ctx.task is not None:
        from export.policy_distill import distill_policy

        model, info = distill_policy(
            ctx.float_source.model, ctx.task, ctx.finetune_obs(), steps=ctx.finetune_steps, seed=ctx.seed
        )
        ctx.distilled = _derived(ctx, model, None, info)
    if ctx.distilled is None:
        raise SourceUnavailable(NO_DISTILLED)
    return ctx.distilled


def _student(share: float, ctx: SourceContext) -> SourceModel:
    """A student with at most ``share`` of the float policy's parameters, distilled here: a policy source's
    by ``export.policy_distill`` (as ``distilled``, another size), the gridworld's by ``train.distill`` on
    the replay buffer into two hidden layers of the widest equal width that fits (what ``make distill``
    trains at 40×40, 6 % of the default CQL policy: 3.6 s on 2 cores)."""
    from export.policy_distill import distill_policy, scaled_widths

    base = ctx.float_source
    if ctx.task is not None:
        model, info = distill_policy(
            base.model, ctx.task, ctx.finetune_obs(), steps=ctx.finetune_steps, seed=ctx.seed, share=share
        )
        return _derived(ctx, model, None, info)
    if base.config is None or ctx.dataset is None:
        raise SourceUnavailable("distilling a student here needs a NeuroQuant checkpoint and its dataset")
    import tempfile

    from train.checkpoint import load_checkpoint
    from train.distill import STUDENT_FILE, DistillConfig, distill

    config = base.config
    widths = scaled_widths([max(config.hidden)] * 2, config.obs_dim, config.n_actions, share * base.params)
    with tempfile.TemporaryDirectory(prefix="neuroquant-student-") as out:
        summary = distill(
            DistillConfig(
                teacher=base.checkpoint,
                dataset=ctx.dataset,
                out=out,
                hidden=widths,
                seed=ctx.seed,
                progress=False,
                tensorboard=False,
            )
        )
        model, student_config, _ = load_checkpoint(Path(out) / STUDENT_FILE)
    info = {
        "method": "train.distill on the replay buffer",
        "share": share,
        "hidden_after": list(widths),
        "step": summary["step"],
        "teacher_agreement": summary["teacher_agreement"],
    }
    return _derived(ctx, model, student_config, info)


SOURCES: dict[str, Callable[[SourceContext], SourceModel]] = {
    "float": _float,
    **{f"pruned-{pct}": partial(_pruned, pct / 100) for pct in (30, 50, 70)},
    "masked-50": partial(_masked, 0.5),
    "distilled": _distilled,
    "binary": _binary,
}
"""The sources the fixed variants (``export.variants``) are made from."""

SIZED = {"pruned": (_pruned, 95), "distilled": (_student, 100)}
"""Sources with a size in percent, ``<kind>-<pct>`` (what the compression search asks for): a structurally
pruned copy with ``pct`` % of its channels removed (1–95), a student of at most ``pct`` % of the float
policy's parameters (1–100)."""


def source_builder(name: str) -> Callable[[SourceContext], SourceModel]:
    """The builder of source ``name``: one of :data:`SOURCES`, or a sized one (:data:`SIZED`), e.g.
    ``pruned-45``, ``distilled-20``; an unknown name raises ValueError listing both."""
    if name in SOURCES:
        return SOURCES[name]
    kind, _, pct = name.rpartition("-")
    if kind in SIZED and pct.isdigit() and 1 <= int(pct) <= SIZED[kind][1]:
        return partial(SIZED[kind][0], int(pct) / 100)
    sized = ", ".join(f"{kind}-<1..{top}>" for kind, (_, top) in SIZED.items())
    raise ValueError(f"unknown source {name!r}; sources: {', '.join(SOURCES)}, {sized}")


def checkpoint_source(
    path: Path, model: nn.Module, config: NetConfig, sha256: str, info: dict[str, Any]
) -> SourceModel:
    """A source read straight from a checkpoint file."""
    model.eval()
    return SourceModel(model, config, str(path), sha256, {"checkpoint_info": info})
