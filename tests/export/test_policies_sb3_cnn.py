"""``sb3:`` CnnPolicy zips (NatureCNN on Atari frames): read without unpickling, uint8 frames scaled inside
the module, outputs equal to SB3's own network on the same weights. Each model trains a few hundred steps
only: the module must compute what SB3 computes, not play well
(docs/contracts.md#tests-that-hold-on-every-host)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tasks
from export.policies.sb3 import load_sb3
from tests.no_pickle import forbid_unpickling

pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")
sb3 = pytest.importorskip("stable_baselines3")
GAME = "ALE/Breakout-v5"
# The trained models are module fixtures: keep this module's tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("sb3_cnn")
RECIPES = {
    "ppo": ("PPO", {"n_steps": 64, "batch_size": 64, "n_epochs": 1}, 64),
    "dqn": ("DQN", {"buffer_size": 500, "learning_starts": 64, "train_freq": 16, "batch_size": 16}, 128),
}


@pytest.fixture(scope="module")
def task() -> tasks.TaskSpec:
    return tasks.from_env(GAME, episodes=2)


@pytest.fixture(scope="module")
def trained(
    task: tasks.TaskSpec, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[Any, Path]]:
    root, done = tmp_path_factory.mktemp("sb3cnn"), {}

    def get(name: str) -> tuple[Any, Path]:
        if name not in done:
            algo, kwargs, steps = RECIPES[name]
            model = getattr(sb3, algo)("CnnPolicy", tasks.make_env(task), seed=0, device="cpu", **kwargs)
            model.learn(steps)
            model.save(root / f"{name}.zip")
            done[name] = (model, root / f"{name}.zip")
        return done[name]

    return get


@pytest.fixture(scope="module")
def frames(task: tasks.TaskSpec) -> np.ndarray:
    """64 stacked uint8 frames of the task's own env under random actions."""
    env, rows = tasks.make_env(task), []
    obs, _ = env.reset(seed=3)
    actions = np.random.default_rng(3).integers(0, task.action.n, size=64)
    for action in actions:
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            obs, _ = env.reset(seed=4)
    env.close()
    return np.asarray(rows, dtype=np.uint8)


def sb3_outputs(name: str, model: Any, frames: np.ndarray) -> np.ndarray:
    obs, _ = model.policy.obs_to_tensor(frames)
    with torch.no_grad():
        if name == "dqn":
            return model.q_net(obs).numpy()
        # the Categorical's logits are normalised (log-probabilities): compare ours the same way
        return model.policy.get_distribution(obs).distribution.logits.numpy()


@pytest.mark.parametrize("name", list(RECIPES))
def test_cnn_policy_matches_sb3(
    name: str, trained: Callable[[str], tuple[Any, Path]], frames: np.ndarray
) -> None:
    model, path = trained(name)
    with forbid_unpickling():
        policy = load_sb3(path, GAME)
    assert policy.info["features_extractor"] == "NatureCNN" and policy.task.observation.dtype == "uint8"
    assert policy.task.output == ("q" if name == "dqn" else "logits")
    names = [n for n, _ in policy.model.named_children()]
    assert names[:3] == ["scale", "conv0", "cact0"] and names[-1] == "out"
    with torch.inference_mode():
        ours = policy.model(torch.from_numpy(frames)).numpy()  # uint8 in: scaled inside the module
    compared = ours if name == "dqn" else torch.log_softmax(torch.from_numpy(ours), dim=1).numpy()
    np.testing.assert_allclose(compared, sb3_outputs(name, model, frames), rtol=0, atol=1e-5)
    expected, _ = model.predict(frames, deterministic=True)
    np.testing.assert_array_equal(tasks.select_actions(policy.task, ours), expected)


