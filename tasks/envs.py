"""Env factories: a spec from any registered Gymnasium id, and the env (single or vector) a spec describes.

Gymnasium is imported inside the functions, never at module level: ``import tasks`` must stay light
enough for the edge runtime, which needs only the action rule and the numpy gridworld.
Errors are translated at this boundary into messages that say what to do: an unknown id is a
``ValueError`` naming it, an env whose package is missing here is :class:`TaskUnavailable` naming the
package, an unsupported space is a ``ValueError`` naming the space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from gridworld.registration import VARIANTS as GRIDWORLD_VARIANTS
from tasks import preprocess
from tasks.spec import DEFAULT_EPISODES, ActionSpec, EnvSpec, EvaluationSpec, ObservationSpec, TaskSpec

if TYPE_CHECKING:
    import gymnasium

__all__ = ["TaskUnavailable", "from_env", "gridworld_kwargs", "make_env", "task_name"]


class TaskUnavailable(RuntimeError):
    """The task's env cannot be made on this machine because a package is missing; the message says
    what to install. A RuntimeError (like ``backends.BackendUnavailable``): the spec is fine, the host
    is not."""


#: Entry-point module → the pip packages its envs need beyond gymnasium (a device bundle installs them
#: too, ``deploy.requirements``). ``gymnasium[box2d]`` is not used: it pulls ``pygame-ce``, which
#: installs over the ``pygame`` this project uses.
ENV_PACKAGES = {
    "gymnasium.envs.box2d": ("box2d",),
    "gymnasium.envs.mujoco": ("mujoco", "imageio"),
    "ale_py": preprocess.ATARI_PACKAGES,  # the ROMs ship in the ale-py wheel; OpenCV resizes the frames
}
_INSTALL_NOTES = {"gymnasium.envs.box2d": "  (not gymnasium[box2d]: its pygame-ce replaces pygame)"}


def _gym(env_id: str = "") -> Any:
    """Gymnasium, with the NeuroQuant ids registered, and the ALE's when ``env_id`` is one of them."""
    import gymnasium

    import gridworld.env  # noqa: F401  (registers NeuroQuant/* whatever the import order)

    if preprocess.is_ale(env_id):
        try:
            import ale_py
        except ModuleNotFoundError as err:
            raise TaskUnavailable(
                f"env {env_id!r} cannot be made here: the Arcade Learning Environment is not installed "
                f"(pip install {' '.join(preprocess.ATARI_PACKAGES)})"
            ) from err
        gymnasium.register_envs(ale_py)
    return gymnasium


def _bare_id(env_id: str) -> str:
    """``module:Namespace/Name-v0`` → ``Namespace/Name-v0`` (Gymnasium's import-prefix syntax)."""
    return env_id.rpartition(":")[2]


def task_name(env_id: str) -> str:
    """A folder-safe name from an id: ``CartPole-v1`` → ``cartpole``, ``ALE/Breakout-v5`` → ``breakout``."""
    base = _bare_id(env_id).rpartition("/")[2]
    base = re.sub(r"-v\d+$", "", base)
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "task"


def gridworld_kwargs(spec: TaskSpec) -> dict[str, Any] | None:
    """The gridworld constructor kwargs a spec means (registration kwargs, then the spec's, then its
    episode limit as ``max_steps``), or None when the spec's env is not a NeuroQuant gridworld."""
    registered = GRIDWORLD_VARIANTS.get(_bare_id(spec.env.id))
    if registered is None:
        return None
    kwargs = {**registered, **spec.env.kwargs}
    if spec.env.max_episode_steps is not None:
        kwargs.setdefault("max_steps", spec.env.max_episode_steps)
    return kwargs


def _entry_module(gym: Any, env_id: str) -> str | None:
    """The module prefix of :data:`ENV_PACKAGES` the env's entry point lies in, if any."""
    try:
        entry_point = gym.spec(_bare_id(env_id)).entry_point
    except gym.error.Error:
        return None
    if not isinstance(entry_point, str):
        return None
    return next((module for module in ENV_PACKAGES if entry_point.startswith(module)), None)


