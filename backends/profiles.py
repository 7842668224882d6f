"""Target profiles (``configs/targets/<name>.toml``): what a device gets and how its runtimes are set up.

Read by export (which variants and formats to build), the backends (providers, threads) and the edge
runtime (FPS, latency budget). Torch-free: tomllib is in the standard library.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10: the `edge` extra installs tomli there
    import tomli as tomllib

#: ``configs/targets`` of the checkout (or of an unpacked device bundle, which keeps the same layout).
TARGETS_DIR = Path(__file__).resolve().parent.parent / "configs" / "targets"


class ProfileError(ValueError):
    """An unknown target or a malformed profile file."""


@dataclass(frozen=True)
class FormatPlan:
    """One output format of a target: which variants to build in it and which backends run it."""

    variants: tuple[str, ...]
    backends: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    fps: float
    latency_budget_ms: float
    agreement_threshold: float
    max_abs_q_diff: float
    formats: dict[str, FormatPlan]
    backend_settings: dict[str, dict[str, Any]]
    path: Path
    box_mean_error: float = 0.02
    """Box-action gate: the largest mean |Δa| / (high − low) an artifact may have against the float policy
    on the calibration states (2 % of the action range: int8 of a small MLP stays well below it)."""
    box_p99_error: float = 0.1
    """Box-action gate: the largest 99th percentile of |Δa| / (high − low): a few states may move further
    (int8 rounding is amplified where a tanh is steep), but not one in a hundred by 10 % of the range."""

    return_ratio_min: float = 0.99
    """Gridworld gate: an artifact's exact return (every start state, no noise) over the float policy's, at
    least this. Agreement alone let the default CQL policy's pruned-50-int8 pass at 99.37 % while it lost
    8 % of the return (a few flipped states send episodes round a loop). Outside the gridworld the float
    policy's 95 % CI is the return's bar."""
    tie_margin: float = 0.05
    """Discrete-action gate outside the gridworld: an artifact's action counts as agreeing when the float
    policy rates it within this share of its typical output range (the median over the calibration states
    of max − min output) of its best. The float policy is itself indifferent there: on the CartPole PPO
    policy every int8 disagreement left lay within 0.18 logits (3.6 % of the 4.9 range) of the float's
    pick, a probability ratio of 1.2. The gridworld's oracle ties play this part there."""

    def settings_for(self, backend: str) -> dict[str, Any]:
        return dict(self.backend_settings.get(backend, {}))

    @property
    def variants(self) -> tuple[str, ...]:
        """Every variant any format of this target needs, in first-mentioned order."""
        seen: dict[str, None] = {}
        for plan in self.formats.values():
            seen.update(dict.fromkeys(plan.variants))
        return tuple(seen)


def known_targets(targets_dir: Path = TARGETS_DIR) -> list[str]:
    return sorted(p.stem for p in targets_dir.glob("*.toml"))


def load_profile(target: str, targets_dir: Path = TARGETS_DIR) -> TargetProfile:
    """Load ``<targets_dir>/<target>.toml``; an unknown name is refused with the list of known ones."""
    path = targets_dir / f"{target}.toml"
    if not path.is_file():
        raise ProfileError(
            f"unknown target {target!r}; known targets: {', '.join(known_targets(targets_dir))}"
        )
    try:
        raw = tomllib.loads(path.read_text())
        runtime = raw.get("runtime", {})
        formats = {
            name: FormatPlan(
                variants=tuple(spec["variants"]),
                backends=tuple(spec["backends"]),
                options={k: v for k, v in spec.items() if k not in ("variants", "backends")},
            )
            for name, spec in raw["formats"].items()
        }
        return TargetProfile(
            name=raw.get("name", target),
            description=raw.get("description", ""),
            fps=float(runtime.get("fps", 10)),
            latency_budget_ms=float(runtime.get("latency_budget_ms", 150.0)),
            agreement_threshold=float(runtime.get("agreement_threshold", 0.99)),
            max_abs_q_diff=float(runtime.get("max_abs_q_diff", 0.5)),
            formats=formats,
            backend_settings=dict(raw.get("backends", {})),
            path=path,
            box_mean_error=float(runtime.get("box_mean_error", TargetProfile.box_mean_error)),
            box_p99_error=float(runtime.get("box_p99_error", TargetProfile.box_p99_error)),
            return_ratio_min=float(runtime.get("return_ratio_min", TargetProfile.return_ratio_min)),
            tie_margin=float(runtime.get("tie_margin", TargetProfile.tie_margin)),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise ProfileError(f"{path}: malformed target profile ({err!r})") from err
