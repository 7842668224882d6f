"""The artifact manifest (DESIGN.md §5): written by export, read by backends, edge_runtime and benchmarks.

One module owns the schema so writer and readers cannot drift. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.fileio import atomic_write_text, file_sha256

__all__ = ["ArtifactEntry", "Manifest", "ManifestError", "file_sha256", "load_manifest", "write_manifest"]

SCHEMA = 1
STATUSES = ("ok", "failed", "pending-on-device")


class ManifestError(ValueError):
    """A manifest that cannot be used, or an artifact that does not match it (missing, tampered)."""


@dataclass
class ArtifactEntry:
    name: str
    """``<variant>/<format>``, unique in the manifest."""
    variant: str
    format: str
    precision: str
    path: str
    """Relative to the manifest's folder."""
    sha256: str | None
    size_bytes: int | None
    params: int | None
    backends: list[str]
    status: str = "ok"
    reason: str | None = None
    parity: dict[str, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Format-specific details: the TensorRT build command, pruning counts, calibration size, …"""


@dataclass
class Manifest:
    target: str
    created: str
    source: dict[str, Any]
    env: dict[str, Any]
    versions: dict[str, str]
    artifacts: list[ArtifactEntry]
    schema: int = SCHEMA
    root: Path = field(default=Path("."), repr=False, compare=False)
    """Folder the artifact paths are relative to (the manifest's folder); not serialised."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("root")
        return {"schema": d.pop("schema"), **d}

    def entry(self, variant: str, fmt: str | None = None) -> ArtifactEntry:
        """The artifact of ``variant`` (in format ``fmt`` if given); a readable error lists what exists."""
        matches = [a for a in self.artifacts if a.variant == variant and (fmt is None or a.format == fmt)]
        if not matches:
            have = ", ".join(a.name for a in self.artifacts)
            raise ManifestError(
                f"no artifact for variant {variant!r}{f' in {fmt}' if fmt else ''}; have: {have}"
            )
        return matches[0]

    def for_backend(self, variant: str, backend: str) -> ArtifactEntry:
        matches = [a for a in self.artifacts if a.variant == variant and backend in a.backends]
        if not matches:
            have = ", ".join(
                f"{a.name} ({'/'.join(a.backends)})" for a in self.artifacts if a.variant == variant
            )
            raise ManifestError(
                f"no artifact of variant {variant!r} runs on backend {backend!r}; "
                f"that variant has: {have or 'nothing'}"
            )
        return matches[0]

    def artifact_path(self, entry: ArtifactEntry) -> Path:
        return self.root / entry.path


#: Statuses whose files exist and may be loaded: ``ok``; a benchmark also measures gate-``failed`` ones.
LOADABLE = ("ok",)
MEASURABLE = ("ok", "failed")


def verify_artifact(manifest: Manifest, entry: ArtifactEntry, allowed: tuple[str, ...] = LOADABLE) -> Path:
    """Check an artifact's status is ``allowed``, its file exists and matches its recorded sha256; return
    its path. The edge runtime loads only ``ok`` artifacts; benchmarks also measure gate-failed ones."""
    if entry.status not in allowed:
        raise ManifestError(f"artifact {entry.name} has status {entry.status!r}: {entry.reason}")
    path = manifest.artifact_path(entry)
    if not path.is_file():
        raise ManifestError(f"{path}: artifact file missing; re-run `make export TARGET={manifest.target}`")
    digest = file_sha256(path)
    if entry.sha256 is None or digest != entry.sha256:
        raise ManifestError(
            f"{path}: sha256 {digest[:12]}… does not match the manifest ({(entry.sha256 or 'none')[:12]}…); "
            f"the file was modified or corrupted — re-run `make export TARGET={manifest.target}`"
        )
    return path


_REQUIRED = ("schema", "target", "created", "source", "env", "versions", "artifacts")


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``manifest.json``."""
    path = Path(path)
    fix = "run `make export TARGET=<target>` (or `python -m export --target …`) to create it"
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest; {fix}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not valid JSON ({err}); {fix}") from err
    missing = [k for k in _REQUIRED if k not in raw] if isinstance(raw, dict) else list(_REQUIRED)
    if missing:
        raise ManifestError(f"{path}: missing key(s) {missing}; {fix}")
    if raw["schema"] != SCHEMA:
        raise ManifestError(f"{path}: schema {raw['schema']} is not supported (expected {SCHEMA}); {fix}")
    try:
        artifacts = [ArtifactEntry(**a) for a in raw["artifacts"]]
    except TypeError as err:
        raise ManifestError(f"{path}: malformed artifact entry ({err}); {fix}") from err
    for a in artifacts:
        if a.status not in STATUSES:
            raise ManifestError(f"{path}: artifact {a.name} has unknown status {a.status!r}")
    fields = {k: raw[k] for k in _REQUIRED if k != "artifacts"}
    return Manifest(**fields, artifacts=artifacts, root=path.parent)


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write atomically (temp file + rename), so readers never see half a manifest."""
    return atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2) + "\n")
