"""Gates by action kind (docs/contracts.md#export-gates) for artifacts of any task, judged against the float
policy.

Each artifact is loaded back through its backend exactly as the edge runtime loads it
(:func:`export.gates.open_backend`: sha256 and shape checks included), run on the calibration states and
evaluated on the task's seeded episodes through the backend's batched ``infer``. It passes when

- **discrete** actions: its action (argmax) agrees with the float policy's on at least the target's
  ``agreement_threshold`` of the calibration states, where a pick the float policy itself rates within the
  target's ``tie_margin`` (a share of its median output range) of its best counts as agreeing — no oracle
  here to prove two actions equally good, so the float policy's own indifference stands in for it; the
  strict figure (same argmax) is recorded beside it;
- **box** actions: the error of the action the env receives (the task's rule, i.e. clipped to the bounds),
  |Δa| / (high − low) per action dimension and state, has a mean ≤ the target's ``box_mean_error`` and a
  99th percentile ≤ its ``box_p99_error``;
- **both**: its mean return is within or above the float policy's 95% CI (≥ the CI's low end) over the
  same seeds;
- and a precision with a conversion tolerance (fp32: 1e-5) reproduces its own torch network (the float,
  pruned, masked or distilled network it was exported from) to that tolerance, relative to the outputs'
  scale (max(1, max |output|)): a DQN's Q-values of ~100 carry float32
  rounding of ~1e-5 that says nothing about the conversion. The target's ``max_abs_q_diff`` is a gridworld
  Q-value bound and is not applied: logits and Q-values of other tasks have other scales, and what a drift
  costs is what the action and return checks measure.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

import tasks
from backends.base import BackendUnavailable
from backends.manifest import ArtifactEntry, Manifest, ManifestError
from backends.profiles import TargetProfile
from backends.registry import get_backend
from export.gates import GateError, open_backend
from tasks import EpisodeEvaluation, NonFiniteAction, Policy, TaskSpec


@dataclass
class TaskReference:
    """The float policy's answers, computed once per export."""

    task: TaskSpec
    obs: np.ndarray
    """Calibration states as the models take them (``tasks.model_obs``: flat float32 ``[N, obs_dim]``, or an
    image task's uint8 frames)."""
    outputs: np.ndarray
    """The float policy's outputs on :attr:`obs`, ``[N, output_dim]``."""
    evaluation: EpisodeEvaluation
    """The float policy's seeded-episode evaluation (its 95% CI is the return gate's bar)."""
    episodes: int


def batched(task: TaskSpec, infer: Policy) -> Policy:
    """A model of the task's model I/O (``tasks.model_obs`` → ``[N, output_dim]``, what exported graphs and
    backends take) as a policy of the task's shapes (``[N, *obs_shape] → [N, *output_shape]``), for
    :func:`tasks.evaluate`."""
    shape = tasks.actions.expected_output_shape(task)

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.asarray(infer(tasks.model_obs(task, obs))).reshape(len(obs), *shape)

    return policy


def evaluate(task: TaskSpec, infer: Policy, episodes: int) -> EpisodeEvaluation:
    """The task's reward figure for a flat-I/O model over the first ``episodes`` seeds."""
    result = tasks.evaluate(task, batched(task, infer), episodes=episodes)
    if not isinstance(result, EpisodeEvaluation):
        raise ValueError(f"task {task.name!r}: policy sources are evaluated on seeded episodes, not exactly")
    return result


def make_reference(task: TaskSpec, infer: Policy, obs: np.ndarray, episodes: int) -> TaskReference:
    """``infer``: the float policy (torch) on observations as the models take them."""
    obs = tasks.model_obs(task, obs)
    return TaskReference(task, obs, np.asarray(infer(obs)), evaluate(task, infer, episodes), episodes)


