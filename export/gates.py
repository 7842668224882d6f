"""Parity gates: every artifact is loaded back with its own runtime and judged against the float policy.

The artifact goes through ``backends.registry`` and ``Backend.from_manifest``, exactly like the edge
runtime will load it, so the sha256 check and the runtime's shape checks are exercised too. Measured on
the dataset's observations and on every reachable state:

- ``parity``: max |ΔQ| and action agreement against the **float policy** (the thing being deployed), and
  ``source_max_abs_q_diff`` against the variant's **own torch network** (what the conversion changed);
- ``eval``: the exact return of the runtime as the policy, from every start state.

Action agreement counts a row when the artifact takes the float policy's action, or when both actions
are optimal by the BFS oracle (a tie: the float network ranks truly equal actions by a few hundredths,
and int8 rounding flips such coin tosses without costing any return). Strict agreement (same argmax)
is recorded beside it. Ties are only recognised where an observation identifies its state (``vector``
observations); for the aliased 3×3 ``image`` observation agreement stays strict.

An artifact passes when its action agreement with the float policy reaches the target's
``agreement_threshold`` on both sets, its exact return is at least ``return_ratio_min`` of the float
policy's, and its conversion drift stays within the precision's tolerance
(1e-5 for fp32) or the target's ``max_abs_q_diff``. Q drift is bounded against the variant's own source
rather than the float policy because a pruned or distilled network is a different function on purpose:
its fidelity to the float policy is judged by the actions it takes and the return they earn.
A failing artifact is recorded ``failed`` with the reasons; it is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import Backend, BackendUnavailable
from backends.manifest import ArtifactEntry, Manifest, ManifestError
from backends.profiles import TargetProfile
from backends.registry import get_backend
from gridworld.core import GridModel
from gridworld.oracle import Evaluation, Oracle, evaluate_policy
from tasks import flat_obs

SETS = ("dataset", "states")
"""The observation sets every artifact is compared on: dataset observations, every reachable state."""


class GateError(RuntimeError):
    """An artifact that could not be loaded or run for its gate; the message becomes its reason."""


@dataclass
class Reference:
    """The float policy's answers, computed once per export."""

    env_model: GridModel
    obs: dict[str, np.ndarray]
    """float32 ``[N, obs_dim]`` per set in :data:`SETS`."""
    q: dict[str, np.ndarray]
    """The float policy's Q-values on each set."""
    optimal: dict[str, np.ndarray | None]
    """bool ``[N, A]`` per set: the oracle's optimal actions of each row's state (None: states unknown)."""
    evaluation: Evaluation
    """Exact evaluation of the float policy."""


def reachable_obs(env_model: GridModel) -> np.ndarray:
    """Observations of every state the policy acts in: the goal is reachable from it and not yet reached.

    Goal states are left out: an episode ends on arrival, so no action is ever taken there and a network's
    output there (never trained) is noise that would only blur the agreement figure.
    """
    states = np.flatnonzero(Oracle(env_model).distance > 0)
    return flat_obs(env_model.observations[states])


def optimal_actions(env_model: GridModel, obs: np.ndarray) -> np.ndarray | None:
    """The oracle's optimal-action mask for each observation's state, or None when observations do not
    identify states (two states share an observation, or a row matches no state)."""
    table = flat_obs(env_model.observations)
    index = {row.tobytes(): i for i, row in enumerate(table)}
    if len(index) != len(table):
        return None  # aliased observations (the 3×3 image): a row's state, hence its ties, is unknown
    states = [index.get(row.tobytes()) for row in flat_obs(obs)]
    if any(s is None for s in states):
        return None
    return Oracle(env_model).optimal_mask[np.asarray(states, dtype=np.int64)]


def make_reference(q_fn: Any, env_model: GridModel, dataset_obs: np.ndarray) -> Reference:
    """``q_fn``: float32 ``[N, d]`` → Q ``[N, A]`` of the float policy (torch, here)."""
    obs = {"dataset": flat_obs(dataset_obs), "states": reachable_obs(env_model)}
    evaluation = evaluate_policy(env_model, lambda o: q_fn(flat_obs(o)).argmax(axis=1))
    optimal = {k: optimal_actions(env_model, v) for k, v in obs.items()}
    return Reference(env_model, obs, {k: q_fn(v) for k, v in obs.items()}, optimal, evaluation)


