"""BFS oracle over (x, y, heading) and exact policy evaluation from every start state.

The state space is tiny (≤ 400 states on 10×10), so instead of sampling episodes we run a deterministic
policy from *every* valid start and report the exact mean return. This is the reward figure everywhere
in NeuroQuant (training eval, export gates, benchmarks, reports).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from gridworld.core import (
    FORWARD,
    GOAL_REWARD,
    MAX_STEPS,
    N_ACTIONS,
    STEP_REWARD,
    TURN_LEFT,
    TURN_RIGHT,
    GridModel,
    states_from_vector_obs,
)
from gridworld.layouts import WALL

#: Tie-break order among equally short actions: forward first, so the oracle turns only when it must.
_PREFERENCE = (FORWARD, TURN_LEFT, TURN_RIGHT)

Policy = Callable[[np.ndarray], np.ndarray]
"""A deterministic batch policy: observations ``[N, *obs_shape]`` → actions ``[N]``."""


def return_for_distance(distance: np.ndarray | int, max_steps: int = MAX_STEPS) -> np.ndarray:
    """Return of an episode that reaches the goal in ``distance`` steps (−0.1 per step, +10 on arrival)."""
    d = np.asarray(distance, dtype=np.float64)
    reached = (d >= 1) & (d <= max_steps)
    return np.where(reached, GOAL_REWARD + STEP_REWARD * (d - 1), STEP_REWARD * max_steps)


class Oracle:
    """Shortest distances to the goal for every state, and the optimal action(s) from each."""

    def __init__(self, model: GridModel) -> None:
        self.model = model
        self.distance = self._bfs(model)  # [S] int64, -1 where the goal is unreachable (wall states)
        n = model.n_states
        succ_dist = self.distance[model.next_state]  # [S, 3]
        succ_dist = np.where(succ_dist < 0, np.iinfo(np.int64).max, succ_dist)
        best = succ_dist.min(axis=1, keepdims=True)
        #: [S, 3] bool: actions that lie on a shortest path (several can tie).
        self.optimal_mask = (succ_dist == best) & (self.distance[:, None] > 0)
        actions = np.zeros(n, dtype=np.int64)
        for a in reversed(_PREFERENCE):
            actions = np.where(self.optimal_mask[:, a], a, actions)
        #: [S] the oracle's deterministic choice.
        self.action = actions

    @staticmethod
    def _bfs(model: GridModel) -> np.ndarray:
        """Backward BFS from the goal states over the reversed transition graph."""
        n = model.n_states
        predecessors: list[list[int]] = [[] for _ in range(n)]
        on_wall = (model.layout.reshape(-1) == WALL).repeat(4)
        for s, succs in enumerate(model.next_state.tolist()):
            for t in succs:
                if t != s and not on_wall[s]:
                    predecessors[t].append(s)
        dist = np.full(n, -1, dtype=np.int64)
        queue = deque(np.flatnonzero(model.is_terminal).tolist())
        for s in queue:
            dist[s] = 0
        while queue:
            t = queue.popleft()
            for s in predecessors[t]:
                if dist[s] < 0 and not model.is_terminal[s]:
                    dist[s] = dist[t] + 1
                    queue.append(s)
        return dist

    def returns(self, max_steps: int | None = None) -> np.ndarray:
        """Optimal return from every valid start state (ordered like ``model.start_states``); the episode
        limit defaults to the model's."""
        limit = self.model.max_steps if max_steps is None else max_steps
        return return_for_distance(self.distance[self.model.start_states], limit)

    def policy(self) -> Policy:
        """The oracle as a batch policy over observations (only valid for fully observed ``vector`` mode)."""
        if self.model.obs_mode != "vector":
            raise ValueError("the oracle acts on states; image observations do not identify the state")
        model, action = self.model, self.action
        return lambda obs: action[states_from_vector_obs(model, obs)]


@dataclass(frozen=True)
class Evaluation:
    """Exact evaluation of a deterministic policy over every valid start state."""

    mean_return: float
    success_rate: float
    oracle_return: float
    oracle_ratio: float
    mean_length: float
    n_starts: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def rollout_all_starts(
    model: GridModel, policy: Policy, max_steps: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``policy`` from every start at once; return per-start (returns, success, lengths).

    ``max_steps`` defaults to the model's episode limit."""
    max_steps = model.max_steps if max_steps is None else max_steps
    state = model.start_states.copy()
    n = len(state)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    for _ in range(max_steps):
        live = np.flatnonzero(~done)
        if len(live) == 0:
            break
        actions = np.asarray(policy(model.observations[state[live]])).reshape(-1)
        if actions.shape != (len(live),):
            raise ValueError(f"policy returned {actions.shape} actions for {len(live)} observations")
        if ((actions < 0) | (actions >= N_ACTIONS)).any():
            raise ValueError(f"policy returned actions outside 0..{N_ACTIONS - 1}")
        nxt = model.next_state[state[live], actions.astype(np.int64)]
        state[live] = nxt
        returns[live] += model.arrive_reward[nxt]
        lengths[live] += 1
        reached = model.is_terminal[nxt]
        success[live[reached]] = True
        done[live[reached]] = True
    return returns, success, lengths


def evaluate_policy(model: GridModel, policy: Policy, max_steps: int | None = None) -> Evaluation:
    """Exact mean return, success rate and ratio to the oracle, over every valid start state (episodes
    truncated at ``max_steps``, by default the model's limit)."""
    max_steps = model.max_steps if max_steps is None else max_steps
    returns, success, lengths = rollout_all_starts(model, policy, max_steps)
    oracle_return = float(Oracle(model).returns(max_steps).mean())
    mean_return = float(returns.mean())
    return Evaluation(
        mean_return=mean_return,
        success_rate=float(success.mean()),
        oracle_return=oracle_return,
        oracle_ratio=mean_return / oracle_return,
        mean_length=float(lengths.mean()),
        n_starts=len(returns),
    )
