"""The numpy reference: its ONNX reader agrees with ``onnx``; it evaluates MLP chains and refuses the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.manifest import load_manifest
from backends.numpy_ref import SUPPORTED_OPS, NumpyBackend, OnnxReadError, read_onnx

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _onnx_files(manifest_path: Path) -> list[Path]:
    m = load_manifest(manifest_path)
    return [m.artifact_path(a) for a in m.artifacts if a.format == "onnx"]


def test_reader_matches_the_onnx_package(manifest_path: Path) -> None:
    files = _onnx_files(manifest_path)
    assert len(files) >= 4
    for path in files:
        mine = read_onnx(path.read_bytes())
        ref = onnx.load(str(path))
        assert [n.op_type for n in mine.nodes] == [n.op_type for n in ref.graph.node]
        for init in ref.graph.initializer:
            want = numpy_helper.to_array(init)
            got = mine.initializers[init.name].array()
            assert got.dtype == want.dtype and np.array_equal(got, want), (path, init.name)
        assert [v.name for v in mine.outputs] == [o.name for o in ref.graph.output]


def _save(tmp_path: Path, nodes, inits, name: str = "m.onnx", out_dim: int = 3) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", out_dim])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_matmul_add_chain_and_gemm_attributes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    w2, b2 = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(1, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["obs", "w1"], ["h"]),
        helper.make_node("Add", ["b1", "h"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["q"], transB=1, alpha=0.5, beta=2.0),
    ]
    path = _save(tmp_path, nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    backend = NumpyBackend(path, 6, 3)
    backend.load()
    x = rng.normal(size=(5, 6)).astype(np.float32)
    want = 0.5 * np.maximum(x @ w1 + b1, 0) @ w2.T + 2.0 * b2
    np.testing.assert_allclose(backend.infer(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.infer_one(x[0]), want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.infer_one(x[0].astype(np.float64)), want[0], rtol=1e-5, atol=1e-5)


def test_layer_normalization_between_affine_and_relu(tmp_path: Path) -> None:
    """The trainer's default Q-net exports a LayerNormalization after each hidden Gemm; the reader runs it
    in both paths, and refuses one that does not follow an affine layer."""
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(size=(8, 6)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    scale, shift = rng.uniform(0.5, 1.5, 8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    w2, b2 = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["obs", "w1", "b1"], ["h"], transB=1),
        helper.make_node("LayerNormalization", ["h", "scale", "shift"], ["n"], axis=-1, epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["q"], transB=1),
    ]
    inits = {"w1": w1, "b1": b1, "scale": scale, "shift": shift, "w2": w2, "b2": b2}
    path = _save(tmp_path, nodes, inits)
    backend = NumpyBackend(path, 6, 3)
    backend.load()
    x = rng.normal(size=(5, 6)).astype(np.float32)
    h = x @ w1.T + b1
    normed = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 1e-3) * scale + shift
    want = np.maximum(normed, 0) @ w2.T + b2
    np.testing.assert_allclose(backend.infer(x), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(backend.infer_one(x[0]), want[0], rtol=1e-4, atol=1e-4)
    first = helper.make_node("LayerNormalization", ["obs", "s6", "t6"], ["n"])
    six = {"s6": np.ones(6, np.float32), "t6": np.zeros(6, np.float32)}
    bad = _save(tmp_path, [first, *nodes[2:]], {**inits, **six}, "bad.onnx")
    with pytest.raises(OnnxReadError, match="does not follow an affine layer"):
        NumpyBackend(bad, 6, 3).load()


def test_int8_qdq_graph_is_refused_with_the_supported_ops(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    path = m.artifact_path(m.entry("int8-static", "onnx"))
    backend = NumpyBackend(path, 6, 3)
    with pytest.raises(OnnxReadError, match="quantized graph") as err:
        backend.load()
    for op in SUPPORTED_OPS:
        assert op in str(err.value)
    assert "onnxruntime" in str(err.value)


@pytest.mark.parametrize(
    ("nodes", "why"),
    [
        ([helper.make_node("Tanh", ["obs"], ["q"])], "Tanh that does not follow an affine layer"),
        ([helper.make_node("Sigmoid", ["obs"], ["q"])], "unsupported operator"),
        (
            [
                helper.make_node("MatMul", ["obs", "w"], ["a"]),
                helper.make_node("MatMul", ["obs", "w"], ["b"]),
                helper.make_node("Add", ["a", "b"], ["q"]),
            ],
            "not a single chain",
        ),
    ],
)
def test_unsupported_graphs_are_refused(tmp_path: Path, nodes, why: str) -> None:
    path = _save(tmp_path, nodes, {"w": np.ones((6, 3), np.float32)})
    with pytest.raises(OnnxReadError, match=why):
        NumpyBackend(path, 6, 3).load()


def test_external_data_is_refused_with_the_fix(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["obs", "w"], ["q"])]
    path = _save(tmp_path, nodes, {"w": np.ones((6, 3), np.float32)})
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, size_threshold=0, location="m.onnx.data")
    with pytest.raises(OnnxReadError, match="external_data=False"):
        NumpyBackend(path, 6, 3).load()


def test_corrupt_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff garbage")
    with pytest.raises(ValueError, match=r"bad\.onnx"):
        NumpyBackend(path, 6, 3).load()


def test_wrong_observation_size_refused_at_load(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    path = m.artifact_path(m.entry("float", "onnx"))
    with pytest.raises(ValueError, match=r"size 6.*has 9"):
        NumpyBackend(path, 9, 3).load()
    with pytest.raises(ValueError, match="outputs 3"):
        NumpyBackend(path, 6, 4).load()


def test_fp16_initializers_are_upcast(manifest_path: Path) -> None:
    m = load_manifest(manifest_path)
    fp32 = NumpyBackend(m.artifact_path(m.entry("float", "onnx")), 6, 3)
    fp16 = NumpyBackend(m.artifact_path(m.entry("fp16", "onnx")), 6, 3)
    fp32.load()
    fp16.load()
    assert all(layer.weight.dtype == np.float32 for layer in fp16.layers)
    x = np.random.default_rng(1).random((50, 6), dtype=np.float32)
    np.testing.assert_allclose(fp16.infer(x), fp32.infer(x), atol=5e-2)


@pytest.mark.slow
def test_dynamo_exporter_output_runs(tmp_path: Path) -> None:
    """The exporter export uses by default (torch.export-based) produces a graph the reader handles."""
    torch = pytest.importorskip("torch")
    from train.networks import MLPNet, NetConfig

    net = MLPNet(NetConfig(hidden=(16, 16))).eval()
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(
        net, (torch.zeros(1, 6),), str(path), input_names=["obs"], output_names=["q"],
        dynamic_shapes=({0: "batch"},), external_data=False,
    )  # fmt: skip
    backend = NumpyBackend(path, 6, 3)
    backend.load()
    x = torch.rand(20, 6)
    with torch.inference_mode():
        want = net(x).numpy()
    np.testing.assert_allclose(backend.infer(x.numpy()), want, atol=1e-5)


def _cnn_graph(tmp_path: Path, group: int = 1) -> tuple[Path, dict[str, np.ndarray]]:
    """uint8 frames [N, 2, 9, 9] → Cast, ÷255, Conv 3×3/2 pad 1 + Relu, Conv 2×2/1 + Relu, Flatten, Gemm +
    Relu, Gemm: an image policy's graph in miniature (the SB3 CnnPolicy's ops, padding as the gridworld's)."""
    rng = np.random.default_rng(0)
    w = {
        "k1": rng.normal(size=(4, 2 // group, 3, 3)).astype(np.float32),
        "c1": rng.normal(size=4).astype(np.float32),
        "k2": rng.normal(size=(3, 4, 2, 2)).astype(np.float32),
        "c2": rng.normal(size=3).astype(np.float32),
        "w1": rng.normal(size=(8, 3 * 4 * 4)).astype(np.float32),
        "b1": rng.normal(size=8).astype(np.float32),
        "w2": rng.normal(size=(5, 8)).astype(np.float32),
        "b2": rng.normal(size=5).astype(np.float32),
        "s": np.array(255.0, np.float32),
    }
    nodes = [
        helper.make_node("Cast", ["obs"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["x", "s"], ["xs"]),
        helper.make_node("Conv", ["xs", "k1", "c1"], ["y1"], strides=[2, 2], pads=[1, 1, 1, 1], group=group),
        helper.make_node("Relu", ["y1"], ["r1"]),
        helper.make_node("Conv", ["r1", "k2", "c2"], ["y2"], strides=[1, 1]),
        helper.make_node("Relu", ["y2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["q"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("obs", TensorProto.UINT8, ["N", 2, 9, 9])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    path = tmp_path / "cnn.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads (the onnx package writes newer ones by default)
    onnx.save(model, str(path))
    return path, w


def _direct_conv(x: np.ndarray, k: np.ndarray, c: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Convolution by its definition, one output at a time (float64)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(np.float64)
    n, _, h, w = x.shape
    out, _, kh, kw = k.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    y = np.zeros((n, out, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, k) + c
    return y


def test_a_cnn_policy_runs_on_uint8_frames_as_its_definition_says(tmp_path: Path) -> None:
    path, w = _cnn_graph(tmp_path)
    frames = np.random.default_rng(1).integers(0, 256, size=(6, 2, 9, 9), dtype=np.uint8)
    r1 = np.maximum(_direct_conv(frames / 255.0, w["k1"], w["c1"], 2, 1), 0)
    r2 = np.maximum(_direct_conv(r1, w["k2"], w["c2"], 1, 0), 0).reshape(6, -1)
    expected = np.maximum(r2 @ w["w1"].T + w["b1"], 0) @ w["w2"].T + w["b2"]
    backend = NumpyBackend(path, 2 * 9 * 9, 5, {}, (2, 9, 9), "uint8")
    backend.load()
    np.testing.assert_allclose(backend.infer(frames), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(backend.infer_one(frames[2]), expected[2], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"expected observations \[N, 2, 9, 9\]"):
        backend.infer(frames.reshape(6, -1))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(backend.infer(frames), session.run(None, {"obs": frames})[0], atol=1e-4)


def test_a_cnn_that_does_not_fit_the_frames_or_uses_groups_is_refused(tmp_path: Path) -> None:
    path, _ = _cnn_graph(tmp_path)
    with pytest.raises(ValueError, match=r"do not take observations of shape \[2, 5, 5\]|takes observations"):
        NumpyBackend(path, 2 * 5 * 5, 5, {}, (2, 5, 5), "uint8").load()
    grouped, _ = _cnn_graph(tmp_path, group=2)
    with pytest.raises(OnnxReadError, match="Conv with groups or dilation"):
        NumpyBackend(grouped, 2 * 9 * 9, 5, {}, (2, 9, 9), "uint8").load()
