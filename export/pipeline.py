"""The export stage: a checkpoint → every variant × format a target profile lists, gated, in one manifest.

``prepare`` checks everything the user supplied (target, variants, checkpoints, dataset) before anything is
written, so a bad argument costs nothing. ``build`` writes into a temporary sibling of the output folder
and renames it into place only at the end: an interrupted or crashed export leaves the previous
``artifacts/<target>`` untouched and no half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from backends.manifest import ArtifactEntry, Manifest, file_sha256, write_manifest
from backends.profiles import TargetProfile, load_profile
from backends.registry import get_backend
from common.fileio import output_problem
from export import gates
from export.formats import FormatJob, FormatResult, get_format
from export.onnx_export import EXPORTERS, export_onnx, stamp, torch_q_values
from export.quantize import PRECISIONS, quantize_errors
from export.sources import SourceContext, SourceModel, SourceUnavailable, checkpoint_source, source_builder
from export.variants import VARIANTS, Variant, get_variant
from gridworld.core import N_ACTIONS, GridModel
from tasks import task_name
from train.checkpoint import load_checkpoint
from train.dataset import Dataset, load_dataset
from train.evaluate import env_model_from_metadata, flat_obs

DEFAULT_ENV_ID = "NeuroQuant/GridWorld-v0"
VERSIONED = ("torch", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "torch-pruning", "tensorrt")
"""Distributions whose versions go into the manifest (those not installed are left out)."""


@dataclass
class ExportConfig:
    """How an export is made; its JSON is written next to the manifest (``export_config.json``)."""

    target: str = "x86"
    """Target profile (configs/targets/<target>.toml): the variants, formats and runtimes to build for."""
    checkpoint: str = "runs/cql/best.safetensors"
    """The float policy (a .safetensors checkpoint from `python -m train`); every gate compares with it."""
    distilled: str = "runs/distilled/student.safetensors"
    """The distilled student (`python -m train.distill`); if the file is missing the distilled variants are
    recorded as failed ("run make distill") and everything else is still built."""
    dataset: str = "data/replay_buffer.npz"
    """Replay buffer whose observations calibrate int8 and fine-tune pruning, and on which gates compare."""
    out: str = ""
    """Output folder; empty means artifacts/<target>, or artifacts/<task>/<target> with --policy (e.g.
    artifacts/cartpole/x86). Replaced as a whole only when the export finishes."""
    variants: str = ""
    """Comma-separated subset of the target's variants, e.g. float,int8-static; empty means all it lists."""
    exporter: str = "torchscript"
    """torch → ONNX exporter: torchscript (fast, the default) or dynamo (torch.export, ~4 s a network)."""
    seed: int = 0
    """Seed for pruning fine-tuning and, with --policy, for the calibration rollouts (reset seeds and
    exploration noise); the rest is deterministic."""
    quiet: bool = False
    """No progress bar and no table."""
    policy: str = ""
    """A trained policy to export for any Gymnasium task, as KIND:PATH (e.g. sb3:runs/zoo/cartpole/model.zip);
    needs --env. Empty: the NeuroQuant gridworld checkpoint (--checkpoint, --distilled and --dataset apply to
    that path only)."""
    env: str = ""
    """Gymnasium id of the task the --policy acts in (e.g. CartPole-v1): its spaces come from the env, never
    from the policy file; required with --policy."""
    trust_pickle: bool = False
    """Let --policy read what only unpickling can read (e.g. an SB3 zip's pickled policy_kwargs).
    Unpickling runs any code the file carries: only for files you trust."""
    vecnormalize: str = ""
    """--policy sb3: the VecNormalize statistics (VecNormalize.save(), a pickle) the policy was trained
    behind; its observation normalisation is baked into the exported graph. Needs --trust-pickle."""
    weights: str = ""
    """--policy torch:package.module:factory: the safetensors state dict loaded (strictly) into the module
    the factory builds, e.g. --weights runs/my_policy.safetensors."""
    episodes: int = 50
    """--policy exports: episodes (seeds 0..N-1) of the return gate, for the float policy's 95% CI and for
    every artifact's mean return."""
    max_episode_steps: int = 0
    """--policy exports: cap every episode at this many env steps (Atari: emulator frames, 4 per action),
    in the gates and in the manifest's task, so device sessions cap alike; 0 keeps the env's own limit. For
    a quick check of a slow task, e.g. --max-episode-steps 4000."""
    jobs: int = 0
    """--policy exports: processes that gate artifacts side by side (each plays the episodes through one
    artifact's runtime); 0: one per CPU core, 1: all in this process."""
    finetune_steps: int = 0
    """--policy exports: Adam steps of each pruned, masked, distilled and binary network's fine-tuning; 0:
    the network's own budget (an MLP 3,000 of 1,024 states, a CNN 3,000 of 64 frames, its student 2,000)."""
    finetune_frames: int = 16_384
    """--policy exports of an image policy: rollout frames its pruned, masked, distilled and binary CNNs are
    fine-tuned on (no more than the 4,096 calibration frames: those)."""

    @property
    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        if self.policy:
            return Path("artifacts") / task_name(self.env or "task") / self.target
        return Path(f"artifacts/{self.target}")

    def variant_names(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]


