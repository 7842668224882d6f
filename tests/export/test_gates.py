"""Gates load each artifact with its runtime (hash check included) and judge it against the float policy."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.manifest import ArtifactEntry, Manifest, ManifestError, file_sha256
from backends.profiles import load_profile
from backends.registry import get_backend
from export import gates
from export.onnx_export import export_onnx, torch_q_values
from gridworld.core import GridModel
from train.networks import MLPNet

PROFILE = load_profile("x86")


def _manifest(root: Path, entry: ArtifactEntry, obs_shape: list[int] | None = None) -> Manifest:
    env = {
        "id": "NeuroQuant/GridWorld-v0",
        "obs_mode": "vector",
        "obs_shape": obs_shape or [6],
        "n_actions": 3,
    }
    return Manifest("x86", "2026-01-01T00:00:00Z", {}, env, {}, [entry], root=root)


def _onnx_entry(root: Path, net: torch.nn.Module, name: str) -> ArtifactEntry:
    path = export_onnx(net, 6, 3, root / name / "model.onnx", {"neuroquant.variant": name})
    rel = path.relative_to(root).as_posix()
    return ArtifactEntry(
        name=f"{name}/onnx", variant=name, format="onnx", precision="fp32", path=rel,
        sha256=file_sha256(path), size_bytes=path.stat().st_size, params=0, backends=["onnxruntime"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(teacher_net: MLPNet, env_model: GridModel, dataset_path: Path) -> gates.Reference:
    from train.dataset import load_dataset

    obs = load_dataset(dataset_path).observations
    return gates.make_reference(lambda o: torch_q_values(teacher_net, o), env_model, obs)


def _source_q(net: torch.nn.Module, ref: gates.Reference) -> dict[str, np.ndarray]:
    return {k: torch_q_values(net, v) for k, v in ref.obs.items()}


def test_reference_covers_every_acting_state(reference: gates.Reference, env_model: GridModel) -> None:
    assert len(reference.obs["states"]) == len(env_model.start_states)  # every valid non-goal (x, y, heading)
    assert reference.evaluation.oracle_ratio == 1.0


def test_a_faithful_artifact_passes(tmp_path: Path, teacher_net: MLPNet, reference: gates.Reference) -> None:
    entry = _onnx_entry(tmp_path, teacher_net, "float")
    gates.gate(_manifest(tmp_path, entry), entry, reference, _source_q(teacher_net, reference), PROFILE, 1e-5)
    assert entry.status == "ok", entry.reason
    assert entry.parity["action_agreement"] == 1.0 and entry.parity["max_abs_q_diff"] <= 1e-5
    assert entry.parity["strict_agreement"] == 1.0
    assert entry.eval["mean_return"] == pytest.approx(reference.evaluation.mean_return)
    assert entry.eval["return_ratio"] == pytest.approx(1.0)
    assert entry.extra["gate_backend"] == "onnxruntime"


def test_a_scrambled_artifact_is_failed_with_reason_not_dropped(
    tmp_path: Path, teacher_net: MLPNet, reference: gates.Reference
) -> None:
    scrambled = copy.deepcopy(teacher_net)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in scrambled.parameters():
            p.copy_(p.flatten()[torch.randperm(p.numel(), generator=generator)].reshape(p.shape))
    entry = _onnx_entry(tmp_path, scrambled, "scrambled")
    # Compared with its own (scrambled) torch network the conversion is exact: only the float gate fails.
    gates.gate(_manifest(tmp_path, entry), entry, reference, _source_q(scrambled, reference), PROFILE, 1e-5)
    assert entry.status == "failed"
    assert "action agreement with the float policy" in entry.reason and "< 0.99" in entry.reason
    assert entry.parity["action_agreement"] < 0.9 and entry.parity["source_max_abs_q_diff"] <= 1e-5
    assert entry.eval["mean_return"] < reference.evaluation.mean_return


def _with_flipped_rows(ref: gates.Reference, q: dict[str, np.ndarray], flips: int) -> gates.Reference:
    """A reference that *is* ``q``, except that on the first ``flips`` reachable states it prefers another
    action (its best and worst Q swapped), with oracle ties off: the artifact's agreement is then exactly
    ``1 − flips / N`` on ``states`` and 1.0 on ``dataset``, whatever the float order of this host."""
    edited = {name: v.copy() for name, v in q.items()}
    rows = edited["states"][:flips]
    best, worst = rows.argmax(axis=1), rows.argmin(axis=1)
    index = np.arange(flips)
    rows[index, best], rows[index, worst] = rows[index, worst], rows[index, best].copy()
    return dataclasses.replace(ref, q=edited, optimal=dict.fromkeys(q))


@pytest.mark.parametrize("flips", [3, 4])
def test_the_gate_fails_exactly_below_the_agreement_threshold(
    tmp_path: Path, teacher_net: MLPNet, reference: gates.Reference, flips: int
) -> None:
    """316 acting states: 3 flips leave 0.9905 ≥ 0.99 (ok), 4 leave 0.9873 (failed, with that figure)."""
    entry = _onnx_entry(tmp_path, teacher_net, "float")
    q = _source_q(teacher_net, reference)
    ref = _with_flipped_rows(reference, q, flips)
    gates.gate(_manifest(tmp_path, entry), entry, ref, q, PROFILE, 1e-5)
    n = len(reference.obs["states"])
    agreement = 1 - flips / n
    assert (agreement >= PROFILE.agreement_threshold) == (flips == 3), n  # the two cases straddle it
    assert entry.parity["states_agreement"] == entry.parity["states_strict_agreement"] == agreement
    assert entry.parity["dataset_agreement"] == 1.0 and entry.parity["action_agreement"] == agreement
    assert entry.parity["source_max_abs_q_diff"] <= 1e-5
    if agreement >= PROFILE.agreement_threshold:
        assert (entry.status, entry.reason) == ("ok", None)
    else:
        assert entry.status == "failed"
        assert entry.reason == (
            f"action agreement with the float policy {agreement:.4f} on states "
            f"< {PROFILE.agreement_threshold} (target x86)"
        )


def test_an_artifact_that_loses_return_fails_even_with_full_agreement(
    tmp_path: Path, teacher_net: MLPNet, reference: gates.Reference
) -> None:
    """The exact return is gated too: the teacher itself, judged against a float policy that earned 2 %
    more, keeps every action (agreement 1.0) and fails on the return alone; against one 0.5 % better it
    passes (the bar is 0.99 of the float's)."""
    q = _source_q(teacher_net, reference)
    own = reference.evaluation.mean_return
    for factor, passes in ((1.02, False), (1.005, True)):
        better = dataclasses.replace(reference.evaluation, mean_return=own * factor)
        ref = dataclasses.replace(reference, evaluation=better)
        entry = _onnx_entry(tmp_path / str(factor), teacher_net, "float")
        gates.gate(_manifest(tmp_path / str(factor), entry), entry, ref, q, PROFILE, 1e-5)
        assert entry.parity["action_agreement"] == 1.0
        assert entry.eval["return_ratio"] == pytest.approx(1 / factor)
        if passes:
            assert (entry.status, entry.reason) == ("ok", None)
        else:
            assert entry.status == "failed"
            assert entry.reason == (
                f"exact return {own:.3f} < {PROFILE.return_ratio_min:g} × the float policy's "
                f"{own * factor:.3f}"
            )


def test_q_drift_against_its_own_network_fails_the_gate(
    tmp_path: Path, teacher_net: MLPNet, reference: gates.Reference
) -> None:
    shifted = copy.deepcopy(teacher_net)
    with torch.no_grad():
        shifted.out.bias += 1e-3  # same actions everywhere, but beyond fp32's 1e-5 tolerance
    entry = _onnx_entry(tmp_path, shifted, "shifted")
    gates.gate(_manifest(tmp_path, entry), entry, reference, _source_q(teacher_net, reference), PROFILE, 1e-5)
    assert entry.status == "failed" and "against its torch network > 1e-05" in entry.reason
    assert entry.parity["action_agreement"] == 1.0


def test_an_artifact_its_runtime_refuses_is_failed(
    tmp_path: Path, teacher_net: MLPNet, reference: gates.Reference
) -> None:
    entry = _onnx_entry(tmp_path, teacher_net, "float")
    manifest = _manifest(tmp_path, entry, obs_shape=[3, 3])  # the manifest claims image observations
    gates.gate(manifest, entry, reference, _source_q(teacher_net, reference), PROFILE, 1e-5)
    assert entry.status == "failed" and "onnxruntime refused the artifact" in entry.reason
    assert "[N, 9]" in entry.reason


def test_tampered_bytes_are_refused_before_loading(tmp_path: Path, teacher_net: MLPNet) -> None:
    entry = _onnx_entry(tmp_path, teacher_net, "float")
    manifest = _manifest(tmp_path, entry)
    path = tmp_path / entry.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="does not match the manifest"):
        get_backend("onnxruntime").from_manifest(manifest, entry)


