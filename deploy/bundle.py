"""``python -m deploy.bundle --target x86|arm64|jetson [--artifacts artifacts/<target>] [--out dist]``

Packs what a device needs to run a target's exported policies into ``<out>/neuroquant-<target>.tar.gz``:
the manifest and the artifacts its runtimes can load, the torch-free ``edge_runtime``, ``backends``,
``gridworld``, ``tasks`` and ``common`` packages, the target profile, the pinned edge requirements,
``run.sh`` and ``install_edge.sh``, ``build_engines.sh`` where engines are built on the device, and
``SHA256SUMS``. On the device: unpack, ``./run.sh --variant float --fps 10``.
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from backends.manifest import ArtifactEntry, Manifest, load_manifest
from backends.profiles import TARGETS_DIR, TargetProfile, known_targets, load_profile
from common.cli import dataclass_parser, parse_dataclass
from common.fileio import atomic_write, file_sha256
from deploy.requirements import CONSTRAINTS, REPO, EdgeRequirements, edge_requirements
from deploy.verify import SUMS, artifact_files, format_sums
from tasks.envs import env_packages

HERE = Path(__file__).resolve().parent
#: Packages the edge runtime imports (all torch-free), shipped whole.
PACKAGES = ("common", "backends", "edge_runtime", "gridworld", "tasks")
#: The part of ``deploy`` a device runs (the start-time check, the cross-machine check), not the bundler.
DEPLOY_MODULES = ("__init__.py", "verify.py", "check.py", "engines.py")
SCRIPTS = ("run.sh", "install_edge.sh")
#: Written next to the manifest by export when TensorRT engines are pending (export.formats.tensorrt).
ENGINE_SCRIPT = "build_engines.sh"
README_TEMPLATE = HERE / "bundle_readme.md"
SHIPPED_STATUSES = ("ok", "pending-on-device")


class BundleError(ValueError):
    """An export that cannot be bundled: missing, for another target, or not matching its own hashes."""


@dataclass
class BundleConfig:
    target: str = "x86"
    """Target profile (configs/targets/<target>.toml) whose export to pack."""
    artifacts: str = ""
    """Folder with the export's manifest.json; empty means artifacts/<target>."""
    out: Path = Path("dist")
    """Folder for neuroquant-<target>.tar.gz (written atomically: a temp file, then a rename)."""

    def artifacts_dir(self) -> Path:
        return Path(self.artifacts) if self.artifacts else REPO / "artifacts" / self.target


@dataclass
class Bundle:
    """Everything that goes into the archive, by path inside the bundle folder."""

    target: str
    files: dict[str, bytes] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)
    entries: list[ArtifactEntry] = field(default_factory=list)
    """The manifest entries whose files the bundle carries."""

    def add(self, name: str, data: bytes, executable: bool = False) -> None:
        self.files[name] = data
        if executable:
            self.executable.add(name)

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(e.variant for e in self.entries))

    @property
    def folder(self) -> str:
        return f"neuroquant-{self.target}"


def _load(config: BundleConfig) -> tuple[TargetProfile, Manifest]:
    profile = load_profile(config.target)  # an unknown target: ProfileError listing the known ones
    path = config.artifacts_dir() / "manifest.json"
    if not path.is_file():
        raise BundleError(
            f"{path}: no export for target {config.target}; run `make export TARGET={config.target}` first"
        )
    manifest = load_manifest(path)
    if manifest.target != config.target:
        raise BundleError(f"{path} is an export for target {manifest.target!r}, not {config.target!r}")
    return profile, manifest


def _artifacts(bundle: Bundle, manifest: Manifest, backends: Sequence[str]) -> None:
    """The manifest and every file of the artifacts the bundle's runtimes can load, checked against it."""
    entries = [
        e for e in manifest.artifacts if e.status in SHIPPED_STATUSES and set(e.backends) & set(backends)
    ]
    prefix = f"artifacts/{manifest.target}"
    bundle.add(f"{prefix}/manifest.json", (manifest.root / "manifest.json").read_bytes())
    for rel, want in artifact_files(entries).items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{manifest.root}: artifact path {rel!r} leaves the export folder")
        path = manifest.root / rel
        fix = f"re-run `make export TARGET={manifest.target}`"
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing; {fix}")
        if file_sha256(path) != want:
            raise BundleError(f"{path}: sha256 does not match the manifest; {fix}")
        bundle.add(f"{prefix}/{rel}", path.read_bytes())
    if any(e.status == "pending-on-device" for e in entries) and (manifest.root / ENGINE_SCRIPT).is_file():
        bundle.add(f"{prefix}/{ENGINE_SCRIPT}", (manifest.root / ENGINE_SCRIPT).read_bytes(), executable=True)
    bundle.entries = entries


def _code(bundle: Bundle, target: str) -> None:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                bundle.add(path.relative_to(REPO).as_posix(), path.read_bytes())
    for name in DEPLOY_MODULES:
        bundle.add(f"deploy/{name}", (HERE / name).read_bytes())
    bundle.add(f"configs/targets/{target}.toml", (TARGETS_DIR / f"{target}.toml").read_bytes())
    for name in SCRIPTS:
        bundle.add(name, (HERE / name).read_bytes(), executable=True)


