"""``python -m deploy.verify [BUNDLE]``: refuse an unpacked device bundle whose files were modified.

``run.sh`` runs this first, with whatever ``python3`` the device has (standard library and the bundle's own
torch-free ``backends.manifest``), so a tampered or truncated bundle stops before pip installs anything.
Two checks: every artifact file the bundle ships matches the sha256 its manifest records, and every file
matches the bundle's ``SHA256SUMS`` (``sha256sum -c SHA256SUMS`` checks the same by hand).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from backends.manifest import ArtifactEntry, Manifest, ManifestError, load_manifest
from common.fileio import file_sha256

SUMS = "SHA256SUMS"
ROOT = Path(__file__).resolve().parent.parent
EXIT_REFUSED = 1


def artifact_files(entries: Iterable[ArtifactEntry]) -> dict[str, str | None]:
    """Every file the entries stand for (relative to the manifest folder) → the sha256 the manifest records.

    An engine still to be built on the device stands for its ONNX input; an OpenVINO IR also for its
    weights (``extra["files"]``).
    """
    files: dict[str, str | None] = {}
    for entry in entries:
        if entry.status == "pending-on-device":
            if entry.extra.get("onnx"):
                files[entry.extra["onnx"]] = entry.extra.get("onnx_sha256")
            continue
        files[entry.path] = entry.sha256
        for rel, meta in dict(entry.extra.get("files", {})).items():
            files[rel] = meta.get("sha256")
    return files


def read_sums(path: Path) -> dict[str, str]:
    """``<sha256>  <relative path>`` lines (sha256sum's format) → path → sha256."""
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ManifestError(f"{path}: malformed line {line!r}")
        sums[rel] = digest
    return sums


def format_sums(sums: dict[str, str]) -> str:
    return "".join(f"{digest}  {rel}\n" for rel, digest in sorted(sums.items()))


def _mismatch(rel: str, digest: str, want: str | None, against: str) -> str:
    return f"{rel}: sha256 {digest[:12]}… does not match {against} ({(want or 'none')[:12]}…)"


def _check_manifest(root: Path, manifest: Manifest, shipped: dict[str, str]) -> list[str]:
    problems = []
    for rel, want in artifact_files(manifest.artifacts).items():
        bundle_rel = Path(os.path.relpath(manifest.root / rel, root)).as_posix()
        if bundle_rel not in shipped:
            continue  # an artifact the bundle does not carry (failed, or for a runtime it does not install)
        path = root / bundle_rel
        if not path.is_file():
            problems.append(f"{bundle_rel}: missing")
            continue
        digest = file_sha256(path)
        if digest != want:
            problems.append(_mismatch(bundle_rel, digest, want, "the manifest"))
    return problems


def verify_bundle(root: Path = ROOT) -> list[str]:
    """Every problem found (empty when the bundle is intact)."""
    root = root.resolve()
    sums_path = root / SUMS
    if not sums_path.is_file():
        return [f"{SUMS}: missing (not an unpacked NeuroQuant bundle?)"]
    try:
        shipped = read_sums(sums_path)
        manifests = sorted(root.glob("artifacts/*/manifest.json"))
        if not manifests:
            return ["artifacts/<target>/manifest.json: missing"]
        problems = [
            p for m in manifests for p in _check_manifest(root, load_manifest(m, check_task=False), shipped)
        ]
    except ManifestError as err:
        return [str(err)]
    reported = {p.split(":", 1)[0] for p in problems}
    for rel, want in shipped.items():
        path = root / rel
        if rel in reported:
            continue
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif (digest := file_sha256(path)) != want:
            problems.append(_mismatch(rel, digest, want, SUMS))
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print((__doc__ or "").split("\n\n")[0].replace("``", ""))
        print("Example: python -m deploy.verify neuroquant-x86  # dist/neuroquant-x86.tar.gz, unpacked")
        return 0
    root = Path(args[0]) if args else ROOT
    problems = verify_bundle(root)
    if problems:
        for problem in problems:
            print(f"neuroquant bundle refused: {problem}", file=sys.stderr)
        targets = ",".join(p.parent.name for p in root.glob("artifacts/*/manifest.json")) or "<target>"
        print(
            f"neuroquant bundle refused: {len(problems)} file(s) modified, missing or corrupted in {root}; "
            f"unpack the original bundle again (or rebuild it: make bundle TARGET={targets})",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
