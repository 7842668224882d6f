"""train.ceiling: the data ceiling respects the dataset's actions, tabular CQL solves CQL's loss (and shows
its pull towards frequent actions), and the CLI reports a trained network beside both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridworld.core import FORWARD, N_ACTIONS, build_model
from gridworld.oracle import Oracle
from train.ceiling import (
    CeilingConfig,
    Transitions,
    analyse,
    ceiling_policy,
    evaluate_actions,
    main,
    tabular_cql,
    transitions,
)
from train.checkpoint import load_checkpoint
from train.collect import CollectConfig, collect
from train.dataset import DatasetError, load_dataset, save_dataset, split_episodes
from train.evaluate import greedy_policy
from train.trainer import TrainConfig, format_summary, train

ROOT = Path(__file__).resolve().parents[2]


def every_pair(model, extra: tuple[tuple[int, int], ...] = ()) -> Transitions:
    """One transition per (reachable state, action), plus ``extra`` copies: a dataset with full coverage."""
    oracle = Oracle(model)
    states = np.flatnonzero(oracle.distance > 0)
    s = np.concatenate([np.repeat(states, N_ACTIONS), [p[0] for p in extra]]).astype(np.int64)
    a = np.concatenate([np.tile(np.arange(N_ACTIONS), len(states)), [p[1] for p in extra]]).astype(np.int64)
    s2 = model.next_state[s, a]
    return Transitions(s, a, model.arrive_reward[s2], s2, (~model.is_terminal[s2]).astype(np.float64))


def test_ceiling_is_the_oracle_with_every_action_shown() -> None:
    model = build_model()
    shown = np.ones((model.n_states, N_ACTIONS), dtype=bool)
    assert evaluate_actions(model, ceiling_policy(model, shown)).oracle_ratio == pytest.approx(1.0)


def test_ceiling_uses_only_the_actions_a_visited_state_shows() -> None:
    """Show the oracle's actions everywhere except in one state whose optimal action is forward, which shows
    only a turn: the ceiling policy turns there, and its return drops below the oracle's."""
    model = build_model()
    oracle = Oracle(model)
    shown = oracle.optimal_mask.copy()
    on_path = np.flatnonzero((oracle.distance > 3) & (oracle.action == FORWARD))
    state = int(on_path[0])
    shown[state] = [True, False, False]  # turn left only
    policy = ceiling_policy(model, shown)
    assert policy[state] == 0
    visited = shown.any(axis=1)
    assert shown[np.flatnonzero(visited), policy[visited]].all()
    ratio = evaluate_actions(model, policy).oracle_ratio
    assert ratio < 1.0
    # A cell whose four headings show only "turn right" is a trap: the policy spins there, as shown.
    spin = shown.copy()
    cell = model.state_index(*model.decode(state)[:2], 0) + np.arange(4)
    spin[cell] = [False, False, True]
    trapped = ceiling_policy(model, spin)
    assert (trapped[cell] == 2).all()
    assert evaluate_actions(model, trapped).oracle_ratio < ratio
    # Unvisited states (no action shown) may take any action: with nothing shown anywhere, the oracle's.
    nothing = np.zeros_like(shown)
    assert evaluate_actions(model, ceiling_policy(model, nothing)).oracle_ratio == pytest.approx(1.0)


def test_tabular_cql_without_penalty_on_full_coverage_is_optimal() -> None:
    model = build_model()
    q = tabular_cql(model, every_pair(model), alpha=0.0, gamma=0.95, iterations=1500)
    assert evaluate_actions(model, q.argmax(axis=1)).oracle_ratio == pytest.approx(1.0)


