"""Networks and checkpoints: shapes, config round trips, safetensors round trips (re-shaped nets too),
and refusal of corrupt or foreign files without ever unpickling anything."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gridworld.core import build_model
from tests.layer_norm import perturb_layer_norms
from train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from train.evaluate import flat_obs
from train.networks import CNNNet, MLPNet, NetConfig, build_network, count_params


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_mlp_shapes_and_params() -> None:
    config = NetConfig(kind="mlp", obs_dim=6, hidden=(32, 16))
    net = build_network(config)
    assert isinstance(net, MLPNet)
    assert net(torch.zeros(5, 6)).shape == (5, 3)
    assert net(torch.zeros(1, 6)).shape == (1, 3)
    assert count_params(net) == (6 * 32 + 32) + (32 * 16 + 16) + (16 * 3 + 3)


def test_cnn_takes_flattened_image_observations() -> None:
    env = build_model("default", "image")
    obs = flat_obs(env.observations[:7])  # int8 [7, 3, 3] → float32 [7, 9]
    assert obs.shape == (7, 9) and obs.dtype == np.float32
    net = build_network(NetConfig(kind="cnn", obs_dim=9, hidden=(16,), channels=4))
    assert isinstance(net, CNNNet)
    assert net(torch.from_numpy(obs)).shape == (7, 3)


@pytest.mark.parametrize(
    "bad",
    [{"kind": "rnn"}, {"kind": "cnn", "obs_dim": 6}, {"hidden": ()}, {"hidden": (8, 0)}],
)
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        NetConfig(**bad)


def test_layer_norm_sits_between_each_hidden_linear_and_its_relu() -> None:
    net = build_network(NetConfig(obs_dim=6, hidden=(8, 4), layer_norm=True))
    kinds = [type(m).__name__ for m in net.body]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU"]
    assert count_params(net) == (6 * 8 + 8 + 2 * 8) + (8 * 4 + 4 + 2 * 4) + (4 * 3 + 3)
    # Configs written before the field existed rebuild as plain MLPs.
    old = {"kind": "mlp", "obs_dim": 6, "n_actions": 3, "hidden": [8, 4], "channels": 16, "extra": {}}
    assert NetConfig.from_dict(old).layer_norm is False


def test_config_round_trips_through_json() -> None:
    config = NetConfig(kind="mlp", obs_dim=6, hidden=(17, 9), extra={"pruned": "50% of units"})
    again = NetConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.hidden == (17, 9)  # a tuple again, not the JSON list


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, obs_dim: int) -> None:
    x = torch.rand(64, obs_dim)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    "config",
    [
        NetConfig(kind="mlp", obs_dim=6, hidden=(64, 64)),
        NetConfig(kind="mlp", obs_dim=6, hidden=(17, 9)),
        NetConfig(kind="cnn", obs_dim=9, hidden=(12,), channels=5),
        NetConfig(kind="mlp", obs_dim=6, hidden=(32, 16), layer_norm=True),
    ],
    ids=["mlp", "mlp-17x9", "cnn", "mlp-layernorm"],
)
def test_checkpoint_round_trip(tmp_path: Path, config: NetConfig) -> None:
    net = build_network(config)
    # LayerNorms off their 1/0 init, so a loader that dropped them would change the outputs.
    assert perturb_layer_norms(net) == (len(config.hidden) if config.layer_norm else 0)
    info = {"algo": "cql", "eval": {"Return": 8.9}}
    path = save_checkpoint(tmp_path / "net.safetensors", net, config, info)
    loaded, loaded_config, loaded_info = load_checkpoint(path)
    assert loaded_config == config
    assert loaded_info == info
    assert type(loaded) is type(net)
    assert not loaded.training  # ready for inference
    _same_outputs(net, loaded, config.obs_dim)


def test_pruned_network_rebuilds_from_its_own_file(tmp_path: Path) -> None:
    """A 64×64 net with units removed (as structured pruning does) loads from its file alone."""
    big_config = NetConfig(hidden=(64, 64))
    big = build_network(big_config)
    keep1, keep2 = torch.arange(0, 64, 3)[:17], torch.arange(0, 64, 7)[:9]
    small_config = NetConfig(hidden=(17, 9), extra={"pruned_from": [64, 64]})
    small = build_network(small_config)
    with torch.no_grad():
        small.body[0].weight.copy_(big.body[0].weight[keep1])
        small.body[0].bias.copy_(big.body[0].bias[keep1])
        small.body[2].weight.copy_(big.body[2].weight[keep2][:, keep1])
        small.body[2].bias.copy_(big.body[2].bias[keep2])
        small.out.weight.copy_(big.out.weight[:, keep2])
        small.out.bias.copy_(big.out.bias)
    path = save_checkpoint(tmp_path / "pruned.safetensors", small, small_config, {})
    loaded, config, _ = load_checkpoint(path)
    assert config.hidden == (17, 9) and config.extra == {"pruned_from": [64, 64]}
    assert loaded.body[0].weight.shape == (17, 6)
    _same_outputs(small, loaded, 6)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_garbage_and_truncated_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    good = save_checkpoint(
        tmp_path / "good.safetensors", build_network(NetConfig(hidden=(8,))), NetConfig(hidden=(8,))
    )
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    """A valid safetensors file that was not written by NeuroQuant has no network config to trust."""
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="without a NeuroQuant network config"):
        load_checkpoint(foreign)


@pytest.mark.parametrize("network", ["[256, 256]", '"mlp"', "{not json"])
def test_header_config_that_is_not_a_json_object_is_refused(tmp_path: Path, network: str) -> None:
    """A tampered header must give a CheckpointError, not an AttributeError from deep inside."""
    bad = tmp_path / "bad.safetensors"
    meta = {"format": "neuroquant-checkpoint/1", "network": network, "info": "{}"}
    save_file({"weight": torch.zeros(3, 3)}, str(bad), metadata=meta)
    with pytest.raises(CheckpointError, match="corrupt network config"):
        read_checkpoint(bad)


def test_checkpoint_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); the result must be readable like any written file."""
    import os

    path = save_checkpoint(tmp_path / "c.safetensors", build_network(NetConfig()), NetConfig())
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_weights_that_do_not_match_the_config_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "net.safetensors", build_network(NetConfig(hidden=(8,))), NetConfig(hidden=(8,))
    )
    # Rewrite the header so the stored config claims a different shape than the stored weights.
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    network = json.loads(header["__metadata__"]["network"])
    network["hidden"] = [9]
    header["__metadata__"]["network"] = json.dumps(network)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    path.write_bytes(struct.pack("<Q", len(new_header)) + new_header + data[8 + n :])
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)


def test_checkpoints_contain_and_need_no_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = NetConfig(hidden=(16, 16))
    path = save_checkpoint(tmp_path / "net.safetensors", build_network(config), config, {"note": "x"})
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    json.loads(data[8 : 8 + n])  # the header is plain JSON
    assert not data.startswith(b"PK")  # not a torch.save zip
    # No pickle protocol marker in the header (the 8-byte length before it is a number: 640 is b"\x80\x02").
    assert b"\x80\x02" not in data[8 : 8 + n] and b"\x80\x04" not in data[8 : 8 + n]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint load must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    config_back, tensors, info = read_checkpoint(path)
    assert config_back == config and info == {"note": "x"}
    assert set(tensors) == set(build_network(config).state_dict())
    load_checkpoint(path)
