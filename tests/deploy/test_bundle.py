"""The device bundle: exactly the expected members, torch-free, and refused at start once modified."""

from __future__ import annotations

import ast
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.bundle import PACKAGES, main
from deploy.verify import verify_bundle
from tests.deploy.conftest import BASE_PYTHON, REPO, clean_env, unpack, write_fake_export

FIXED = {
    "README.md",
    "SHA256SUMS",
    "bundle.env",
    "requirements-edge.txt",
    "constraints.txt",
    "run.sh",
    "install_edge.sh",
    "deploy/__init__.py",
    "deploy/verify.py",
    "deploy/check.py",
    "deploy/engines.py",
}


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def _package_files() -> set[str]:
    return {
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def _imports_torch_at_import_time(source: str) -> bool:
    """A module-level ``import torch``/``from torch …`` (lazy imports inside functions are fine)."""
    for node in ast.parse(source).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        if any(n.split(".")[0] in ("torch", "train", "export") for n in names):
            return True
    return False


def test_x86_bundle_has_exactly_the_expected_members(bundles: Callable[[str], Path]) -> None:
    archive = bundles("x86")
    assert archive.name == "neuroquant-x86.tar.gz"
    members = _members(archive)
    artifacts = {
        f"artifacts/x86/{rel}"
        for rel in (
            "manifest.json",
            "float/model.onnx",
            "fp16/model.onnx",
            "float/model.xml",
            "float/model.bin",
        )
    }
    expected = FIXED | artifacts | _package_files() | {"configs/targets/x86.toml"}
    assert set(members) == {f"neuroquant-x86/{name}" for name in expected}
    # not shipped: the torch checkpoint, the failed artifact, the TensorRT input x86 does not run
    for name, info in members.items():
        assert info.isfile()
        executable = name.rsplit("/", 1)[-1] in ("run.sh", "install_edge.sh")
        assert info.mode == (0o755 if executable else 0o644), name


def test_bundle_carries_no_torch_train_or_export_code(bundles: Callable[[str], Path], tmp_path: Path) -> None:
    root = unpack(bundles("x86"), tmp_path)
    top = {p.name for p in root.iterdir()}
    assert not top & {"train", "export", "benchmarks", "reports", "tests"}
    for path in root.rglob("*.py"):
        assert not _imports_torch_at_import_time(path.read_text()), path
    assert (root / "install_edge.sh").read_bytes() == (REPO / "deploy/install_edge.sh").read_bytes()
    assert (root / "run.sh").read_bytes() == (REPO / "deploy/run.sh").read_bytes()
    requirements = (root / "requirements-edge.txt").read_text()
    assert "torch" not in requirements and "openvino==" in requirements and "onnxruntime==" in requirements
    env = (root / "bundle.env").read_text()
    assert (
        "NQ_BACKEND=onnxruntime" in env and "NQ_VARIANT=float" in env and "NQ_SYSTEM_SITE_PACKAGES=0" in env
    )


def test_jetson_bundle_builds_engines_on_the_device(bundles: Callable[[str], Path], tmp_path: Path) -> None:
    root = unpack(bundles("jetson"), tmp_path)
    script = root / "artifacts/jetson/build_engines.sh"
    assert script.is_file() and script.stat().st_mode & 0o111
    assert (root / "artifacts/jetson/fp16/model.onnx").is_file()  # the pending engine's ONNX input
    assert not (root / "artifacts/jetson/float/model.xml").exists()  # no OpenVINO on Jetson
    assert "sh artifacts/jetson/build_engines.sh" in (root / "README.md").read_text()
    env = (root / "bundle.env").read_text()
    assert "NQ_SYSTEM_SITE_PACKAGES=1" in env and "NQ_SYSTEM_MODULES=tensorrt" in env
    pins = [line for line in (root / "requirements-edge.txt").read_text().splitlines() if "==" in line]
    assert any(p.startswith("cuda-python==") for p in pins)
    assert not any(p.startswith(("tensorrt", "torch", "openvino")) for p in pins)
    assert verify_bundle(root) == []


def _start(root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """run.sh as a device would start it; a venv it might create goes to tmp_path/venv."""
    return subprocess.run(
        ["bash", str(root / "run.sh"), "--variant", "float"],
        cwd=tmp_path,
        env=clean_env(PYTHON=BASE_PYTHON, NQ_VENV=str(tmp_path / "venv")),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("rel", "against"),
    [
        ("artifacts/x86/float/model.onnx", "does not match the manifest"),
        ("artifacts/x86/float/model.bin", "does not match the manifest"),  # the IR's weights file
        ("edge_runtime/session.py", "does not match SHA256SUMS"),
    ],
)
def test_modified_bundle_is_refused_at_start(unpacked: Path, tmp_path: Path, rel: str, against: str) -> None:
    assert verify_bundle(unpacked) == []
    with (unpacked / rel).open("ab") as f:
        f.write(b"tampered")
    proc = _start(unpacked, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"neuroquant bundle refused: {rel}: sha256" in proc.stderr and against in proc.stderr
    assert not (tmp_path / "venv").exists()  # refused before installing anything


def test_the_start_check_needs_no_numpy(unpacked: Path) -> None:
    """run.sh checks the bundle with the device's own python3, before the venv exists: a Debian arm64 image
    has no numpy there (found under emulation, make verify-arm64), so the check must not import it."""
    code = (
        "import runpy, sys; sys.modules['numpy'] = None; sys.argv = ['verify', sys.argv[1]]; "
        "runpy.run_module('deploy.verify', run_name='__main__')"
    )
    proc = subprocess.run(
        [BASE_PYTHON, "-c", code, str(unpacked)],
        cwd=unpacked,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_missing_artifact_is_refused_at_start(unpacked: Path, tmp_path: Path) -> None:
    (unpacked / "artifacts/x86/fp16/model.onnx").unlink()
    proc = _start(unpacked, tmp_path)
    assert proc.returncode == 1
    assert "artifacts/x86/fp16/model.onnx: missing" in proc.stderr


def _bundle_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_unknown_target_lists_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _bundle_cli(["--target", "riscv", "--out", str(tmp_path)], capsys)
    assert code == 2 and "unknown target 'riscv'; known targets: arm64, jetson, x86" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_export_says_to_run_make_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--target", "arm64", "--artifacts", str(tmp_path / "nothing"), "--out", str(tmp_path / "dist")]
    code, err = _bundle_cli(args, capsys)
    assert code == 2 and "run `make export TARGET=arm64` first" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "dist").exists()


def test_export_of_another_target_or_tampered_is_not_bundled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_fake_export(tmp_path / "export", "x86")
    code, err = _bundle_cli(["--target", "jetson", "--artifacts", str(tmp_path / "export")], capsys)
    assert code == 2 and "export for target 'x86', not 'jetson'" in err
    (tmp_path / "export/fp16/model.onnx").write_bytes(b"changed")
    args = ["--target", "x86", "--artifacts", str(tmp_path / "export"), "--out", str(tmp_path / "dist")]
    code, err = _bundle_cli(args, capsys)
    assert code == 2 and "model.onnx: sha256 does not match the manifest" in err
    assert not (tmp_path / "dist").exists()


def test_bundle_is_written_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_fake_export(tmp_path / "export", "x86")
    out = tmp_path / "dist"
    out.mkdir()
    (out / "neuroquant-x86.tar.gz").write_bytes(b"old")
    code, _ = _bundle_cli(
        ["--target", "x86", "--artifacts", str(tmp_path / "export"), "--out", str(out)], capsys
    )
    assert code == 0
    assert [p.name for p in out.iterdir()] == ["neuroquant-x86.tar.gz"]  # no temp file left behind
    assert tarfile.is_tarfile(out / "neuroquant-x86.tar.gz")


@pytest.mark.parametrize("script", ["run.sh", "install_edge.sh"])
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / "deploy" / script)], check=True)


