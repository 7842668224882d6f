"""The replay-buffer contract (docs/contracts.md#the-dataset): a faithful round trip, and every bad file
refused by name."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from train.dataset import KEYS, Dataset, DatasetError, load_dataset, metadata_path, save_dataset

N = 40


def make_dataset(obs_mode: str = "vector", n: int = N) -> Dataset:
    """A small dataset that satisfies the contract: two episodes, the first reaching the goal."""
    rng = np.random.default_rng(7)
    if obs_mode == "vector":
        obs = rng.random((n + 1, 6), dtype=np.float32)
    else:
        obs = rng.integers(0, 3, size=(n + 1, 3, 3), dtype=np.int8)
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    split = n // 2
    terminals[split - 1] = True
    timeouts[-1] = True
    rewards = np.full(n, -0.1, dtype=np.float32)
    rewards[split - 1] = 10.0
    return Dataset(
        observations=obs[:-1],
        actions=rng.integers(0, 3, size=n, dtype=np.int64),
        rewards=rewards,
        next_observations=obs[1:],
        terminals=terminals,
        timeouts=timeouts,
        episode_ids=np.repeat(np.arange(2, dtype=np.int64), [split, n - split]),
        metadata={
            "episodes": 2,
            "policy": "random",
            "env_kwargs": {"layout": "default", "obs_mode": obs_mode},
        },
    )


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays as an .npz directly, bypassing save_dataset's validation (to build bad files).

    ``np.savez`` stores members uncompressed and pickles object arrays, as a hostile file would.
    """
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def refused(path: Path, *fragments: str) -> str:
    """Load ``path``, expect a DatasetError, and check its message names the problem."""
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.mark.parametrize("obs_mode", ["vector", "image"])
def test_round_trip_preserves_arrays_and_metadata(tmp_path: Path, obs_mode: str) -> None:
    original = make_dataset(obs_mode)
    path = tmp_path / "buffer.npz"
    save_dataset(path, original)
    loaded = load_dataset(path)
    for key in KEYS:
        expected, got = getattr(original, key), getattr(loaded, key)
        assert got.dtype == expected.dtype, key
        np.testing.assert_array_equal(got, expected, err_msg=key)
    assert loaded.metadata == original.metadata
    assert json.loads(metadata_path(path).read_text()) == original.metadata
    text = metadata_path(path, ".txt").read_text()
    assert "policy: random" in text and "episodes: 2" in text
    np.testing.assert_allclose(loaded.episode_returns(), original.episode_returns())
    assert loaded.n_episodes == 2


def test_save_leaves_no_temp_files_and_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "buffer.npz"
    save_dataset(path, make_dataset())
    smaller = make_dataset(n=10)
    save_dataset(path, smaller)  # replacing an existing dataset also goes through a temp file
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["buffer.metadata.json", "buffer.metadata.txt", "buffer.npz"]
    assert len(load_dataset(path)) == 10


def test_invalid_dataset_is_not_written(tmp_path: Path) -> None:
    bad = make_dataset()
    bad.actions = bad.actions.astype(np.int32)
    with pytest.raises(DatasetError, match="'actions' has dtype int32"):
        save_dataset(tmp_path / "buffer.npz", bad)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_non_npz_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"\.npz"):
        save_dataset(tmp_path / "buffer.h5", make_dataset())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", KEYS)
def test_missing_key_is_refused(tmp_path: Path, key: str) -> None:
    arrays = make_dataset().arrays()
    del arrays[key]
    refused(write_npz(tmp_path / "bad.npz", arrays), "missing key", key)


@pytest.mark.parametrize("key", ["rewards", "next_observations", "episode_ids"])
def test_length_mismatch_is_refused(tmp_path: Path, key: str) -> None:
    arrays = make_dataset().arrays()
    arrays[key] = arrays[key][:-3]
    message = refused(write_npz(tmp_path / "bad.npz", arrays), "mismatched lengths")
    assert f"'{key}': {N - 3}" in message


@pytest.mark.parametrize(
    ("key", "dtype"),
    [
        ("observations", np.float64),
        ("actions", np.int32),
        ("actions", np.float32),
        ("rewards", np.float64),
        ("terminals", np.int8),
        ("timeouts", np.float32),
        ("episode_ids", np.int32),
    ],
)
def test_wrong_dtype_is_refused(tmp_path: Path, key: str, dtype: type) -> None:
    arrays = make_dataset().arrays()
    arrays[key] = arrays[key].astype(dtype)
    if key == "observations":  # keep both observation arrays alike so only the dtype rule fires
        arrays["next_observations"] = arrays["next_observations"].astype(dtype)
    refused(write_npz(tmp_path / "bad.npz", arrays), f"'{key}' has dtype {np.dtype(dtype)}")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["observations", "next_observations", "rewards"])
