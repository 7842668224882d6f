"""``python -m export --policy KIND:PATH --env ENV_ID``: a trained policy, for any Gymnasium task, exported
as every variant × format the target profile lists, gated by action kind, in one schema-2 manifest.

The gridworld export (``export.pipeline``) calibrates and gates on a replay buffer and the BFS oracle; a
policy source brings neither. Here the policy (``export.policies.load_policy``) comes with its task spec,
calibration states come from noisy rollouts of the float policy (:func:`rollout_states`), and the gates
compare actions and seeded-episode returns (``export.task_gates``). What the two paths share is reused
from the pipeline: the staged output folder and its atomic swap, the :class:`~export.pipeline.Builder`
(format builders, ONNX-level precisions), the manifest's versions and the final writes.

Variants: every one the profile lists. The float network's (float, fp16, int8-dynamic, int8-static) and
the pruned, masked and distilled networks derived from it (``export.prune.prune_policy``,
``export.policy_distill``, fine-tuned on the rollout states by the task's objective) are built in the
channel formats (``onnx``, ``openvino``; ``tensorrt`` pending on the device as usual). The ``torch`` format
saves NeuroQuant checkpoints (a network config and its weights), which a foreign module has no config
for, and an ONNX policy has no module to prune; those are recorded ``skipped`` with the reason, never
dropped, so the manifest still says what the target would take.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tasks
from backends.manifest import ArtifactEntry, Manifest
from backends.profiles import TargetProfile
from export import task_gates
from export.onnx_export import torch_q_values
from export.pipeline import (
    Builder,
    ExportConfig,
    check_output,
    finish,
    fmt_size,
    now_utc,
    staged_folder,
    versions,
)
from export.policies import LoadedPolicy, load_policy
from export.quantize import PRECISIONS
from export.rollouts import (
    BOX_NOISE,
    CALIBRATION_ENVS,
    CALIBRATION_SEED,
    CALIBRATION_STATES,
    EPSILON,
    rollout_states,
)
from export.sources import SourceContext, SourceModel, params_of
from export.variants import VARIANTS, Variant
from tasks import EvaluationSpec, TaskSpec

CHANNEL_FORMATS = ("onnx", "openvino", "tensorrt")
"""Formats built from the variant's ONNX, which a policy source has; ``torch`` needs a NeuroQuant config."""


@dataclass
class TaskPlan:
    """A checked policy export: what :func:`prepare` resolved, ready to :func:`build`."""

    config: ExportConfig
    profile: TargetProfile
    variants: list[Variant]
    policy: LoadedPolicy
    task: TaskSpec
    """The policy's task, its evaluation set to ``config.episodes`` seeds (what the manifest records)."""
    calib_obs: np.ndarray
    """float32 ``[CALIBRATION_STATES, obs_dim]`` states of the float policy's noisy rollouts."""
    calibration: dict[str, Any]
    """How :attr:`calib_obs` was made (for the manifest)."""
    started: float = field(default_factory=time.perf_counter)


# ---------------------------------------------------------------------------------------------- prepare


def infer_fn(policy: LoadedPolicy) -> task_gates.Policy:
    """The float torch policy on flat float32 observations ``[N, obs_dim]`` → flat outputs."""
    return lambda obs: torch_q_values(policy.model, obs).reshape(len(obs), -1)


