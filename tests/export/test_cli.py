"""`python -m export` end to end for every target, its manifest, its refusals (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from backends.manifest import STATUSES, Manifest, file_sha256
from backends.profiles import load_profile
from backends.registry import get_backend
from export.__main__ import build_parser, main
from export.pipeline import ExportConfig
from export.sources import NO_DISTILLED
from export.variants import VARIANTS

# The session fixture export_target builds each target once per worker: keep its users on one worker.
pytestmark = pytest.mark.xdist_group("export_target")

REPO = Path(__file__).resolve().parents[2]


def _ir_constant_types(xml: Path) -> set[str]:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return {
        op.get_output_element_type(0).get_type_name()
        for op in model.get_ops()
        if op.get_type_name() == "Constant"
    }


def _ir_matmul_inputs(xml: Path) -> tuple[list[str], list[list[str]]]:
    """Op types feeding the output MatMul of an IR, and those feeding each other MatMul."""
    import openvino as ov

    from export.formats.openvino import output_layers

    model = ov.Core().read_model(str(xml))
    (last,) = output_layers(model)
    feeds = {
        op.get_friendly_name(): [v.get_node().get_type_name() for v in op.input_values()]
        for op in model.get_ops()
        if op.get_type_name() == "MatMul"
    }
    return feeds.pop(last), list(feeds.values())


def _check_manifest(manifest: Manifest, target: str) -> None:
    """Schema, one entry per (variant, format) the profile lists, hashes and sizes of every file."""
    raw = json.loads((manifest.root / "manifest.json").read_text())
    assert list(raw)[:1] == ["schema"] and raw["schema"] == 2 and raw["target"] == target
    assert {"torch", "onnx", "onnxruntime", "openvino"} <= set(raw["versions"])
    assert raw["env"]["obs_shape"] == [6] and raw["env"]["n_actions"] == 3
    assert len(raw["source"]["sha256"]) == 64
    profile = load_profile(target)
    expected = {(v, f) for f, plan in profile.formats.items() for v in plan.variants}
    assert {(a.variant, a.format) for a in manifest.artifacts} == expected
    for a in manifest.artifacts:
        assert a.status in STATUSES and a.name == f"{a.variant}/{a.format}"
        # the profile's backends, less those that cannot run this precision (numpy has no int8)
        runnable = [
            b for b in profile.formats[a.format].backends if get_backend(b).runs(a.format, a.precision)
        ]
        assert a.backends == runnable
        assert ("numpy" in a.backends) == (a.format == "onnx" and a.precision != "int8")
        if a.status == "failed":
            assert a.reason
        if a.status != "ok":
            continue
        assert a.reason is None and a.params and a.parity and a.eval
        main_file = manifest.root / a.path
        assert file_sha256(main_file) == a.sha256
        companions = a.extra.get("files", {})
        for rel, meta in companions.items():
            assert file_sha256(manifest.root / rel) == meta["sha256"]
            assert (manifest.root / rel).stat().st_size == meta["size_bytes"]
        assert a.size_bytes == main_file.stat().st_size + sum(m["size_bytes"] for m in companions.values())
        assert {"max_abs_q_diff", "action_agreement", "source_max_abs_q_diff"} <= set(a.parity)
        assert {"mean_return", "success_rate", "oracle_ratio"} <= set(a.eval)
    leftovers = [p.name for p in manifest.root.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary folders left behind: {leftovers}"
    config = json.loads((manifest.root / "export_config.json").read_text())
    assert config["target"] == target


@pytest.mark.slow
def test_x86_export(export_target: Callable[[str], Manifest], record_property) -> None:
    """On the committed teacher (Q margin ≥ 0.5 in every acting state), whose int8 error stays far below
    that margin and whose pruned fine-tune keeps every action on every float path measured
    (``tests/learning_spread.py``; figures in docs/test-margins.md)."""
    manifest = export_target("x86")
    _check_manifest(manifest, "x86")
    by = {a.name: a for a in manifest.artifacts}
    float_return = manifest.source["eval"]["mean_return"]
    for name in ("int8-dynamic/onnx", "int8-static/onnx", "pruned-50/onnx", "pruned-50-int8/onnx"):
        record_property(f"{name} return_ratio", by[name].eval["mean_return"] / float_return)
        record_property(f"{name} agreement", by[name].parity["action_agreement"])
    core = [
        "float/onnx",
        "float/openvino",
        "fp16/onnx",
        "fp16/openvino",
        "int8-dynamic/onnx",
        "int8-static/onnx",
    ]
    core += [
        "int8-static/openvino",
        "pruned-50/onnx",
        "pruned-50/openvino",
        "masked-50/onnx",
        "distilled/onnx",
        "float/torch",
        "pruned-50/torch",
    ]
    assert {n: by[n].status for n in core} == dict.fromkeys(core, "ok"), {n: by[n].reason for n in core}
    assert by["float/onnx"].parity["source_max_abs_q_diff"] <= 1e-5
    # int8: ≤ 30 % of the fp32 ONNX file, same exact return as the float policy.
    for name in ("int8-dynamic/onnx", "int8-static/onnx"):
        assert by[name].size_bytes <= 0.30 * by["float/onnx"].size_bytes, name
        assert by[name].eval["mean_return"] == pytest.approx(float_return), name
    # pruned-50: ≤ 30 % of the float parameters, ≥ 99 % of its exact return; units really removed.
    pruned = by["pruned-50/onnx"]
    assert pruned.params <= 0.30 * by["float/onnx"].params
    assert pruned.eval["mean_return"] >= 0.99 * float_return
    assert pruned.extra["source"]["hidden_after"] == [128, 128]
    assert pruned.extra["source"]["macs_after"] < pruned.extra["source"]["macs_before"]
    # masked-50: half the weights zero, and nothing to show for it in size or parameters.
    masked = by["masked-50/onnx"]
    assert masked.params == by["float/onnx"].params
    assert abs(masked.size_bytes - by["float/onnx"].size_bytes) <= 64
    assert masked.extra["source"]["zero_fraction"] == pytest.approx(0.5, abs=0.01)
    assert by["pruned-50-int8/onnx"].size_bytes < pruned.size_bytes / 2
    # torch: the same networks as safetensors checkpoints for the reference backend, exactly the float Q.
    assert by["float/torch"].path.endswith(".safetensors") and by["float/torch"].backends == ["torch"]
    assert by["float/torch"].parity["max_abs_q_diff"] <= 1e-6
    assert by["pruned-50/torch"].params == pruned.params
    # OpenVINO: a true fp32 IR, an fp16 IR, an int8 IR.
    types = {
        v: _ir_constant_types(manifest.root / by[f"{v}/openvino"].path)
        for v in ("float", "fp16", "int8-static")
    }
    assert "f16" not in types["float"] and "f32" in types["float"]
    assert "f16" in types["fp16"]
    assert "i8" in types["int8-static"]
    # ... whose output layer stays float (NNCF's ignored scope): its input and weights are not quantized.
    last, hidden = _ir_matmul_inputs(manifest.root / by["int8-static/openvino"].path)
    assert last == ["Relu", "Constant"]
    assert hidden and all(feeds[0] == "FakeQuantize" for feeds in hidden), hidden


@pytest.mark.slow
def test_arm64_export(export_target: Callable[[str], Manifest]) -> None:
    manifest = export_target("arm64")
    _check_manifest(manifest, "arm64")
    assert all(a.status == "ok" for a in manifest.artifacts if a.variant in ("float", "int8-static", "fp16"))


@pytest.mark.slow
def test_jetson_export(export_target: Callable[[str], Manifest]) -> None:
    _check_manifest(export_target("jetson"), "jetson")


def test_help_documents_every_flag() -> None:
    text = " ".join(build_parser().format_help().split())
    for f in fields(ExportConfig):
        assert f"--{f.name.replace('_', '-')}" in text
    assert "Known targets: arm64, jetson, x86" in text and "run make distill" in text


def _refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m export: error: ")
    assert not out.exists() and not any(out.parent.glob(f".{out.name}*"))
    return err


def test_unknown_target_exits_2_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "art"
    done = subprocess.run(
        [sys.executable, "-m", "export", "--target", "mars", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m export: error: unknown target 'mars'; known targets: arm64, jetson, x86"
    ]
    assert not out.exists()


def test_unknown_variant(
    tmp_path: Path, teacher: Path, dataset_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", "x86", "--checkpoint", str(teacher), "--dataset", str(dataset_path)]
    assert "unknown variant 'int4'" in _refused([*argv, "--variants", "float,int4"], tmp_path / "a", capsys)
    err = _refused(["--target", "arm64", "--variants", "pruned-70"], tmp_path / "b", capsys)
    assert "not built for target arm64" in err


def test_missing_and_corrupt_checkpoint(
    tmp_path: Path, dataset_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", "x86", "--dataset", str(dataset_path), "--checkpoint"]
    assert "no such checkpoint" in _refused(
        [*argv, str(tmp_path / "none.safetensors")], tmp_path / "a", capsys
    )
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    assert "not a readable safetensors checkpoint" in _refused([*argv, str(corrupt)], tmp_path / "b", capsys)


def test_bad_dataset(tmp_path: Path, teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.zeros((3, 6), np.float32))
    argv = ["--target", "x86", "--checkpoint", str(teacher), "--dataset", str(bad)]
    assert "missing key(s)" in _refused(argv, tmp_path / "a", capsys)


@pytest.mark.slow
def test_missing_distilled_checkpoint_is_a_failed_variant(
    tmp_path: Path, teacher: Path, dataset_path: Path
) -> None:
    from backends.manifest import load_manifest

    out = tmp_path / "art"
    argv = ["--target", "x86", "--checkpoint", str(teacher), "--dataset", str(dataset_path), "--quiet"]
    argv += [
        "--distilled",
        str(tmp_path / "absent.safetensors"),
        "--variants",
        "float,distilled",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    manifest = load_manifest(out / "manifest.json")
    distilled = [a for a in manifest.artifacts if a.variant == "distilled"]
    assert {a.format for a in distilled} == {"onnx", "openvino", "torch"}
    assert all(a.status == "failed" and a.reason == NO_DISTILLED for a in distilled)
    assert all(a.status == "ok" for a in manifest.artifacts if a.variant == "float")


def test_a_crash_leaves_the_previous_export_untouched(
    tmp_path: Path, teacher: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.formats.onnx as onnx_format

    out = tmp_path / "art"
    out.mkdir()
    (out / "manifest.json").write_text("previous")

    def explode(job: object) -> None:
        raise ZeroDivisionError("a bug mid-export")

    monkeypatch.setattr(onnx_format, "build", explode)
    argv = ["--target", "x86", "--checkpoint", str(teacher), "--dataset", str(dataset_path), "--quiet"]
    with pytest.raises(ZeroDivisionError):
        main([*argv, "--variants", "float", "--out", str(out)])
    assert (out / "manifest.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_every_profile_variant_is_in_the_table() -> None:
    for target in ("x86", "arm64", "jetson"):
        assert set(load_profile(target).variants) <= set(VARIANTS)
