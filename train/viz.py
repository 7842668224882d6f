"""Plots of a replay buffer: what the behaviour policy did and which states it covered.

``python -m train.viz data/replay_buffer.npz [--out DIR]`` (default ``<npz folder>/plots/<npz stem>/``).

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so
plotting needs no display, leaves no global state behind and is safe to call from a library. Each plot
is drawn by one function on a given ``Axes``, which lets the 2×2 summary reuse the very same drawings
(and the one t-SNE embedding, the only expensive step).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, FigureBase

from common.cli import ExampleFormatter
from gridworld.core import (
    ACTION_NAMES,
    GOAL_REWARD,
    N_ACTIONS,
    STEP_REWARD,
    GridModel,
    build_model,
    states_from_vector_obs,
)
from gridworld.oracle import Oracle
from train.dataset import Dataset, DatasetError, load_dataset

DPI = 120
#: Most points the t-SNE embeds (distinct observations beyond this are subsampled with a fixed seed).
TSNE_MAX_POINTS = 1500
TSNE_SEED = 0
#: Gradient steps of the t-SNE: a few hundred distinct states settle well before sklearn's default 1000.
TSNE_ITERATIONS = 500
#: One colour per behaviour source, shared by every plot; other policy names fall back to grey.
SOURCE_COLOURS = {"random": "tab:red", "epsilon-oracle": "tab:orange", "oracle": "tab:green"}
ACTION_COLOURS = ("tab:blue", "tab:gray", "tab:purple")


def default_plot_dir(npz_path: str | Path) -> Path:
    """``data/replay_buffer.npz`` → ``data/plots/replay_buffer/``: several datasets can share a folder."""
    npz_path = Path(npz_path)
    return npz_path.parent / "plots" / npz_path.stem


def episode_sources(dataset: Dataset) -> list[str]:
    """Behaviour policy of every episode (ordered by episode id) from the metadata, when it says so."""
    n = dataset.n_episodes
    per_episode = dataset.metadata.get("policy_per_episode")
    if isinstance(per_episode, list) and len(per_episode) == n:
        return [str(s) for s in per_episode]
    return [str(dataset.metadata.get("policy", "unknown"))] * n


def _colour(source: str) -> str:
    return SOURCE_COLOURS.get(source, "tab:gray")


def _ordered(sources: Sequence[str]) -> list[str]:
    """Distinct sources, known ones in the canonical random → oracle order, so legends never reshuffle."""
    known = [s for s in SOURCE_COLOURS if s in sources]
    return known + sorted(set(sources) - set(known))


def plot_reward_histogram(ax_returns: Axes, ax_steps: Axes, dataset: Dataset) -> None:
    """Episode returns stacked by source, and beside them how many steps paid each reward value.

    The per-step counts (log scale) show how rare the goal reward is in the buffer, which is what makes
    offline RL on a random buffer hard; the return histogram shows how the sources separate.
    """
    returns = dataset.episode_returns()
    sources = np.array(episode_sources(dataset))
    names = _ordered(sources.tolist())
    lo, hi = float(returns.min()), float(returns.max())
    bins = np.linspace(lo - 0.25, hi + 0.25, 31) if hi > lo else 10
    ax_returns.hist(
        [returns[sources == s] for s in names],
        bins=bins,
        stacked=True,
        color=[_colour(s) for s in names],
        label=[f"{s} ({int((sources == s).sum())})" for s in names],
        edgecolor="white",
        linewidth=0.5,
    )
    ax_returns.set_title(f"Episode returns ({len(returns)} episodes)")
    ax_returns.set_xlabel("episode return")
    ax_returns.set_ylabel("episodes")
    ax_returns.legend(fontsize=8, frameon=False)

    values, counts = np.unique(np.round(dataset.rewards.astype(np.float64), 4), return_counts=True)
    colours = [
        "tab:green" if v == GOAL_REWARD else "tab:red" if v == STEP_REWARD else "tab:gray" for v in values
    ]
    positions = np.arange(len(values))
    bars = ax_steps.bar(positions, counts, color=colours)
    ax_steps.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=7, padding=1)
    ax_steps.set_xticks(positions, [f"{v:+g}" for v in values])
    ax_steps.set_yscale("log")
    ax_steps.margins(y=0.15)
    ax_steps.set_title("Per-step rewards")
    ax_steps.set_xlabel("reward")
    ax_steps.set_ylabel("transitions (log scale)")


def plot_action_distribution(ax: Axes, dataset: Dataset) -> None:
    """Share of each action, one bar group per source: an oracle turns rarely, a random policy uniformly."""
    sources = np.array(episode_sources(dataset))
    _, inverse = np.unique(dataset.episode_ids, return_inverse=True)
    step_source = sources[inverse]
    names = _ordered(sources.tolist())
    width = 0.8 / len(names)
    x = np.arange(N_ACTIONS)
    for i, name in enumerate(names):
        acts = dataset.actions[step_source == name]
        share = np.bincount(acts, minlength=N_ACTIONS) / max(len(acts), 1)
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, share, width, color=_colour(name), label=name)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in share], fontsize=7, padding=1)
    ax.set_xticks(x, list(ACTION_NAMES))
    ax.set_ylim(0, 1.08)
    ax.set_title(f"Action distribution ({len(dataset):,} transitions)")
    ax.set_xlabel("action")
    ax.set_ylabel("share of the source's actions")
    ax.legend(fontsize=8, frameon=False)


def plot_episode_returns(ax: Axes, dataset: Dataset) -> None:
    """Return of every episode in collection order, coloured by source, with the oracle's mean for scale."""
    returns = dataset.episode_returns()
    sources = np.array(episode_sources(dataset))
    index = np.arange(len(returns))
    for name in _ordered(sources.tolist()):
        chosen = sources == name
        ax.scatter(index[chosen], returns[chosen], s=12, color=_colour(name), label=name)
    oracle_mean = dataset.metadata.get("oracle_mean_return")
    if isinstance(oracle_mean, int | float):
        ax.axhline(oracle_mean, color="black", linestyle="--", linewidth=0.8, label="oracle mean")
    ax.axhline(float(returns.mean()), color="tab:blue", linestyle=":", linewidth=0.8, label="dataset mean")
    ax.set_title("Episode returns in collection order")
    ax.set_xlabel("episode index")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8, frameon=False, loc="best")


