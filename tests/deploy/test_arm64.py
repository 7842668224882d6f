"""``deploy.check`` and the comparisons of ``deploy.arm64`` on this host (real artifacts, real backends), and
the arm64 bundle under qemu-user where this machine has what that needs (root, qemu-aarch64 ≥ 10 and the
cached arm64 root that ``make verify-arm64`` builds): skipped with the reason elsewhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from backends.manifest import load_manifest
from deploy import arm64
from deploy.bundle import BundleConfig, plan_bundle, write_bundle
from deploy.check import OUTPUTS, REPORT, main, output_key, run_check
from tests.backends.artifact_factory import copy_manifest


@pytest.fixture(scope="module")
def checked(manifest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """deploy.check run once over the real artifact set, on the observations deploy.arm64 would use."""
    work = tmp_path_factory.mktemp("check")
    obs = arm64.reference_observations(load_manifest(manifest_path))
    np.savez(work / "ref.npz", obs=obs)
    report = run_check(manifest_path, work / "ref.npz", work / "out")
    with np.load(work / "out" / OUTPUTS, allow_pickle=False) as data:
        outputs = dict(data)
    return work, report, outputs


def test_check_runs_every_ok_artifact_on_each_backend(manifest_path: Path, checked: tuple) -> None:
    work, report, outputs = checked
    manifest = load_manifest(manifest_path)
    expected = {(e.variant, e.format, b) for e in manifest.artifacts if e.status == "ok" for b in e.backends}
    assert {(r["variant"], r["format"], r["backend"]) for r in report["artifacts"]} == expected
    assert report["host"]["arch"] and report["observations"] == len(arm64.reference_observations(manifest))
    by_key = {(r["variant"], r["format"], r["backend"]): r for r in report["artifacts"]}
    for r in report["artifacts"]:
        entry = next(e for e in manifest.artifacts if (e.variant, e.format) == (r["variant"], r["format"]))
        if r["status"] == "error":  # the fixture lists numpy for its int8 graph, which numpy cannot run
            assert (r["variant"], r["backend"]) == ("int8-static", "numpy") and "quantized graph" in r[
                "reason"
            ]
            assert output_key(entry, r["backend"]) not in outputs
            continue
        assert r["status"] == "ok" and 0.0 < r["mean_return"] < 10.0, r
        assert outputs[output_key(entry, r["backend"])].shape == (report["observations"], 3)
    # The same fp32 graph on two backends: the same exact return over every start state.
    ort, ref = by_key["float", "onnx", "onnxruntime"], by_key["float", "onnx", "numpy"]
    assert ort["mean_return"] == ref["mean_return"]
    assert json.loads((work / "out" / REPORT).read_text())["artifacts"] == report["artifacts"]


def test_compare_outputs_holds_each_precision_to_its_bound(manifest_path: Path, checked: tuple) -> None:
    manifest = load_manifest(manifest_path)
    _, _, outputs = checked
    same = arm64.compare_outputs(manifest, outputs, outputs)
    assert same and all(p["ok"] and p["max_abs_diff"] == 0.0 and p["same_actions"] == 1.0 for p in same)
    changed = dict(outputs)
    float_key = next(k for k in outputs if k.startswith("float__onnx__"))
    scale = max(1.0, float(np.abs(outputs[float_key]).max()))  # fp32's bound: 1e-4 of the outputs' scale
    changed[float_key] = outputs[float_key] + 2e-4 * scale
    int8_key = next(k for k in outputs if k.startswith("int8-static__onnx__"))
    flipped = outputs[int8_key].copy()
    best = int(flipped[0].argmax())
    flipped[0, (best + 1) % 3] = flipped[0, best] + 1e-3  # another action in one row, tiny elsewhere
    changed[int8_key] = flipped
    verdicts = {output_key_of(p): p for p in arm64.compare_outputs(manifest, changed, outputs)}
    assert not verdicts[float_key]["ok"] and verdicts[float_key]["rule"].startswith("max |Δ| ≤ 0.0001")
    assert not verdicts[int8_key]["ok"] and verdicts[int8_key]["same_actions"] < 1.0
    assert sum(not p["ok"] for p in verdicts.values()) == 2


def output_key_of(p: dict) -> str:
    return f"{p['variant']}__{p['format']}__{p['backend']}"


def test_compare_returns_names_what_differs(checked: tuple) -> None:
    _, report, _ = checked
    other = json.loads(json.dumps(report))
    other["artifacts"][0]["mean_return"] += 0.5
    del other["artifacts"][1]
    rows = arm64.compare_returns(report, other)
    assert not rows[0]["equal_to_x86"] and rows[0]["equal_to_manifest"] == (
        report["artifacts"][0]["mean_return"] == report["artifacts"][0]["manifest_return"]
    )
    assert rows[1]["x86_return"] is None and not rows[1]["equal_to_x86"]
    assert all(r["equal_to_x86"] for r in rows[2:] if r["status"] == "ok")


def test_pairs_are_the_ok_artifacts_on_the_chosen_backends(manifest_path: Path) -> None:
    manifest = load_manifest(manifest_path)
    got = arm64.pairs(manifest, ["onnxruntime"])
    assert got == [(e.variant, "onnxruntime") for e in manifest.artifacts if "onnxruntime" in e.backends]
    assert ("int8-static", "tensorrt") not in arm64.pairs(manifest, ["onnxruntime", "tensorrt"])


def test_check_refuses_bad_observations(manifest_path: Path, tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "wrong.npz", states=np.zeros((2, 6), np.float32))
    assert main([str(manifest_path), "--obs", str(tmp_path / "wrong.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "obs" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_missing_prerequisite_is_named(tmp_path: Path) -> None:
    reason = arm64.missing_prerequisite(tmp_path / "no-root")
    assert reason and any(word in reason for word in ("root", "qemu", "debootstrap", "binfmt"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_arm64_bundle_runs_under_emulation(manifest_path: Path, tmp_path: Path) -> None:
    """Two artifacts (float and int8), one backend, two episodes: about a minute once the cached root has
    the bundle's venv (the first install under emulation takes ~3 min)."""
    reason = "not root" if os.geteuid() != 0 else arm64.missing_prerequisite(arm64.DEFAULT_ROOT)
    if reason:
        pytest.skip(f"arm64 under qemu-user: {reason}")

    def arm64_export(data: dict) -> None:
        data["target"] = "arm64"
        kept = {("float", "onnx"), ("int8-static", "onnx")}
        data["artifacts"] = [a for a in data["artifacts"] if (a["variant"], a["format"]) in kept]
        for a in data["artifacts"]:  # as export narrows them: numpy runs no quantized graph
            a["backends"] = [b for b in a["backends"] if not (b == "numpy" and a["precision"] == "int8")]

    export = copy_manifest(manifest_path, tmp_path / "export", arm64_export)
    bundle = write_bundle(plan_bundle(BundleConfig(target="arm64", artifacts=str(export.parent))), tmp_path)
    results = tmp_path / "results"
    args = [
        "--bundle",
        str(bundle),
        "--results",
        str(results),
        "--episodes",
        "2",
        "--backends",
        "onnxruntime",
    ]
    assert arm64.main(args) == 0
    record = json.loads((results / "arm64" / "verify.json").read_text())
    assert record["passed"] and record["arm64"]["machine"] == "aarch64"
    assert {(s["variant"], s["backend"]) for s in record["sessions"]} == {
        ("float", "onnxruntime"),
        ("int8-static", "onnxruntime"),
    }
    for s in record["sessions"]:
        assert s["host"]["arch"] == "aarch64" and s["host"]["emulated"] is True and s["episodes_equal_x86"]
        summary = json.loads(Path(s["csv"]).with_suffix(".json").read_text())
        assert summary["host"]["emulated"] is True and summary["episodes"] == 2
        assert Path(s["csv"]).is_relative_to(results / "sessions" / "arm64-emulated")
    assert all(p["ok"] for p in record["parity"]) and all(r["equal_to_x86"] for r in record["returns"])