def _default_variant(manifest: Manifest, backend: str) -> str:
    """The first artifact that loads on the default backend (export lists the float policy first)."""
    ok = [e.variant for e in manifest.artifacts if e.status == "ok" and backend in e.backends]
    return ok[0] if ok else ""


def _settings(target: str, backend: str, variant: str, requirements: EdgeRequirements) -> str:
    values = {
        "NQ_TARGET": target,
        "NQ_BACKEND": backend,
        "NQ_VARIANT": variant,
        "NQ_SYSTEM_SITE_PACKAGES": "1" if requirements.system else "0",
        "NQ_SYSTEM_MODULES": " ".join(requirements.system),
    }
    head = "# Written by `python -m deploy.bundle`; read by run.sh and install_edge.sh.\n"
    return head + "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def _readme(profile: TargetProfile, bundle: Bundle, backend: str, variant: str) -> str:
    script = f"artifacts/{profile.name}/{ENGINE_SCRIPT}"
    shipped = script in bundle.files
    engines = (
        f"    sh {script}   # first: builds the TensorRT engines on this device\n"
        "    ./run.sh --register-engines   # then: enters them into the manifest (status ok, sha256)\n"
        if shipped
        else ""
    )
    engine_note = (
        f"\nA `pending-on-device` artifact is a TensorRT engine that `{script}` builds here from its\n"
        "ONNX input (engines are tied to the GPU and the TensorRT version; it needs JetPack's `trtexec`).\n"
        "`./run.sh --register-engines` then records each built engine in the manifest with its sha256, the\n"
        "TensorRT version and the build flags, and adds it to `SHA256SUMS`; `--backend tensorrt` runs it.\n"
        if shipped
        else ""
    )
    rows = "".join(
        f"| {e.variant} | {e.format} | {e.precision} | {e.status} | {', '.join(e.backends)} |\n"
        for e in bundle.entries
    )
    return README_TEMPLATE.read_text().format(
        target=profile.name,
        description=profile.description,
        engines=engines,
        engine_note=engine_note,
        backend=backend,
        variant=variant or "<variant>",
        rows=rows,
    )


def plan_bundle(config: BundleConfig) -> Bundle:
    """Collect and check every member; raises :class:`BundleError` (or a ``ValueError``) on bad input."""
    profile, manifest = _load(config)
    requirements = edge_requirements(profile, env_packages=env_packages(manifest.task_spec().env.id))
    backend = requirements.backends[0]
    variant = _default_variant(manifest, backend)
    bundle = Bundle(config.target)
    _artifacts(bundle, manifest, requirements.backends)
    _code(bundle, config.target)
    bundle.add("requirements-edge.txt", requirements.text(CONSTRAINTS.name).encode())
    bundle.add(CONSTRAINTS.name, CONSTRAINTS.read_bytes())
    bundle.add("bundle.env", _settings(config.target, backend, variant, requirements).encode())
    bundle.add("README.md", _readme(profile, bundle, backend, variant).encode())
    sums = {name: sha256(data).hexdigest() for name, data in bundle.files.items()}
    bundle.add(SUMS, format_sums(sums).encode())
    return bundle


def write_bundle(bundle: Bundle, out: Path) -> Path:
    """``<out>/neuroquant-<target>.tar.gz`` with every member under ``neuroquant-<target>/``, atomically."""
    mtime = int(time.time())

    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for name in sorted(bundle.files):
                data = bundle.files[name]
                info = tarfile.TarInfo(f"{bundle.folder}/{name}")
                info.size, info.mtime = len(data), mtime
                info.mode = 0o755 if name in bundle.executable else 0o644
                tar.addfile(info, io.BytesIO(data))

    return atomic_write(Path(out) / f"{bundle.folder}.tar.gz", write)


def build_parser() -> argparse.ArgumentParser:
    return dataclass_parser(
        BundleConfig,
        prog="python -m deploy.bundle",
        description=(__doc__ or "").strip().split("\n\n")[1],
        epilog=f"Known targets: {', '.join(known_targets())}.\n"
        "Example: python -m deploy.bundle --target x86 --out dist",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 2 with one line, before anything is written, when the export or the target is unusable."""
    config = parse_dataclass(
        BundleConfig, build_parser(), list(argv) if argv is not None else None, outputs={"out": "dir"}
    )
    try:
        bundle = plan_bundle(config)
    except ValueError as err:  # BundleError, ManifestError, ProfileError, RequirementsError
        print(f"python -m deploy.bundle: error: {err}", file=sys.stderr)
        return 2
    path = write_bundle(bundle, config.out)
    print(
        f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {len(bundle.files)} files; "
        f"variants: {', '.join(bundle.variants)}); on the device: tar -xzf {path.name} && "
        f"./{bundle.folder}/run.sh --fps 10"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
