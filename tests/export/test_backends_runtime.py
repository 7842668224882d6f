"""onnxruntime and OpenVINO backends: per-frame and batch paths agree, bad shapes are refused, no torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from backends.manifest import Manifest, ManifestError
from backends.ort import OnnxRuntimeBackend
from backends.ov import OpenVINOBackend
from backends.registry import get_backend

# The session fixture export_target builds each target once per worker: keep its users on one worker.
pytestmark = pytest.mark.xdist_group("export_target")

REPO = Path(__file__).resolve().parents[2]


def test_edge_backends_do_not_import_torch() -> None:
    code = (
        "import sys, backends.ort, backends.ov; "
        "backends.ort.OnnxRuntimeBackend.check_available(); backends.ov.OpenVINOBackend.check_available(); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "fmt"),
    [("float", "onnx"), ("int8-static", "onnx"), ("float", "openvino"), ("fp16", "openvino")],
)
def test_infer_one_matches_infer(export_target: Callable[[str], Manifest], variant: str, fmt: str) -> None:
    manifest = export_target("x86")
    entry = manifest.entry(variant, fmt)
    backend_name = entry.backends[0]
    obs = np.random.default_rng(0).random((17, 6), dtype=np.float32)
    with get_backend(backend_name).from_manifest(manifest, entry, {"threads": 1}) as backend:
        batch = backend.infer(obs)
        assert batch.shape == (17, 3) and batch.dtype == np.float32
        ones = np.stack([backend.infer_one(o).copy() for o in obs])  # infer_one may reuse its output buffer
        if entry.precision == "int8":
            # The batch GEMM and the batch-1 path may round an activation that lies on a quantization
            # tie to different sides (an ulp apart before rounding): measured on the fixture teacher,
            # ~1 row in 1000 moves by one activation step (1.2e-3 in Q), the rest agree within 2e-6.
            np.testing.assert_allclose(ones, batch, atol=0.01)
            assert (ones.argmax(axis=1) == batch.argmax(axis=1)).all()
        else:
            np.testing.assert_allclose(ones, batch, atol=1e-6)
        assert backend.runtime_version() != "unknown"
        with pytest.raises(ValueError, match=r"expected observations \[N, 6\]"):
            backend.infer(obs[:, :5])


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "fmt"), [(OnnxRuntimeBackend, "onnx"), (OpenVINOBackend, "openvino")])
def test_wrong_observation_width_is_refused_at_load(
    export_target: Callable[[str], Manifest], cls: type, fmt: str
) -> None:
    manifest = export_target("x86")
    entry = manifest.entry("float", fmt)
    with pytest.raises(ValueError, match=r"expected .*\[N, 9\]"):
        cls(manifest.artifact_path(entry), 9, 3).load()
    with pytest.raises(ValueError, match=r"expected .*\[N, 4\]"):
        cls(manifest.artifact_path(entry), 6, 4).load()


@pytest.mark.slow
def test_tampered_openvino_weights_are_refused(
    export_target: Callable[[str], Manifest], copy_export: Callable[[Manifest], Manifest]
) -> None:
    manifest = copy_export(export_target("x86"))
    entry = manifest.entry("float", "openvino")
    (rel,) = entry.extra["files"]
    path = manifest.root / rel
    assert path.suffix == ".bin"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.bin: sha256 .* does not match"):
        OpenVINOBackend.from_manifest(manifest, entry)
