"""Collection produces exactly the asked episodes, each faithful to the env tables and its policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridworld.core import GOAL_REWARD, STEP_REWARD, build_model, states_from_vector_obs
from gridworld.env import ENV_ID
from gridworld.oracle import Oracle, return_for_distance
from train.collect import POLICIES, SOURCES, CollectConfig, build_parser, collect, main
from train.dataset import Dataset, load_dataset, metadata_path
from train.viz import main as viz_main

REPO = Path(__file__).resolve().parents[2]
MODEL = build_model("default", "vector")
ORACLE = Oracle(MODEL)


def tiny(policy: str = "random", **overrides: object) -> CollectConfig:
    """A 7-episode budget: enough for a few ends of each kind, fast enough to run for every policy."""
    kwargs: dict = {"episodes": 7, "num_envs": 3, "policy": policy, "seed": 1, "quiet": True, "plots": False}
    kwargs.update(overrides)
    return CollectConfig(**kwargs)


@pytest.fixture(scope="module", params=POLICIES)
def collected(request: pytest.FixtureRequest) -> tuple[str, Dataset]:
    return request.param, collect(tiny(request.param))


def episode_bounds(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """First and last transition index of every episode (episodes are contiguous blocks)."""
    ids = dataset.episode_ids
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:] - 1, len(ids) - 1]
    return starts, ends


def test_exactly_the_asked_episodes_with_contiguous_ids(collected: tuple[str, Dataset]) -> None:
    _, data = collected
    assert data.n_episodes == 7
    # ids 0..6, each episode one block, blocks in id order
    assert data.episode_ids[0] == 0 and set(np.diff(data.episode_ids).tolist()) <= {0, 1}
    np.testing.assert_array_equal(np.unique(data.episode_ids), np.arange(7))
    assert data.metadata["episodes"] == 7 and data.metadata["transitions"] == len(data)


def test_every_episode_ends_with_exactly_one_flag_on_its_last_step(collected: tuple[str, Dataset]) -> None:
    _, data = collected
    starts, ends = episode_bounds(data)
    last = np.zeros(len(data), dtype=bool)
    last[ends] = True
    assert not (data.terminals & data.timeouts).any()
    np.testing.assert_array_equal(data.terminals | data.timeouts, last)
    lengths = ends - starts + 1
    # A timeout is exactly a 100-step episode that never reached the goal; nothing runs longer.
    assert lengths.max() <= 100
    np.testing.assert_array_equal(data.timeouts[ends], ~data.terminals[ends] & (lengths == 100))


def test_next_observations_chain_inside_episodes(collected: tuple[str, Dataset]) -> None:
    _, data = collected
    same_episode = data.episode_ids[1:] == data.episode_ids[:-1]
    np.testing.assert_array_equal(
        data.next_observations[:-1][same_episode], data.observations[1:][same_episode]
    )


def test_transitions_follow_the_env_tables(collected: tuple[str, Dataset]) -> None:
    _, data = collected
    states = states_from_vector_obs(MODEL, data.observations)
    next_states = states_from_vector_obs(MODEL, data.next_observations)
    np.testing.assert_array_equal(MODEL.observations[states], data.observations)
    np.testing.assert_array_equal(MODEL.next_state[states, data.actions], next_states)
    np.testing.assert_array_equal(data.rewards, MODEL.arrive_reward[next_states].astype(np.float32))
    assert set(np.unique(data.rewards).tolist()) <= {np.float32(STEP_REWARD), np.float32(GOAL_REWARD)}
    np.testing.assert_array_equal(data.terminals, MODEL.is_terminal[next_states])
    starts, _ = episode_bounds(data)
    assert np.isin(states[starts], MODEL.start_states).all()
    assert not MODEL.is_terminal[states].any()  # no transition starts on the goal


def test_dtypes_follow_the_contract(collected: tuple[str, Dataset]) -> None:
    _, data = collected
    assert data.observations.dtype == np.float32 and data.observations.shape[1:] == (6,)
    assert data.actions.dtype == np.int64 and data.rewards.dtype == np.float32
    assert data.terminals.dtype == bool and data.timeouts.dtype == bool and data.episode_ids.dtype == np.int64


def test_metadata_describes_the_dataset(collected: tuple[str, Dataset]) -> None:
    policy, data = collected
    meta = json.loads(json.dumps(data.metadata))  # plain JSON, nothing numpy-typed
    returns = data.episode_returns()
    assert meta["policy"] == policy and meta["seed"] == 1 and meta["env_id"] == ENV_ID
    assert meta["env_kwargs"] == {
        "layout": "default",
        "layout_seed": 0,
        "obs_mode": "vector",
        "max_steps": 100,
    }
    assert meta["obs_mode"] == "vector" and meta["obs_shape"] == [6]
    assert meta["mean_return"] == pytest.approx(returns.mean())
    assert meta["min_return"] == pytest.approx(returns.min()) and meta["max_return"] == pytest.approx(
        returns.max()
    )
    assert meta["mean_length"] == pytest.approx(len(data) / 7)
    assert meta["success_rate"] == pytest.approx(data.terminals.sum() / 7)
    assert meta["config"]["episodes"] == 7 and meta["config"]["policy"] == policy
    assert sum(s["episodes"] for s in meta["per_policy"].values()) == 7
    assert sum(s["transitions"] for s in meta["per_policy"].values()) == len(data)
    assert meta["created"].endswith("Z") and meta["neuroquant_version"]
    if policy == "mixed":
        per_episode = meta["policy_per_episode"]
        assert len(per_episode) == 7 and set(per_episode) <= set(SOURCES)
        assert {s: per_episode.count(s) for s in set(per_episode)} == {
            s: v["episodes"] for s, v in meta["per_policy"].items()
        }
    else:
        assert list(meta["per_policy"]) == [policy]


def optimal_returns(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(episode returns, oracle return from each episode's start state)."""
    starts, _ = episode_bounds(data)
    start_states = states_from_vector_obs(MODEL, data.observations[starts])
    return data.episode_returns(), return_for_distance(ORACLE.distance[start_states])


