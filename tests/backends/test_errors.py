"""What the user sees when something is wrong: unknown names, missing runtimes, tampered files, no GPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendUnavailable
from backends.manifest import ManifestError, load_manifest
from backends.registry import REGISTRY, backend_names, get_backend

REPO = Path(__file__).resolve().parents[2]


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tflite'") as err:
        get_backend("tflite")
    for name in backend_names():
        assert name in str(err.value)


def test_every_registered_backend_declares_its_capabilities() -> None:
    for name in REGISTRY:
        cls = get_backend(name)  # importing the module must not need the runtime
        assert cls.name == name
        assert cls.formats and isinstance(cls.package, str) and cls.package
    assert get_backend("tensorrt").needs_gpu
    assert not get_backend("numpy").needs_gpu


@pytest.mark.parametrize(
    ("backend", "blocked", "hint"),
    [
        ("onnxruntime", "onnxruntime", "pip install onnxruntime"),
        ("openvino", "openvino", "pip install openvino"),
        ("torch", "torch", "torch==2.13.0"),
        ("tensorrt", "tensorrt", "cuda-python"),
    ],
)
def test_missing_runtime_names_what_to_install(backend: str, blocked: str, hint: str) -> None:
    """In a fresh interpreter where the runtime cannot be imported (``sys.modules[name] = None``)."""
    module = REGISTRY[backend].partition(":")[0]
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"
        "from backends.base import BackendUnavailable\n"
        "from backends.registry import get_backend\n"
        "try:\n"
        f"    get_backend({backend!r}).check_available()\n"
        "except BackendUnavailable as err:\n"
        "    print('UNAVAILABLE', err)\n"
    )
    if not (REPO / (module.replace(".", "/") + ".py")).is_file():
        pytest.skip(f"{module} is not written yet")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("UNAVAILABLE"), out.stdout + out.stderr
    assert hint in out.stdout


def test_tensorrt_without_cuda_python_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.trt import TensorRTBackend

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "cuda", None)
    with pytest.raises(BackendUnavailable, match="cuda-python"):
        TensorRTBackend.check_available()

    # cuda-python present, but no device: the reason names the GPU, not a CUDA init crash later.
    cudart = types.SimpleNamespace(
        cudaError_t=types.SimpleNamespace(cudaSuccess=0),
        cudaGetDeviceCount=lambda: (100, 0),  # cudaErrorNoDevice
    )
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    with pytest.raises(BackendUnavailable, match="NVIDIA GPU"):
        TensorRTBackend.check_available()


def test_tensorrt_engine_inference() -> None:
    from backends.trt import TensorRTBackend

    try:
        TensorRTBackend.check_available()
    except BackendUnavailable as err:
        pytest.skip(f"TensorRT cannot run here: {err}")
    pytest.skip("a TensorRT engine is built on the device (pending-on-device); no engine in the fixture")


def test_pending_on_device_artifact_is_refused_with_its_reason(manifest_path: Path) -> None:
    from backends.manifest import verify_artifact

    m = load_manifest(manifest_path)
    with pytest.raises(ManifestError, match="pending-on-device"):
        verify_artifact(m, m.entry("int8-static", "tensorrt"))


def test_a_gate_failed_artifact_loads_only_where_failed_ones_are_allowed(manifest_path: Path) -> None:
    """The edge runtime never deploys a gate-failed artifact; the benchmark matrix still measures it."""
    import dataclasses

    from backends.manifest import MEASURABLE

    m = load_manifest(manifest_path)
    failed = dataclasses.replace(m.entry("float", "onnx"), status="failed", reason="agreement 0.9 < 0.99")
    with pytest.raises(ManifestError, match=r"status 'failed': agreement 0\.9"):
        get_backend("onnxruntime").from_manifest(m, failed)
    with get_backend("onnxruntime").from_manifest(m, failed, allowed=MEASURABLE) as backend:
        assert backend.infer_one(np.zeros(backend.obs_dim, np.float32)).shape == (backend.n_actions,)


def test_format_mismatch_is_refused(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    with pytest.raises(ValueError, match="loads"):
        get_backend("numpy").from_manifest(m, m.entry("float", "torch"))


def _tampered_copy(manifest_path: Path, tmp_path: Path, variant: str, fmt: str) -> Path:
    """Copy the artifact set, flip one byte of one artifact (its recorded sha256 stays)."""
    dst = tmp_path / "artifacts"
    shutil.copytree(manifest_path.parent, dst)
    m = json.loads((dst / "manifest.json").read_text())
    entry = next(a for a in m["artifacts"] if a["variant"] == variant and a["format"] == fmt)
    target = dst / entry["path"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return dst / "manifest.json"


@pytest.mark.parametrize(("backend", "fmt"), [("numpy", "onnx"), ("onnxruntime", "onnx"), ("torch", "torch")])
def test_tampered_artifact_is_refused(manifest_path: Path, tmp_path: Path, backend: str, fmt: str) -> None:
    if backend == "onnxruntime" and not (REPO / "backends/ort.py").is_file():
        pytest.skip("backends/ort.py is not written yet")
    cls = get_backend(backend)
    try:
        cls.check_available()
    except BackendUnavailable as err:
        pytest.skip(str(err))
    tampered = _tampered_copy(manifest_path, tmp_path, "float", fmt)
    m = load_manifest(tampered)
    with pytest.raises(ManifestError, match="does not match the manifest"):
        cls.from_manifest(m, m.entry("float", fmt))


def test_numpy_backend_needs_nothing_but_numpy(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    b = get_backend("numpy").from_manifest(m, m.entry("float", "onnx"))
    assert b.infer_one(np.zeros(6, np.float32)).shape == (3,)
    assert b.runtime_version().startswith("numpy")


def _manifest_with(tmp_path: Path, **changes: object) -> Path:
    """A one-artifact manifest in ``tmp_path/m`` whose entry has ``changes``; a real file sits outside the
    folder (``tmp_path/outside.onnx``), so only the path check can stop a reader from opening it."""
    (tmp_path / "m/float").mkdir(parents=True)
    (tmp_path / "outside.onnx").write_bytes(b"not yours")
    (tmp_path / "m/float/model.onnx").write_bytes(b"onnx")
    entry = {
        "name": "float/onnx", "variant": "float", "format": "onnx", "precision": "fp32",
        "path": "float/model.onnx", "sha256": "0" * 64, "size_bytes": 4, "params": 1, "backends": ["numpy"],
        **changes,
    }  # fmt: skip
    manifest = {
        "schema": 1, "target": "x86", "created": "2026-11-21T00:00:00Z", "source": {}, "versions": {},
        "env": {"id": "NeuroQuant/GridWorld-v0", "obs_mode": "vector", "obs_shape": [6], "n_actions": 3},
        "artifacts": [entry],
    }  # fmt: skip
    path = tmp_path / "m/manifest.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def no_file_access(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every file opened with ``open`` and makes hashing fail loudly: a refused path must be refused
    before a reader touches it (the manifest itself is read through ``Path.read_text``, not recorded)."""
    import builtins

    import backends.manifest

    opened: list[str] = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def no_hashing(path: object) -> str:
        raise AssertionError(f"{path} was hashed: the path check must come first")

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(backends.manifest, "file_sha256", no_hashing)
    return opened