def compare(
    q: np.ndarray, q_ref: np.ndarray, optimal: np.ndarray | None = None
) -> tuple[float, float, float]:
    """(max |ΔQ|, agreement counting oracle ties, strict agreement: share of rows with the same argmax)."""
    a, a_ref = q.argmax(axis=1), q_ref.argmax(axis=1)
    same = a == a_ref
    agree = same
    if optimal is not None:
        rows = np.arange(len(a))
        agree = same | (optimal[rows, a] & optimal[rows, a_ref])
    return float(np.abs(q - q_ref).max()), float(agree.mean()), float(same.mean())


def open_backend(manifest: Manifest, entry: ArtifactEntry, profile: TargetProfile) -> Backend:
    """Load ``entry`` with the first of its backends that runs here; GateError if none does."""
    skipped: list[str] = []
    for name in entry.backends:
        try:
            cls = get_backend(name)
            if entry.format not in cls.formats:
                skipped.append(f"{name} does not load {entry.format}")
                continue
            return cls.from_manifest(manifest, entry, profile.settings_for(name))
        except (BackendUnavailable, ImportError) as err:
            skipped.append(f"{name}: {err}")
        except (ManifestError, ValueError, RuntimeError, OSError) as err:
            raise GateError(f"{name} refused the artifact: {err}") from err
    raise GateError(f"no backend of {entry.backends} can load it here ({'; '.join(skipped)})")


def gate(
    manifest: Manifest,
    entry: ArtifactEntry,
    ref: Reference,
    source_q: dict[str, np.ndarray],
    profile: TargetProfile,
    tolerance: float | None,
) -> None:
    """Fill ``entry.parity``/``entry.eval`` and set ``failed`` with the reasons if it misses the gate."""
    try:
        backend = open_backend(manifest, entry, profile)
    except GateError as err:
        entry.status, entry.reason = "failed", str(err)
        return
    with backend:
        q = {name: backend.infer(ref.obs[name]) for name in SETS}
        evaluation = evaluate_policy(ref.env_model, lambda o: backend.infer(flat_obs(o)).argmax(axis=1))
    parity: dict[str, float] = {}
    for name in SETS:
        (
            parity[f"{name}_max_abs_q_diff"],
            parity[f"{name}_agreement"],
            parity[f"{name}_strict_agreement"],
        ) = compare(q[name], ref.q[name], ref.optimal[name])
        parity[f"{name}_source_max_abs_q_diff"] = float(np.abs(q[name] - source_q[name]).max())
    parity["max_abs_q_diff"] = max(parity[f"{n}_max_abs_q_diff"] for n in SETS)
    parity["action_agreement"] = min(parity[f"{n}_agreement"] for n in SETS)
    parity["strict_agreement"] = min(parity[f"{n}_strict_agreement"] for n in SETS)
    parity["source_max_abs_q_diff"] = max(parity[f"{n}_source_max_abs_q_diff"] for n in SETS)
    entry.parity = parity
    entry.eval = _eval_dict(evaluation, ref.evaluation)
    entry.extra["gate_backend"] = backend.name
    bound = profile.max_abs_q_diff if tolerance is None else min(tolerance, profile.max_abs_q_diff)
    problems = [
        f"action agreement with the float policy {parity[f'{n}_agreement']:.4f} on {n} "
        f"< {profile.agreement_threshold} (target {profile.name})"
        for n in SETS
        if parity[f"{n}_agreement"] < profile.agreement_threshold
    ]
    ratio = entry.eval.get("return_ratio")
    if ratio is not None and ratio < profile.return_ratio_min:
        problems.append(
            f"exact return {entry.eval['mean_return']:.3f} < {profile.return_ratio_min:g} × the float "
            f"policy's {ref.evaluation.mean_return:.3f}"
        )
    if parity["source_max_abs_q_diff"] > bound:
        problems.append(
            f"max |ΔQ| {parity['source_max_abs_q_diff']:.3g} against its torch network > {bound:g}"
        )
    if problems:
        entry.status, entry.reason = "failed", "; ".join(problems)


def _eval_dict(evaluation: Evaluation, reference: Evaluation) -> dict[str, float]:
    out = {k: evaluation.as_dict()[k] for k in ("mean_return", "success_rate", "oracle_ratio", "mean_length")}
    if reference.mean_return > 0:
        out["return_ratio"] = evaluation.mean_return / reference.mean_return
    return out