def _actions(task: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    shape = tasks.actions.expected_output_shape(task)
    return tasks.select_actions(task, np.asarray(outputs).reshape(len(outputs), *shape))


def discrete_parity(
    task: TaskSpec, outputs: np.ndarray, ref: np.ndarray, tie_margin: float = 0.0
) -> dict[str, float]:
    """Share of states whose action agrees with the float policy's (its argmax, or an action the float
    policy rates within ``tie_margin`` × its median output range of the best), the strict share (same
    argmax), the margin in output units, and the largest output drift."""
    picked, best = _actions(task, outputs).reshape(-1), _actions(task, ref).reshape(-1)
    flat = ref.reshape(len(ref), -1)
    rows = np.arange(len(flat))
    margin = tie_margin * float(np.median(flat.max(axis=1) - flat.min(axis=1)))
    strict = picked == best
    tied = flat[rows, best] - flat[rows, picked] <= margin
    return {
        "action_agreement": float((strict | tied).mean()),
        "strict_agreement": float(strict.mean()),
        "tie_margin": margin,
        "max_abs_diff": float(np.abs(outputs - ref).max()),
    }


def box_parity(
    task: TaskSpec, outputs: np.ndarray, ref: np.ndarray, tie_margin: float = 0.0
) -> dict[str, float]:
    """Mean, 99th percentile and max of |Δa| / (high − low) over every action dimension of every state,
    on the actions the env receives (clipped), and the largest raw output drift (``tie_margin``: unused,
    the signature of :data:`PARITY`)."""
    low, high = tasks.action_bounds(task)
    span = np.where(high > low, high - low, 1.0).astype(np.float64)  # a fixed dimension clips to 0 error
    error = np.abs(
        _actions(task, outputs).astype(np.float64) - _actions(task, ref).astype(np.float64)
    ) / span.reshape(1, *span.shape)
    return {
        "mean_action_error": float(error.mean()),
        "p99_action_error": float(np.percentile(error, 99)),
        "max_action_error": float(error.max()),
        "max_abs_diff": float(np.abs(outputs - ref).max()),
    }


PARITY = {"discrete": discrete_parity, "box": box_parity}
"""Action kind → its parity figures."""


def parity_problems(task: TaskSpec, parity: dict[str, float], profile: TargetProfile) -> list[str]:
    """The parity gate of the task's action kind: one message per figure beyond the target's bound."""
    where = f"(target {profile.name})"
    if task.action.kind == "discrete":
        agreement = parity["action_agreement"]
        if agreement < profile.agreement_threshold:
            return [
                f"action agreement with the float policy {agreement:.4f} on the calibration states "
                f"< {profile.agreement_threshold} {where}"
            ]
        return []
    problems = []
    for key, bound, what in (
        ("mean_action_error", profile.box_mean_error, "mean"),
        ("p99_action_error", profile.box_p99_error, "p99"),
    ):
        if parity[key] > bound:
            problems.append(f"{what} |Δa|/(high−low) {parity[key]:.4g} > {bound:g} {where}")
    return problems


def eval_record(evaluation: EpisodeEvaluation, reference: EpisodeEvaluation) -> dict[str, Any]:
    """The artifact's ``eval``: its figures plus ``return_ratio`` (mean ÷ the float policy's mean; None when
    that mean is ≤ 0, e.g. Pendulum's negative returns, where a ratio would read better for worse) and
    ``return_delta`` (mean − the float policy's mean, meaningful whatever the sign)."""
    ratio = evaluation.mean_return / reference.mean_return if reference.mean_return > 0 else None
    return {
        **evaluation.as_dict(),
        "mean_length": evaluation.mean_length,
        "return_ratio": ratio,
        "return_delta": evaluation.mean_return - reference.mean_return,
    }


def return_problems(evaluation: EpisodeEvaluation, reference: EpisodeEvaluation) -> list[str]:
    """The return gate: the artifact's mean return must not fall below the float policy's 95% CI."""
    low = reference.ci95[0]
    if evaluation.mean_return < low:
        return [
            f"mean return {evaluation.mean_return:.4g} over {evaluation.episodes} episodes < the float "
            f"policy's 95% CI [{low:.4g}, {reference.ci95[1]:.4g}]"
        ]
    return []


def judge(
    ref: TaskReference,
    outputs: np.ndarray,
    evaluation: EpisodeEvaluation,
    profile: TargetProfile,
    tolerance: float | None,
    own: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, Any], list[str]]:
    """(parity, eval, problems) of an artifact that gave ``outputs`` on the calibration states and
    ``evaluation`` on the episodes; no problems means it passes. ``own``: its own torch network's outputs
    on those states (the conversion check); None when that network is the float policy."""
    task = ref.task
    outputs = np.asarray(outputs, dtype=np.float64).reshape(ref.outputs.shape)
    parity = PARITY[task.action.kind](task, outputs, ref.outputs.astype(np.float64), profile.tie_margin)
    problems = parity_problems(task, parity, profile)
    if tolerance is not None:
        source = ref.outputs if own is None else np.asarray(own).reshape(ref.outputs.shape)
        drift = float(np.abs(outputs - source.astype(np.float64)).max())
        parity["max_abs_diff_own"] = drift
        bound = tolerance * max(1.0, float(np.abs(source).max()))
        if drift > bound:
            problems.append(
                f"max |Δoutput| {drift:.3g} against its torch network > {bound:.3g} "
                f"(conversion tolerance {tolerance:g}, relative to the outputs' scale)"
            )
    problems += return_problems(evaluation, ref.evaluation)
    return parity, eval_record(evaluation, ref.evaluation), problems