ESCAPING = [
    "{outside}",  # absolute, to a file that exists
    "../outside.onnx",
    "float/../../outside.onnx",
    "a/../../x",
    "../../etc/hostname",
    "/etc/hostname",
    "C:/Users/x/model.onnx",
    "C:model.onnx",
    "\\\\server\\share\\model.onnx",
    "float\\..\\..\\outside.onnx",
]


@pytest.mark.parametrize("rel", ESCAPING)
def test_manifest_path_outside_its_folder_is_refused_at_load(
    tmp_path: Path, no_file_access: list[str], rel: str
) -> None:
    rel = rel.format(outside=tmp_path / "outside.onnx")
    path = _manifest_with(tmp_path, path=rel)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    message = str(err.value)
    assert "artifact float/onnx: path" in message and repr(rel) in message
    assert "absolute or leaves the manifest's folder" in message and "relative" in message
    assert "make export TARGET=x86" in message
    assert no_file_access == []


@pytest.mark.parametrize("rel", ["../outside.onnx", "{outside}"])
def test_companion_and_engine_input_paths_are_checked_too(
    tmp_path: Path, no_file_access: list[str], rel: str
) -> None:
    """OpenVINO's ``.bin`` (``extra["files"]``) and a pending engine's ONNX (``extra["onnx"]``) are files
    readers open and bundles ship, held to the same rule."""
    rel = rel.format(outside=tmp_path / "outside.onnx")
    for extra, what in (
        (
            {"files": {"float/model.bin": {"sha256": "0" * 64}, rel: {"sha256": "0" * 64}}},
            "extra.files entry",
        ),
        ({"onnx": rel, "onnx_sha256": "0" * 64}, "extra.onnx"),
    ):
        with pytest.raises(
            ManifestError, match=f"artifact float/onnx: {what} .*leaves the manifest's folder"
        ):
            load_manifest(_manifest_with(tmp_path / what.replace(" ", "_"), extra=extra))
    assert no_file_access == []


