"""Export-test fixtures, so no test depends on `make train`/`make distill` or on how a network fits here.

- ``teacher``: the committed (256, 256) MLP of ``tests/fixtures`` — the size the pipeline's CQL policy has,
  which is what the int8 size ratio depends on — optimal from every start with a Q margin of ≥ 0.5 between
  optimal and other actions in every acting state (``tests/fixtures/make_fixtures.py`` says why committed);
- ``student``: the committed (64, 64) MLP regressed onto the teacher's Q-values and actions;
- ``dataset_path``: a 20-episode mixed replay buffer from ``train.collect``.
- ``export_target``: runs ``python -m export`` in-process for a target and caches the result per session.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.manifest import Manifest, load_manifest
from gridworld.core import GridModel, build_model
from tests.fixtures.make_fixtures import load_fixture, path_of
from train.collect import CollectConfig, collect
from train.dataset import save_dataset
from train.networks import MLPNet


@pytest.fixture(scope="session")
def env_model() -> GridModel:
    return build_model("default", "vector")


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-fixtures")


@pytest.fixture(scope="session")
def teacher_net() -> MLPNet:
    return load_fixture("teacher_256x256")


@pytest.fixture(scope="session")
def teacher(fixture_dir: Path) -> Path:
    """A private copy of the committed teacher (tests may tamper with their files)."""
    return Path(shutil.copy(path_of("teacher_256x256"), fixture_dir / "teacher.safetensors"))


@pytest.fixture(scope="session")
def student(fixture_dir: Path) -> Path:
    return Path(shutil.copy(path_of("student_64x64"), fixture_dir / "student.safetensors"))


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
