"""Command line of the edge runtime: resolve the artifact and the env from the manifest, load, run.

Why loading happens before a session number is taken: a run that cannot start (no manifest, tampered
artifact, missing runtime) should say why and exit non-zero without leaving empty session files behind.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, TextIO

from backends.base import Backend, BackendUnavailable
from backends.manifest import LOADABLE, Manifest, ManifestError, load_manifest
from backends.profiles import ProfileError, load_profile
from backends.registry import get_backend
from edge_runtime.config import SessionConfig, parse_config
from edge_runtime.session import Session, SessionPlan, SessionResult
from gridworld.core import MAX_STEPS, build_model
from gridworld.layouts import LayoutError

EXIT_ERROR, EXIT_USAGE = 1, 2


def env_settings(manifest: Manifest) -> dict[str, Any]:
    """Layout, layout seed, observation mode and episode cap of the env the artifact was trained on.

    Export may record them at the top level of ``env`` or under ``env["kwargs"]`` (the Gymnasium
    registration kwargs); the top level wins.
    """
    env = dict(manifest.env.get("kwargs") or {})
    env.update({k: v for k, v in manifest.env.items() if k != "kwargs"})
    return {
        "layout": env.get("layout", "default"),
        "layout_seed": int(env.get("layout_seed", 0)),
        "obs_mode": env.get("obs_mode", "vector"),
        "max_steps": int(env.get("max_steps", env.get("max_episode_steps", MAX_STEPS))),
    }


def resolve_plan(cfg: SessionConfig) -> SessionPlan:
    """Manifest + profile + CLI → the artifact, the env model and the limits; raises on bad input."""
    manifest = load_manifest(cfg.manifest)
    target = cfg.target or manifest.target
    profile = load_profile(target)
    entry = manifest.for_backend(cfg.variant, cfg.backend)
    settings = env_settings(manifest)
    model = build_model(
        settings["layout"], settings["obs_mode"], settings["layout_seed"], settings["max_steps"]
    )
    env_obs = int(model.observations[0].size)
    want = [int(d) for d in manifest.env.get("obs_shape", [env_obs])]
    if math.prod(want) != env_obs:
        raise ManifestError(
            f"{cfg.manifest}: manifest obs_shape {want} does not match the "
            f"{settings['obs_mode']} env ({env_obs} values)"
        )
    return SessionPlan(
        manifest=manifest,
        manifest_path=Path(cfg.manifest),
        entry=entry,
        model=model,
        fps=float(cfg.fps if cfg.fps is not None else profile.fps),
        latency_budget_ms=float(
            cfg.latency_budget_ms if cfg.latency_budget_ms is not None else profile.latency_budget_ms
        ),
        target=target,
    )


def load_backend(cfg: SessionConfig, plan: SessionPlan, allowed: tuple[str, ...] = LOADABLE) -> Backend:
    """Verify the artifact's status and sha256 and load it with the target profile's settings for that
    backend (``allowed``: the artifact statuses accepted; a device runs only ``ok`` ones)."""
    cls = get_backend(cfg.backend)
    settings = load_profile(plan.target).settings_for(cfg.backend)
    return cls.from_manifest(plan.manifest, plan.entry, settings, allowed)


def _report(result: SessionResult, stream: TextIO) -> None:
    s = result.summary
    lat = s["latency_us"]
    p50 = f"{lat['p50']:.1f}" if lat["p50"] is not None else "n/a"
    p99 = f"{lat['p99']:.1f}" if lat["p99"] is not None else "n/a"
    fps = s["fps"]["mean"]
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
    try:
        backend = load_backend(cfg, plan)
    except (BackendUnavailable, ManifestError, ValueError, OSError, RuntimeError) as err:
        out.write(f"edge_runtime: cannot load {plan.entry.name} on {cfg.backend}: {err}\n")
        return EXIT_ERROR
    try:
        result = Session(cfg, plan, backend, live_stream=out).run()
    finally:
        backend.close()
    _report(result, out)
    if result.stop_reason.startswith("error"):
        out.write(f"edge_runtime: {result.stop_reason}\n")
    return result.exit_code