def test_a_manifest_built_in_memory_is_checked_before_its_file_is_opened(
    tmp_path: Path, no_file_access: list[str]
) -> None:
    """``Manifest.artifact_path`` is the guard for manifests that never went through ``load_manifest``."""
    import dataclasses

    from backends.manifest import verify_artifact

    m = load_manifest(_manifest_with(tmp_path))
    escaping = dataclasses.replace(m.artifacts[0], path=str(tmp_path / "outside.onnx"))
    with pytest.raises(ManifestError, match="absolute or leaves the manifest's folder"):
        verify_artifact(m, escaping)
    with pytest.raises(ManifestError, match="absolute or leaves the manifest's folder"):
        get_backend("numpy").from_manifest(m, escaping)
    with pytest.raises(ManifestError, match=r"extra\.files entry '\.\./outside\.onnx'"):
        m.companion_path(escaping, "../outside.onnx")
    assert no_file_access == []


def test_export_cannot_write_a_path_readers_refuse(tmp_path: Path) -> None:
    import dataclasses

    from backends.manifest import write_manifest

    m = load_manifest(_manifest_with(tmp_path))
    m.artifacts = [dataclasses.replace(m.artifacts[0], path=str(tmp_path / "m/float/model.onnx"))]
    with pytest.raises(ManifestError, match="absolute or leaves the manifest's folder"):
        write_manifest(m, tmp_path / "new/manifest.json")
    assert not (tmp_path / "new/manifest.json").exists()


def test_relative_paths_inside_the_folder_still_load(tmp_path: Path) -> None:
    m = load_manifest(
        _manifest_with(tmp_path, path="float/./model.onnx", extra={"files": {"float/x.bin": {}}})
    )
    assert m.artifact_path(m.artifacts[0]) == tmp_path / "m/float/model.onnx"
    failed = load_manifest(_manifest_with(tmp_path / "f", path="", status="failed", reason="conversion"))
    assert failed.artifacts[0].path == ""  # a failed build wrote nothing: no path to check


def test_unknown_variant_lists_the_variants(tmp_path: Path) -> None:
    m = load_manifest(_manifest_with(tmp_path))
    with pytest.raises(ManifestError, match=r"no variant 'nosuch' in the manifest; variants: float$"):
        m.for_backend("nosuch", "numpy")
    with pytest.raises(
        ManifestError, match=r"variant 'float' runs on backend 'openvino'.*float/onnx \(numpy\)"
    ):
        m.for_backend("float", "openvino")


@pytest.mark.parametrize(
    ("in_shape", "out_shape", "problem"),
    [
        ((-1, 4, 84, 84), (-1, 4), None),  # an Atari CNN's engine, dynamic batch
        ((8, 4, 84, 84), (8, 4), None),  # static batch
        ((-1, 28224), (-1, 4), "input has shape [-1, 28224], expected [N, 4, 84, 84]"),
        ((-1, 4, 84, 84), (-1, 6), "output has shape [-1, 6], expected [N, 4]"),
    ],
)
def test_a_tensorrt_engines_io_is_checked_against_the_frames_it_takes(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...], problem: str | None
) -> None:
    """The TensorRT backend's shape check, which needs no GPU: an engine takes the manifest's observations
    ``[N, *input_shape]`` (uint8 frames for an image policy), not a flat vector."""
    from backends.trt import io_problem

    assert io_problem(in_shape, out_shape, (4, 84, 84), 4) == problem
    assert io_problem((-1, 6), (-1, 3), (6,), 3) is None