def prepare(config: ExportConfig) -> TaskPlan:
    """Check the configuration, load the policy and collect its calibration states; a ``ValueError``
    (or ``tasks.TaskUnavailable``) names what is wrong before anything is written."""
    if not config.env:
        raise ValueError(
            f"--policy {config.policy} needs --env ENV_ID, the Gymnasium id of the task it acts in "
            f"(e.g. --env CartPole-v1)"
        )
    if config.episodes < 2:
        raise ValueError(f"--episodes {config.episodes}: the return's 95% CI needs at least 2 episodes")
    profile, variants = check_output(config)
    options: dict[str, Any] = {}
    if config.vecnormalize:
        options["vecnormalize"] = Path(config.vecnormalize)
    if config.weights:
        options["weights"] = Path(config.weights)
    policy = load_policy(config.policy, config.env, config.trust_pickle, **options)
    task = replace(policy.task, evaluation=EvaluationSpec("episodes", tuple(range(config.episodes))))
    if config.max_episode_steps < 0:
        raise ValueError(
            f"--max-episode-steps {config.max_episode_steps}: expected ≥ 1 (or 0: the env's own)"
        )
    if config.finetune_frames < 1:
        raise ValueError(f"--finetune-frames {config.finetune_frames}: expected ≥ 1")
    if config.finetune_steps < 0:
        raise ValueError(f"--finetune-steps {config.finetune_steps}: expected ≥ 1 (or 0: each network's own)")
    if config.max_episode_steps:
        task = replace(task, env=replace(task.env, max_episode_steps=config.max_episode_steps))
    calib = rollout_states(task, infer_fn(policy), seed=config.seed)
    calibration = {
        "states": len(calib),
        "envs": CALIBRATION_ENVS,
        "steps_per_env": math.ceil(CALIBRATION_STATES / CALIBRATION_ENVS),
        "first_reset_seed": CALIBRATION_SEED + config.seed * CALIBRATION_ENVS,
        "noise_seed": config.seed,
        "exploration": f"epsilon-greedy {EPSILON}"
        if task.action.kind == "discrete"
        else f"gaussian {BOX_NOISE} x (high - low), clipped",
    }
    return TaskPlan(config, profile, variants, policy, task, calib, calibration)


# ------------------------------------------------------------------------------------------------ build


GRAPH_ONLY = {"onnx"}
"""Policy kinds that bring a graph, not a torch module: nothing to prune
(docs/contracts.md#policy-sources)."""


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def skip_reason(variant: Variant, fmt: str, kind: str, underivable: str | None = None) -> str | None:
    """Why ``variant`` in ``fmt`` is not built from a ``kind`` policy source (whose module cannot be
    pruned or distilled for the reason ``underivable``), or None if it is."""
    if kind in GRAPH_ONLY and variant.source.split("-")[0] in ("pruned", "masked"):
        return (
            f"not built from {_a(kind)} policy: pruning needs the torch module, and an ONNX graph has "
            f"none; its quantized and distilled variants are built"
        )
    if underivable and variant.source != "float":
        return f"not built from this {kind} policy: {underivable}"
    if fmt not in CHANNEL_FORMATS:
        return (
            f"not built from {_a(kind)} policy: the {fmt} format saves NeuroQuant checkpoints (a network "
            f"config and weights), and the policy's module has no such config; its float network is the "
            f"float ONNX artifact"
        )
    return None


def _build_entries(plan: TaskPlan, builder: Builder, quiet: bool) -> Iterator[list[ArtifactEntry]]:
    """Each variant's (variant, format) entries in turn: built, or ``skipped`` with the reason."""
    progress = tqdm(plan.variants, desc=f"export {plan.task.name} {plan.profile.name}", disable=quiet)
    for variant in progress:
        progress.set_postfix_str(variant.name)
        kind, underivable = plan.policy.kind, plan.policy.underivable
        skipped = {f: skip_reason(variant, f, kind, underivable) for f in builder.formats_of(variant)}
        built = [f for f, reason in skipped.items() if reason is None]
        made = {e.format: e for e in builder.build_variant(variant, built)} if built else {}
        yield [
            made[f] if reason is None else builder.entry(variant, f, status="skipped", reason=reason)
            for f, reason in skipped.items()
        ]


def _source_record(plan: TaskPlan, ref: task_gates.TaskReference) -> dict[str, Any]:
    policy = plan.policy
    return {
        "policy": plan.config.policy,
        "kind": policy.kind,
        "path": policy.path,
        "checkpoint": policy.path,  # the key schema-1 readers know the source file by
        "sha256": policy.sha256,
        "params": params_of(policy.model),
        "info": policy.info,
        "trust_pickle": plan.config.trust_pickle,
        "eval": task_gates.eval_record(ref.evaluation, ref.evaluation),
        "calibration": plan.calibration,
    }


def _env_record(task: TaskSpec) -> dict[str, Any]:
    """The schema-1 ``env`` (docs/contracts.md#the-manifest), for readers that predate ``task``."""
    return {
        "id": task.env.id,
        "kwargs": dict(task.env.kwargs),
        "obs_shape": list(task.observation.shape),
        "n_actions": math.prod(tasks.actions.expected_output_shape(task)),
    }


