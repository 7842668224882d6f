"""Collect an offline replay buffer from the gridworld (docs/contracts.md#the-dataset).

``python -m train.collect --episodes 100 --policy mixed --seed 0 --out data/replay_buffer.npz``

Episodes run in a :class:`gridworld.vector.GridWorldVectorEnv` in same-step autoreset mode, so the true
last observation of an episode comes back in ``infos["final_obs"]`` in the very step that ends it and
``next_observations`` never holds a reset observation. Every policy acts on the env's *state index*
through the BFS oracle, which is why the oracle policies also work with the partially observed ``image``
observations. The ``mixed`` policy draws a source (random / epsilon-oracle / oracle) per episode, like
D4RL's random/medium/expert buffers blended into one; the source of every episode goes in the metadata
because the array contract has no room for it.

All randomness flows from one ``np.random.default_rng(seed)`` (the env seeds are drawn from it), so the
same configuration always produces byte-identical arrays.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

from common.cli import dataclass_parser, parse_dataclass
from gridworld.core import ACTION_NAMES, MAX_STEPS, N_ACTIONS, OBS_MODES
from gridworld.env import ENV_ID
from gridworld.layouts import make_layout
from gridworld.oracle import Oracle
from gridworld.vector import GridWorldVectorEnv
from train.dataset import Dataset, metadata_path, save_dataset

#: Behaviour policies an episode can come from, in the order ``--mix`` weights them.
SOURCES = ("random", "epsilon-oracle", "oracle")
#: What ``--policy`` accepts: one source for every episode, or ``mixed`` (a source drawn per episode).
POLICIES = (*SOURCES, "mixed")


@dataclass
class CollectConfig:
    """How a replay buffer is collected; its JSON is stored in the dataset metadata under ``config``."""

    episodes: int = 100
    """Number of complete episodes to collect, exactly (an env whose share is done stops contributing)."""
    policy: str = "mixed"
    """Behaviour policy: random (uniform actions), oracle (BFS-optimal), epsilon-oracle (oracle, but a
    uniform action with probability --epsilon) or mixed (each episode draws one of the three, see --mix)."""
    seed: int = 0
    """Seed of the single random generator behind env starts and actions: same seed, same arrays."""
    out: str = "data/replay_buffer.npz"
    """Where to write the .npz; the metadata goes beside it and the plots to <folder>/plots/<stem>/."""
    epsilon: float = 0.3
    """Probability of a uniform random action in epsilon-oracle episodes (also inside mixed)."""
    mix: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    """Weights of random,epsilon-oracle,oracle episodes for --policy mixed, e.g. 0.34,0.33,0.33
    (normalised to sum to 1)."""
    num_envs: int = 64
    """Envs stepped together (capped at --episodes); changes which episodes are drawn, not their
    distribution."""
    layout: str = "default"
    """Grid layout: default (the fixed map) or procedural (a solvable random map from --layout-seed)."""
    layout_seed: int = 0
    """Seed of the procedural layout (ignored by the default layout)."""
    obs_mode: str = "vector"
    """Observation stored in the dataset: vector (6 floats, fully observed) or image (3×3 int8 window)."""
    max_steps: int = MAX_STEPS
    """Steps after which an episode is truncated (recorded as a timeout)."""
    plots: bool = True
    """Draw the dataset plots after saving (--no-plots skips them; `python -m train.viz` redraws them)."""
    quiet: bool = False
    """No progress bar and no summary (the bar is also hidden when stderr is not a terminal)."""

    def __post_init__(self) -> None:
        """Refuse a bad configuration before anything runs, with a message that says what to pass."""
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"--episodes must be a whole number ≥ 1, got {self.episodes!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown --policy {self.policy!r}; use one of {', '.join(POLICIES)}")
        if not (isinstance(self.epsilon, int | float) and 0.0 <= self.epsilon <= 1.0):
            raise ValueError(f"--epsilon must be a probability in [0, 1], got {self.epsilon!r}")
        self.epsilon = float(self.epsilon)
        self.mix = normalise_mix(self.mix)
        if self.num_envs < 1:
            raise ValueError(f"--num-envs must be ≥ 1, got {self.num_envs}")
        if self.max_steps < 1:
            raise ValueError(f"--max-steps must be ≥ 1, got {self.max_steps}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"unknown --obs-mode {self.obs_mode!r}; use one of {', '.join(OBS_MODES)}")
        if Path(self.out).suffix != ".npz":
            raise ValueError(f"--out must name a .npz file, got {self.out!r}")
        make_layout(self.layout, self.layout_seed)  # raises LayoutError (a ValueError) naming the options

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The kwargs that rebuild the env (``gym.make(ENV_ID, **env_kwargs)``, ``train.evaluate``)."""
        return {
            "layout": self.layout,
            "layout_seed": self.layout_seed,
            "obs_mode": self.obs_mode,
            "max_steps": self.max_steps,
        }