@dataclass
class Plan:
    """A checked export: what ``prepare`` resolved, ready to ``build``."""

    config: ExportConfig
    profile: TargetProfile
    variants: list[Variant]
    float_source: SourceModel
    distilled: SourceModel | None
    dataset: Dataset
    env_model: GridModel
    calib_obs: np.ndarray
    """Unique observations of the dataset and of every reachable state (float32)."""
    started: float = field(default_factory=time.perf_counter)


# ---------------------------------------------------------------------------------------------- prepare


def select_variants(profile: TargetProfile, names: list[str]) -> list[Variant]:
    unknown = [n for n in profile.variants if n not in VARIANTS]
    if unknown:
        raise ValueError(
            f"{profile.path}: unknown variant(s) {unknown}; valid variants: {', '.join(VARIANTS)}"
        )
    if not names:
        return [VARIANTS[n] for n in profile.variants]
    chosen = [get_variant(n) for n in names]
    missing = [v.name for v in chosen if v.name not in profile.variants]
    if missing:
        raise ValueError(
            f"variant(s) {missing} are not built for target {profile.name}; "
            f"its variants: {', '.join(profile.variants)}"
        )
    return list(dict.fromkeys(chosen))


def _load_source(path: Path) -> SourceModel:
    model, config, info = load_checkpoint(path)
    return checkpoint_source(path, model, config, file_sha256(path), info)


def _check_shapes(source: SourceModel, obs_dim: int, what: str) -> None:
    c = source.config
    if c.obs_dim != obs_dim or c.n_actions != N_ACTIONS:
        raise ValueError(
            f"{source.checkpoint}: {what} takes obs_dim {c.obs_dim} with {c.n_actions} actions, but "
            f"the dataset's env has obs_dim {obs_dim} with {N_ACTIONS}; use the dataset it was trained on"
        )


def check_output(config: ExportConfig) -> tuple[TargetProfile, list[Variant]]:
    """What every export checks first, whatever the policy: the target profile and its formats, the
    variants asked for, the exporter and the output folder; returns (profile, variants)."""
    profile = load_profile(config.target)
    for fmt in profile.formats:
        get_format(fmt)
    variants = select_variants(profile, config.variant_names())
    if config.exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {config.exporter!r}; use one of {', '.join(EXPORTERS)}")
    if problem := output_problem(config.out_dir, "dir"):
        raise ValueError(f"--out: {problem}; choose another --out")
    return profile, variants


