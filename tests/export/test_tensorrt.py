"""TensorRT: exact trtexec commands per TensorRT version, `pending-on-device` engines with a build script
that a device can run, and a real engine build where TensorRT and a CUDA device exist."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.manifest import ArtifactEntry, Manifest, file_sha256
from export.formats.tensorrt import (
    BUILD_LOG,
    SCRIPT_NAME,
    Shapes,
    build_engine,
    tensorrt_here,
    trtexec_command,
)

# The session fixture export_target builds each target once per worker: keep its users on one worker.
pytestmark = pytest.mark.xdist_group("export_target")

SHAPES = Shapes(min_batch=1, opt_batch=1, max_batch=256, obs_shape=6)
TRT, WHY_NO_TRT = tensorrt_here()
FAKE_TRTEXEC = """#!/bin/sh
# Stands in for trtexec: prints the version banner, logs its arguments, writes the engine file.
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v{banner}] # trtexec $*"
echo "$*" >> "{log}"
for arg in "$@"; do
    case "$arg" in
        --onnx=*) [ -f "${{arg#--onnx=}}" ] || {{ echo "no such onnx: $arg" >&2; exit 3; }} ;;
        --saveEngine=*) echo "engine" > "${{arg#--saveEngine=}}" ;;
    esac
done
"""


def test_trtexec_commands_per_version() -> None:
    base = (
        "trtexec --onnx=fp16/model.onnx --saveEngine=fp16/model.engine --minShapes=obs:1x6 "
        "--optShapes=obs:1x6 --maxShapes=obs:256x6 --memPoolSize=workspace:256M"
    )
    assert (
        trtexec_command("fp16/model.onnx", "fp16/model.engine", SHAPES, "fp16", 10, 256) == base + " --fp16"
    )
    assert (
        trtexec_command("fp16/model.onnx", "fp16/model.engine", SHAPES, "fp16", 11, 256)
        == base + " --stronglyTyped"
    )
    int8_10 = trtexec_command("a.onnx", "a.engine", SHAPES, "int8-static", 10, 256)
    assert int8_10.endswith("--int8") and "--fp16" not in int8_10
    int8_11 = trtexec_command("a.onnx", "a.engine", SHAPES, "int8-static", 11, 256)
    assert int8_11.endswith("--stronglyTyped") and "--int8" not in int8_11
    assert trtexec_command("a.onnx", "a.engine", SHAPES, "fp32", 10, 64).endswith("workspace:64M")
    with pytest.raises(ValueError, match="dynamic quantization does not parse in TensorRT"):
        trtexec_command("a.onnx", "a.engine", SHAPES, "int8-dynamic", 10, 256)


def test_bad_batch_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min_batch ≤ opt_batch ≤ max_batch"):
        Shapes.from_options({"min_batch": 8, "opt_batch": 1}, 6)


@pytest.mark.slow
def test_jetson_export_has_pending_engines_and_runnable_onnx(
    export_target: Callable[[str], Manifest],
) -> None:
    manifest = export_target("jetson")
    engines = [a for a in manifest.artifacts if a.format == "tensorrt"]
    assert sorted(a.variant for a in engines) == ["distilled-int8", "fp16", "int8-static"]
    onnx_gate = {a.variant: a for a in manifest.artifacts if a.format == "onnx"}
    for entry in engines:
        assert entry.sha256 is None and not (manifest.root / entry.path).exists()  # nothing pretends to exist
        if onnx_gate[entry.variant].status == "failed":  # an engine of a failed ONNX would fail the same way
            assert entry.status == "failed" and f"ONNX input {entry.variant}/onnx" in entry.reason
            continue
        assert entry.status == "pending-on-device" and SCRIPT_NAME in entry.reason
        onnx = manifest.root / entry.extra["onnx"]
        assert onnx.is_file() and file_sha256(onnx) == entry.extra["onnx_sha256"]
        assert set(entry.extra["build_commands"]) == {"tensorrt-10", "tensorrt-11"}
        assert entry.extra["shapes"] == {"min": 1, "opt": 1, "max": 256}
    pending = _pending(manifest)
    assert {a.variant for a in pending} >= {"fp16", "int8-static"}
    onnx_entries = [a for a in manifest.artifacts if a.format == "onnx"]
    assert {a.variant for a in onnx_entries} >= {"float", "fp16", "int8-static"}
    assert all(a.status == "ok" for a in onnx_entries if a.variant in ("float", "fp16", "int8-static"))
    script = manifest.root / SCRIPT_NAME
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert text.startswith("#!/bin/sh") and "set -eu" in text and "command -v trtexec" in text
    for entry in engines:
        for command in entry.extra["build_commands"].values():
            assert (command in text) == (entry.status == "pending-on-device")
    subprocess.run(["sh", "-n", str(script)], check=True)


def _pending(manifest: Manifest) -> list[ArtifactEntry]:
    return [a for a in manifest.artifacts if a.format == "tensorrt" and a.status == "pending-on-device"]


def _fake_trtexec(folder: Path, banner: str) -> Path:
    folder.mkdir()
    log = folder / "calls.log"
    exe = folder / "trtexec"
    exe.write_text(FAKE_TRTEXEC.format(banner=banner, log=log))
    exe.chmod(0o755)
    return log


def _run_script(root: Path, path_prefix: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = "/usr/bin:/bin"
    environ = {"PATH": f"{path_prefix}:{base}" if path_prefix else base, "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        ["sh", str(root / SCRIPT_NAME)], env={**environ, **env}, capture_output=True, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("banner", "flags"), [("100300", ("--fp16", "--int8")), ("110000", ("--stronglyTyped",))]
)
def test_build_script_picks_flags_by_detected_version(
    export_target: Callable[[str], Manifest],
    copy_export: Callable[[Manifest], Manifest],
    tmp_path: Path,
    banner: str,
    flags: tuple[str, ...],
) -> None:
    manifest = copy_export(export_target("jetson"))
    log = _fake_trtexec(tmp_path / "bin", banner)
    done = _run_script(manifest.root, str(tmp_path / "bin"))
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    builds = [c for c in calls if "--saveEngine=" in c]
    engines = _pending(manifest)
    assert len(builds) == len(engines)
    for entry in engines:
        assert (manifest.root / entry.path).is_file()
        assert entry.path in done.stdout  # its sha256 line
    used = {f for c in builds for f in c.split() if f in ("--fp16", "--int8", "--stronglyTyped")}
    assert used == set(flags)
    version = f"{int(banner) // 10000}.{int(banner) // 100 % 100}.{int(banner) % 100}"
    assert f"TensorRT {version}: building" in done.stdout
    # the log ./run.sh --register-engines reads: each engine, the version, the very command it ran
    logged = [line.split("\t") for line in (manifest.root / BUILD_LOG).read_text().splitlines()]
    assert sorted(e for e, _, _ in logged) == sorted(e.path for e in engines)
    assert {v for _, v, _ in logged} == {version}
    assert sorted(c.removeprefix("trtexec ") for _, _, c in logged) == sorted(builds)


@pytest.mark.slow
def test_build_script_refuses_without_trtexec(
    export_target: Callable[[str], Manifest], copy_export: Callable[[Manifest], Manifest]
) -> None:
    if shutil.which("trtexec", path="/usr/bin:/bin"):
        pytest.skip("a real trtexec is installed in /usr/bin")
    manifest = copy_export(export_target("jetson"))
    done = _run_script(manifest.root, "")
    assert done.returncode == 1 and "trtexec not found" in done.stderr


@pytest.mark.slow
def test_build_script_version_override(
    export_target: Callable[[str], Manifest], copy_export: Callable[[Manifest], Manifest], tmp_path: Path
) -> None:
    manifest = copy_export(export_target("jetson"))
    log = _fake_trtexec(tmp_path / "bin", "100300")
    done = _run_script(manifest.root, str(tmp_path / "bin"), TRT_MAJOR="11")
    assert done.returncode == 0, done.stderr
    assert "--stronglyTyped" in log.read_text() and "--fp16" not in log.read_text()


@pytest.mark.skipif(TRT is None, reason=f"no real TensorRT engine build here: {WHY_NO_TRT}")
def test_real_engine_build(export_target: Callable[[str], Manifest], tmp_path: Path) -> None:
    manifest = export_target("jetson")
    entry = manifest.entry("fp16", "tensorrt")
    info = build_engine(TRT, manifest.root / entry.extra["onnx"], tmp_path / "e.engine", "fp16", SHAPES, 256)
    assert (tmp_path / "e.engine").stat().st_size > 0 and info["tensorrt"] == TRT.__version__