def test_oracle_episodes_are_optimal() -> None:
    data = collect(tiny("oracle", episodes=40, num_envs=8))
    returns, best = optimal_returns(data)
    np.testing.assert_allclose(returns, best, atol=1e-4)
    assert data.metadata["success_rate"] == 1.0


def test_epsilon_zero_is_the_oracle_and_random_is_not() -> None:
    returns, best = optimal_returns(collect(tiny("epsilon-oracle", epsilon=0.0, episodes=20)))
    np.testing.assert_allclose(returns, best, atol=1e-4)
    returns, best = optimal_returns(collect(tiny("random", episodes=20)))
    assert (returns <= best + 1e-4).all() and (returns < best - 1e-4).any()


def test_mixed_oracle_episodes_are_optimal_and_sources_follow_the_mix() -> None:
    data = collect(tiny("mixed", episodes=60, num_envs=16))
    returns, best = optimal_returns(data)
    sources = np.array(data.metadata["policy_per_episode"])
    assert set(sources.tolist()) == set(SOURCES)  # 60 draws at 1/3 each: every source shows up
    np.testing.assert_allclose(returns[sources == "oracle"], best[sources == "oracle"], atol=1e-4)
    only_oracle = collect(tiny("mixed", mix=(0, 0, 1)))
    assert only_oracle.metadata["policy_per_episode"] == ["oracle"] * 7
    assert only_oracle.metadata["mix"] == {"random": 0.0, "epsilon-oracle": 0.0, "oracle": 1.0}


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_arrays_different_seed_different(policy: str) -> None:
    first, again = collect(tiny(policy)), collect(tiny(policy))
    for key, value in first.arrays().items():
        assert value.tobytes() == getattr(again, key).tobytes(), key
    other = collect(tiny(policy, seed=2))
    assert any(
        value.shape != getattr(other, key).shape or not np.array_equal(value, getattr(other, key))
        for key, value in first.arrays().items()
    )


@pytest.mark.parametrize("num_envs", [1, 64])
def test_env_count_never_adds_episodes(num_envs: int) -> None:
    data = collect(tiny("random", episodes=5, num_envs=num_envs))
    assert data.n_episodes == 5
    assert data.metadata["config"]["num_envs"] == num_envs


@pytest.mark.parametrize("policy", ["oracle", "mixed"])
def test_image_mode_matches_the_vector_run_state_for_state(policy: str) -> None:
    """Policies act on states, so the same seed gives the same episodes in both observation modes."""
    vector = collect(tiny(policy))
    image = collect(tiny(policy, obs_mode="image"))
    assert image.observations.dtype == np.int8 and image.observations.shape[1:] == (3, 3)
    assert image.metadata["obs_mode"] == "image" and image.metadata["env_kwargs"]["obs_mode"] == "image"
    for key in ("actions", "rewards", "terminals", "timeouts", "episode_ids"):
        np.testing.assert_array_equal(getattr(image, key), getattr(vector, key), err_msg=key)
    image_model = build_model("default", "image")
    states = states_from_vector_obs(MODEL, vector.observations)
    next_states = states_from_vector_obs(MODEL, vector.next_observations)
    np.testing.assert_array_equal(image.observations, image_model.observations[states])
    np.testing.assert_array_equal(image.next_observations, image_model.observations[next_states])