def test_tabular_cql_penalty_pulls_towards_the_frequent_action() -> None:
    """CQL's fixed point shifts Q(s, a) by ~α·(1 − softmax/frequency): with one action shown 40 times more
    often than the optimal one, α = 1 ranks it first and α = 0 does not."""
    model = build_model()
    oracle = Oracle(model)
    state = int(np.flatnonzero((oracle.distance > 3) & (oracle.action == FORWARD))[0])
    data = every_pair(model, extra=((state, 0),) * 40)
    assert tabular_cql(model, data, alpha=0.0, gamma=0.95, iterations=1500)[state].argmax() == FORWARD
    assert tabular_cql(model, data, alpha=1.0, gamma=0.95, iterations=1500)[state].argmax() == 0


def quick_run(dataset: Path, out: Path, steps: int, **config) -> dict:
    """A short `python -m train` run (its summary; the tests read its last.safetensors)."""
    return train(
        TrainConfig(
            dataset=str(dataset),
            out=str(out),
            steps=steps,
            eval_every=steps,
            progress=False,
            tensorboard=False,
            **config,
        )
    ).summary


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ceiling") / "mixed.npz"
    save_dataset(out, collect(CollectConfig(episodes=40, policy="mixed", seed=0, out=str(out), quiet=True)))
    return out


def test_analyse_reports_a_checkpoints_split_and_its_unshown_actions(
    small_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    summary = quick_run(small_dataset, run, steps=300, hidden=(32, 32), seed=3, holdout=0.2, alpha=0.2)
    config, rows = analyse(
        CeilingConfig(dataset=str(small_dataset), checkpoint=str(run / "last.safetensors"), iterations=300)
    )
    assert (config.seeds, config.holdout, config.alpha) == ((3,), 0.2, (0.2,))
    (row,) = rows
    assert 0 < row["visited"] <= row["states"]
    # A network that takes only shown actions where the data has been cannot beat the ceiling.
    assert row["unshown"] > 0 or row["network"] <= row["ceiling"] + 1e-9
    # The unshown count, state by state: visited, and the network's greedy action is not in the split.
    model = build_model()
    network, _, _ = load_checkpoint(run / "last.safetensors")
    dataset = load_dataset(small_dataset)
    data = transitions(model, dataset, split_episodes(dataset.episode_ids, 0.2, 3)[0])
    shown = {(int(s), int(a)) for s, a in zip(data.states, data.actions, strict=True)}
    greedy = greedy_policy(network)(np.array(model.observations))
    visited = {s for s, _ in shown}
    assert row["unshown"] == sum((s, int(greedy[s])) not in shown for s in visited)
    assert row["visited"] == len(visited)
    assert set(row) >= {"ceiling", "cql_0.2", "network", "unshown"}
    # The trainer's summary carries the same ceiling for the split it trained on.
    assert summary["data_ceiling"] == pytest.approx(row["ceiling"])
    assert "the training split allows" in format_summary(summary)


def test_cli_prints_the_table(small_dataset: Path, capsys) -> None:
    assert (
        main(["--dataset", str(small_dataset), "--seeds", "0,1", "--alpha", "0,0.1", "--iterations", "200"])
        == 0
    )
    out = capsys.readouterr().out
    assert "ceiling" in out and "tabular CQL α=0.1" in out and "tabular CQL α=0 " in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("0 ", "1 "))]) == 2


def test_image_observations_and_foreign_checkpoints_are_refused(small_dataset: Path, tmp_path: Path) -> None:
    image = tmp_path / "image.npz"
    save_dataset(image, collect(CollectConfig(episodes=5, obs_mode="image", out=str(image), quiet=True)))
    with pytest.raises(DatasetError, match="do not identify the state"):
        analyse(CeilingConfig(dataset=str(image), iterations=10))
    done = subprocess.run(
        [sys.executable, "-m", "train.ceiling", "--dataset", str(image)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "error:" in done.stderr and "--obs-mode vector" in done.stderr
    assert not done.stdout
    # A checkpoint trained on another dataset: one readable error, exit 2.
    other = tmp_path / "other"
    assert quick_run(image, other, steps=5, hidden=(8,))["data_ceiling"] is None
    code = main(["--dataset", str(small_dataset), "--checkpoint", str(other / "last.safetensors")])
    assert code == 2
