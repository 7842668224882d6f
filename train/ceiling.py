"""What a dataset allows an offline learner: its return ceiling, and the policy tabular CQL converges to.

    python -m train.ceiling --dataset data/replay_buffer.npz [--seeds 0,1,2,3] [--alpha 0.1] [--holdout 0.1]
    python -m train.ceiling --checkpoint runs/cql/best.safetensors      # and a trained network beside them

An offline learner sees only the actions its dataset shows. Where a state's optimal action never appears,
a conservative learner (CQL pushes unseen actions down) takes the best action it has seen instead, so
"≥ 99 % of the oracle" is only reachable if the data allows it. Two exact numbers per hold-out split:

- **ceiling**: the best exact return of a policy that, in every state the training split visits, picks
  only actions the split shows there (shortest paths over those actions). In states the split never visits
  it takes the oracle's action: there any learner extrapolates, and the bound assumes it does so perfectly.
- **tabular CQL**: CQL's own loss (:meth:`train.algos.cql.CQL.loss`: Huber Double-DQN error plus
  α·(logsumexp Q − Q(s, a_data))) minimised with one free value per (state, action) instead of a network,
  full batch, until the policy stops changing. Unvisited states again take the oracle's action.

The gap between ceiling and tabular CQL is what CQL's objective costs (its bias towards frequent actions);
the gap between tabular CQL and a trained network (``--checkpoint``: the split and settings it was trained
with) is what the network's fit and its extrapolation cost. For the network the table also counts the
visited states where it picks an action its training split never shows there. Needs ``vector``
observations, which identify the state exactly; ``image`` observations do not.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from common.cli import dataclass_parser, parse_dataclass
from common.fileio import file_sha256
from gridworld.core import N_ACTIONS, GridModel, states_from_vector_obs
from gridworld.oracle import Evaluation, Oracle, evaluate_policy
from train.checkpoint import CheckpointError, load_checkpoint
from train.dataset import Dataset, DatasetError, load_dataset, split_episodes
from train.evaluate import env_model_from_metadata, greedy_policy

PROG = "python -m train.ceiling"
#: Adam's learning rate per phase of :func:`tabular_cql` and each phase's share of the iterations.
_SCHEDULE = ((0.05, 0.375), (0.005, 0.375), (0.0005, 0.25))


@dataclass
class CeilingConfig:
    """Which dataset and hold-out splits to analyse, and the CQL settings to solve for."""

    dataset: str = "data/replay_buffer.npz"
    """Replay buffer written by `python -m train.collect` with vector observations."""
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    """Hold-out splits: `python -m train --seed S` trains on split S (S picks the held-out episodes)."""
    holdout: float = 0.1
    """Share of episodes held out of training, as `python -m train --holdout`."""
    alpha: tuple[float, ...] = (0.1,)
    """CQL's α values to solve tabular CQL for (the trainer's default is 0.1)."""
    gamma: float = 0.95
    """Discount of the Bellman targets, as `python -m train --gamma`."""
    iterations: int = 3000
    """Full-batch Adam iterations of tabular CQL (2,000 and 8,000 gave the same policies on the default
    buffer)."""
    checkpoint: str = ""
    """A network written by `python -m train`: analyse the split it was trained on (its --seed, --holdout,
    --alpha and --gamma replace the flags above) and add its own figures."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("--seeds needs at least one split seed")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"--holdout must be a share of episodes in [0, 1), got {self.holdout!r}")
        if not self.alpha or any(not (math.isfinite(a) and a >= 0) for a in self.alpha):
            raise ValueError(f"--alpha takes finite values ≥ 0, got {self.alpha!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"--gamma must be in (0, 1], got {self.gamma!r}")
        if self.iterations < 1:
            raise ValueError(f"--iterations must be ≥ 1, got {self.iterations!r}")


@dataclass(frozen=True)
class Transitions:
    """A dataset's rows as state indices of the env model."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    not_done: np.ndarray


def transitions(model: GridModel, dataset: Dataset, rows: np.ndarray) -> Transitions:
    """The ``rows`` of ``dataset`` as state indices; :class:`DatasetError` for ``image`` observations."""
    if model.obs_mode != "vector":
        raise DatasetError(
            f"the dataset has {model.obs_mode} observations, which do not identify the state; "
            "collect one with `python -m train.collect --obs-mode vector` to compute its ceiling"
        )
    return Transitions(
        states=states_from_vector_obs(model, dataset.observations[rows]),
        actions=dataset.actions[rows].astype(np.int64),
        rewards=dataset.rewards[rows].astype(np.float64),
        next_states=states_from_vector_obs(model, dataset.next_observations[rows]),
        not_done=(~dataset.terminals[rows]).astype(np.float64),
    )


def shown_actions(model: GridModel, data: Transitions) -> np.ndarray:
    """``[S, A]`` bool: the actions ``data`` shows in each state."""
    shown = np.zeros((model.n_states, N_ACTIONS), dtype=bool)
    shown[data.states, data.actions] = True
    return shown


def ceiling_policy(model: GridModel, shown: np.ndarray) -> np.ndarray:
    """``[S]`` actions: shortest paths to the goal using only the shown actions in states with any, every
    action in states without (module docstring). Starts the allowed actions cannot lead to the goal get
    some allowed action; their episodes run out, as any confined learner's would."""
    allowed = np.where(shown.any(axis=1, keepdims=True), shown, True)
    distance = np.where(model.is_terminal, 0.0, np.inf)
    while True:  # Bellman-Ford on a deterministic graph: at most one pass per state
        via = np.where(allowed, distance[model.next_state] + 1.0, np.inf)
        updated = np.where(model.is_terminal, 0.0, via.min(axis=1))
        if np.array_equal(updated, distance):
            # Allowed actions that never reach the goal still beat disallowed ones.
            return np.argmin(np.where(allowed, np.minimum(via, np.finfo(float).max), np.inf), axis=1)
        distance = updated


def tabular_cql(
    model: GridModel, data: Transitions, alpha: float, gamma: float, iterations: int = 3000
) -> np.ndarray:
    """``[S, A]`` Q-table minimising CQL's loss on ``data`` (float64, full batch, Adam with a falling step).

    The loss is :meth:`train.algos.cql.CQL.loss` with a table in place of the network; the Double-DQN target
    uses the table itself, which is where CQL's periodically synced target network converges too.
    Actions the data never shows get no Bellman term: they start at 0, and in visited states the
    conservative term only pushes them lower. Nothing carries a value from one state to another.
    """
    s, s2 = torch.from_numpy(data.states), torch.from_numpy(data.next_states)
    a = torch.from_numpy(data.actions)
    r, not_done = torch.from_numpy(data.rewards), torch.from_numpy(data.not_done)
    q_table = torch.zeros(model.n_states, N_ACTIONS, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([q_table], lr=_SCHEDULE[0][0])
    done = 0
    for i, (lr, share) in enumerate(_SCHEDULE):
        optimizer.param_groups[0]["lr"] = lr
        n = iterations - done if i == len(_SCHEDULE) - 1 else round(share * iterations)
        for _ in range(n):
            with torch.no_grad():
                q_next = q_table[s2]
                target = r + gamma * not_done * q_next.gather(1, q_next.argmax(1, keepdim=True)).squeeze(1)
            q = q_table[s]
            q_data = q.gather(1, a.unsqueeze(1)).squeeze(1)
            loss = F.huber_loss(q_data, target) + alpha * (torch.logsumexp(q, dim=1) - q_data).mean()
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            optimizer.step()
        done += n
    return q_table.detach().numpy()


def evaluate_actions(model: GridModel, actions: np.ndarray) -> Evaluation:
    """Exact evaluation of the state → action table ``actions``."""
    return evaluate_policy(model, lambda obs: actions[states_from_vector_obs(model, obs)])


def from_checkpoint(config: CeilingConfig) -> tuple[CeilingConfig, torch.nn.Module]:
    """``config`` with the split and CQL settings a checkpoint was trained with, and its network.

    :class:`CheckpointError` for an unreadable file or one not trained on ``config.dataset``."""
    network, _, info = load_checkpoint(config.checkpoint)
    trained = info.get("train_config", {})
    if info.get("dataset_sha256") != file_sha256(config.dataset) or "seed" not in trained:
        raise CheckpointError(
            f"{config.checkpoint} was not trained by `python -m train` on {config.dataset}; "
            "pass the --dataset it was trained on"
        )
    settings = {k: trained[k] for k in ("holdout", "gamma") if k in trained}
    alpha = (float(trained["alpha"]),) if "alpha" in trained else config.alpha
    return replace(config, seeds=(int(trained["seed"]),), alpha=alpha, **settings), network


def ceiling_ratio(model: GridModel, shown: np.ndarray) -> float:
    """The ceiling (module docstring) as an oracle ratio, for the actions ``shown`` in each state."""
    return evaluate_actions(model, ceiling_policy(model, shown)).oracle_ratio


def data_ceiling(model: GridModel, dataset: Dataset, rows: np.ndarray) -> float | None:
    """:func:`ceiling_ratio` of the training ``rows``; ``None`` for ``image`` observations."""
    if model.obs_mode != "vector":
        return None
    return ceiling_ratio(model, shown_actions(model, transitions(model, dataset, rows)))


def analyse(config: CeilingConfig) -> tuple[CeilingConfig, list[dict[str, float]]]:
    """(the settings used, one row per split seed): training transitions, visited states, the ceiling, tabular
    CQL and, with ``config.checkpoint``, the network's oracle ratio and unshown-action count."""
    dataset = load_dataset(config.dataset)
    network = None
    if config.checkpoint:
        config, network = from_checkpoint(config)
    model = env_model_from_metadata(dataset.metadata)
    oracle = Oracle(model)
    reachable = np.flatnonzero(oracle.distance > 0)
    rows = []
    for seed in config.seeds:
        train_rows, _ = split_episodes(dataset.episode_ids, config.holdout, seed)
        data = transitions(model, dataset, train_rows)
        shown = shown_actions(model, data)
        visited = shown.any(axis=1)
        row = {
            "seed": seed,
            "transitions": len(train_rows),
            "visited": int(visited[reachable].sum()),
            "states": len(reachable),
            "ceiling": ceiling_ratio(model, shown),
        }
        for alpha in config.alpha:
            greedy = tabular_cql(model, data, alpha, config.gamma, config.iterations).argmax(axis=1)
            policy = np.where(visited, greedy, oracle.action)
            row[f"cql_{alpha:g}"] = evaluate_actions(model, policy).oracle_ratio
        if network is not None:
            chosen = greedy_policy(network)(np.array(model.observations))  # writable copy for torch
            row["network"] = evaluate_actions(model, chosen).oracle_ratio
            picks_unshown = visited & ~shown[np.arange(model.n_states), chosen]
            row["unshown"] = int(picks_unshown[reachable].sum())
        rows.append(row)
    return config, rows


def format_rows(rows: list[dict[str, float]], config: CeilingConfig) -> str:
    """The CLI's table: one line per split seed."""
    columns = {"split seed": "seed", "train transitions": "transitions", "visited states": "visited"}
    columns["ceiling"] = "ceiling"
    columns.update({f"tabular CQL α={a:g}": f"cql_{a:g}" for a in config.alpha})
    if config.checkpoint:
        columns.update({"network": "network", "network picks unshown": "unshown"})
    table = [list(columns)]
    for row in rows:
        cells = {k: f"{v:.4f}" if isinstance(v, float) else str(v) for k, v in row.items()}
        cells["visited"] = f"{row['visited']}/{row['states']}"
        table.append([cells[key] for key in columns.values()])
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("oracle ratios: exact return over every start state ÷ the oracle's; ceiling and tabular")
    lines.append("CQL take the oracle's action in states the split never visits")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataclass_parser(
        CeilingConfig,
        prog=PROG,
        description="The best oracle ratio a dataset allows a learner confined to its actions, and the "
        "ratio CQL's objective reaches with a table instead of a network, per hold-out split.",
        epilog=f"Example: {PROG} --dataset data/replay_buffer.npz --checkpoint runs/cql/best.safetensors",
    )
    config: CeilingConfig = parse_dataclass(CeilingConfig, parser, None if argv is None else list(argv))
    try:
        config, rows = analyse(config)
    except (CheckpointError, DatasetError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(format_rows(rows, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