def env_packages(env_id: str) -> tuple[str, ...]:
    """The pip packages ``env_id`` needs beyond gymnasium (``("box2d",)`` for LunarLander-v3)."""
    if preprocess.is_ale(env_id):
        return preprocess.ATARI_PACKAGES
    module = _entry_module(_gym(), env_id)
    return ENV_PACKAGES[module] if module else ()


def _install_hint(gym: Any, env_id: str) -> str:
    module = _entry_module(gym, env_id)
    if module is None:
        return ""
    return f"pip install {' '.join(ENV_PACKAGES[module])}{_INSTALL_NOTES.get(module, '')}"


def _make_one(
    env_id: str,
    kwargs: dict[str, Any],
    max_episode_steps: int | None,
    steps: tuple[dict[str, Any], ...] = (),
    training: bool = False,
) -> gymnasium.Env:
    """``gymnasium.make`` and the preprocessing ``steps``, with errors turned into messages that name the
    problem and the fix."""
    gym = _gym(env_id)
    try:
        return preprocess.apply(
            gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs), steps, training
        )
    except gym.error.DependencyNotInstalled as err:
        if steps:  # the wrappers' own dependency: OpenCV
            raise TaskUnavailable(
                f"env {env_id!r}: its preprocessing needs OpenCV (pip install opencv-python-headless)"
            ) from err
        hint = _install_hint(gym, env_id)
        fix = hint if hint else f"install what it names ({err})"
        raise TaskUnavailable(f"env {env_id!r} cannot be made here, a dependency is missing: {fix}") from err
    except ModuleNotFoundError as err:
        raise TaskUnavailable(
            f"env {env_id!r} cannot be made here: Python module {err.name!r} is not installed "
            f"(install the package that provides it)"
        ) from err
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as err:
        raise ValueError(
            f"unknown Gymnasium env id {env_id!r}: {err} Check the id (gymnasium.pprint_registry() lists "
            f"the registered ones), or install and import the package that registers it."
        ) from err
    except TypeError as err:
        raise ValueError(f"env {env_id!r} does not take the kwargs {kwargs}: {err}") from err


def make_env(
    spec: TaskSpec, num_envs: int | None = None, training: bool = False
) -> gymnasium.Env | gymnasium.vector.VectorEnv:
    """The spec's env with its kwargs, episode limit and observation preprocessing: one env, or ``num_envs``
    in a vector env. ``training``: the preprocessing's training-only parts (a lost Atari life ends the
    episode); evaluation and the device never set it.

    The vector env is a ``SyncVectorEnv`` of single envs, so sub-env ``i`` reset with seed ``s`` plays
    exactly the episode a single env reset with ``s`` plays. The gridworld uses its own batched
    :class:`gridworld.vector.GridWorldVectorEnv` (one numpy program per step), which keeps the same
    promise.
    """
    grid = gridworld_kwargs(spec)
    if num_envs is None:
        kwargs = spec.env.kwargs if grid is None else grid
        return _make_one(
            spec.env.id, kwargs, spec.env.max_episode_steps, spec.observation.preprocess, training
        )
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer ≥ 1 (or None for one plain env), got {num_envs!r}")
    gym = _gym()
    if grid is not None:
        from gridworld.vector import GridWorldVectorEnv

        grid.pop("render_mode", None)  # the batched gridworld does not render per step
        try:
            return GridWorldVectorEnv(num_envs, **grid)
        except TypeError as err:
            raise ValueError(
                f"env {spec.env.id!r} does not take the kwargs {spec.env.kwargs}: {err}"
            ) from err
    make = partial(
        _make_one,
        spec.env.id,
        spec.env.kwargs,
        spec.env.max_episode_steps,
        spec.observation.preprocess,
        training,
    )
    return gym.vector.SyncVectorEnv([make] * num_envs)


