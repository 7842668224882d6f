"""The NeuroQuant gridworld: a 10×10 directional grid with a BFS oracle.

Importing this package pulls in numpy only, and registers the ``NeuroQuant/*`` Gymnasium ids (as
``import minigrid`` does) without importing gymnasium: at once if gymnasium is already imported, else
when it is, and never where it is not installed (:mod:`gridworld.registration`; the edge runtime imports
this package and must not load gymnasium). So ``import gymnasium as gym, gridworld`` then
``gym.make("NeuroQuant/GridWorld-v0")`` works, as does ``gym.make("gridworld:NeuroQuant/GridWorld-v0")``.
The Gymnasium wrapper (``gridworld.env``) and the vector env (``gridworld.vector``) import gymnasium;
rendering imports pygame lazily.
"""

from gridworld.core import (
    ACTION_NAMES,
    HEADINGS,
    MAX_STEPS,
    N_ACTIONS,
    GridModel,
    GridWorldCore,
    build_model,
    states_from_vector_obs,
)
from gridworld.oracle import Evaluation, Oracle, evaluate_policy
from gridworld.registration import ENV_ID, register_when_gymnasium_loads

register_when_gymnasium_loads()

__all__ = [
    "ACTION_NAMES",
    "ENV_ID",
    "HEADINGS",
    "MAX_STEPS",
    "N_ACTIONS",
    "Evaluation",
    "GridModel",
    "GridWorldCore",
    "Oracle",
    "build_model",
    "evaluate_policy",
    "states_from_vector_obs",
]