def test_a_cnn_policy_for_another_frame_stack_is_refused(
    trained: Callable[[str], tuple[Any, Path]],
) -> None:
    _, path = trained("ppo")
    from tasks.preprocess import atari_step

    with pytest.raises(ValueError, match=r"takes images of 4 channels but .* shape \[2, 84, 84\]"):
        load_sb3(path, GAME, env_kwargs={"preprocess_steps": [atari_step(stack=2)]})
    with pytest.raises(ValueError, match=r"CartPole-v1 observations have shape \[4\]"):
        load_sb3(path, "CartPole-v1")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_cnn_exports_to_a_uint8_graph_each_runtime_runs(
    backend: str, trained: Callable[[str], tuple[Any, Path]], frames: np.ndarray, tmp_path: Path
) -> None:
    """ONNX ``obs`` uint8 ``[N, 4, 84, 84]`` (frames go in as the env gives them), through onnxruntime and
    OpenVINO's IR: the same outputs as the torch module, batch and per frame."""
    from backends.registry import get_backend
    from export.onnx_export import export_onnx

    _, path = trained("ppo")
    policy = load_sb3(path, GAME)
    onnx_path = export_onnx(
        policy.model, 4 * 84 * 84, 4, tmp_path / "cnn.onnx", {}, input_shape=(4, 84, 84), input_dtype="uint8"
    )
    model_path = onnx_path
    if backend == "openvino":
        ov = pytest.importorskip("openvino")
        model_path = tmp_path / "cnn.xml"
        ov.save_model(ov.convert_model(str(onnx_path)), str(model_path), compress_to_fp16=False)
    runtime = get_backend(backend)(model_path, 4 * 84 * 84, 4, {}, (4, 84, 84), "uint8")
    runtime.load()
    with torch.inference_mode():
        expected = policy.model(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(runtime.infer(frames), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(runtime.infer_one(frames[5]), expected[5], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match=r"expected observations \[N, 4, 84, 84\]"):
        runtime.infer(frames.reshape(len(frames), -1))
    runtime.close()
    float_input = get_backend(backend)(model_path, 4 * 84 * 84, 4, {})  # a flat float32 contract: refused
    with pytest.raises(ValueError, match="input 'obs' is"):
        float_input.load()


@pytest.mark.slow
def test_a_cnn_policy_exports_its_quantized_variants_gated_in_its_task(
    trained: Callable[[str], tuple[Any, Path]], tmp_path: Path
) -> None:
    """``python -m export --policy sb3:… --env ALE/Breakout-v5``: float, int8, a channel-pruned and a binary
    CNN as uint8-input graphs (ONNX and OpenVINO IR), each gated by action agreement on rollout frames and by
    its return. Episodes capped (--max-episode-steps) so the gates' Breakout games stay short, fine-tuning
    cut to a few steps (what pruning leaves is checked, not how well it plays:
    docs/contracts.md#tests-that-hold-on-every-host)."""
    import onnx

    from backends.manifest import load_manifest
    from benchmarks.observations import random_rollout_observations
    from export.__main__ import main

    _, path = trained("ppo")
    out = tmp_path / "breakout"
    argv = ["--target", "x86", "--policy", f"sb3:{path}", "--env", GAME, "--episodes", "2"]
    argv += [
        "--max-episode-steps",
        "200",
        "--variants",
        "float,int8-static,pruned-50,binary",
        "--out",
        str(out),
    ]
    argv += ["--finetune-steps", "4", "--finetune-frames", "512"]
    assert main([*argv, "--quiet"]) == 0
    manifest = load_manifest(out / "manifest.json")
    assert manifest.model_input == ((4, 84, 84), "uint8")
    task = manifest.task_spec()
    assert task.env.max_episode_steps == 200 and task.observation.preprocess[0]["op"] == "atari"
    status = {(a.variant, a.format): a.status for a in manifest.artifacts}
    assert (
        status[("float", "onnx")] == status[("float", "openvino")] == status[("int8-static", "onnx")] == "ok"
    )
    entries = {(a.variant, a.format): a for a in manifest.artifacts}
    pruned, float_ = entries[("pruned-50", "onnx")], entries[("float", "onnx")]
    assert pruned.status in ("ok", "failed") and pruned.path, pruned.reason  # built, then gated
    assert pruned.params is not None and float_.params is not None
    assert pruned.params <= 0.3 * float_.params  # NatureCNN at half the channels: 25 % of the weights
    source = pruned.extra["source"]
    assert source["hidden_before"] == [32, 64, 64, 512] and source["hidden_after"] == [16, 32, 32, 256]
    binary = entries[("binary", "onnx")]
    assert binary.path and binary.extra["source"]["binary_layers"] == ["conv1", "conv2", "feat"]
    assert binary.extra["source"]["packed_bytes"] < binary.extra["source"]["float_bytes"] / 10
    for entry in manifest.artifacts:
        if entry.status == "ok":
            assert entry.eval["episodes"] == 2 and "action_agreement" in entry.parity
    graph = onnx.load_model(str(out / "int8-static/model.onnx")).graph
    obs = graph.input[0].type.tensor_type
    assert obs.elem_type == onnx.TensorProto.UINT8 and [d.dim_value for d in obs.shape.dim[1:]] == [4, 84, 84]
    frames = random_rollout_observations(task, 8)
    assert frames.dtype == np.uint8 and frames.shape == (8, 4, 84, 84)  # what the benchmarks feed