def test_agreement_counts_a_flip_between_two_optimal_actions_but_strict_does_not() -> None:
    q_ref = np.array([[1.00, 0.99, 0.0], [0.0, 1.0, 0.5], [0.0, 1.0, 0.5]], dtype=np.float32)
    q = np.array([[0.99, 1.00, 0.0], [0.0, 0.5, 1.0], [0.0, 1.0, 0.5]], dtype=np.float32)
    optimal = np.array([[True, True, False], [False, True, False], [False, True, False]])
    max_dq, agree, strict = gates.compare(q, q_ref, optimal)
    # Row 0: a tie the oracle proves (both optimal) → agrees; row 1: a real mistake; row 2: same action.
    assert (agree, strict) == pytest.approx((2 / 3, 1 / 3))
    assert max_dq == pytest.approx(0.5)
    assert gates.compare(q, q_ref)[1:] == pytest.approx((1 / 3, 1 / 3))  # no oracle → strict


def test_oracle_ties_are_known_for_vector_observations_only(env_model: GridModel) -> None:
    from gridworld.core import build_model
    from gridworld.oracle import Oracle

    obs = gates.reachable_obs(env_model)
    mask = gates.optimal_actions(env_model, obs)
    states = np.flatnonzero(Oracle(env_model).distance > 0)
    assert mask is not None and np.array_equal(mask, Oracle(env_model).optimal_mask[states])
    assert mask.sum(axis=1).max() >= 2  # the default layout has real ties
    image = build_model(obs_mode="image")
    assert gates.optimal_actions(image, gates.reachable_obs(image)) is None  # aliased 3×3 windows