def tsne_embedding(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, str, int]:
    """2-D t-SNE of the distinct observations and each point's action label.

    Returns ``(xy, labels, label_kind, n_distinct)``. Duplicates are dropped first because the grid has
    at most 400 states: embedding 10k copies of them would only cost time. The label is the oracle's
    action when the observations identify the state (vector mode and env kwargs in the metadata), else the
    action the dataset took most often from that observation.
    """
    from sklearn.manifold import TSNE  # ~1 s import; only needed here
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    flat = dataset.observations.reshape(len(dataset), -1)
    distinct, inverse = np.unique(flat, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.zeros((len(distinct), N_ACTIONS), dtype=np.int64)
    np.add.at(counts, (inverse, dataset.actions), 1)
    labels, kind = counts.argmax(axis=1), "dataset's majority action"
    model = _env_model(dataset)
    if model is not None and model.obs_mode == "vector" and flat.shape[1] == model.observations.shape[1]:
        labels, kind = Oracle(model).action[states_from_vector_obs(model, distinct)], "oracle's action"
    n_distinct = len(distinct)
    if n_distinct > TSNE_MAX_POINTS:
        keep = np.sort(np.random.default_rng(TSNE_SEED).choice(n_distinct, TSNE_MAX_POINTS, replace=False))
        distinct, labels = distinct[keep], labels[keep]
    points = distinct.astype(np.float32)
    if len(points) < 5:  # t-SNE needs perplexity < n; a handful of points is shown as they are
        xy = np.zeros((len(points), 2))
        xy[:, : min(2, points.shape[1])] = points[:, :2]
        return xy, labels, kind, n_distinct
    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (len(points) - 1) / 3),
        init="pca",
        learning_rate="auto",
        max_iter=TSNE_ITERATIONS,
        random_state=TSNE_SEED,
    )
    # One OpenMP/BLAS thread: on a busy 2-core machine the spinning worker threads made the same
    # 300-point embedding 5-15x slower (measured 9-19 s vs 1.2 s); a few hundred points gain nothing.
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(points)
    return xy, labels, kind, n_distinct


