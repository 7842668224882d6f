"""Parity per (backend, variant) against the float torch policy, on every start state of the default layout.

Each backend runs from the manifest (hash checked) exactly as the edge runtime loads it. Q-values are
compared with the torch network the variant was made from (the float net; the pruned variant's own
smaller net) and actions with the float policy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendUnavailable
from backends.manifest import load_manifest
from backends.numpy_ref import OnnxReadError
from backends.profiles import load_profile
from backends.registry import REGISTRY, get_backend
from gridworld.core import build_model

torch = pytest.importorskip("torch")

# (backend, variant) → max |Δq| allowed against the source net.
CASES = {
    ("torch", "float"): 1e-6,
    ("torch", "pruned-50"): 1e-6,
    ("numpy", "float"): 1e-5,
    ("numpy", "fp16"): 5e-2,
    ("numpy", "pruned-50"): 1e-5,
    ("onnxruntime", "float"): 1e-5,
    ("onnxruntime", "fp16"): 5e-2,
    ("onnxruntime", "int8-static"): 1.0,  # |q| reaches ~10: int8 steps of ~0.1 add up over 3 layers
    ("onnxruntime", "pruned-50"): 1e-5,
    ("openvino", "float"): 1e-4,
    ("openvino", "int8-static"): 1.0,
}
SOURCE = {"pruned-50": "pruned-50"}  # variant → the torch checkpoint it came from (default: float)


def _torch_q(manifest_path: Path, variant: str, obs: np.ndarray) -> np.ndarray:
    from train.checkpoint import load_checkpoint

    m = load_manifest(manifest_path)
    net, _, _ = load_checkpoint(m.artifact_path(m.entry(SOURCE.get(variant, "float"), "torch")))
    with torch.inference_mode():
        return net(torch.from_numpy(obs)).numpy()


def _load(manifest_path: Path, backend: str, variant: str):
    module = REGISTRY[backend].partition(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    cls = get_backend(backend)
    try:
        cls.check_available()
    except BackendUnavailable as err:
        pytest.skip(str(err))
    m = load_manifest(manifest_path)
    entry = m.for_backend(variant, backend)
    return cls.from_manifest(m, entry, load_profile("x86").settings_for(backend))


@pytest.mark.parametrize(("backend", "variant"), sorted(CASES))
def test_parity_against_the_float_policy(manifest_path: Path, backend: str, variant: str) -> None:
    model = build_model()
    obs = model.observations[model.start_states]
    b = _load(manifest_path, backend, variant)
    try:
        q = b.infer(obs)
        ref = _torch_q(manifest_path, variant, obs)
        assert q.shape == ref.shape == (len(obs), 3)
        assert np.abs(q - ref).max() <= CASES[(backend, variant)]
        float_actions = _torch_q(manifest_path, "float", obs).argmax(1)
        agreement = (q.argmax(1) == float_actions).mean()
        assert agreement >= (0.99 if variant in ("float", "fp16") else 0.9)
        # The per-frame path gives the same answer as the batch path.
        for i in (0, len(obs) // 2, len(obs) - 1):
            np.testing.assert_allclose(b.infer_one(obs[i]), q[i], atol=1e-5)
    finally:
        b.close()


def test_numpy_reference_refuses_the_int8_artifact(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    with pytest.raises(OnnxReadError, match="quantized graph"):
        get_backend("numpy").from_manifest(m, m.entry("int8-static", "onnx"))


def test_infer_refuses_a_wrong_batch_shape(manifest_path: Path) -> None:
    b = _load(manifest_path, "numpy", "float")
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        b.infer(np.zeros((2, 5), np.float32))


def test_torch_backend_from_a_checkpoint_path(manifest_path: Path) -> None:
    TorchBackend = get_backend("torch")
    m = load_manifest(manifest_path)
    b = TorchBackend.from_checkpoint(m.artifact_path(m.entry("float", "torch")))
    assert (b.obs_dim, b.n_actions) == (6, 3)
    assert b.infer(np.zeros((4, 6), np.float32)).shape == (4, 3)
    assert "torch" in b.runtime_version()


def test_torch_compile_setting(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    plain = get_backend("torch").from_manifest(m, m.entry("float", "torch"))
    # The eager compile backend checks the wiring (graph capture, dynamic batch) without inductor's minute.
    settings = {"compile": True, "compile_backend": "eager"}
    compiled = get_backend("torch").from_manifest(m, m.entry("float", "torch"), settings)
    x = build_model().observations[:32]
    np.testing.assert_allclose(compiled.infer(x), plain.infer(x), atol=1e-5)