FAKE_MAC = {
    "uname": 'if [ "$1" = -s ]; then echo Darwin; else echo arm64; fi',
    "sw_vers": 'echo "$FAKE_MACOS"',
    "sysctl": "echo 1",
    # the device's python3: reports $FAKE_ARCH as its machine, cannot make a venv (so nothing installs)
    "python3": 'case "$*" in *platform.machine*) echo "$FAKE_ARCH" ;; *"-m venv"*) exit 1 ;; '
    f'*) exec {BASE_PYTHON} "$@" ;; esac',
}


@pytest.mark.parametrize(
    ("arch", "macos", "says"),
    [
        ("x86_64", "14.5", "x86_64 Python under Rosetta on Apple silicon"),
        ("arm64", "13.6", "macOS 13.6: the pinned onnxruntime and numpy publish arm64 wheels for macOS 14"),
        ("arm64", "14.5", "macOS 14.5 on arm64: installing the macosx arm64 wheels (onnxruntime with CoreML"),
    ],
)
def test_install_edge_on_apple_silicon(
    bundles: Callable[[str], Path], tmp_path: Path, arch: str, macos: str, says: str
) -> None:
    """install_edge.sh's macOS path, on stand-ins for macOS's uname/sw_vers/sysctl (no Mac here): a Rosetta
    Python or a macOS without the pins' wheels is refused with the fix; a native arm64 one is told what
    it gets (then this fake python3 fails at the venv, before pip)."""
    root = unpack(bundles("arm64"), tmp_path / "device")
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in FAKE_MAC.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    env = clean_env(
        PATH=f"{fake}:/usr/bin:/bin", FAKE_ARCH=arch, FAKE_MACOS=macos, PYTHON=str(fake / "python3")
    )
    done = subprocess.run(
        ["bash", str(root / "install_edge.sh"), str(tmp_path / "venv")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and says in done.stderr, done.stderr
    assert not (tmp_path / "venv" / ".neuroquant-installed").exists()