def prepare(config: ExportConfig) -> Plan:
    """Resolve and check the configuration; raise ValueError (ProfileError, CheckpointError, …) if bad."""
    profile, variants = check_output(config)
    float_source = _load_source(Path(config.checkpoint))
    dataset = load_dataset(config.dataset)
    env_model = env_model_from_metadata(dataset.metadata)
    obs_dim = int(np.prod(env_model.obs_shape))
    _check_shapes(float_source, obs_dim, "the float policy")
    distilled = None
    if any(v.source == "distilled" for v in variants) and Path(config.distilled).is_file():
        distilled = _load_source(Path(config.distilled))
        _check_shapes(distilled, obs_dim, "the distilled student")
    calib = np.unique(
        np.concatenate([flat_obs(dataset.observations), gates.reachable_obs(env_model)]), axis=0
    )
    return Plan(config, profile, variants, float_source, distilled, dataset, env_model, calib)


# ------------------------------------------------------------------------------------------------ build


def _variant_errors() -> tuple[type[BaseException], ...]:
    """What building a variant's network and ONNX can raise: torch, pruning, onnx and onnxruntime tools."""
    return (RuntimeError, ValueError, OSError, *quantize_errors())


def _files_meta(root: Path, rels: list[str]) -> dict[str, dict[str, Any]]:
    return {
        rel: {"sha256": file_sha256(root / rel), "size_bytes": (root / rel).stat().st_size} for rel in rels
    }


