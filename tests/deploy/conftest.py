"""Fixtures: small fake exports (bytes, not models: the bundle only moves and hashes files), bundle helpers.

The slow end-to-end test uses the real artifact set of tests/backends instead (``manifest_path``).
"""

from __future__ import annotations

import os
import sys
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from backends.manifest import ArtifactEntry, Manifest, file_sha256, write_manifest
from deploy.bundle import BundleConfig, plan_bundle, write_bundle
from tests.backends.conftest import manifest_path  # noqa: F401 (the real artifact set, for the slow test)

REPO = Path(__file__).resolve().parents[2]
#: An interpreter without the editable install of this checkout: bundle code must come from the bundle.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
ENV = {"id": "NeuroQuant/GridWorld-v0", "obs_mode": "vector", "obs_shape": [6], "n_actions": 3}


def _file(root: Path, rel: str, data: bytes) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return file_sha256(root / rel)


def _entry(root: Path, variant: str, fmt: str, rel: str, backends: list[str], **kw) -> ArtifactEntry:
    sha = _file(root, rel, f"{variant}/{fmt}".encode() * 64)
    return ArtifactEntry(
        name=f"{variant}/{fmt}",
        variant=variant,
        format=fmt,
        precision="fp32",
        path=rel,
        sha256=sha,
        size_bytes=(root / rel).stat().st_size,
        params=100,
        backends=backends,
        **kw,
    )


def write_fake_export(root: Path, target: str) -> Path:
    """A manifest of every kind of entry the bundle must sort: runnable, torch-only, failed, pending."""
    onnx = ["onnxruntime", "numpy"]
    entries = [
        _entry(root, "float", "onnx", "float/model.onnx", onnx),
        _entry(root, "float", "torch", "float/model.safetensors", ["torch"]),
        _entry(root, "int8-static", "onnx", "int8-static/model.onnx", onnx, status="failed", reason="gate"),
        _entry(root, "fp16", "onnx", "fp16/model.onnx", onnx),
    ]
    ov = _entry(root, "float", "openvino", "float/model.xml", ["openvino"])
    ov.extra["files"] = {"float/model.bin": {"sha256": _file(root, "float/model.bin", b"\x01" * 300)}}
    entries.append(ov)
    fp16 = entries[3]  # its engine is built on the device from this ONNX: pending, as export records it
    engine = replace(fp16, name="fp16/tensorrt", format="tensorrt", path="fp16/model.engine", sha256=None)
    engine.backends, engine.status = ["tensorrt"], "pending-on-device"
    engine.extra = {"onnx": fp16.path, "onnx_sha256": fp16.sha256}
    entries.append(engine)
    _file(root, "build_engines.sh", b"#!/bin/sh\necho building\n")
    manifest = Manifest(target, "2026-11-21T00:00:00Z", {}, ENV, {}, entries, root=root)
    return write_manifest(manifest, root / "manifest.json")


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack like a device would; return the bundle folder."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    (folder,) = dest.iterdir()
    return folder


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a device shell: nothing from this checkout's venv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``bundles(target)`` → the unpacked bundle of a fake export for that target (built once each)."""
    made: dict[str, Path] = {}

    def make(target: str) -> Path:
        if target not in made:
            base = tmp_path_factory.mktemp(f"bundle-{target}")
            write_fake_export(base / "export", target)
            bundle = plan_bundle(BundleConfig(target=target, artifacts=str(base / "export")))
            made[target] = write_bundle(bundle, base / "dist")
        return made[target]

    return make


@pytest.fixture
def unpacked(bundles: Callable[[str], Path], tmp_path: Path) -> Path:
    """A fresh copy of the x86 bundle, unpacked, that a test may modify."""
    return unpack(bundles("x86"), tmp_path / "device")
