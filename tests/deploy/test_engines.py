"""Jetson: the engines ``build_engines.sh`` builds on the device, entered into the manifest by
``./run.sh --register-engines`` — through the real build script (with a stand-in ``trtexec`` that writes
a fake engine file: no TensorRT here), the real registration and the real hash checks. Whether TensorRT
loads the engine is the one step that needs the device (``deploy.engines.deserializes``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backends.manifest import load_manifest, verify_artifact, write_manifest
from common.fileio import file_sha256
from deploy.bundle import BundleConfig, plan_bundle, write_bundle
from deploy.engines import BUILD_LOG, main, read_build_log
from deploy.verify import SUMS, read_sums, verify_bundle
from export.formats import tensorrt
from tests.deploy.conftest import BASE_PYTHON, clean_env, unpack, write_fake_export

FAKE_TRTEXEC = """#!/bin/sh
# Stands in for trtexec: its version banner; writes the --saveEngine file.
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v{banner}] # trtexec $*"
for arg in "$@"; do
    case "$arg" in --saveEngine=*) printf 'fake engine for %s\\n' "$*" > "${{arg#--saveEngine=}}" ;; esac
done
"""


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """An unpacked Jetson bundle whose pending fp16 engine carries export's real build commands and script."""
    export = tmp_path / "export"
    manifest = load_manifest(write_fake_export(export, "jetson"), check_task=False)
    shapes = tensorrt.Shapes(1, 1, 256, 6)
    for entry in manifest.artifacts:
        if entry.status == "pending-on-device":
            entry.precision = "fp16"  # the fixture's entries are all fp32; this engine is built from fp16
            entry.extra["build_commands"] = {
                f"tensorrt-{major}": tensorrt.trtexec_command(
                    entry.extra["onnx"], entry.path, shapes, entry.precision, major, 256
                )
                for major in (10, 11)
            }
    write_manifest(manifest, export / "manifest.json")
    tensorrt.finish(export, "jetson", manifest.artifacts)
    bundle = write_bundle(
        plan_bundle(BundleConfig(target="jetson", artifacts=str(export))), tmp_path / "dist"
    )
    return unpack(bundle, tmp_path / "device")


def _build(root: Path, tmp_path: Path, banner: str = "100300") -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "trtexec").write_text(FAKE_TRTEXEC.format(banner=banner))
    (bin_dir / "trtexec").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        ["sh", str(root / "artifacts/jetson/build_engines.sh")], env=env, capture_output=True, text=True
    )


def _register(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "run.sh"), "--register-engines"],
        cwd=root.parent,
        env=clean_env(PYTHON=BASE_PYTHON),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_build_log_names_what_deploy_reads() -> None:
    assert tensorrt.BUILD_LOG == BUILD_LOG


def test_built_engines_are_registered_with_their_hash_version_and_flags(device: Path, tmp_path: Path) -> None:
    built = _build(device, tmp_path)
    assert built.returncode == 0, built.stderr
    assert "--register-engines" in built.stdout
    folder = device / "artifacts/jetson"
    log = read_build_log(folder / BUILD_LOG)
    assert set(log) == {"fp16/model.engine"} and log["fp16/model.engine"].tensorrt == "10.3.0"

    done = _register(device)  # the device's bare python3: no venv, no numpy needed
    assert done.returncode == 0, done.stderr
    assert "registered fp16/tensorrt" in done.stdout and "TensorRT 10.3.0 (--fp16)" in done.stdout
    manifest = load_manifest(folder / "manifest.json")
    entry = manifest.entry("fp16", "tensorrt")
    engine = folder / "fp16/model.engine"
    assert entry.status == "ok" and entry.reason is None
    assert entry.sha256 == file_sha256(engine) and entry.size_bytes == engine.stat().st_size
    assert entry.extra["tensorrt"] == "10.3.0" and entry.extra["build_flags"] == ["--fp16"]
    assert "--saveEngine=fp16/model.engine" in entry.extra["build_command"]
    assert verify_artifact(manifest, entry) == engine  # the backends' load-time hash check passes
    sums = read_sums(device / SUMS)
    assert sums["artifacts/jetson/fp16/model.engine"] == entry.sha256
    assert verify_bundle(device) == []  # run.sh's start check now guards the engine too

    again = _register(device)
    assert again.returncode == 0 and "no pending TensorRT engine" in again.stdout
    engine.write_bytes(b"tampered")
    refused = _register(device)
    assert refused.returncode == 1 and "fp16/model.engine: sha256" in refused.stderr


def test_trt11_engines_record_strong_typing(device: Path, tmp_path: Path) -> None:
    assert _build(device, tmp_path, banner="110000").returncode == 0
    assert _register(device).returncode == 0
    entry = load_manifest(device / "artifacts/jetson/manifest.json").entry("fp16", "tensorrt")
    assert entry.extra["tensorrt"] == "11.0.0" and entry.extra["build_flags"] == ["--stronglyTyped"]


def test_an_engine_not_built_stays_pending_and_nothing_changes(device: Path) -> None:
    manifest = device / "artifacts/jetson/manifest.json"
    before, sums = manifest.read_bytes(), (device / SUMS).read_bytes()
    done = _register(device)
    assert done.returncode == 1
    assert "left pending: fp16/model.engine: not built; run `sh build_engines.sh`" in done.stderr
    assert manifest.read_bytes() == before and (device / SUMS).read_bytes() == sums


def test_an_engine_without_a_build_record_is_refused(device: Path) -> None:
    folder = device / "artifacts/jetson"
    (folder / "fp16/model.engine").write_bytes(b"copied from somewhere")
    done = _register(device)
    assert done.returncode == 1 and f"no line in {BUILD_LOG}" in done.stderr
    assert load_manifest(folder / "manifest.json").entry("fp16", "tensorrt").status == "pending-on-device"
    (folder / BUILD_LOG).write_text("fp16/model.engine only two fields\n")
    assert main([str(device)]) == 2


def test_a_folder_without_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
