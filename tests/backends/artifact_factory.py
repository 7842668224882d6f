"""Builds a small, real artifact set for the backend and edge-runtime tests (no dependence on `make export`).

A tiny MLP that takes the BFS oracle's actions (so sessions reach the goal and the success statistics mean
something) and a smaller one standing in for its pruned variant — the committed ``tests/fixtures``
policies, not per-run fits whose quality would depend on the host's float order — are saved as NeuroQuant
checkpoints, exported with ``torch.onnx.export``, and turned into fp16, int8-static (QDQ,
onnxruntime.quantization) and, where openvino is installed, OpenVINO IR variants, all listed in a
schema-2 manifest (the gridworld task) written with ``backends.manifest.write_manifest``.

Built once per test session under pytest's base temp folder and shared by ``tests/backends`` and
``tests/edge_runtime`` (the second caller finds the manifest and reuses it).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np

from backends.manifest import ArtifactEntry, Manifest, file_sha256, write_manifest
from gridworld.core import build_model
from tasks.named import gridworld

OBS_DIM, N_ACTIONS = 6, 3


def _fixture_policy(name: str):  # -> (torch module, NetConfig)
    from tests.fixtures.make_fixtures import load_fixture

    net = load_fixture(name)
    return net, net.config


def _export_onnx(net, path: Path) -> None:
    import torch

    # The TorchScript exporter: ~0.5 s against ~10 s for the torch.export one on a loaded 2-core machine;
    # both give the same Gemm/Relu graph (test_numpy_ref checks the torch.export one separately).
    torch.onnx.export(
        net,
        (torch.zeros(1, OBS_DIM),),
        str(path),
        input_names=["obs"],
        output_names=["q"],
        dynamic_axes={"obs": {0: "batch"}, "q": {0: "batch"}},
        dynamo=False,
    )


def _to_fp16(src: Path, dst: Path) -> None:
    """fp16 weights with float32 I/O (Cast in, Cast out), as a keep_io_types float16 conversion makes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    for init in graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    inp, out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.input[:] = [f"{inp}_fp16" if i == inp else i for i in node.input]
        node.output[:] = [f"{out}_fp16" if o == out else o for o in node.output]
    graph.node.insert(0, helper.make_node("Cast", [inp], [f"{inp}_fp16"], to=TensorProto.FLOAT16))
    graph.node.append(helper.make_node("Cast", [f"{out}_fp16"], [out], to=TensorProto.FLOAT))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def _quantize_static(src: Path, dst: Path, calib: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"obs": calib}])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,  # 7-bit weights: no int16 saturation on AVX2 without VNNI (export.quantize)
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def _to_openvino(src: Path, dst_xml: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(src)), str(dst_xml), compress_to_fp16=False)


def _entry(root: Path, variant: str, fmt: str, precision: str, rel: str, backends: list[str], params: int):
    path = root / rel
    return ArtifactEntry(
        name=f"{variant}/{fmt}",
        variant=variant,
        format=fmt,
        precision=precision,
        path=rel,
        sha256=file_sha256(path),
        size_bytes=path.stat().st_size,
        params=params,
        backends=backends,
    )


def build_artifacts(root: Path) -> Path:
    """Build (or reuse) the artifact set under ``root``; return the manifest path."""
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        return manifest_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter and quantizer deprecation notices: not under test here
        return _build(root, manifest_path)


