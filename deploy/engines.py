"""``./run.sh --register-engines`` (``python -m deploy.engines [BUNDLE]``): the TensorRT engines that
``build_engines.sh`` built on this device, entered into the manifest so ``--backend tensorrt`` runs them and
``python -m benchmarks`` measures them.

Export cannot build an engine for a device it is not on (an engine is tied to the GPU and the TensorRT
version), so it records each one ``pending-on-device`` with its ONNX input and the ``trtexec`` commands;
``build_engines.sh`` runs them here and logs each engine it built in ``engines.built`` (the engine, the
TensorRT version, the exact command). This step then, for every pending engine:

- refuses one that was not built, is empty, has no line in ``engines.built``, or whose ONNX input no longer
  matches the sha256 export recorded (it would not be the policy that passed the gates);
- deserializes it with TensorRT where ``tensorrt`` imports (a file this TensorRT cannot load is refused);
- records it ``ok`` with its sha256, size, TensorRT version, build command and flags;

and rewrites the manifest (atomically) and the bundle's ``SHA256SUMS`` with the new hashes, so ``run.sh``'s
start check keeps guarding the engines too. Runs on the device's bare ``python3`` (standard library and the
bundle's torch- and numpy-free ``backends.manifest``), like the start check.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.manifest import ArtifactEntry, Manifest, ManifestError, load_manifest, write_manifest
from common.fileio import atomic_write_text, file_sha256
from deploy.verify import SUMS, format_sums, read_sums

BUILD_LOG = "engines.built"  # export.formats.tensorrt.BUILD_LOG: the build script writes it
SCRIPT = "build_engines.sh"
#: The trtexec flags that decide what an engine computes (the rest: shapes, paths, workspace).
PRECISION_FLAGS = ("--fp16", "--int8", "--bf16", "--best", "--stronglyTyped")


class EngineError(ValueError):
    """A bundle or export folder whose engines cannot be registered; the message says what to do."""


@dataclass(frozen=True)
class Built:
    """One line of ``engines.built``."""

    tensorrt: str
    command: str

    @property
    def flags(self) -> list[str]:
        return [a for a in shlex.split(self.command) if a in PRECISION_FLAGS]


def read_build_log(path: Path) -> dict[str, Built]:
    """``engines.built``: engine path (relative to the manifest) → how it was built."""
    if not path.is_file():
        return {}
    built = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3 or not all(fields):
            raise EngineError(f"{path}:{number}: not '<engine>\\t<TensorRT version>\\t<command>': {line!r}")
        built[fields[0]] = Built(fields[1], fields[2])
    return built


def deserializes(engine: Path) -> str:
    """'' when TensorRT here loads the engine (or is not importable: then it cannot be checked here), else why
    it does not."""
    try:
        import tensorrt as trt
    except ImportError:
        return ""
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if runtime.deserialize_cuda_engine(engine.read_bytes()) is None:
        return f"TensorRT {trt.__version__} here cannot deserialize it (built for another GPU or version?)"
    return ""


def problem(manifest: Manifest, entry: ArtifactEntry, built: dict[str, Built]) -> str:
    """Why ``entry``'s engine cannot be registered, or ''."""
    engine = manifest.artifact_path(entry)
    rebuild = f"run `sh {SCRIPT}` in {manifest.root} first"
    if not engine.is_file():
        return f"{entry.path}: not built; {rebuild}"
    if engine.stat().st_size == 0:
        return f"{entry.path}: empty file (the build failed?); {rebuild}"
    if entry.path not in built:
        return f"{entry.path}: no line in {BUILD_LOG} says how it was built; {rebuild}"
    onnx = entry.extra.get("onnx")
    if not onnx or not (manifest.root / onnx).is_file():
        return f"{entry.path}: its ONNX input {onnx!r} is missing; unpack the bundle again"
    if file_sha256(manifest.root / onnx) != entry.extra.get("onnx_sha256"):
        return f"{onnx}: changed since export (its sha256 differs): the engine is not of the gated policy"
    return deserializes(engine)


def register(manifest_path: Path, now: str | None = None) -> tuple[list[ArtifactEntry], list[str]]:
    """Register every pending engine of one manifest that can be; (entries registered, problems of the
    others, which stay pending). The manifest is rewritten only when something was registered."""
    manifest = load_manifest(manifest_path, check_task=False)
    pending = [e for e in manifest.artifacts if e.format == "tensorrt" and e.status == "pending-on-device"]
    built = read_build_log(manifest.root / BUILD_LOG)
    verdicts = {e.name: problem(manifest, e, built) for e in pending}
    ready = [e for e in pending if not verdicts[e.name]]
    problems = [p for p in verdicts.values() if p]
    if not ready:
        return [], problems
    when = now or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for entry in ready:
        engine, how = manifest.artifact_path(entry), built[entry.path]
        entry.status, entry.reason = "ok", None
        entry.sha256, entry.size_bytes = file_sha256(engine), engine.stat().st_size
        entry.extra.update(
            tensorrt=how.tensorrt, build_command=how.command, build_flags=how.flags, registered=when
        )
    write_manifest(manifest, manifest_path)
    return ready, problems


def update_sums(bundle: Path, files: Sequence[Path]) -> None:
    """Put the new hashes of ``files`` (inside ``bundle``) into its SHA256SUMS, if it has one."""
    sums_path = bundle / SUMS
    if not sums_path.is_file():
        return
    sums = read_sums(sums_path)
    for path in files:
        sums[path.resolve().relative_to(bundle.resolve()).as_posix()] = file_sha256(path)
    atomic_write_text(sums_path, format_sums(sums))


def register_folder(folder: Path) -> tuple[list[str], list[str]]:
    """Register the engines of a bundle (artifacts/*/manifest.json) or an export folder (manifest.json):
    (lines saying what was registered, problems of the engines left pending)."""
    manifests = [folder / "manifest.json"] if (folder / "manifest.json").is_file() else []
    manifests = manifests or sorted(folder.glob("artifacts/*/manifest.json"))
    if not manifests:
        raise EngineError(f"{folder}: no manifest.json and no artifacts/<target>/manifest.json")
    lines, refused = [], []
    for path in manifests:
        registered, problems = register(path)
        refused += problems
        if not registered:
            lines += [] if problems else [f"{path}: no pending TensorRT engine"]
            continue
        update_sums(folder, [path, *(path.parent / e.path for e in registered)])
        for e in registered:
            flags = " ".join(e.extra["build_flags"]) or "no precision flag"
            lines.append(
                f"registered {e.name}: {e.path}, {e.size_bytes:,} bytes, sha256 {e.sha256[:12]}…, TensorRT "
                f"{e.extra['tensorrt']} ({flags})"
            )
        lines.append(f"next: ./run.sh --backend tensorrt --variant {registered[0].variant}")
    return lines, refused


def main(argv: Sequence[str] | None = None) -> int:
    """0 all registered (or nothing pending), 1 an engine refused (it stays pending; the others are
    registered), 2 not a bundle or export folder, or an unreadable manifest or build log."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print((__doc__ or "").split("\n\n")[0])
        print("In the unpacked bundle: sh artifacts/jetson/build_engines.sh && ./run.sh --register-engines")
        print("Example: python -m deploy.engines artifacts/jetson")
        return 0
    folder = Path(args[0]) if args else Path(os.getcwd())
    try:
        lines, refused = register_folder(folder)
    except (EngineError, ManifestError, OSError) as err:
        print(f"register-engines: {err}", file=sys.stderr)
        return 2
    if lines:
        print("\n".join(lines))
    for reason in refused:
        print(f"register-engines: left pending: {reason}", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
