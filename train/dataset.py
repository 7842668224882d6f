"""The offline replay-buffer format (docs/contracts.md#the-dataset): one ``.npz`` plus
``<stem>.metadata.json``/``.txt``.

There is exactly one loader, :func:`load_dataset`, and it refuses a bad file with a message that names
the problem; nothing is ever unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.fileio import atomic_write, atomic_write_text
from gridworld.core import N_ACTIONS

KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids")
#: Allowed dtype kinds per key: observations are float32 (vector) or int8 (image).
DTYPES: dict[str, tuple[np.dtype, ...]] = {
    "observations": (np.dtype(np.float32), np.dtype(np.int8)),
    "next_observations": (np.dtype(np.float32), np.dtype(np.int8)),
    "actions": (np.dtype(np.int64),),
    "rewards": (np.dtype(np.float32),),
    "terminals": (np.dtype(np.bool_),),
    "timeouts": (np.dtype(np.bool_),),
    "episode_ids": (np.dtype(np.int64),),
}


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message says what is wrong and how to get a good one."""


@dataclass
class Dataset:
    """Transitions as parallel arrays (``observations[i]``, ``actions[i]`` … describe transition i)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_ids: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_episodes(self) -> int:
        return len(np.unique(self.episode_ids))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in KEYS}

    def episode_returns(self) -> np.ndarray:
        """Return of every episode, ordered by episode id."""
        ids, inverse = np.unique(self.episode_ids, return_inverse=True)
        return np.bincount(inverse, weights=self.rewards.astype(np.float64), minlength=len(ids))

    def episode_lengths(self) -> np.ndarray:
        return np.unique(self.episode_ids, return_counts=True)[1]


def validate_arrays(arrays: dict[str, np.ndarray], source: str = "dataset") -> None:
    """Check keys, dtypes, lengths, shapes, finiteness and action range; raise :class:`DatasetError`."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"{source}: missing key(s) {missing}; a dataset needs {list(KEYS)}")
    for key in KEYS:
        arr = arrays[key]
        if arr.dtype not in DTYPES[key]:
            allowed = " or ".join(str(d) for d in DTYPES[key])
            raise DatasetError(f"{source}: '{key}' has dtype {arr.dtype}, expected {allowed}")
    n = len(arrays["actions"])
    if n == 0:
        raise DatasetError(f"{source}: the dataset holds no transitions")
    lengths = {k: len(arrays[k]) for k in KEYS}
    if len(set(lengths.values())) != 1:
        raise DatasetError(
            f"{source}: arrays have mismatched lengths {lengths}; every key needs one row per transition"
        )
    for key in ("actions", "rewards", "terminals", "timeouts", "episode_ids"):
        if arrays[key].ndim != 1:
            raise DatasetError(f"{source}: '{key}' must be 1-D, got shape {arrays[key].shape}")
    if arrays["observations"].shape != arrays["next_observations"].shape:
        raise DatasetError(
            f"{source}: observations {arrays['observations'].shape} and next_observations "
            f"{arrays['next_observations'].shape} differ in shape"
        )
    if arrays["observations"].dtype != arrays["next_observations"].dtype:
        raise DatasetError(f"{source}: observations and next_observations differ in dtype")
    for key in ("observations", "next_observations", "rewards"):
        arr = arrays[key]
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).reshape(n, -1).any(axis=1).sum())
            raise DatasetError(f"{source}: '{key}' has NaN or inf values in {bad} transition(s)")
    actions = arrays["actions"]
    if actions.min() < 0 or actions.max() >= N_ACTIONS:
        raise DatasetError(
            f"{source}: actions must be in 0..{N_ACTIONS - 1}, "
            f"found values in {actions.min()}..{actions.max()}"
        )


def metadata_path(npz_path: str | Path, suffix: str = ".json") -> Path:
    """``data/replay_buffer.npz`` → ``data/replay_buffer.metadata.json``: several datasets share a folder."""
    npz_path = Path(npz_path)
    return npz_path.with_name(f"{npz_path.stem}.metadata{suffix}")


def load_dataset(path: str | Path) -> Dataset:
    """Load and validate a replay buffer; never unpickles. Raises :class:`DatasetError` on any problem."""
    path = Path(path)
    hint = "re-create it with `python -m train.collect --out <path>`"
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file; {hint}")
    if not zipfile.is_zipfile(path):  # np.load would try to read it as a pickle (and refuse)
        raise DatasetError(f"{path}: not a readable .npz file (not a zip archive); {hint}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:  # object arrays need pickle, which we refuse
        raise DatasetError(
            f"{path}: holds pickled objects (never loaded) or a corrupt array header ({err}); {hint}"
        ) from err
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: not a readable .npz file ({err}); {hint}") from err
    validate_arrays(arrays, str(path))
    meta_file = metadata_path(path)
    metadata: dict[str, Any] = {}
    if meta_file.is_file():
        try:
            metadata = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{meta_file}: invalid JSON ({err}); {hint}") from err
    return Dataset(**{k: arrays[k] for k in KEYS}, metadata=metadata)


def save_dataset(path: str | Path, dataset: Dataset) -> None:
    """Validate, then write ``path`` (.npz) and ``<stem>.metadata.json``/``.txt`` beside it, atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: dataset files end in .npz")
    arrays = dataset.arrays()
    validate_arrays(arrays, str(path))

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    meta = dataset.metadata
    try:  # serialise before writing anything, so bad metadata leaves no new .npz behind
        meta_json = json.dumps(meta, indent=2) + "\n"
    except TypeError as err:
        raise DatasetError(f"{path}: metadata is not JSON-serialisable ({err})") from err
    text = "\n".join(f"{k}: {v}" for k, v in meta.items()) + "\n"
    atomic_write(path, write_npz)
    atomic_write_text(metadata_path(path), meta_json)
    atomic_write_text(metadata_path(path, ".txt"), text)


def split_episodes(episode_ids: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): whole episodes are held out, so accuracy is measured on unseen
    trajectories. With ``holdout == 0`` or a single episode nothing is held out (empty second array)."""
    episodes = np.unique(episode_ids)
    n_out = round(holdout * len(episodes)) if len(episodes) > 1 else 0
    n_out = min(max(n_out, 1 if holdout > 0 and len(episodes) > 1 else 0), len(episodes) - 1)
    held = np.random.default_rng(seed).choice(episodes, size=n_out, replace=False)
    mask = np.isin(episode_ids, held)
    return np.flatnonzero(~mask), np.flatnonzero(mask)
