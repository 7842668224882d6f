"""``python -m export --target x86|arm64|jetson [--checkpoint …] [--out artifacts/x86] [--variants a,b]``
``python -m export --target x86 --policy sb3:model.zip --env CartPole-v1 [--trust-pickle]``

Builds every variant × format the target profile lists into artifacts/<target>/ (or, for a --policy of
any Gymnasium task, artifacts/<task>/<target>/) with a manifest.json, each artifact checked against the
float policy by its own runtime.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backends.manifest import STATUSES
from backends.profiles import known_targets
from common.cli import dataclass_parser, parse_dataclass
from export import pipeline, task_export
from export.pipeline import ExportConfig
from export.policies import kinds
from tasks import TaskUnavailable


def build_parser() -> argparse.ArgumentParser:
    """argparse generated from :class:`ExportConfig`: a new field is a new flag with its docstring as help."""
    return dataclass_parser(
        ExportConfig,
        prog="python -m export",
        description=(__doc__ or "").strip().split("\n\n")[1],
        epilog=f"Known targets: {', '.join(known_targets())}. Policy kinds: {', '.join(kinds())}.\nExample: "
        f"python -m export --target x86 --policy sb3:runs/zoo/cartpole/model.zip --env CartPole-v1",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 2 with one line, before anything is written, on any bad input; 0 once the manifest is in place."""
    parser = build_parser()
    config = parse_dataclass(ExportConfig, parser, list(argv) if argv is not None else None)
    stage = task_export if config.policy else pipeline  # a policy source, or the gridworld checkpoint
    try:
        policy_only = {"--env": config.env, "--vecnormalize": config.vecnormalize}
        policy_only["--weights"] = config.weights
        for flag, value in policy_only.items():
            if value and not config.policy:
                raise ValueError(f"{flag} {value} applies to a --policy KIND:PATH export only")
        plan = stage.prepare(config)
    except (ValueError, TaskUnavailable) as err:  # ProfileError, CheckpointError, DatasetError, our checks
        print(f"python -m export: error: {err}", file=sys.stderr)
        return 2
    manifest = stage.build(plan)
    if not config.quiet:
        print(stage.format_table(manifest))
        counts = {s: sum(a.status == s for a in manifest.artifacts) for s in STATUSES}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        print(f"wrote {manifest.root / 'manifest.json'} ({summary}) in {manifest.source['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