def _build(root: Path, manifest_path: Path) -> Path:
    from train.checkpoint import save_checkpoint
    from train.networks import count_params

    root.mkdir(parents=True, exist_ok=True)
    net, config = _fixture_policy("policy_32x32")
    small, small_config = _fixture_policy("policy_28x28")  # stands in for a pruned network
    params, small_params = count_params(net), count_params(small)
    for d in ("float", "fp16", "int8-static", "pruned-50"):
        (root / d).mkdir(exist_ok=True)
    save_checkpoint(root / "float/model.safetensors", net, config)
    save_checkpoint(root / "pruned-50/model.safetensors", small, small_config)
    _export_onnx(net, root / "float/model.onnx")
    _export_onnx(small, root / "pruned-50/model.onnx")
    _to_fp16(root / "float/model.onnx", root / "fp16/model.onnx")
    model = build_model()
    _quantize_static(root / "float/model.onnx", root / "int8-static/model.onnx", model.observations)
    entries = [
        _entry(root, "float", "torch", "fp32", "float/model.safetensors", ["torch"], params),
        _entry(root, "pruned-50", "torch", "fp32", "pruned-50/model.safetensors", ["torch"], small_params),
        _entry(root, "float", "onnx", "fp32", "float/model.onnx", ["onnxruntime", "numpy"], params),
        _entry(root, "fp16", "onnx", "fp16", "fp16/model.onnx", ["onnxruntime", "numpy"], params),
        _entry(
            root, "int8-static", "onnx", "int8", "int8-static/model.onnx", ["onnxruntime", "numpy"], params
        ),
        _entry(
            root, "pruned-50", "onnx", "fp32", "pruned-50/model.onnx", ["onnxruntime", "numpy"], small_params
        ),
    ]
    if importlib.util.find_spec("openvino") is not None:
        for variant in ("float", "int8-static"):
            xml = root / variant / "model.xml"
            _to_openvino(root / variant / "model.onnx", xml)
            precision = "fp32" if variant == "float" else "int8"
            entry = _entry(root, variant, "openvino", precision, f"{variant}/model.xml", ["openvino"], params)
            bin_rel = f"{variant}/model.bin"  # the weights: hashed too, so a tampered .bin is refused
            entry.extra["files"] = {bin_rel: {"sha256": file_sha256(root / bin_rel)}}
            entries.append(entry)
    # A TensorRT engine is built on the device: recorded as pending, as export does.
    entries.append(
        ArtifactEntry(
            name="int8-static/tensorrt",
            variant="int8-static",
            format="tensorrt",
            precision="int8",
            path="int8-static/model.engine",
            sha256=None,
            size_bytes=None,
            params=params,
            backends=["tensorrt"],
            status="pending-on-device",
            reason="TensorRT engines are built on the device they run on",
            extra={
                "build": "trtexec --onnx=int8-static/model.onnx --saveEngine=int8-static/model.engine --int8"
            },
        )
    )
    manifest = Manifest(
        target="x86",
        created="2026-11-21T00:00:00Z",
        source={
            "checkpoint": "float/model.safetensors",
            "sha256": file_sha256(root / "float/model.safetensors"),
        },
        env={
            "id": "NeuroQuant/GridWorld-v0",
            "obs_mode": "vector",
            "obs_shape": [OBS_DIM],
            "n_actions": N_ACTIONS,
        },
        versions={},
        artifacts=entries,
        task=gridworld().to_dict(),
        root=root,
    )
    # Written last and atomically: its presence means the set is complete.
    return write_manifest(manifest, manifest_path)


def copy_manifest(src: Path, dst_dir: Path, edit=None) -> Path:
    """A copy in ``dst_dir`` of the manifest ``src`` and of the files it lists (companions and a pending
    engine's ONNX too), in the same relative layout: artifact paths stay relative to the manifest, as
    docs/contracts.md#the-manifest requires and ``load_manifest`` checks. ``edit(data)`` may change the JSON
    before it is written; a file it points an entry at belongs in ``dst_dir``, named relative to it."""
    import shutil

    from backends.manifest import load_manifest, manifest_paths

    for entry in load_manifest(src).artifacts:
        for _, rel in manifest_paths(entry):
            if rel and (src.parent / rel).is_file():  # a failed or pending artifact may have no file
                (dst_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src.parent / rel, dst_dir / rel)
    data = json.loads(src.read_text())
    if edit is not None:
        edit(data)
    dst_dir.mkdir(parents=True, exist_ok=True)
    out = dst_dir / "manifest.json"
    out.write_text(json.dumps(data, indent=2))
    return out