def calibration_subset(obs: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """``size`` of the calibration states, drawn without replacement (seeded) and kept in their order; all
    of them when ``size`` is None or not smaller."""
    if size is None or size >= len(obs):
        return obs
    if size < 1:
        raise ValueError(f"calibration size {size}: expected ≥ 1")
    picked = np.random.default_rng(seed).choice(len(obs), size, replace=False)
    return obs[np.sort(picked)]


class Builder:
    """Builds (variant, format) artifacts into ``root``, reusing each source's network and fp32 ONNX.

    Shared by the gridworld export and the policy-source export (``export.task_export``): it knows the
    profile, the calibration observations and the network's I/O widths, not where the policy came from.
    """

    def __init__(
        self,
        profile: TargetProfile,
        context: SourceContext,
        io: tuple[int, int],
        root: Path,
        scratch: Path,
        exporter: str = "torchscript",
        model_input: tuple[tuple[int, ...], str] | None = None,
    ) -> None:
        self.profile, self.context, self.exporter = profile, context, exporter
        self.root, self.scratch = root, scratch
        self.obs_dim, self.n_outputs = io
        """Flattened observation width and output width (actions, or an action's size)."""
        self.input_shape, self.input_dtype = model_input or ((self.obs_dim,), "float32")
        """One observation as the graphs take it (``tasks.model_input``: an image task's uint8 frames)."""
        self.calib_obs = context.calib_obs
        self.sources: dict[str, SourceModel | SourceUnavailable] = {}
        self.source_onnx: dict[str, Path] = {}

    def source(self, name: str) -> SourceModel:
        if name not in self.sources:
            try:
                self.sources[name] = source_builder(name)(self.context)
            except SourceUnavailable as err:
                self.sources[name] = err
        found = self.sources[name]
        if isinstance(found, SourceUnavailable):
            raise found
        return found

    def fp32_onnx(self, name: str, source: SourceModel) -> Path:
        if name not in self.source_onnx:
            path = self.scratch / f"{name}.onnx"
            if hasattr(source.model, "write_onnx"):  # an onnx: policy is its own float graph
                source.model.write_onnx(path)
            else:
                export_onnx(
                    source.model,
                    self.obs_dim,
                    self.n_outputs,
                    path,
                    {},
                    exporter=self.exporter,
                    input_shape=self.input_shape,
                    input_dtype=self.input_dtype,
                )
            self.source_onnx[name] = path
        return self.source_onnx[name]

    def calibration(self, variant: Variant) -> np.ndarray:
        """The calibration states ``variant`` is quantized with: all, or its ``calibration`` option's number
        of them (:func:`calibration_subset`)."""
        size = dict(variant.options).get("calibration")
        return calibration_subset(self.calib_obs, size, self.context.seed)

    def variant_onnx(self, variant: Variant, source: SourceModel) -> tuple[Path, dict[str, Any]]:
        """Write ``<variant>/model.onnx``: the source's fp32 ONNX with the variant's precision applied."""
        precision = PRECISIONS[variant.precision]
        options = {k: v for k, v in variant.options if k != "calibration"}
        calib = self.calibration(variant)
        unknown = sorted(set(options) - set(precision.options))
        if unknown:
            raise ValueError(
                f"variant {variant.name}: {precision.name} takes no option(s) {unknown}; its options: "
                f"{', '.join(precision.options) or 'none'} (and calibration)"
            )
        src = self.fp32_onnx(variant.source, source)
        dst = self.root / variant.name / "model.onnx"
        dst.parent.mkdir(parents=True, exist_ok=True)
        info = precision.apply(src, dst, calib, tensorrt="tensorrt" in self.profile.formats, **options)
        if variant.options:
            info["options"] = dict(variant.options)
        stamp(
            dst,
            {
                "neuroquant.variant": variant.name,
                "neuroquant.precision": precision.name,
                "neuroquant.source": variant.source,
                "neuroquant.source_checkpoint": source.checkpoint,
                "neuroquant.source_sha256": source.sha256,
                "neuroquant.target": self.profile.name,
            },
        )
        return dst, info

    def entry(
        self,
        variant: Variant,
        fmt: str,
        *,
        path: str = "",
        sha256: str | None = None,
        size_bytes: int | None = None,
        params: int | None = None,
        status: str = "ok",
        reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ArtifactEntry:
        """A manifest entry; ``path`` stays empty when nothing was written (a failed build)."""
        return ArtifactEntry(
            name=f"{variant.name}/{fmt}",
            variant=variant.name,
            format=fmt,
            precision=PRECISIONS[variant.precision].label,
            path=path,
            sha256=sha256,
            size_bytes=size_bytes,
            params=params,
            backends=[
                b
                for b in self.profile.formats[fmt].backends
                if get_backend(b).runs(fmt, PRECISIONS[variant.precision].label)
            ],
            status=status,
            reason=reason,
            extra=extra or {},
        )

    def formats_of(self, variant: Variant) -> list[str]:
        """The formats the profile builds ``variant`` in, in profile order."""
        return [f for f, p in self.profile.formats.items() if variant.name in p.variants]

    def build_variant(self, variant: Variant, formats: list[str] | None = None) -> list[ArtifactEntry]:
        """Every format of ``variant`` (or those of ``formats``); a source or ONNX failure fails them all."""
        formats = self.formats_of(variant) if formats is None else formats
        try:
            source = self.source(variant.source)
            onnx_path, precision_info = self.variant_onnx(variant, source)
        except SourceUnavailable as err:
            return [self.entry(variant, f, status="failed", reason=str(err)) for f in formats]
        except _variant_errors() as err:
            reason = f"building the {variant.source} network / ONNX failed: {type(err).__name__}: {err}"
            return [self.entry(variant, f, status="failed", reason=reason) for f in formats]
        return [self.build_format(variant, fmt, source, onnx_path, precision_info) for fmt in formats]

    def build_format(
        self, variant: Variant, fmt: str, source: SourceModel, onnx_path: Path, precision_info: dict[str, Any]
    ) -> ArtifactEntry:
        plan = self.profile.formats[fmt]
        module = get_format(fmt)
        job = FormatJob(
            variant=variant,
            precision=PRECISIONS[variant.precision],
            root=self.root,
            source_onnx=self.source_onnx[variant.source],
            onnx=onnx_path,
            calib_obs=self.calibration(variant),
            obs_dim=self.obs_dim,
            n_actions=self.n_outputs,
            input_shape=self.input_shape,
            options=dict(plan.options),
            settings=self.profile.settings_for(plan.backends[0]) if plan.backends else {},
            source=source,
        )
        extra: dict[str, Any] = {"source": {"name": variant.source, **source.info}, **precision_info}
        try:
            result: FormatResult = module.build(job)
        except module.errors() as err:
            reason = f"{fmt} conversion failed: {type(err).__name__}: {err}"
            return self.entry(variant, fmt, status="failed", reason=reason, params=source.params, extra=extra)
        extra.update(result.extra)
        main = self.root / result.path
        written = main.is_file()
        if result.files:
            extra["files"] = _files_meta(self.root, result.files)
        return self.entry(
            variant,
            fmt,
            path=result.path,
            sha256=file_sha256(main) if written else None,
            size_bytes=main.stat().st_size + sum(f["size_bytes"] for f in extra.get("files", {}).values())
            if written
            else None,
            params=source.params,
            status=result.status,
            reason=result.reason,
            extra=extra,
        )

    def source_q(self, name: str, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        source = self.source(name)
        return {k: torch_q_values(source.model, v) for k, v in obs.items()}


def _inherit_failures(entries: list[ArtifactEntry]) -> None:
    """An engine still to be built on the device from an ONNX file that failed its gate would act the same
    way: record it as failed now (so build_engines.sh skips it) rather than pending."""
    failed = {e.path: e for e in entries if e.status == "failed" and e.path}
    for entry in entries:
        source = failed.get(entry.extra.get("onnx", ""))
        if entry.status == "pending-on-device" and source is not None:
            entry.status = "failed"
            entry.reason = f"its ONNX input {source.name} failed its gate: {source.reason}"


def versions() -> dict[str, str]:
    """Versions of the :data:`VERSIONED` distributions installed here (the manifest's ``versions``)."""
    found: dict[str, str] = {}
    for dist in VERSIONED:
        try:
            found[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def now_utc() -> str:
    """The manifest's ``created``: ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _replace_folder(tmp: Path, out: Path) -> None:
    """Swap the finished ``tmp`` folder into ``out`` (two renames; the old one is removed after)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into, swapped into place only if the block finishes: an
    interrupted or crashed export leaves the previous ``out`` untouched and no half-written one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the swapped-in folder private to its writer
    try:
        yield tmp
        _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def finish(manifest: Manifest, profile: TargetProfile, config: ExportConfig, started: float) -> None:
    """What every export does once its artifacts are gated: engines inherit their ONNX input's failure,
    formats write their folder-wide files (TensorRT's build_engines.sh), then the manifest and the config
    go next to the artifacts (into ``manifest.root``, the staged folder)."""
    root, entries = manifest.root, manifest.artifacts
    _inherit_failures(entries)
    extra_files = []
    for fmt in profile.formats:
        hook = getattr(get_format(fmt), "finish", None)
        if hook is not None:
            extra_files += hook(root, profile.name, entries)
    manifest.source["files"] = extra_files
    manifest.source["seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(manifest, root / "manifest.json")
    (root / "export_config.json").write_text(
        json.dumps({**asdict(config), "out": str(config.out_dir)}, indent=2) + "\n"
    )


def make_builder(plan: Plan, root: Path, scratch: Path) -> tuple[Builder, gates.Reference]:
    """The plan's :class:`Builder` (writing into ``root``) and the float policy's answers its artifacts are
    gated against (:func:`gate_entry`)."""
    config = plan.config
    context = SourceContext(
        plan.float_source, plan.distilled, plan.calib_obs, config.seed, dataset=config.dataset
    )
    io = (plan.float_source.config.obs_dim, N_ACTIONS)
    builder = Builder(plan.profile, context, io, root, scratch, config.exporter)
    ref = gates.make_reference(
        lambda o: torch_q_values(plan.float_source.model, o),
        plan.env_model,
        plan.dataset.observations,
    )
    return builder, ref


def gate_entry(
    manifest: Manifest, entry: ArtifactEntry, variant: Variant, builder: Builder, ref: gates.Reference
) -> None:
    """Gate one built artifact of ``variant`` (``gates.gate``), against its own torch network too."""
    tolerance = PRECISIONS[variant.precision].tolerance
    own = builder.source_q(variant.source, ref.obs)
    gates.gate(manifest, entry, ref, own, builder.profile, tolerance)


def build(plan: Plan) -> Manifest:
    """Build, gate and record every artifact of ``plan``; return the manifest (rooted at the output)."""
    config, profile = plan.config, plan.profile
    out = config.out_dir
    with staged_folder(out) as tmp, tempfile.TemporaryDirectory(prefix="neuroquant-export-") as scratch:
        builder, ref = make_builder(plan, tmp, Path(scratch))
        entries: list[ArtifactEntry] = []
        progress = tqdm(plan.variants, desc=f"export {profile.name}", unit="variant", disable=config.quiet)
        for variant in progress:
            progress.set_postfix_str(variant.name)
            entries.extend(builder.build_variant(variant))
        manifest = Manifest(
            target=profile.name,
            created=now_utc(),
            source=_source_record(plan, ref),
            env=_env_record(plan),
            task=_task_record(plan),
            versions=versions(),
            artifacts=entries,
            root=tmp,
        )
        for entry in tqdm(entries, desc="gates", unit="artifact", disable=config.quiet):
            if entry.status == "ok":
                gate_entry(manifest, entry, VARIANTS[entry.variant], builder, ref)
        finish(manifest, profile, config, plan.started)
    manifest.root = out
    return manifest


def _source_record(plan: Plan, ref: gates.Reference) -> dict[str, Any]:
    record: dict[str, Any] = {
        "checkpoint": plan.float_source.checkpoint,
        "sha256": plan.float_source.sha256,
        "params": plan.float_source.params,
        "network": plan.float_source.config.to_dict(),
        "eval": ref.evaluation.as_dict(),
        "dataset": plan.config.dataset,
        "dataset_sha256": file_sha256(plan.config.dataset),
        "gate_observations": {k: len(v) for k, v in ref.obs.items()},
        "calibration_samples": len(plan.calib_obs),
    }
    if plan.distilled is not None:
        record["distilled"] = {"checkpoint": plan.distilled.checkpoint, "sha256": plan.distilled.sha256}
    return record


def _env_record(plan: Plan) -> dict[str, Any]:
    meta = plan.dataset.metadata
    return {
        "id": meta.get("env_id", DEFAULT_ENV_ID),
        "obs_mode": plan.env_model.obs_mode,
        "obs_shape": list(plan.env_model.obs_shape),
        "n_actions": N_ACTIONS,
        "kwargs": meta.get("env_kwargs", {}),
    }


def _task_record(plan: Plan) -> dict[str, Any]:
    """The task (docs/contracts.md#the-task-spec): the gridworld the dataset was collected on."""
    from tasks.named import gridworld

    meta = plan.dataset.metadata
    kwargs = {k: v for k, v in meta.get("env_kwargs", {}).items() if k != "obs_mode"}
    return gridworld(plan.env_model.obs_mode, meta.get("env_id", DEFAULT_ENV_ID), kwargs).to_dict()


def run_export(config: ExportConfig) -> Manifest:
    """prepare + build."""
    return build(prepare(config))


# ------------------------------------------------------------------------------------------------ table


def fmt_size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def format_table(manifest: Manifest) -> str:
    """variant / format / precision / size / params / exact return / agreement, strict too / status."""
    header = ("variant", "format", "prec", "size", "params", "return", "agree", "strict", "status")
    rows = [header]
    for a in manifest.artifacts:
        ret = a.eval.get("mean_return")
        agree, strict = a.parity.get("action_agreement"), a.parity.get("strict_agreement")
        status = a.status if a.status == "ok" else f"{a.status}: {a.reason}"
        rows.append(
            (
                a.variant,
                a.format,
                a.precision,
                fmt_size(a.size_bytes),
                "-" if a.params is None else f"{a.params:,}",
                "-" if ret is None else f"{ret:.3f}",
                "-" if agree is None else f"{agree:.2%}",
                "-" if strict is None else f"{strict:.2%}",
                status if len(status) <= 90 else status[:87] + "...",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    float_eval = manifest.source.get("eval", {})
    lines.append(
        f"float policy: exact return {float_eval.get('mean_return', float('nan')):.3f}, "
        f"oracle ratio {float_eval.get('oracle_ratio', float('nan')):.3f}"
    )
    return "\n".join(lines)
