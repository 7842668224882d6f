"""The NeuroQuant gridworld: a 10×10 directional grid with a BFS oracle.

Importing this package pulls in numpy only. The Gymnasium wrapper (``gridworld.env``, which registers
``NeuroQuant/GridWorld-v0``) and the vector env (``gridworld.vector``) import gymnasium; rendering
imports pygame lazily.
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

ENV_ID = "NeuroQuant/GridWorld-v0"

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
