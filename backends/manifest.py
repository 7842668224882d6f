"""The artifact manifest (docs/contracts.md#the-manifest): written by export, read by backends, edge_runtime
and benchmarks.

One module owns the schema so writer and readers cannot drift. Torch-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from common.fileio import atomic_write_text, file_sha256

__all__ = ["ArtifactEntry", "Manifest", "ManifestError", "file_sha256", "load_manifest", "write_manifest"]

SCHEMA = 2
"""Schema 2 adds ``task`` (docs/contracts.md#the-task-spec); ``env`` stays for schema-1 readers."""
READABLE_SCHEMAS = (1, 2)
"""A schema-1 manifest (no ``task``) still loads, as the gridworld task its ``env`` describes."""
STATUSES = ("ok", "failed", "skipped", "pending-on-device")
"""``skipped``: a variant the profile lists that this export did not build, with the reason (e.g. pruning
of a policy source); like a failed build it has no file, and nothing loads or measures it."""


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
    task: dict[str, Any] | None = None
    """The task spec (docs/contracts.md#the-task-spec, ``tasks.TaskSpec.to_dict()``); None in a schema-1
    manifest."""
    root: Path = field(default=Path("."), repr=False, compare=False)
    """Folder the artifact paths are relative to (the manifest's folder); not serialised."""

    def __post_init__(self) -> None:
        if self.task is None:
            self.schema = 1  # no task: what it is, and what a schema-1 reader expects

    def task_spec(self) -> Any:
        """The :class:`tasks.TaskSpec` the artifacts run in; for a schema-1 manifest, the gridworld task
        its ``env`` describes (observations flattened to float32, Q-values, exact evaluation)."""
        from tasks import TaskSpec  # lazily: tasks imports the gridworld, the manifest needs neither
        from tasks.named import gridworld

        try:
            if self.task is not None:
                return TaskSpec.from_dict(self.task)
            return gridworld(self.env.get("obs_mode", "vector"), self.env["id"], self.env.get("kwargs"))
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestError(f"the manifest's task is malformed ({err}); re-run `make export`") from err

    @property
    def obs_dim(self) -> int:
        """Length of one flattened observation: what every model takes, ``[N, obs_dim]``."""
        shape = self.task["observation"]["shape"] if self.task is not None else self.env["obs_shape"]
        return int(math.prod(shape))

    @property
    def model_input(self) -> tuple[tuple[int, ...], str]:
        """(one observation's shape as the model takes it, its dtype): an image task's uint8 ``[C, H, W]``
        frames (scaled inside the graph, docs/contracts.md#the-task-spec), everything else flattened to
        float32 ``[obs_dim]``. The rule of ``tasks.model_input``, read from the JSON rather than the parsed
        task: a schema-1 manifest's observation size is its ``env.obs_shape``, which the gridworld task its
        ``task_spec()`` rebuilds does not carry."""
        observation = self.task["observation"] if self.task is not None else {}
        shape = tuple(int(d) for d in observation.get("shape", ()))
        if observation.get("dtype") == "uint8" and len(shape) == 3:
            return shape, "uint8"
        return (self.obs_dim,), "float32"

    @property
    def output_dim(self) -> int:
        """Width of one model output: the number of actions (Q-values, logits) or the action's size."""
        if self.task is None:
            return int(self.env["n_actions"])
        action = self.task["action"]
        return int(action["n"]) if action["kind"] == "discrete" else int(math.prod(action["shape"]))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("root")
        if d["task"] is None:  # a schema-1 manifest stays one when rewritten
            d.pop("task")
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

    def variants(self) -> list[str]:
        """The variant names, in manifest order, each once."""
        return list(dict.fromkeys(a.variant for a in self.artifacts))

    def for_backend(self, variant: str, backend: str) -> ArtifactEntry:
        """The artifact of ``variant`` that ``backend`` runs; the error lists the manifest's variants when
        ``variant`` is not one of them (a typo), else what that variant has and on which backends."""
        if variant not in self.variants():
            raise ManifestError(
                f"no variant {variant!r} in the manifest; variants: {', '.join(self.variants()) or 'none'}"
            )
        matches = [a for a in self.artifacts if a.variant == variant and backend in a.backends]
        if not matches:
            have = ", ".join(
                f"{a.name} ({'/'.join(a.backends)})" for a in self.artifacts if a.variant == variant
            )
            raise ManifestError(
                f"no artifact of variant {variant!r} runs on backend {backend!r}; that variant has: {have}"
            )
        return matches[0]

    def artifact_path(self, entry: ArtifactEntry) -> Path:
        """``entry.path`` under :attr:`root`; refused if it would lead anywhere else (a manifest built in
        memory skips :func:`load_manifest`'s check, so the one place that joins paths checks again)."""
        check_relative(entry.path, f"artifact {entry.name}: path", self.target)
        return self.root / entry.path

    def companion_path(self, entry: ArtifactEntry, rel: str) -> Path:
        """A file of ``entry`` besides its main one (a key of ``extra["files"]``), checked like
        :meth:`artifact_path`."""
        check_relative(rel, f"artifact {entry.name}: extra.files entry", self.target)
        return self.root / rel


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


def check_relative(rel: str, what: str, target: str = "<target>") -> None:
    """Refuse a manifest path that is absolute or leaves the manifest's folder
    (docs/contracts.md#the-manifest).

    Decided on the text alone, before anything is opened or hashed: whatever the file system holds, a
    manifest must not make a reader (or a bundle) touch files outside its folder. Windows forms (drive
    letters, backslashes) are refused too, so a manifest means the same on every host.
    """
    if not isinstance(rel, str):
        raise ManifestError(f"{what} {rel!r} is not a string; re-run `make export TARGET={target}`")
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    escapes = ".." in posix.parts or ".." in windows.parts
    if posix.is_absolute() or windows.drive or windows.root or escapes:
        raise ManifestError(
            f"{what} {rel!r} is absolute or leaves the manifest's folder (docs/contracts.md#the-manifest); "
            f"write it relative "
            f"to the folder of manifest.json, without a drive or '..' (e.g. 'float/model.onnx'), with the "
            f"file inside that folder, or re-run `make export TARGET={target}`"
        )


def manifest_paths(entry: ArtifactEntry) -> list[tuple[str, str]]:
    """Every file path an entry names, as (what it is, path): its own, its companions (``extra["files"]``,
    OpenVINO's ``.bin``) and a pending engine's ONNX input (``extra["onnx"]``)."""
    files = entry.extra.get("files", {})
    if not isinstance(files, dict):
        raise ManifestError(f"artifact {entry.name}: extra.files must map relative paths to their sha256")
    paths = [(f"artifact {entry.name}: path", entry.path)]
    paths += [(f"artifact {entry.name}: extra.files entry", rel) for rel in files]
    if "onnx" in entry.extra:
        paths.append((f"artifact {entry.name}: extra.onnx", entry.extra["onnx"]))
    return paths


_REQUIRED = ("schema", "target", "created", "source", "env", "versions", "artifacts")


def load_manifest(path: str | Path, check_task: bool = True) -> Manifest:
    """Read and validate ``manifest.json``. ``check_task=False`` skips parsing the task spec, which imports
    numpy: the bundle's start check (``deploy.verify``) runs on the device's bare ``python3``."""
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
    if raw["schema"] not in READABLE_SCHEMAS:
        readable = ", ".join(map(str, READABLE_SCHEMAS))
        raise ManifestError(f"{path}: schema {raw['schema']} is not supported (readable: {readable}); {fix}")
    if raw["schema"] >= 2 and not isinstance(raw.get("task"), dict):
        raise ManifestError(f"{path}: a schema-{raw['schema']} manifest needs a 'task' object; {fix}")
    try:
        artifacts = [ArtifactEntry(**a) for a in raw["artifacts"]]
    except TypeError as err:
        raise ManifestError(f"{path}: malformed artifact entry ({err}); {fix}") from err
    for a in artifacts:
        if a.status not in STATUSES:
            raise ManifestError(f"{path}: artifact {a.name} has unknown status {a.status!r}")
        if not isinstance(a.extra, dict):
            raise ManifestError(f"{path}: artifact {a.name} has a malformed extra ({a.extra!r}); {fix}")
        try:
            for what, rel in manifest_paths(a):
                check_relative(rel, what, raw["target"])
        except ManifestError as err:
            raise ManifestError(f"{path}: {err}") from None
    fields = {k: raw[k] for k in _REQUIRED if k != "artifacts"}
    manifest = Manifest(**fields, artifacts=artifacts, task=raw.get("task"), root=path.parent)
    if not check_task:
        return manifest
    try:
        manifest.task_spec()  # refuse a malformed task now, not when a backend first needs its shapes
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None
    return manifest


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write atomically (temp file + rename), so readers never see half a manifest; a path that
    :func:`load_manifest` would refuse is refused here, so export cannot write a manifest nobody loads."""
    for entry in manifest.artifacts:
        for what, rel in manifest_paths(entry):
            check_relative(rel, what, manifest.target)
    return atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2) + "\n")