def test_procedural_layout_is_recorded_and_rebuildable() -> None:
    data = collect(tiny("oracle", layout="procedural", layout_seed=3))
    kwargs = data.metadata["env_kwargs"]
    assert kwargs["layout"] == "procedural" and kwargs["layout_seed"] == 3
    model = build_model(kwargs["layout"], kwargs["obs_mode"], kwargs["layout_seed"])
    states = states_from_vector_obs(model, data.observations)
    np.testing.assert_array_equal(
        model.next_state[states, data.actions], states_from_vector_obs(model, data.next_observations)
    )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"episodes": 0}, "--episodes"),
        ({"episodes": -3}, "--episodes"),
        ({"policy": "greedy"}, "unknown --policy"),
        ({"epsilon": 1.5}, "--epsilon"),
        ({"mix": (1.0, 2.0)}, "--mix takes 3"),
        ({"mix": (-1.0, 1.0, 1.0)}, "--mix weights"),
        ({"mix": (0.0, 0.0, 0.0)}, "--mix weights"),
        ({"mix": "a,b,c"}, "--mix takes three numbers"),
        ({"num_envs": 0}, "--num-envs"),
        ({"obs_mode": "pixels"}, "--obs-mode"),
        ({"out": "data/buffer.csv"}, ".npz"),
        ({"layout": "maze"}, "unknown layout"),
    ],
)
def test_bad_config_is_refused(overrides: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        tiny(**overrides)
    assert fragment in str(info.value)


def test_mix_is_normalised() -> None:
    assert tiny("mixed", mix="2,1,1").mix == (0.5, 0.25, 0.25)
    assert sum(tiny("mixed", mix=(0.34, 0.33, 0.33)).mix) == pytest.approx(1.0)


def test_help_explains_every_flag() -> None:
    text = " ".join(build_parser().format_help().split())
    for flag in ("--episodes", "--policy", "--seed", "--out", "--epsilon", "--mix", "--num-envs", "--layout",
                 "--layout-seed", "--obs-mode", "--no-plots", "--quiet"):  # fmt: skip
        assert flag in text
    assert "exactly" in text and "uniform action with probability" in text  # the field docstrings


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--episodes", "0"], "--episodes must be"),
        (["--episodes", "ten"], "invalid int value"),
        (["--policy", "greedy"], "invalid choice"),
        (["--mix", "0.5,0.5"], "--mix takes 3 weights"),
        (["--mix", "1,x,1"], "--mix takes three numbers"),
        (["--epsilon", "2"], "--epsilon must be"),
        (["--out", "buffer.json"], ".npz"),
    ],
)
def test_bad_cli_argument_exits_2_and_writes_nothing(
    argv: list[str],
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is relative: nothing may appear here either
    out = tmp_path / "data" / "buffer.npz"
    with pytest.raises(SystemExit) as info:
        main(["--out", str(out), "--quiet", *argv] if "--out" not in argv else ["--quiet", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "error:" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_end_to_end_writes_dataset_metadata_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "data" / "buffer.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "train.collect", "--episodes", "6", "--num-envs", "4", "--policy", "mixed"]
    result = subprocess.run(
        [*cmd, "--seed", "3", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Collected 6 episodes" in result.stdout and str(out) in result.stdout
    data = load_dataset(out)
    assert data.n_episodes == 6 and data.metadata["policy"] == "mixed"
    assert json.loads(metadata_path(out).read_text())["seed"] == 3
    assert "policy: mixed" in metadata_path(out, ".txt").read_text()
    plots = out.parent / "plots" / "buffer"
    names = {p.name for p in plots.glob("*.png")}
    assert names == {
        "reward_histogram.png",
        "action_distribution.png",
        "episode_returns.png",
        "tsne_observations.png",
        "summary.png",
    }
    for png in plots.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    # the same run through the function API gives byte-identical arrays
    same = collect(CollectConfig(episodes=6, num_envs=4, policy="mixed", seed=3, quiet=True))
    for key, value in same.arrays().items():
        assert value.tobytes() == getattr(data, key).tobytes(), key
    # train.viz redraws them elsewhere from the saved file alone
    assert viz_main([str(out), "--out", str(tmp_path / "again")]) == 0
    assert {p.name for p in (tmp_path / "again").glob("*.png")} == names
