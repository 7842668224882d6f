"""Parity per (backend, variant) with the reference of the *same* variant, on every start state of the default
layout: what a backend is responsible for is running the artifact it is given, not how good the variant is
(that is the export gate's business, ``tests/export/test_gates.py``).

Each backend runs from the manifest (hash checked) exactly as the edge runtime loads it. The reference is
the torch network the variant was made from (float for fp16 and int8; the pruned variant's own smaller
net), or, for OpenVINO's int8 IR (converted from the int8 ONNX), onnxruntime running that ONNX. The nets
are the committed ``tests/fixtures`` policies, so nothing here depends on how a network fits on this host.
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

#: (backend, variant) → (reference, max |Δq| allowed ÷ the reference's largest |q|). Rounding error grows
#: with the magnitude (the fixture's logits reach ~17), so tolerances are relative: fp32 kernels differ in
#: summation order (~1e-6), fp16 weights round at ~5e-4, and int8's steps add up over three layers (the
#: measured error is 0.14 of the scale: int8 against float is a bound, not a parity, and the actions it
#: changes are the gate's business).
CASES = {
    ("torch", "float"): ("torch", 1e-7),
    ("torch", "pruned-50"): ("torch", 1e-7),
    ("numpy", "float"): ("torch", 3e-6),
    ("numpy", "fp16"): ("torch", 5e-3),
    ("numpy", "pruned-50"): ("torch", 3e-6),
    ("onnxruntime", "float"): ("torch", 3e-6),
    ("onnxruntime", "fp16"): ("torch", 5e-3),
    ("onnxruntime", "int8-static"): ("torch", 0.25),
    ("onnxruntime", "pruned-50"): ("torch", 3e-6),
    ("openvino", "float"): ("torch", 1e-5),
    ("openvino", "int8-static"): ("onnxruntime", 1e-3),
}
SOURCE = {"pruned-50": "pruned-50"}  # variant → the torch checkpoint it came from (default: float)


def _reference_q(manifest_path: Path, reference: str, variant: str, obs: np.ndarray) -> np.ndarray:
    if reference != "torch":
        b = _load(manifest_path, reference, variant)
        try:
            return b.infer(obs)
        finally:
            b.close()
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
def test_parity_with_the_same_variants_reference(manifest_path: Path, backend: str, variant: str) -> None:
    model = build_model()
    obs = model.observations[model.start_states]
    reference, rel_tol = CASES[(backend, variant)]
    b = _load(manifest_path, backend, variant)
    try:
        q = b.infer(obs)
        ref = _reference_q(manifest_path, reference, variant, obs)
        assert q.shape == ref.shape == (len(obs), 3)
        scale = float(np.abs(ref).max())
        tol = rel_tol * scale
        assert np.abs(q - ref).max() <= tol
        # Within that bound an argmax can only move where the reference's best two are within 2 × tol of
        # each other; everywhere else the backend must act as the reference does.
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * tol
        assert np.array_equal(q.argmax(1)[clear], ref.argmax(1)[clear])
        if reference == "torch" and rel_tol <= 5e-3:
            assert clear.all()  # fp32 and fp16: the fixtures' margins (≥ 0.13 of ~17) leave none unclear
        # The per-frame path gives the same answer as the batch path.
        for i in (0, len(obs) // 2, len(obs) - 1):
            np.testing.assert_allclose(b.infer_one(obs[i]), q[i], rtol=0, atol=max(1e-5, 3e-6 * scale))
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