def _observation_spec(env_id: str, space: Any, steps: tuple[dict[str, Any], ...] = ()) -> ObservationSpec:
    from gymnasium import spaces

    if not isinstance(space, spaces.Box):
        raise ValueError(
            f"env {env_id!r}: observation space {space} ({type(space).__name__}) is not supported; "
            f"tasks take a Box observation (flatten Dict/Tuple observations with a wrapper first)"
        )
    # What the model takes: images stay uint8 (scaled inside the graph), everything else float32.
    dtype = "uint8" if space.dtype == np.uint8 else "float32"
    return ObservationSpec(tuple(int(d) for d in space.shape), dtype, steps)


def _action_spec(env_id: str, space: Any) -> ActionSpec:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(
                f"env {env_id!r}: action space {space} starts at {int(space.start)}; tasks take "
                f"Discrete actions numbered from 0"
            )
        return ActionSpec.discrete(int(space.n))
    if isinstance(space, spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise ValueError(
                f"env {env_id!r}: action space {space} has integer dtype; tasks take float Boxes"
            )
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise ValueError(
                f"env {env_id!r}: action space {space} is unbounded; tasks take Box actions with finite "
                f"bounds (clip or rescale the action with a wrapper first)"
            )
        return ActionSpec.box(space.low, space.high)
    raise ValueError(
        f"env {env_id!r}: action space {space} ({type(space).__name__}) is not supported; tasks take "
        f"Discrete or Box actions"
    )


def from_env(
    env_id: str,
    /,
    *,
    output: str | None = None,
    name: str | None = None,
    episodes: int = DEFAULT_EPISODES,
    max_episode_steps: int | None = None,
    preprocess_steps: Sequence[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> TaskSpec:
    """A task for any registered Gymnasium env with a Box observation and Discrete or Box actions.

    ``preprocess_steps``: the observation preprocessing (:mod:`tasks.preprocess`); by default none, and the
    standard ``atari`` op for an ALE id, whose env is then made with ``frameskip=1`` (the op skips frames),
    with ``fire_reset`` where the game has a FIRE action.
    The env is made once, preprocessed, to read its spaces and episode limit. ``output`` defaults to
    ``logits`` for discrete actions and ``action`` for box; ``name`` to :func:`task_name` of the id; the
    evaluation runs ``episodes`` seeds 0..episodes-1. Other keyword arguments are the env's kwargs (so an
    env kwarg called ``output``, ``name``, ``episodes``, ``max_episode_steps`` or ``preprocess_steps``
    cannot be passed here).
    """
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env id: expected a registered Gymnasium id such as 'CartPole-v1', got {env_id!r}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected an integer ≥ 1, got {episodes!r}")
    default_atari = preprocess_steps is None and preprocess.is_ale(env_id)
    if preprocess_steps is None:
        preprocess_steps = [preprocess.atari_step()] if default_atari else []
    steps = tuple(preprocess.check_step(s, f"preprocess[{i}]") for i, s in enumerate(preprocess_steps))
    if any(s["op"] == "atari" for s in steps):
        kwargs = {**preprocess.ATARI_ENV_KWARGS, **kwargs}
        if max_episode_steps is None:  # the ALE's own cap, in frames, made explicit for the evaluation
            max_episode_steps = preprocess.ATARI_MAX_FRAMES
    env = _make_one(env_id, kwargs, max_episode_steps, steps)
    try:
        if default_atari and preprocess.has_fire(env):
            steps = (preprocess.atari_step(fire_reset=True),)
        observation = _observation_spec(env_id, env.observation_space, steps)
        action = _action_spec(env_id, env.action_space)
        limit = env.spec.max_episode_steps if env.spec is not None else max_episode_steps
    finally:
        env.close()
    if output is None:
        output = "logits" if action.kind == "discrete" else "action"
    return TaskSpec(
        name=task_name(env_id) if name is None else name,
        env=EnvSpec(env_id, kwargs, limit),
        observation=observation,
        action=action,
        output=output,
        evaluation=EvaluationSpec("episodes", tuple(range(episodes))),
    )