def normalise_mix(mix: str | Sequence[float]) -> tuple[float, float, float]:
    """Parse ``"a,b,c"`` (or a sequence) into source weights summing to 1; ValueError if it cannot."""
    names = ",".join(SOURCES)
    if isinstance(mix, str):
        try:
            weights = [float(part) for part in mix.split(",")]
        except ValueError:
            raise ValueError(
                f"--mix takes three numbers for {names}, e.g. 0.34,0.33,0.33; got {mix!r}"
            ) from None
    else:
        weights = [float(w) for w in mix]
    if len(weights) != len(SOURCES):
        raise ValueError(f"--mix takes {len(SOURCES)} weights ({names}), got {len(weights)}: {mix!r}")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--mix weights must be finite, ≥ 0 and not all 0; got {mix!r}")
    total = sum(weights)
    return (weights[0] / total, weights[1] / total, weights[2] / total)


def collect(config: CollectConfig) -> Dataset:
    """Run the behaviour policy until exactly ``config.episodes`` episodes have ended; nothing is written.

    Transitions are buffered step-major and then regrouped by episode (ids ``0..N-1`` in the order the
    episodes started), so each episode is one contiguous block in time order, as offline RL expects.
    The budget is spent when an episode *starts*, and every started episode runs to its end: stopping at
    the N-th *finished* episode instead would over-represent short (successful) episodes.
    """
    started_at = time.perf_counter()
    n_episodes = config.episodes
    rng = np.random.default_rng(config.seed)
    env = GridWorldVectorEnv(
        min(config.num_envs, n_episodes),
        layout=config.layout,
        obs_mode=config.obs_mode,
        layout_seed=config.layout_seed,
        max_steps=config.max_steps,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    model = env.model
    oracle = Oracle(model)
    n_envs = env.num_envs

    # Source of every episode, by episode id, and the probability of a uniform action under each source.
    if config.policy == "mixed":
        episode_source = rng.choice(len(SOURCES), size=n_episodes, p=np.asarray(config.mix))
    else:
        episode_source = np.full(n_episodes, SOURCES.index(config.policy), dtype=np.int64)
    source_epsilon = np.array([1.0, config.epsilon, 0.0])

    obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
    slot = np.arange(n_envs, dtype=np.int64)  # episode id each env is playing, -1 once its share is done
    started, finished = n_envs, 0
    steps: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc", "id")}
    bar = tqdm(
        total=n_episodes,
        unit="ep",
        desc=f"collect {config.policy}",
        disable=config.quiet or not sys.stderr.isatty(),
    )
    with bar:
        while finished < n_episodes:
            live = slot >= 0
            # Every env draws the same random numbers each step whatever its policy, so one episode's
            # actions never depend on which sources the other envs happen to be running.
            explore = rng.random(n_envs) < source_epsilon[episode_source[np.where(live, slot, 0)]]
            random_actions = rng.integers(N_ACTIONS, size=n_envs)
            actions = np.where(explore, random_actions, oracle.action[env.states])
            next_obs, rewards, terminated, truncated, infos = env.step(actions)
            true_next = next_obs.copy()
            if "final_obs" in infos:
                ended = infos["_final_obs"]
                true_next[ended] = np.stack(infos["final_obs"][ended])
            for key, value in zip(
                steps, (obs, actions, rewards, true_next, terminated, truncated, slot.copy()), strict=True
            ):
                steps[key].append(value)
            obs = next_obs
            done_envs = np.flatnonzero((terminated | truncated) & live)
            for e in done_envs.tolist():
                finished += 1
                if started < n_episodes:
                    slot[e] = started
                    started += 1
                else:
                    slot[e] = -1
            bar.update(len(done_envs))

    ids = np.stack(steps["id"])
    keep = ids >= 0
    order = np.argsort(ids[keep], kind="stable")

    def gather(key: str) -> np.ndarray:
        return np.stack(steps[key])[keep][order]

    terminated, truncated = gather("term"), gather("trunc")
    dataset = Dataset(
        observations=gather("obs"),
        actions=gather("act").astype(np.int64),
        rewards=gather("rew").astype(np.float32),
        next_observations=gather("next"),
        terminals=terminated.astype(bool),
        timeouts=(truncated & ~terminated).astype(bool),
        episode_ids=ids[keep][order].astype(np.int64),
    )
    dataset.metadata = _metadata(config, dataset, episode_source, oracle, time.perf_counter() - started_at)
    return dataset


def _metadata(
    config: CollectConfig, dataset: Dataset, episode_source: np.ndarray, oracle: Oracle, seconds: float
) -> dict[str, Any]:
    """Plain-JSON description of the dataset: statistics, provenance and the env kwargs to rebuild it."""
    returns = dataset.episode_returns()
    lengths = dataset.episode_lengths()
    success = np.bincount(dataset.episode_ids, weights=dataset.terminals, minlength=len(returns)) > 0
    per_policy: dict[str, dict[str, float | int]] = {}
    for index, name in enumerate(SOURCES):
        chosen = episode_source == index
        if chosen.any():
            per_policy[name] = {
                "episodes": int(chosen.sum()),
                "transitions": int(lengths[chosen].sum()),
                "mean_return": float(returns[chosen].mean()),
                "success_rate": float(success[chosen].mean()),
            }
    meta: dict[str, Any] = {
        "episodes": len(returns),
        "transitions": len(dataset),
        "mean_return": float(returns.mean()),
        "min_return": float(returns.min()),
        "max_return": float(returns.max()),
        "std_return": float(returns.std()),
        "mean_length": float(lengths.mean()),
        "success_rate": float(success.mean()),
        "policy": config.policy,
        "epsilon": config.epsilon if config.policy in ("epsilon-oracle", "mixed") else None,
        "mix": dict(zip(SOURCES, config.mix, strict=True)) if config.policy == "mixed" else None,
        "per_policy": per_policy,
        "seed": config.seed,
        "env_id": ENV_ID,
        "env_kwargs": config.env_kwargs,
        "obs_mode": config.obs_mode,
        "obs_shape": list(dataset.observations.shape[1:]),
        "obs_dtype": str(dataset.observations.dtype),
        "n_actions": N_ACTIONS,
        "action_names": list(ACTION_NAMES),
        "oracle_mean_return": float(oracle.returns(config.max_steps).mean()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "collect_seconds": round(seconds, 3),
        "neuroquant_version": _version(),
        "config": json.loads(json.dumps(asdict(config))),
    }
    if config.policy == "mixed":
        meta["policy_per_episode"] = [SOURCES[i] for i in episode_source.tolist()]
    return meta


def _version() -> str:
    try:
        return importlib_metadata.version("neuroquant")
    except importlib_metadata.PackageNotFoundError:
        return "unknown (not installed)"


def summary(dataset: Dataset, out: Path, plot_paths: Sequence[Path], plot_seconds: float | None) -> str:
    """One paragraph for the terminal: what was collected, how good it is, and where the files are."""
    m = dataset.metadata
    kw = m["env_kwargs"]
    text = (
        f"Collected {m['episodes']} episodes ({m['transitions']:,} transitions) with the {m['policy']} policy"
        f" on the {kw['layout']} layout ({m['obs_mode']} observations), seed {m['seed']}, in"
        f" {m['collect_seconds']:.2f} s: mean return {m['mean_return']:.2f} (min {m['min_return']:.2f},"
        f" max {m['max_return']:.2f}; the oracle averages {m['oracle_mean_return']:.2f}), mean length"
        f" {m['mean_length']:.1f} steps, success rate {m['success_rate']:.0%}."
    )
    if len(m["per_policy"]) > 1:
        parts = [
            f"{name} {s['episodes']} ep / mean return {s['mean_return']:.2f}"
            for name, s in m["per_policy"].items()
        ]
        text += f" Sources: {'; '.join(parts)}."
    text += f" Wrote {out}, {metadata_path(out)} and {metadata_path(out, '.txt')}."
    if plot_paths:
        text += f" Plots ({len(plot_paths)}, {plot_seconds:.1f} s) in {plot_paths[0].parent}/."
    return textwrap.fill(text, width=110, break_on_hyphens=False, break_long_words=False)


def _mix_arg(text: str) -> tuple[float, float, float]:
    try:
        return normalise_mix(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """argparse generated from :class:`CollectConfig`, so a new field is a new flag with its own help."""
    return dataclass_parser(
        CollectConfig,
        prog="python -m train.collect",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Example: python -m train.collect --episodes 100 --policy mixed --seed 0 "
        "--out data/replay_buffer.npz",
        overrides={
            "policy": {"choices": POLICIES},
            "obs_mode": {"choices": OBS_MODES},
            "mix": {"type": _mix_arg, "metavar": "R,E,O"},
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: collect, save atomically, plot, summarise. Bad arguments exit 2 before any file is written."""
    config = parse_dataclass(
        CollectConfig, build_parser(), list(argv) if argv is not None else None, outputs={"out": "file"}
    )
    dataset = collect(config)
    out = Path(config.out)
    save_dataset(out, dataset)
    plot_paths: list[Path] = []
    plot_seconds: float | None = None
    if config.plots:
        from train.viz import default_plot_dir, draw_plots  # matplotlib/sklearn only when plotting

        t0 = time.perf_counter()
        plot_paths = draw_plots(dataset, default_plot_dir(out))
        plot_seconds = time.perf_counter() - t0
    if not config.quiet:
        print(summary(dataset, out, plot_paths, plot_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
