"""``train.dqn --env``: Double DQN on a Gymnasium task (NatureCNN on an Atari game's uint8 frames), with the
greedy policy's return recorded every ``--eval-every`` transitions. Runs are a few hundred transitions: what
the loop records and saves is checked, not how well it learns
(docs/contracts.md#tests-that-hold-on-every-host)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from train.dqn import main
from train.dqn_task import load_q_network, q_network

SHORT = ["--learning-starts", "64", "--batch-size", "16", "--buffer-size", "2000", "--num-envs", "4"]


@pytest.mark.parametrize("per", [False, True])
def test_a_cartpole_run_records_its_evaluations_and_training_episodes(
    per: bool, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "dqn"
    argv = ["--env", "CartPole-v1", "--steps", "600", "--eval-every", "300", "--eval-episodes", "3"]
    assert main([*argv, *SHORT, "--out", str(out), *(["--per"] if per else [])]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per"] is per and summary["env"] == "CartPole-v1" and summary["transitions"] >= 600
    assert summary["evaluations"][0]["step"] >= 300 and len(summary["evaluations"]) == 2
    assert all(e["episodes"] == 3 and e["ci95"][0] <= e["mean_return"] for e in summary["evaluations"])
    steps = [s for s, _ in summary["train_episodes"]]
    assert steps == sorted(steps) and all(r >= 1 for _, r in summary["train_episodes"])  # CartPole: +1 a step
    assert summary["gradient_steps"] > 0 and "best greedy return" in capsys.readouterr().out
    model = load_q_network(out)
    assert isinstance(model.fc0, nn.Linear) and model.out.out_features == 2


def test_an_atari_run_trains_nature_cnn_on_uint8_frames(tmp_path: Path) -> None:
    pytest.importorskip("ale_py", reason="ale-py is in the zoo extra (make setup installs it)")
    out = tmp_path / "breakout"
    argv = ["--env", "ALE/Breakout-v5", "--steps", "200", "--eval-every", "200", "--eval-episodes", "2"]
    assert main([*argv, *SHORT, "--out", str(out), "--per"]) == 0
    model = load_q_network(out)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [32, 64, 64]
    assert model.fc0.in_features == 3136 and model.out.out_features == 4
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.inference_mode():
        assert model(frames).shape == (3, 4)  # scales the frames inside
    assert json.loads((out / "q_network.json").read_text())["obs_shape"] == [4, 84, 84]


def test_q_network_of_a_vector_task_is_an_mlp() -> None:
    model = q_network((6,), 3, (32, 16))
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model(torch.from_numpy(np.zeros((2, 6), np.float32))).shape == (2, 3)


def test_continuous_actions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DQN needs discrete actions"):
        main(["--env", "Pendulum-v1", "--steps", "10", "--out", str(tmp_path / "x")])


def test_the_comparison_plots_both_runs_and_refuses_a_folder_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from train.dqn_compare import main as compare
    from train.dqn_compare import moving_mean

    np.testing.assert_allclose(moving_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])
    folders = []
    for per in (False, True):
        out = tmp_path / f"run-{per}"
        argv = ["--env", "CartPole-v1", "--steps", "300", "--eval-every", "150", "--eval-episodes", "2"]
        assert main([*argv, *SHORT, "--out", str(out), *(["--per"] if per else [])]) == 0
        folders.append(str(out))
    png = tmp_path / "curves.png"
    assert compare([*folders, "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "uniform replay: " in printed and "prioritized replay: " in printed
    assert compare([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a finished train.dqn run" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
