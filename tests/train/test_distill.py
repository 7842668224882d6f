"""Distillation: the student learns the teacher's choices, stays small, and the CLI fails readably.

The teacher is the committed 256×256 fixture of ``tests/fixtures`` (optimal, Q margin ≥ 0.5), so these tests
depend neither on the offline trainer nor on how a network fits on this host's float order.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common.fileio import file_sha256
from gridworld.core import build_model
from gridworld.oracle import Oracle
from tests.fixtures.make_fixtures import path_of
from train.checkpoint import load_checkpoint, save_checkpoint
from train.collect import CollectConfig, collect
from train.dataset import save_dataset
from train.distill import DistillConfig, distill, distill_loss, main, training_observations
from train.networks import NetConfig, build_network, count_params

TEACHER = NetConfig(hidden=(256, 256))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill")
    dataset_path = root / "mixed.npz"
    config = CollectConfig(
        episodes=20, policy="mixed", seed=0, quiet=True, plots=False, out=str(dataset_path)
    )
    save_dataset(dataset_path, collect(config))
    teacher_path = Path(shutil.copy(path_of("teacher_256x256"), root / "teacher.safetensors"))
    return {"root": root, "dataset": dataset_path, "teacher": teacher_path}


def _config(files: dict[str, Path], out: Path, **kw: object) -> DistillConfig:
    base: dict[str, object] = {
        "teacher": str(files["teacher"]),
        "dataset": str(files["dataset"]),
        "out": str(out),
        "steps": 600,
        "eval_every": 200,
        "tensorboard": False,
        "progress": False,
    }
    return DistillConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_loss_is_tau_squared_kl() -> None:
    teacher_q = torch.tensor([[1.0, 1.2, 0.9], [5.0, 4.0, 4.5]])
    student_q = torch.tensor([[0.3, 0.1, 0.2], [1.0, 2.0, 3.0]])
    tau = 0.5
    p_t = torch.softmax(teacher_q / tau, dim=1)
    p_s = torch.softmax(student_q / tau, dim=1)
    expected = tau**2 * (p_t * (p_t.log() - p_s.log())).sum(dim=1).mean()
    assert distill_loss(student_q, teacher_q, tau).item() == pytest.approx(expected.item(), rel=1e-5)
    # zero when the student matches the teacher up to a per-state shift (softmax ignores it)
    assert distill_loss(teacher_q + torch.tensor([[3.0], [-1.0]]), teacher_q, tau).item() == pytest.approx(
        0, abs=1e-6
    )


def test_training_states_cover_every_reachable_decision_state(files: dict[str, Path]) -> None:
    from train.dataset import load_dataset

    model = build_model()
    obs = training_observations(load_dataset(files["dataset"]), model)
    n_decision = int((Oracle(model).distance > 0).sum())
    assert len(obs) == n_decision  # vector observations identify the state; the dataset adds no new ones
    assert len(np.unique(obs, axis=0)) == len(obs)


def test_distillation_raises_agreement_with_the_teacher(
    files: dict[str, Path], tmp_path: Path, learning_seed: int, record_property
) -> None:
    summary = distill(_config(files, tmp_path / "run", seed=learning_seed))
    record_property("teacher_agreement", summary["teacher_agreement"])
    record_property("untrained_agreement", summary["untrained_agreement"])
    # Measured over seeds 0-2 and three float paths: 0.889-0.965 (docs/test-margins.md).
    assert summary["teacher_agreement"] >= 0.75
    assert summary["teacher_agreement"] > summary["untrained_agreement"] + 0.3
    assert summary["history"][-1]["teacher_agreement"] >= summary["history"][0]["teacher_agreement"] - 0.02
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert "Loss/Distill" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]


def test_default_student_is_at_most_ten_percent_of_a_256x256_teacher() -> None:
    teacher = count_params(build_network(TEACHER))
    student = count_params(build_network(NetConfig(hidden=DistillConfig().hidden)))
    assert student <= 0.10 * teacher


def test_cli_writes_a_loadable_student(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "distilled"
    argv = [
        *("--teacher", str(files["teacher"]), "--dataset", str(files["dataset"]), "--out", str(out)),
        *("--hidden", "16,16", "--steps", "200", "--eval-every", "100", "--no-tensorboard", "--no-progress"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "params ÷ teacher" in printed and "student.safetensors" in printed
    model, config, info = load_checkpoint(out / "student.safetensors")
    assert config.hidden == (16, 16)
    assert count_params(model) == info["student_params"]
    assert info["teacher"] == str(files["teacher"])
    assert info["teacher_sha256"] == file_sha256(files["teacher"])
    assert info["teacher_params"] == count_params(build_network(TEACHER))
    for key in ("teacher_eval", "eval", "return_ratio", "param_ratio"):
        assert key in info
    assert (out / "config.json").is_file() and (out / "summary.json").is_file()
    assert model(torch.zeros(2, 6)).shape == (2, 3)


def test_missing_teacher_exits_2_with_a_readable_message(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "nope.safetensors"
    code = main(["--teacher", str(missing), "--dataset", str(files["dataset"]), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: teacher:" in err and "no such checkpoint" in err and str(missing) in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are checked


def test_corrupt_teacher_and_bad_dataset_exit_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    assert (
        main(["--teacher", str(corrupt), "--dataset", str(files["dataset"]), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err

    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.zeros((3, 6), np.float32))  # most keys missing
    assert (
        main(["--teacher", str(files["teacher"]), "--dataset", str(bad), "--out", str(tmp_path / "o")]) == 2
    )
    assert "missing key" in capsys.readouterr().err


def test_teacher_for_another_observation_size_is_refused(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cnn = NetConfig(kind="cnn", obs_dim=9, hidden=(8,))
    image_teacher = save_checkpoint(tmp_path / "img.safetensors", build_network(cnn), cnn)
    assert (
        main(
            [
                "--teacher",
                str(image_teacher),
                "--dataset",
                str(files["dataset"]),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "teacher takes 9 inputs" in capsys.readouterr().err