def make_builder(plan: TaskPlan, root: Path, scratch: Path) -> tuple[Builder, task_gates.TaskReference]:
    """The plan's :class:`Builder` (writing into ``root``) and the float policy's answers its artifacts are
    gated against (:func:`own_outputs`, ``task_gates.gate``)."""
    config, policy, task = plan.config, plan.policy, plan.task
    float_source = SourceModel(policy.model, None, policy.path, policy.sha256, {"policy": config.policy})
    context = SourceContext(
        float_source,
        None,
        plan.calib_obs,
        config.seed,
        task=task,
        finetune_steps=config.finetune_steps or None,
        finetune_frames=config.finetune_frames,
    )
    io = (math.prod(task.observation.shape), math.prod(tasks.actions.expected_output_shape(task)))
    builder = Builder(plan.profile, context, io, root, scratch, config.exporter, tasks.model_input(task))
    ref = task_gates.make_reference(task, infer_fn(policy), plan.calib_obs, config.episodes)
    return builder, ref


def own_outputs(
    variant: Variant, builder: Builder, ref: task_gates.TaskReference
) -> tuple[float | None, np.ndarray | None]:
    """(the conversion tolerance of ``variant``'s precision, its own torch network's outputs on the gate's
    states where that network is not the float policy): what ``task_gates.gate`` checks the conversion by."""
    tolerance = PRECISIONS[variant.precision].tolerance
    if tolerance is None or variant.source == "float":
        return tolerance, None
    return tolerance, builder.source_q(variant.source, {"x": ref.obs})["x"]


def build(plan: TaskPlan) -> Manifest:
    """Build, gate and record every artifact of ``plan``; return the manifest (rooted at the output)."""
    config, profile, task = plan.config, plan.profile, plan.task
    out = config.out_dir
    with staged_folder(out) as tmp, tempfile.TemporaryDirectory(prefix="neuroquant-export-") as scratch:
        builder, ref = make_builder(plan, tmp, Path(scratch))
        manifest = Manifest(
            target=profile.name,
            created=now_utc(),
            source=_source_record(plan, ref),
            env=_env_record(task),
            task=task.to_dict(),
            versions=versions(),
            artifacts=[],
            root=tmp,
        )
        # Each artifact is gated as soon as it is built, beside the builds of the next variants.
        workers = task_gates.gate_workers(config.jobs)
        with task_gates.GatePool(manifest, ref, profile, workers) as gates:
            for entries in _build_entries(plan, builder, config.quiet):
                for entry in entries:
                    manifest.artifacts.append(entry)
                    if entry.status != "ok":
                        continue
                    tolerance, own = own_outputs(VARIANTS[entry.variant], builder, ref)
                    gates.submit(len(manifest.artifacts) - 1, tolerance, own)
            desc = f"gates ({workers} processes)"
            for _ in tqdm(gates.wait(), total=len(gates), desc=desc, unit="artifact", disable=config.quiet):
                pass
        finish(manifest, profile, config, plan.started)
    manifest.root = out
    return manifest


def run_export(config: ExportConfig) -> Manifest:
    """prepare + build."""
    return build(prepare(config))


# ------------------------------------------------------------------------------------------------ table


def _parity_text(parity: dict[str, float]) -> str:
    if "action_agreement" in parity:
        strict = parity.get("strict_agreement", parity["action_agreement"])
        return f"agree {parity['action_agreement']:.2%} (strict {strict:.2%})"
    if "mean_action_error" in parity:
        return f"|Δa| {parity['mean_action_error']:.2%} p99 {parity['p99_action_error']:.2%}"
    return "-"


def format_table(manifest: Manifest) -> str:
    """variant / format / precision / size / params / return ± CI half-width / parity / status."""
    header = ("variant", "format", "prec", "size", "params", "return", "parity", "status")
    rows = [header]
    for a in manifest.artifacts:
        ret, ci = a.eval.get("mean_return"), a.eval.get("ci95")
        status = a.status if a.status == "ok" else f"{a.status}: {a.reason}"
        rows.append(
            (
                a.variant,
                a.format,
                a.precision,
                fmt_size(a.size_bytes),
                "-" if a.params is None else f"{a.params:,}",
                "-" if ret is None else f"{ret:.1f} ± {(ci[1] - ci[0]) / 2:.1f}",
                _parity_text(a.parity),
                status if len(status) <= 90 else status[:87] + "...",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    ev = manifest.source["eval"]
    low, high = ev["ci95"]
    lines.append(
        f"float policy ({manifest.source['policy']}): mean return {ev['mean_return']:.2f}, "
        f"95% CI [{low:.2f}, {high:.2f}] over {ev['episodes']} episodes"
    )
    return "\n".join(lines)