def _env_model(dataset: Dataset) -> GridModel | None:
    """Rebuild the gridworld from the metadata's ``env_kwargs``; None when the metadata does not say."""
    kwargs = dataset.metadata.get("env_kwargs")
    if not isinstance(kwargs, dict):
        return None
    return build_model(
        kwargs.get("layout", "default"), kwargs.get("obs_mode", "vector"), int(kwargs.get("layout_seed", 0))
    )


def plot_tsne(ax: Axes, embedding: tuple[np.ndarray, np.ndarray, str, int]) -> None:
    """Scatter of the embedded observations coloured by action: clusters show how separable the policy is."""
    xy, labels, kind, n_distinct = embedding
    for a, name in enumerate(ACTION_NAMES):
        chosen = labels == a
        if chosen.any():
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=10, color=ACTION_COLOURS[a], label=name, alpha=0.8)
    shown = f"{len(xy)} of {n_distinct}" if len(xy) < n_distinct else f"{n_distinct}"
    ax.set_title(f"t-SNE of {shown} distinct observations")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(title=kind, fontsize=8, title_fontsize=8, frameon=False)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def draw_plots(dataset: Dataset, out_dir: str | Path) -> list[Path]:
    """Write the four dataset plots and a 2×2 summary of them as PNGs into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embedding = tsne_embedding(dataset)

    def reward_panels(fig: FigureBase) -> None:
        ax_returns, ax_steps = fig.subplots(1, 2, width_ratios=(3, 1))
        plot_reward_histogram(ax_returns, ax_steps, dataset)

    drawers: dict[str, tuple[Callable[[FigureBase], None], tuple[float, float]]] = {
        "reward_histogram": (reward_panels, (8.0, 4.8)),
        "action_distribution": (lambda fig: plot_action_distribution(fig.add_subplot(), dataset), (6.4, 4.8)),
        "episode_returns": (lambda fig: plot_episode_returns(fig.add_subplot(), dataset), (6.4, 4.8)),
        "tsne_observations": (lambda fig: plot_tsne(fig.add_subplot(), embedding), (6.4, 4.8)),
    }
    paths = []
    for name, (draw, size) in drawers.items():
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        paths.append(_save(fig, out_dir / f"{name}.png"))
    fig = Figure(figsize=(14.4, 9.6), layout="constrained")
    meta = dataset.metadata
    fig.suptitle(
        f"Dataset: {meta.get('policy', '?')} policy, {dataset.n_episodes} episodes,"
        f" {len(dataset):,} transitions, seed {meta.get('seed', '?')}"
    )
    for panel, (draw, _) in zip(fig.subfigures(2, 2).ravel(), drawers.values(), strict=True):
        draw(panel)
    paths.append(_save(fig, out_dir / "summary.png"))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: redraw the plots of a saved dataset; an unreadable dataset exits 2 with the loader's message."""
    parser = argparse.ArgumentParser(
        prog="python -m train.viz",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m train.viz data/replay_buffer.npz",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("dataset", type=Path, help="replay buffer .npz written by python -m train.collect")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the PNGs (default: <npz folder>/plots/<stem>/)"
    )
    args = parser.parse_args(argv)
    try:
        dataset = load_dataset(args.dataset)
    except DatasetError as err:
        parser.error(str(err))
    out_dir = args.out if args.out is not None else default_plot_dir(args.dataset)
    t0 = time.perf_counter()
    paths = draw_plots(dataset, out_dir)
    names = ", ".join(p.name for p in paths)
    print(f"Wrote {len(paths)} plots to {out_dir}/ in {time.perf_counter() - t0:.1f} s: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