def test_non_finite_values_are_refused(tmp_path: Path, key: str, value: float) -> None:
    arrays = make_dataset().arrays()
    arrays[key] = arrays[key].copy()
    arrays[key].reshape(N, -1)[5, 0] = value
    refused(write_npz(tmp_path / "bad.npz", arrays), f"'{key}' has NaN or inf", "1 transition")


@pytest.mark.parametrize("bad_action", [-1, 3, 99])
def test_action_out_of_range_is_refused(tmp_path: Path, bad_action: int) -> None:
    arrays = make_dataset().arrays()
    arrays["actions"] = arrays["actions"].copy()
    arrays["actions"][4] = bad_action
    refused(write_npz(tmp_path / "bad.npz", arrays), "actions must be in 0..2", str(bad_action))


def test_empty_dataset_is_refused(tmp_path: Path) -> None:
    arrays = {k: v[:0] for k, v in make_dataset().arrays().items()}
    refused(write_npz(tmp_path / "empty.npz", arrays), "no transitions")


def test_pickled_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    """An object array whose unpickling would create a folder: loading must refuse before running it."""
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self) -> tuple:
            return (os.makedirs, (str(marker),))

    arrays: dict[str, np.ndarray] = make_dataset().arrays()
    trap = np.full(N, -0.1, dtype=object)
    trap[0] = Trap()
    arrays["rewards"] = trap
    path = write_npz(tmp_path / "pickled.npz", arrays)

    refused(path, "pickled")
    assert not marker.exists(), "load_dataset unpickled the object array"
    # The trap is real: loading the same file with pickle allowed does run it.
    with np.load(path, allow_pickle=True) as npz:
        npz["rewards"]
    assert marker.is_dir()


def test_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.npz"
    path.write_bytes(b"\x80\x04\x95" + b"\x00" * 32)
    refused(path, str(path))


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_file_is_refused(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "buffer.npz"
    save_dataset(path, make_dataset())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    refused(path, "not a readable .npz")


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "buffer.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    refused(path, "not a readable .npz")


def _member_data_offset(data: bytes, member: str) -> int:
    """Offset of a zip member's (compressed) payload: after its 30-byte local header, name and extra."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    start = info.header_offset
    name_len = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_len = int.from_bytes(data[start + 28 : start + 30], "little")
    return start + 30 + name_len + extra_len


def test_member_with_bad_crc_is_refused(tmp_path: Path) -> None:
    """Store the arrays uncompressed and flip payload bytes: the zip CRC check must catch it."""
    path = tmp_path / "buffer.npz"
    write_npz(path, make_dataset().arrays())  # np.savez stores members uncompressed
    data = bytearray(path.read_bytes())
    offset = _member_data_offset(bytes(data), "rewards.npy") + 128 + 4  # inside the array, past the header
    data[offset : offset + 4] = bytes(b ^ 0xFF for b in data[offset : offset + 4])
    path.write_bytes(bytes(data))
    refused(path, "not a readable .npz", "CRC")


def test_corrupt_compressed_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "buffer.npz"
    save_dataset(path, make_dataset())  # savez_compressed: deflated members
    data = bytearray(path.read_bytes())
    offset = _member_data_offset(bytes(data), "observations.npy")
    data[offset : offset + 8] = b"\xff" * 8  # block type 0b11 is reserved: an invalid deflate stream
    path.write_bytes(bytes(data))
    refused(path, "not a readable .npz")


def test_nonexistent_path_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere.npz", "no such dataset file", "python -m train.collect")


def test_directory_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, "no such dataset file")


def test_invalid_metadata_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "buffer.npz"
    save_dataset(path, make_dataset())
    metadata_path(path).write_text("{not json")
    refused(path, "invalid JSON")


def test_missing_metadata_loads_with_empty_metadata(tmp_path: Path) -> None:
    """The arrays are the contract; metadata is optional (a hand-made dataset may not have any)."""
    path = write_npz(tmp_path / "bare.npz", make_dataset().arrays())
    assert load_dataset(path).metadata == {}


def test_observation_shape_and_dtype_must_match_next_observations(tmp_path: Path) -> None:
    arrays = make_dataset().arrays()
    arrays["next_observations"] = arrays["next_observations"][:, :5]
    refused(write_npz(tmp_path / "shape.npz", arrays), "differ in shape")
    arrays = make_dataset().arrays()
    arrays["next_observations"] = np.zeros_like(arrays["next_observations"], dtype=np.int8)
    refused(write_npz(tmp_path / "dtype.npz", arrays), "differ in dtype")