def gate(
    manifest: Manifest,
    entry: ArtifactEntry,
    ref: TaskReference,
    profile: TargetProfile,
    tolerance: float | None,
    own: np.ndarray | None = None,
) -> ArtifactEntry:
    """Fill ``entry.parity`` / ``entry.eval`` through the artifact's own runtime; ``failed`` with the
    reasons if it misses a gate (or cannot be loaded or run); if it passes, keep only the backends that
    load it (:func:`runnable_backends`). ``own``: as for :func:`judge`. Returns ``entry``, filled in place
    (from a worker process the caller gets the filled copy back)."""
    try:
        backend = open_backend(manifest, entry, profile)
    except GateError as err:
        entry.status, entry.reason = "failed", str(err)
        return entry
    entry.extra["gate_backend"] = backend.name
    try:
        with backend:
            outputs = backend.infer(ref.obs)
            evaluation = evaluate(ref.task, backend.infer, ref.episodes)
        entry.parity, entry.eval, problems = judge(ref, outputs, evaluation, profile, tolerance, own)
    except NonFiniteAction as err:  # NaN/inf outputs: no action, hence no figure, can be taken from them
        entry.status, entry.reason = "failed", f"{backend.name}: {err}"
        return entry
    if problems:
        entry.status, entry.reason = "failed", "; ".join(problems)
        return entry
    entry.backends, refused = runnable_backends(manifest, entry, profile)
    if refused:
        entry.extra["refused_by"] = refused
    return entry


def runnable_backends(
    manifest: Manifest, entry: ArtifactEntry, profile: TargetProfile
) -> tuple[list[str], dict[str, str]]:
    """(the entry's backends that load it, {backend: why not} for those that refuse it).

    The profile lists backends per format, but a backend may not take every graph a foreign policy
    exports to (the numpy reference evaluates chains of layers only, not a SAC policy's unscaling):
    listing it would send the benchmarks and the edge runtime to a certain failure. A runtime merely
    missing here (``BackendUnavailable``) stays listed: it may exist on the device.
    """
    keep, refused = [], {}
    for name in entry.backends:
        try:
            cls = get_backend(name)
            cls.from_manifest(manifest, entry, profile.settings_for(name)).close()
        except (BackendUnavailable, ImportError):
            keep.append(name)
        except (ManifestError, ValueError, RuntimeError, OSError) as err:
            refused[name] = str(err).replace(f"{manifest.root}{os.sep}", "")  # not the staging folder
        else:
            keep.append(name)
    return keep, refused


def gate_workers(jobs: int) -> int:
    """Gate processes for ``--jobs``: that many if set, else one per usable core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, jobs if jobs > 0 else cores)


class GatePool:
    """Gates artifacts as they are submitted, in ``workers`` processes side by side with the caller.

    Each gate plays the task's episodes through one artifact's runtime: one core's work (the runtimes run
    on one thread, the env steps in Python), 130 s for HalfCheetah's 16 gates in one process after 116 s
    of builds, also on one core. Submitting each artifact as soon as it is built runs the gates beside the
    builds of the next variants. The workers are spawned, not forked (a fork of a process that has run
    torch and onnxruntime threads may inherit a held lock); each starts in a few seconds (it re-imports
    the caller's main module). The verdicts are the same whichever process computes them. With one
    worker, :meth:`submit` gates in this process at once.
    """

    def __init__(self, manifest: Manifest, ref: TaskReference, profile: TargetProfile, workers: int) -> None:
        self.manifest, self.ref, self.profile = manifest, ref, profile
        self.pool = None
        if workers > 1:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self.pending: dict[Future[ArtifactEntry], int] = {}
        self.finished: list[int] = []

    def submit(self, index: int, tolerance: float | None, own: np.ndarray | None = None) -> None:
        """Gate ``manifest.artifacts[index]`` (its files written); ``tolerance`` and ``own``: as for
        :func:`judge`."""
        entry = self.manifest.artifacts[index]
        if self.pool is None:
            gate(self.manifest, entry, self.ref, self.profile, tolerance, own)
            self.finished.append(index)
            return
        future = self.pool.submit(gate, self.manifest, entry, self.ref, self.profile, tolerance, own)
        self.pending[future] = index

    def __len__(self) -> int:
        return len(self.finished) + len(self.pending)

    def wait(self) -> Iterator[ArtifactEntry]:
        """Each gated entry, in completion order, once it is filled in ``manifest.artifacts``."""
        artifacts = self.manifest.artifacts
        for index in self.finished:
            yield artifacts[index]
        for future in as_completed(self.pending):
            index = self.pending[future]
            artifacts[index] = future.result()
            yield artifacts[index]

    def __enter__(self) -> GatePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
