"""``SessionConfig``: every setting of an edge session, and the command line built from it.

Why the help text lives in field metadata: the dataclass is the one place a setting is declared; the
argparse flags, their ``--help`` and the ``config`` block of ``session_<N>.json`` all come from it, so
they cannot drift apart.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.registry import backend_names
from common.cli import dataclass_parser
from common.fileio import output_problem
from edge_runtime.pacing import PACING_POLICIES


def _opt(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass
class SessionConfig:
    """One run of the fixed-FPS loop on one artifact."""

    manifest: Path = field(
        default=MISSING,  # type: ignore[assignment]
        metadata={"help": "the export manifest, e.g. artifacts/x86/manifest.json (required)"},
    )
    variant: str = _opt("int8-static", "which exported variant to run (float, fp16, int8-static, …)")
    backend: str = _opt("onnxruntime", "inference backend", choices=backend_names())
    fps: float | None = _opt(
        None, "frames per second; 0 = uncapped (default: the target profile's fps, 10 for the shipped ones)"
    )
    episodes: int = _opt(20, "stop after this many episodes")
    max_frames: int | None = _opt(None, "also stop after this many frames (benchmarks use it)")
    out: Path = _opt(  # noqa: RUF009 (a Path default is immutable)
        Path("results/sessions"), "folder for session_<N>.csv and session_<N>.json"
    )
    target: str | None = _opt(
        None, "target profile for the defaults and backend settings (default: the manifest's target)"
    )
    pacing: str = _opt(
        "spin-prewarm",
        "how to wait for a frame: spin-prewarm = sleep, spin the last stretch and fire throwaway "
        "inferences every --prewarm-every-us through the last --prewarm-us before the deadline (fastest "
        "inference, burns CPU); hybrid = sleep then spin the last --spin-us; sleep = sleep only (least "
        "power, late and cold)",
        choices=PACING_POLICIES,
    )
    prewarm_us: float = _opt(
        1000.0, "spin-prewarm: fire throwaway inferences through this many µs before the deadline"
    )
    prewarm_every_us: float = _opt(
        50.0, "spin-prewarm: one throwaway inference this often in that window (0 = a single shot)"
    )
    spin_us: float = _opt(1000.0, "hybrid/spin-prewarm: busy-wait the last this many µs before a deadline")
    miss_tolerance_us: float | None = _opt(
        None, "a frame starting later than this is a deadline miss (default: 10% of the frame period)"
    )
    latency_budget_ms: float | None = _opt(
        None,
        "watchdog: an inference slower than this stops the session with reason latency_budget_exceeded "
        "(default: the target profile's latency_budget_ms, 150 for the shipped ones)",
    )
    render: bool = _opt(False, "show the gridworld, or the env's own picture (an Atari screen), in a window")
    seed: int = _opt(0, "seed of the start-state sequence (same seed, same episodes)")
    quiet: bool = _opt(False, "no live status line")
    flush_s: float = _opt(
        1.0, "hand buffered frames to the frame log at least this often (a kill loses at most this much)"
    )
    mem_sample_ms: float = _opt(
        100.0, "sample the process RSS this often (the value is carried between samples)"
    )
    follow: str | None = _opt(
        None,
        "hot swap: the variant SIGHUP loads from the re-read manifest (default: the running --variant), "
        "swapped in at a frame boundary once loaded and warmed in the background",
    )
    control: Path | None = _opt(  # noqa: RUF009 (None, no call at class creation that matters)
        None,
        "hot swap: a file to watch; writing a variant name (optionally 'VARIANT BACKEND') into it swaps "
        "that artifact in, as SIGHUP does",
    )

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def build_parser() -> argparse.ArgumentParser:
    return dataclass_parser(
        SessionConfig,
        prog="python -m edge_runtime",
        description=(
            "Run one exported policy artifact in a fixed-FPS control loop in its task and write the per-frame"
            " session CSV and JSON summary (docs/contracts.md#the-session-files). Never imports torch."
        ),
        epilog=(
            "exit status: 0 completed, 1 error (unusable artifact, missing runtime, backend crash), "
            "2 bad arguments or manifest, 3 latency budget exceeded, 128+N stopped by signal N "
            "(130 SIGINT, 143 SIGTERM).\nExample: python -m edge_runtime "
            "--manifest artifacts/x86/manifest.json --variant int8-static --backend onnxruntime --fps 10 "
            "--episodes 20 --out results/sessions"
        ),
    )


def parse_config(argv: list[str] | None = None) -> SessionConfig:
    """Parse the command line into a :class:`SessionConfig` (argparse exits 2 on bad flags)."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    cfg = SessionConfig(**args)
    problems = []
    if cfg.episodes < 1:
        problems.append(f"--episodes must be ≥ 1, got {cfg.episodes}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        problems.append(f"--max-frames must be ≥ 1, got {cfg.max_frames}")
    if cfg.fps is not None and cfg.fps < 0:
        problems.append(f"--fps must be ≥ 0 (0 = uncapped), got {cfg.fps}")
    if cfg.latency_budget_ms is not None and cfg.latency_budget_ms <= 0:
        problems.append(f"--latency-budget-ms must be > 0, got {cfg.latency_budget_ms}")
    if cfg.flush_s <= 0 or cfg.mem_sample_ms <= 0:
        problems.append("--flush-s and --mem-sample-ms must be > 0")
    if min(cfg.spin_us, cfg.prewarm_us, cfg.prewarm_every_us) < 0:
        problems.append("--spin-us, --prewarm-us and --prewarm-every-us must be ≥ 0")
    if cfg.miss_tolerance_us is not None and cfg.miss_tolerance_us < 0:
        problems.append(f"--miss-tolerance-us must be ≥ 0, got {cfg.miss_tolerance_us}")
    if problem := output_problem(cfg.out, "dir"):
        problems.append(f"--out: {problem}; choose another --out")
    if problems:
        parser.error("; ".join(problems))
    return cfg
