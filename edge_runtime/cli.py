"""Command line of the edge runtime: resolve the artifact and the env from the manifest, load, run.

Why loading happens before a session number is taken: a run that cannot start (no manifest, tampered
artifact, missing runtime) should say why and exit non-zero without leaving empty session files behind.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from backends.base import Backend, BackendUnavailable
from backends.manifest import LOADABLE, ArtifactEntry, Manifest, ManifestError, load_manifest
from backends.profiles import ProfileError, load_profile
from backends.registry import get_backend
from edge_runtime.config import SessionConfig, parse_config
from edge_runtime.session import Session, SessionPlan, SessionResult
from gridworld.core import MAX_STEPS, build_model
from gridworld.layouts import LayoutError
from tasks import TaskUnavailable, make_env
from tasks.envs import gridworld_kwargs

EXIT_ERROR, EXIT_USAGE = 1, 2


def env_settings(manifest: Manifest) -> dict[str, Any] | None:
    """Layout, layout seed, observation mode and episode cap of the gridworld the artifact was trained on,
    from the manifest's task (docs/contracts.md#the-task-spec; a schema-1 manifest's ``env`` stands for the
    gridworld task); None when the task is another Gymnasium env."""
    spec = manifest.task_spec()
    kwargs = gridworld_kwargs(spec)
    if kwargs is None:
        return None
    return {
        "layout": kwargs.get("layout", "default"),
        "layout_seed": int(kwargs.get("layout_seed", 0)),
        "obs_mode": kwargs.get("obs_mode", "vector"),
        "max_steps": int(kwargs.get("max_steps", spec.env.max_episode_steps or MAX_STEPS)),
    }


ATARI_FPS = 15.0
"""An Atari task's default session rate: the ALE's 60 Hz over the frame skip of 4."""


def default_fps(task: Any, profile_fps: float) -> float:
    """The session rate when --fps is not given: the target profile's, or an Atari game's own."""
    if any(step.get("op") == "atari" for step in task.observation.preprocess):
        return ATARI_FPS
    return profile_fps


def resolve_plan(cfg: SessionConfig) -> SessionPlan:
    """Manifest + profile + CLI → the artifact, the task (and the gridworld's tables) and the limits;
    raises on bad input (a Gymnasium task whose env cannot be made here: :class:`tasks.TaskUnavailable`)."""
    manifest = load_manifest(cfg.manifest)
    target = cfg.target or manifest.target
    profile = load_profile(target)
    entry = manifest.for_backend(cfg.variant, cfg.backend)
    task = manifest.task_spec()
    settings = env_settings(manifest)
    model = None
    if settings is not None:
        model = build_model(
            settings["layout"], settings["obs_mode"], settings["layout_seed"], settings["max_steps"]
        )
        env_obs, where = int(model.observations[0].size), f"{settings['obs_mode']} env's"
    else:
        env = make_env(task)  # made once here, so a missing simulator is reported before the session
        try:
            env_obs, where = int(np.prod(env.observation_space.shape)), f"{task.env.id} env's"
        finally:
            env.close()
    if manifest.obs_dim != env_obs:
        raise ManifestError(
            f"{cfg.manifest}: the manifest's observations have size {manifest.obs_dim}, the {where} {env_obs}"
        )
    return SessionPlan(
        manifest=manifest,
        manifest_path=Path(cfg.manifest),
        entry=entry,
        task=task,
        model=model,
        fps=float(cfg.fps if cfg.fps is not None else default_fps(task, profile.fps)),
        latency_budget_ms=float(
            cfg.latency_budget_ms if cfg.latency_budget_ms is not None else profile.latency_budget_ms
        ),
        target=target,
    )


def load_backend(cfg: SessionConfig, plan: SessionPlan, allowed: tuple[str, ...] = LOADABLE) -> Backend:
    """Verify the artifact's status and sha256 and load it with the target profile's settings for that
    backend (``allowed``: the artifact statuses accepted; a device runs only ``ok`` ones)."""
    return open_artifact(plan.target, plan.manifest, plan.entry, cfg.backend, allowed)


def open_artifact(
    target: str, manifest: Manifest, entry: ArtifactEntry, backend: str, allowed: tuple[str, ...] = LOADABLE
) -> Backend:
    """``entry`` of ``manifest`` loaded on ``backend`` with ``target``'s settings: the session's first
    artifact, and each one a hot swap brings in (``edge_runtime.swap``)."""
    cls = get_backend(backend)
    settings = load_profile(target).settings_for(backend)
    return cls.from_manifest(manifest, entry, settings, allowed)


def _report(result: SessionResult, stream: TextIO) -> None:
    s = result.summary
    lat = s["latency_us"]
    p50 = f"{lat['p50']:.1f}" if lat["p50"] is not None else "n/a"
    p99 = f"{lat['p99']:.1f}" if lat["p99"] is not None else "n/a"
    fps = s["fps"]["mean"]
    for swap in s.get("swaps", []):
        what = f"{swap['variant']} on {swap['backend']} ({swap['source']})"
        if swap["status"] == "swapped":
            stream.write(f"swapped in {swap['artifact']} at frame {swap['frame']}: {what}\n")
        else:
            stream.write(f"swap refused, the running model kept acting: {what}: {swap['reason']}\n")
    stream.write(
        f"session {result.number}: {result.stop_reason} — {s['frames']} frames, {s['episodes']} episodes, "
        f"{fps if fps is not None else 0:.1f} FPS, inference p50 {p50} µs p99 {p99} µs, "
        f"{s['deadline_misses']} deadline misses, peak RSS {s['peak_rss_mb']:.1f} MB\n"
        f"  {result.csv_path}\n  {result.json_path}\n"
    )


def main(argv: list[str] | None = None, stream: TextIO | None = None) -> int:
    out = stream if stream is not None else sys.stderr
    cfg = parse_config(argv)
    try:
        plan = resolve_plan(cfg)
    except (ManifestError, ProfileError, LayoutError, ValueError) as err:
        out.write(f"edge_runtime: {err}\n")
        return EXIT_USAGE
    except TaskUnavailable as err:  # the manifest is fine, this host lacks the simulator
        out.write(f"edge_runtime: {err}\n")
        return EXIT_ERROR
    try:
        backend = load_backend(cfg, plan)
    except (BackendUnavailable, ManifestError, ValueError, OSError, RuntimeError) as err:
        out.write(f"edge_runtime: cannot load {plan.entry.name} on {cfg.backend}: {err}\n")
        return EXIT_ERROR
    try:
        loader = functools.partial(open_artifact, plan.target)
        result = Session(cfg, plan, backend, live_stream=out, loader=loader).run()
    finally:
        backend.close()
    _report(result, out)
    if result.stop_reason.startswith("error"):
        out.write(f"edge_runtime: {result.stop_reason}\n")
    return result.exit_code
