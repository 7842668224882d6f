"""Export-test fixtures, built once per session in seconds, so no test depends on `make train`/`make distill`.

- ``teacher``: a (256, 256) MLP — the size the pipeline's CQL policy has, which is what the int8 size ratio
  depends on — regressed onto the exact optimal Q-values of every reachable state (from the BFS oracle's
  distances) until its greedy policy is optimal (oracle ratio 1.0); ~5 s.
- ``student``: a (64, 64) MLP distilled from the teacher (its Q-values and its actions); ~5 s.
- ``dataset_path``: a 20-episode mixed replay buffer from ``train.collect``.
- ``export_target``: runs ``python -m export`` in-process for a target and caches the result per session.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.manifest import Manifest, load_manifest
from gridworld.core import GridModel, build_model
from gridworld.oracle import Oracle, evaluate_policy, return_for_distance
from train.checkpoint import save_checkpoint
from train.collect import CollectConfig, collect
from train.dataset import save_dataset
from train.evaluate import greedy_policy
from train.networks import MLPNet, NetConfig

TEACHER_HIDDEN = (256, 256)
STUDENT_HIDDEN = (64, 64)


def optimal_q(env_model: GridModel) -> tuple[np.ndarray, np.ndarray]:
    """Observations of every non-terminal reachable state and their optimal Q-values as scaled advantages.

    ``10 · (Q*(s, a) − V*(s))`` with ``Q* = r + V*(s')`` undiscounted: 0 for the oracle's action and −1 per
    extra step for the others; an action that ties with the oracle's gets −1 too. Raw Q* values differ by
    0.1 between actions on top of a 6…10 offset, which takes thousands of steps to resolve, and exact ties
    make argmax flip on any rounding; margins of ≥ 1 give a policy whose int8 copy acts the same.
    """
    oracle = Oracle(env_model)
    states = np.flatnonzero(oracle.distance > 0)
    nxt = env_model.next_state[states]  # [S, 3]
    value = np.where(env_model.is_terminal[nxt], 0.0, return_for_distance(oracle.distance[nxt]))
    q = env_model.arrive_reward[nxt] + value
    adv = np.round(10.0 * (q - q.max(axis=1, keepdims=True)))
    tie = (adv == 0) & (np.arange(q.shape[1])[None, :] != oracle.action[states][:, None])
    obs = env_model.observations[states].reshape(len(states), -1).astype(np.float32)
    return obs, np.where(tie, -1.0, adv).astype(np.float32)


def fit(
    hidden: tuple[int, ...],
    obs: np.ndarray,
    target: np.ndarray,
    env_model: GridModel,
    seed: int = 0,
    action_weight: float = 0.0,
    weight_decay: float = 0.0,
) -> MLPNet:
    """Full-batch Adam regression (plus cross-entropy on the target's argmax when ``action_weight`` > 0)
    until the greedy policy is optimal from every start, at most 3000 steps.

    One torch thread: on a shared 2-core machine two threads fighting other jobs ran 20× slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = MLPNet(NetConfig(obs_dim=obs.shape[1], n_actions=target.shape[1], hidden=hidden))
        x, y = torch.from_numpy(obs), torch.from_numpy(target)
        actions = y.argmax(dim=1)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=weight_decay)
        for step in range(1, 3001):
            opt.zero_grad()
            out = net(x)
            loss = torch.nn.functional.mse_loss(out, y)
            if action_weight:
                loss = loss + action_weight * torch.nn.functional.cross_entropy(out, actions)
            loss.backward()
            opt.step()
            if step % 100 == 0 and evaluate_policy(env_model, greedy_policy(net.eval())).oracle_ratio == 1.0:
                break
            net.train()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    return net


@pytest.fixture(scope="session")
def env_model() -> GridModel:
    return build_model("default", "vector")


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-fixtures")


@pytest.fixture(scope="session")
def teacher_net(env_model: GridModel) -> MLPNet:
    obs, q = optimal_q(env_model)
    net = fit(TEACHER_HIDDEN, obs, q, env_model, weight_decay=1e-2)  # decay: fewer weight outliers for int8
    assert evaluate_policy(env_model, greedy_policy(net)).oracle_ratio == 1.0, (
        "fixture teacher is not optimal"
    )
    return net


@pytest.fixture(scope="session")
def teacher(fixture_dir: Path, teacher_net: MLPNet) -> Path:
    return save_checkpoint(
        fixture_dir / "teacher.safetensors", teacher_net, teacher_net.config, {"algo": "fixture"}
    )


@pytest.fixture(scope="session")
def student(fixture_dir: Path, teacher_net: MLPNet, env_model: GridModel) -> Path:
    obs, _ = optimal_q(env_model)
    with torch.inference_mode():
        target = teacher_net(torch.from_numpy(obs)).numpy()
    net = fit(STUDENT_HIDDEN, obs, target, env_model, seed=1, action_weight=10.0)
    return save_checkpoint(fixture_dir / "student.safetensors", net, net.config, {"algo": "fixture-distill"})


@pytest.fixture(scope="session")
def dataset_path(fixture_dir: Path) -> Path:
    path = fixture_dir / "replay.npz"
    config = CollectConfig(
        episodes=20, num_envs=8, policy="mixed", seed=0, out=str(path), plots=False, quiet=True
    )
    save_dataset(path, collect(config))
    return path


@pytest.fixture(scope="session")
def export_target(
    tmp_path_factory: pytest.TempPathFactory, teacher: Path, student: Path, dataset_path: Path
) -> Callable[[str], Manifest]:
    """``export_target("x86")`` → the manifest of a full CLI export on the fixtures (once per target)."""
    from export.__main__ import main

    root = tmp_path_factory.mktemp("artifacts")
    done: dict[str, Manifest] = {}

    def run(target: str) -> Manifest:
        if target not in done:
            out = root / target
            argv = ["--target", target, "--checkpoint", str(teacher), "--distilled", str(student)]
            argv += ["--dataset", str(dataset_path), "--out", str(out), "--quiet"]
            assert main(argv) == 0
            done[target] = load_manifest(out / "manifest.json")
        return done[target]

    return run


@pytest.fixture
def copy_export(tmp_path: Path) -> Callable[[Manifest], Manifest]:
    """A private copy of an export folder, for tests that tamper with files."""

    def copy(manifest: Manifest) -> Manifest:
        dst = tmp_path / manifest.root.name
        shutil.copytree(manifest.root, dst)
        return load_manifest(dst / "manifest.json")

    return copy
