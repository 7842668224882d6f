"""Manifest schema 2 (docs/contracts.md#the-manifest): the task travels with the artifacts; schema 1 still
loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.manifest import Manifest, ManifestError, load_manifest, write_manifest
from tasks import ActionSpec, EnvSpec, ObservationSpec, TaskSpec
from tasks.named import gridworld

ENV = {"id": "NeuroQuant/GridWorld-v0", "obs_mode": "vector", "obs_shape": [6], "n_actions": 3}


def _raw(**changes: object) -> dict:
    raw = {
        "schema": 2, "target": "x86", "created": "2026-12-02T00:00:00Z", "source": {}, "env": ENV,
        "task": gridworld().to_dict(), "versions": {}, "artifacts": [],
    }  # fmt: skip
    raw.update(changes)
    return raw


def _load(tmp_path: Path, raw: dict) -> Manifest:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))
    return load_manifest(path)


def test_schema_2_round_trips_its_task(tmp_path: Path) -> None:
    pendulum = TaskSpec(
        "pendulum",
        EnvSpec("Pendulum-v1", {}, 200),
        ObservationSpec((3,)),
        ActionSpec.box([-2.0], [2.0]),
        "action",
    )
    m = Manifest("x86", "2026-12-02T00:00:00Z", {}, ENV, {}, [], task=pendulum.to_dict())
    assert m.schema == 2
    loaded = load_manifest(write_manifest(m, tmp_path / "manifest.json"))
    assert loaded.schema == 2 and loaded.task_spec() == pendulum
    assert (loaded.obs_dim, loaded.output_dim) == (3, 1)  # what a backend checks a model against


def test_schema_1_loads_as_the_gridworld_its_env_describes(tmp_path: Path) -> None:
    raw = _raw(schema=1, env={**ENV, "obs_mode": "image", "obs_shape": [3, 3]})
    raw.pop("task")
    m = _load(tmp_path, raw)
    spec = m.task_spec()
    assert m.schema == 1 and m.task is None
    assert spec.name == "gridworld" and spec.env.kwargs["obs_mode"] == "image"
    assert spec.observation.shape == (9,) and spec.action.n == 3 and spec.evaluation.kind == "exact"
    assert (m.obs_dim, m.output_dim) == (9, 3)
    # Rewritten, it stays a schema-1 file: no task is invented in it.
    again = json.loads((write_manifest(m, tmp_path / "again.json")).read_text())
    assert again["schema"] == 1 and "task" not in again


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_raw(schema=3), "schema 3 is not supported (readable: 1, 2)"),
        ({k: v for k, v in _raw().items() if k != "task"}, "a schema-2 manifest needs a 'task' object"),
        (_raw(task={**gridworld().to_dict(), "output": "probabilities"}), "task is malformed"),
        (_raw(task={**gridworld().to_dict(), "action": {"kind": "discrete", "n": 0}}), "task.action.n"),
    ],
)
def test_a_bad_schema_or_task_is_refused_at_load(tmp_path: Path, raw: dict, message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _load(tmp_path, raw)


def test_the_manifest_reads_the_model_input_as_tasks_does(tmp_path: Path) -> None:
    """Manifest.model_input restates tasks.model_input on the JSON (so a schema-1 manifest keeps its env's
    size): for a schema-2 manifest the two must agree — flat float32 for CartPole, uint8 frames for Atari."""
    import numpy as np

    from tasks import model_input
    from tests.task_artifacts import task_manifest

    envs = {"CartPole-v1": ((4,), "float32")}
    try:
        import ale_py  # noqa: F401

        envs["ALE/Breakout-v5"] = ((4, 84, 84), "uint8")
    except ImportError:
        pytest.skip("ale-py is in the zoo extra (make setup installs it)")
    for i, (env_id, expected) in enumerate(envs.items()):
        models = {"float": (np.zeros((2, 4)), np.zeros(2 if env_id == "CartPole-v1" else 4))}
        manifest = load_manifest(task_manifest(tmp_path / str(i), env_id, models))
        assert manifest.model_input == model_input(manifest.task_spec()) == expected
