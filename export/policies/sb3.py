"""``sb3:model.zip`` — a Stable-Baselines3 ``MlpPolicy`` or ``CnnPolicy`` as a float torch module, read
without unpickling.

An SB3 zip (``model.save()``) holds ``policy.pth`` (the state dict, a torch file that
``torch.load(weights_only=True)`` reads without running code) and ``data`` (JSON in which everything JSON
cannot hold — spaces, the policy class, schedules, often ``policy_kwargs`` — is a cloudpickled
``":serialized:"`` blob beside a few readable first-level fields). ``SB3.load()`` unpickles all of it,
i.e. runs whatever code the file carries. Here:

- the architecture comes from the weights' shapes (Linear layers in order) and the family's known layout;
  a CnnPolicy's NatureCNN from its convolutions' shapes and NatureCNN's fixed strides; image observations
  enter the graph as uint8 and are divided by 255 inside it, as SB3's ``preprocess_obs`` does;
- the spaces come from the env (``tasks.from_env``), never from the file;
- of ``data`` only readable fields are used: the policy class's module and name, ``use_sde``, which
  algorithm-specific keys exist, and ``policy_kwargs`` when plain JSON (or when only training settings,
  such as A2C's default RMSprop ``optimizer_class``, are pickled in it);
- what only unpickling can tell (a pickled ``activation_fn`` or features extractor, a VecNormalize
  ``.pkl``) is refused with a message naming ``--trust-pickle``; with ``trust_pickle=True`` it is unpickled
  and used, and the normalisation is baked into the graph (docs/contracts.md#policy-sources).

The module reproduces ``model.predict(obs, deterministic=True)``: Q-values (DQN; QR-DQN from sb3-contrib,
its quantiles' mean folded into the output layer) or logits (PPO/A2C,
Discrete) whose argmax is the action; for Box actions the action itself in env units — PPO/A2C's Gaussian
mean clipped to the bounds, SAC's tanh(mean) and TD3/DDPG's tanh output unscaled from [−1, 1] to
[low, high] — because SB3 does that in ``predict``, outside the network.
"""

from __future__ import annotations

import base64
import io
import json
import math
import pickle  # for its exception types only: nothing here unpickles without trust_pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import tasks
from common.fileio import file_sha256
from export.policies import LoadedPolicy
from export.policies.modules import (
    ChannelsFirst,
    ClipToBounds,
    ObsNormalize,
    ScaleImage,
    Unscale,
    mlp_policy,
    nature_cnn,
)

KIND = "sb3"
WEIGHTS = "policy.pth"
DATA = "data"
VERSION = "_stable_baselines3_version"
TRUST = (
    "pass --trust-pickle (trust_pickle=True) only if you trust where the file comes from: unpickling runs "
    "any code the file carries"
)

# policy_kwargs that only shape training, ignored whatever they hold: A2C pickles its default
# optimizer_class (RMSprop) into every zip, which must not make a plain A2C policy unreadable.
TRAINING_ONLY_KWARGS = frozenset(
    {"optimizer_class", "optimizer_kwargs", "ortho_init", "log_std_init", "full_std", "use_expln",
     "n_critics", "share_features_extractor", "normalize_images"}
)  # fmt: skip

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"Tanh": nn.Tanh, "ReLU": nn.ReLU}


@dataclass(frozen=True)
class Family:
    """One SB3 weight layout: where the layers are and what ``predict`` does after them."""

    name: str
    body: str
    """Key prefix of the hidden Linear chain (``<body><i>.weight``)."""
    head: str | None
    """Key prefix of the output Linear, or None when the chain's last Linear is the output."""
    default_activation: str
    """The algorithm's default ``activation_fn`` (SB3: Tanh for PPO/A2C, ReLU for DQN/SAC/TD3/DDPG)."""
    policy_module: str
    """The module SB3's policy class lives in (the readable ``policy_class.__module__``)."""


FAMILIES: dict[str, Family] = {
    "dqn": Family("dqn", "q_net.q_net.", None, "ReLU", "stable_baselines3.dqn.policies"),
    "qrdqn": Family("qrdqn", "quantile_net.quantile_net.", None, "ReLU", "sb3_contrib.qrdqn.policies"),
    "actor-critic": Family(
        "actor-critic",
        "mlp_extractor.policy_net.",
        "action_net.",
        "Tanh",
        "stable_baselines3.common.policies",
    ),
    "sac": Family("sac", "actor.latent_pi.", "actor.mu.", "ReLU", "stable_baselines3.sac.policies"),
    "td3": Family("td3", "actor.mu.", None, "ReLU", "stable_baselines3.td3.policies"),
}

# Weight keys that mean a layout this loader does not read, and what to say about it.
UNSUPPORTED_KEYS: tuple[tuple[str, str], ...] = (
    ("lstm", "a recurrent policy (RecurrentPPO); only feed-forward MlpPolicy and CnnPolicy are supported"),
    ("mlp_extractor.shared_net.", "a shared actor-critic trunk (SB3 < 1.8 layout); re-save it with SB3 2.x"),
)  # fmt: skip


@dataclass
class ZipContents:
    """What an SB3 zip gives without unpickling."""

    state: dict[str, torch.Tensor]
    data: dict[str, Any]
    version: str | None
    names: list[str] = field(default_factory=list)


def read_zip(path: Path) -> ZipContents:
    """Weights (``weights_only=True``) and the ``data`` JSON; a foreign file is a ``ValueError`` naming it."""
    expected = "expected the .zip that Stable-Baselines3's model.save() writes (with policy.pth and data)"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(
            f"{path}: not a Stable-Baselines3 model, not a zip archive ({err}); {expected}"
        ) from err
    with archive:
        names = archive.namelist()
        missing = [name for name in (WEIGHTS, DATA) if name not in names]
        if missing:
            raise ValueError(
                f"{path}: not a Stable-Baselines3 model, the zip has no {' and no '.join(missing)} "
                f"(it holds {names[:8]}); {expected}"
            )
        try:
            state = torch.load(io.BytesIO(archive.read(WEIGHTS)), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(
                f"{path}: {WEIGHTS} is not a plain tensor state dict readable with weights_only=True "
                f"({type(err).__name__}: {err}); {expected}"
            ) from err
        try:
            data = json.loads(archive.read(DATA))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: its {DATA} member is not JSON ({err}); {expected}") from err
        version = archive.read(VERSION).decode(errors="replace").strip() if VERSION in names else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: {WEIGHTS} does not hold a state dict of tensors; {expected}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: its {DATA} member is not a JSON object; {expected}")
    return ZipContents(dict(state), data, version, names)


def _serialized(value: Any) -> bool:
    return isinstance(value, dict) and ":serialized:" in value


def _readable(value: Any) -> dict[str, Any]:
    """The first-level fields SB3 writes beside a pickled blob (``:type:``, ``__module__`` …)."""
    return {k: v for k, v in value.items() if k != ":serialized:"} if isinstance(value, dict) else {}


def policy_class_name(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(module, class name) of the pickled policy class from its readable fields, without unpickling.

    SB3 writes the class's ``__dict__`` items as strings: ``__module__`` directly, and the class name
    inside the repr of the methods it defines (``<function ActorCriticPolicy.__init__ at 0x…>``).
    """
    fields = _readable(data.get("policy_class"))
    module = fields.get("__module__") if isinstance(fields.get("__module__"), str) else None
    name = None
    for key in ("__init__", "_build", "forward", "_predict"):
        match = re.match(r"<function (\w+)\.", str(fields.get(key, "")))
        if match:
            name = match.group(1)
            break
    return module, name


def detect_family(state: Mapping[str, torch.Tensor], data: dict[str, Any], path: Path) -> Family:
    """The family from the weight keys, checked against the readable policy class."""
    keys = list(state)
    module, name = policy_class_name(data)
    if name is not None and re.search(r"MultiInput|Recurrent", name):
        raise ValueError(
            f"{path}: the policy class is {name} ({module}); only MlpPolicy and CnnPolicy are supported"
        )
    for marker, what in UNSUPPORTED_KEYS:
        found = [k for k in keys if marker in k]
        if found:
            raise ValueError(f"{path}: {what} (weights {found[:3]} …)")
    if any(k.startswith("q_net.q_net.") for k in keys):
        family = FAMILIES["dqn"]
    elif any(k.startswith("quantile_net.quantile_net.") for k in keys):
        family = FAMILIES["qrdqn"]
    elif any(
        k.startswith(("mlp_extractor.", "features_extractor.", "pi_features_extractor.")) for k in keys
    ) and any(
        k.startswith("action_net.") for k in keys
    ):  # a CnnPolicy's mlp_extractor is empty (net_arch=[]): no weights of its own
        family = FAMILIES["actor-critic"]
    elif any(k.startswith("actor.latent_pi.") for k in keys):
        family = FAMILIES["sac"]
    elif any(k.startswith("actor.mu.") for k in keys) and not any(
        k.startswith("actor.log_std") for k in keys
    ):
        family = FAMILIES["td3"]
    else:
        raise ValueError(
            f"{path}: unsupported Stable-Baselines3 weight layout (policy class {name or '?'} in "
            f"{module or '?'}; weights {keys[:6]} …); supported: DQN, QR-DQN, PPO, A2C, SAC, TD3 and DDPG "
            f"MlpPolicy, and their CnnPolicy"
        )
    if module is not None and module != family.policy_module:
        raise ValueError(
            f"{path}: the weights look like a {family.name} policy but the policy class is "
            f"{name or '?'} from {module}; unsupported layout"
        )
    return family


def algorithm_name(family: Family, data: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """The algorithm, for the record: the readable hyperparameters each one saves tell them apart."""
    if family.name == "dqn":
        return "DQN"
    if family.name == "qrdqn":
        return "QR-DQN"
    if family.name == "sac":
        return "SAC"
    if family.name == "actor-critic":
        return "PPO" if "clip_range" in data or "n_epochs" in data else "A2C"
    # DDPG is TD3 with one critic, no target smoothing and no policy delay (SB3's DDPG class).
    ddpg = (
        data.get("policy_delay") == 1
        and data.get("target_noise_clip") == 0.0
        and kwargs.get("n_critics") == 1
    )
    return "DDPG" if ddpg else "TD3"


def read_policy_kwargs(data: dict[str, Any], trust_pickle: bool, path: Path) -> tuple[dict[str, Any], bool]:
    """(policy_kwargs, whether they were unpickled).

    Plain JSON is used as is. A pickled dict is refused without ``trust_pickle`` only when a field that
    shapes inference is pickled: its readable copy is then a repr string (``"<class '…ReLU'>"``), which
    says what it is but cannot be trusted to be it.
    """
    raw = data.get("policy_kwargs") or {}
    if not _serialized(raw):
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: policy_kwargs is {type(raw).__name__}, expected an object")
        return dict(raw), False
    readable = {k: v for k, v in _readable(raw).items() if not k.startswith(":")}
    pickled = {k: v for k, v in readable.items() if isinstance(v, str) and k not in TRAINING_ONLY_KWARGS}
    if not pickled:
        return readable, False
    if not trust_pickle:
        fields = ", ".join(f"{k}={v}" for k, v in sorted(pickled.items()))
        raise ValueError(
            f"{path}: policy_kwargs holds pickled objects ({fields}) that can only be read by unpickling; "
            f"{TRUST}"
        )
    import cloudpickle

    kwargs = cloudpickle.loads(base64.b64decode(raw[":serialized:"]))
    if not isinstance(kwargs, dict):
        raise ValueError(f"{path}: policy_kwargs unpickled to {type(kwargs).__name__}, expected a dict")
    return kwargs, True


def activation_from(
    kwargs: dict[str, Any], family: Family, path: Path
) -> tuple[Callable[[], nn.Module], str]:
    """The activation class and its name; an unpickled one must be a parameter-free ``nn.Module``."""
    fn = kwargs.get("activation_fn")
    if fn is None:
        return ACTIVATIONS[family.default_activation], family.default_activation
    if isinstance(fn, str) or not (isinstance(fn, type) and issubclass(fn, nn.Module)):
        raise ValueError(f"{path}: policy_kwargs activation_fn is {fn!r}, expected a torch.nn.Module class")
    if any(True for _ in fn().parameters()):
        raise ValueError(f"{path}: activation_fn {fn.__name__} has parameters; not supported")
    return fn, fn.__name__


def check_features_extractor(kwargs: dict[str, Any], path: Path) -> None:
    cls = kwargs.get("features_extractor_class")
    if cls is not None and getattr(cls, "__name__", str(cls)) not in ("FlattenExtractor", "NatureCNN"):
        raise ValueError(
            f"{path}: features_extractor_class is {getattr(cls, '__name__', cls)}; only MlpPolicy's "
            f"FlattenExtractor and CnnPolicy's NatureCNN are supported"
        )


#: SB3's ``NatureCNN`` (Mnih et al. 2015), CnnPolicy's extractor: (kernel, stride) of its three
#: convolutions, no padding, ReLU after each, then Flatten, Linear(→ features_dim) and ReLU. The strides are
#: not in the weights; the kernels are, and must be these.
NATURE_CNN = ((8, 4), (4, 2), (3, 1))
EXTRACTORS = {
    "dqn": ("q_net.features_extractor.",),
    "qrdqn": ("quantile_net.features_extractor.",),
    # shared (the default for PPO/A2C) or the policy's own when share_features_extractor=False
    "actor-critic": ("features_extractor.", "pi_features_extractor."),
    "sac": ("actor.features_extractor.",),
    "td3": ("actor.features_extractor.",),
}


@dataclass
class ImageTrunk:
    """A NatureCNN read from the weights: (weight, bias, stride) per convolution, the Linear after them."""

    convs: list[tuple[torch.Tensor, torch.Tensor, int]]
    linear: tuple[torch.Tensor, Any]

    def flat_size(self, height: int, width: int) -> int:
        for weight, _, stride in self.convs:
            kernel = int(weight.shape[-1])
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        return int(self.convs[-1][0].shape[0]) * max(height, 0) * max(width, 0)


def read_image_trunk(family: Family, state: Mapping[str, torch.Tensor], path: Path) -> ImageTrunk | None:
    """The policy's NatureCNN, or None for an MlpPolicy (no extractor weights); any other extractor with
    weights is refused by name."""
    prefix = next((p for p in EXTRACTORS[family.name] if any(k.startswith(p) for k in state)), None)
    if prefix is None:
        return None
    params = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    expected = {f"cnn.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    expected |= {"linear.0.weight", "linear.0.bias"}
    if set(params) != expected:
        raise ValueError(
            f"{path}: a custom features extractor (weights {sorted(params)[:6]} …); only CnnPolicy's "
            f"NatureCNN and MlpPolicy are supported"
        )
    convs = []
    for i, (kernel, stride) in zip((0, 2, 4), NATURE_CNN, strict=True):
        weight, bias = params[f"cnn.{i}.weight"].float(), params[f"cnn.{i}.bias"].float()
        if weight.ndim != 4 or tuple(weight.shape[-2:]) != (kernel, kernel) or bias.shape != weight.shape[:1]:
            raise ValueError(
                f"{path}: {prefix}cnn.{i} has weights {list(weight.shape)}; NatureCNN's layer {i // 2} is a "
                f"{kernel}×{kernel} convolution"
            )
        convs.append((weight, bias, stride))
    linear = _linear({"weight": params["linear.0.weight"], "bias": params["linear.0.bias"]}, "linear", path)
    return ImageTrunk(convs, linear)


def linear_chain(
    state: Mapping[str, torch.Tensor], prefix: str, path: Path
) -> list[tuple[torch.Tensor, Any]]:
    """The Linear layers of an SB3 ``create_mlp`` Sequential under ``prefix``, in order.

    ``create_mlp`` without extra modules puts a parameter-free activation after each Linear, so Linear
    indices run 0, 2, 4 …; anything else (LayerNorm, Dropout, BatchNorm) is refused rather than dropped.
    """
    entries: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        match = re.fullmatch(r"(\d+)\.(weight|bias)", key[len(prefix) :])
        if match is None:
            raise ValueError(
                f"{path}: unexpected weight {key!r} in {prefix.rstrip('.')} (not a Linear layer)"
            )
        entries.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
    indices = sorted(entries)
    if indices != list(range(0, 2 * len(indices), 2)):
        raise ValueError(
            f"{path}: {prefix.rstrip('.')} has layers at {indices}; expected Linear layers at 0, 2, 4 … "
            f"(extra modules between them, e.g. LayerNorm or Dropout, are not supported)"
        )
    return [_linear(entries[i], f"{prefix}{i}", path) for i in indices]


def _linear(params: Mapping[str, torch.Tensor], name: str, path: Path) -> tuple[torch.Tensor, Any]:
    weight, bias = params.get("weight"), params.get("bias")
    if weight is None or weight.ndim != 2 or (bias is not None and tuple(bias.shape) != (weight.shape[0],)):
        shapes = {k: list(v.shape) for k, v in params.items()}
        raise ValueError(f"{path}: {name} is not a Linear layer (shapes {shapes})")
    return weight.float(), None if bias is None else bias.float()


def _single_linear(state: Mapping[str, torch.Tensor], prefix: str, path: Path) -> tuple[torch.Tensor, Any]:
    params = {key[len(prefix) :]: v for key, v in state.items() if key.startswith(prefix)}
    return _linear(params, prefix.rstrip("."), path)


@dataclass
class Layout:
    """What was read from the weights: the Linear layers and what ``predict`` applies after them."""

    layers: list[tuple[torch.Tensor, Any]]
    action_kind: str
    """``discrete`` or ``box`` (what the weights imply)."""
    output: str
    after: list[str]
    """Post-processing in order: ``hardtanh`` (SAC gSDE mean clip), ``tanh``, ``unscale``, ``clip``."""
    mean_clip: float | None = None


def read_layout(
    family: Family, state: Mapping[str, torch.Tensor], kwargs: dict[str, Any], path: Path
) -> Layout:
    """The family's Linear layers and its post-processing, from the weight keys and readable settings."""
    layers = linear_chain(state, family.body, path)
    if family.name == "dqn":
        return Layout(layers, "discrete", "q", [])
    if family.name == "qrdqn":
        layers[-1] = quantile_means(layers[-1], int(kwargs.get("n_quantiles", QRDQN_QUANTILES)), path)
        return Layout(layers, "discrete", "q", [])
    if family.name == "td3":
        return Layout(layers, "box", "action", ["tanh", "unscale"])
    if family.name == "actor-critic":
        layers.append(_single_linear(state, family.head, path))
        if "log_std" not in state:  # a Categorical head has no log_std; Gaussian and gSDE ones do
            return Layout(layers, "discrete", "logits", [])
        squash = bool(kwargs.get("squash_output", False))  # gSDE only; predict then unscales tanh(mean)
        return Layout(layers, "box", "action", ["tanh", "unscale"] if squash else ["clip"])
    # SAC: mu is a Linear, or Sequential(Linear, Hardtanh(±clip_mean)) with gSDE; then tanh, unscale.
    if any(k.startswith(f"{family.head}0.") for k in state):
        layers.append(_single_linear(state, f"{family.head}0.", path))
        clip_mean = float(kwargs.get("clip_mean", 2.0))
        return Layout(layers, "box", "action", ["hardtanh", "tanh", "unscale"], clip_mean)
    layers.append(_single_linear(state, family.head, path))
    return Layout(layers, "box", "action", ["tanh", "unscale"])


QRDQN_QUANTILES = 200
"""sb3-contrib's default ``n_quantiles`` (used when the zip's readable policy_kwargs do not set it)."""


def quantile_means(layer: tuple[torch.Tensor, Any], n_quantiles: int, path: Path) -> tuple[torch.Tensor, Any]:
    """QR-DQN's output layer (``n_quantiles × n_actions`` outputs, quantile-major: sb3-contrib views them
    as ``[N, n_quantiles, n_actions]`` and ``predict`` takes the argmax of their mean over quantiles) as
    one Linear giving the Q-values: the mean of linear outputs is the linear map of the mean weights, so
    the graph computes ``predict``'s Q-values directly (averaged in float64, then float32)."""
    weight, bias = layer
    if n_quantiles < 1 or weight.shape[0] % n_quantiles:
        raise ValueError(
            f"{path}: the QR-DQN output layer has {weight.shape[0]} outputs, not a multiple of "
            f"n_quantiles = {n_quantiles}"
        )
    n_actions = weight.shape[0] // n_quantiles
    mean_w = weight.double().reshape(n_quantiles, n_actions, -1).mean(dim=0).float()
    mean_b = None if bias is None else bias.double().reshape(n_quantiles, n_actions).mean(dim=0).float()
    return mean_w, mean_b


def check_image_fits(trunk: ImageTrunk, task: tasks.TaskSpec, env_id: str, path: Path) -> bool:
    """A NatureCNN against the env's image observations; True when they are channel-last (SB3 transposes
    those with VecTransposeImage, outside the policy: the graph does it here)."""
    shape, channels = task.observation.shape, int(trunk.convs[0][0].shape[1])
    if len(shape) != 3 or channels not in (shape[0], shape[-1]):
        raise ValueError(
            f"{path}: the CnnPolicy takes images of {channels} channels but {env_id} observations have "
            f"shape {list(shape)}; was it trained on another env (or another frame stack)?"
        )
    last = shape[0] != channels
    height, width = (shape[0], shape[1]) if last else (shape[1], shape[2])
    n_flat, n_in = trunk.flat_size(height, width), int(trunk.linear[0].shape[1])
    if n_flat != n_in:
        raise ValueError(
            f"{path}: the CnnPolicy's convolutions give {n_in} features for its images, but {height}×{width} "
            f"frames of {env_id} give {n_flat}; was it trained on another screen size?"
        )
    return last


def check_fits(
    layout: Layout, task: tasks.TaskSpec, algorithm: str, env_id: str, path: Path, image: bool = False
) -> None:
    """The policy's input and output against the env's spaces, with both shapes in the message."""
    n_in = int(layout.layers[0][0].shape[1])
    n_obs = math.prod(task.observation.shape)
    if not image and n_in != n_obs:
        raise ValueError(
            f"{path}: the policy takes {n_in} inputs but {env_id} observations have {n_obs} "
            f"(shape {list(task.observation.shape)}); was it trained on another env?"
        )
    if layout.action_kind != task.action.kind:
        raise ValueError(
            f"{path}: the {algorithm} policy outputs {layout.output} for {layout.action_kind} actions but "
            f"{env_id} has {task.action.kind} actions; was it trained on another env?"
        )
    n_out = int(layout.layers[-1][0].shape[0])
    want = task.action.n if task.action.kind == "discrete" else math.prod(task.action.shape)
    if n_out != want:
        what = "actions" if task.action.kind == "discrete" else "action dimensions"
        raise ValueError(
            f"{path}: the policy outputs {n_out} values but {env_id} has {want} {what}; "
            f"was it trained on another env?"
        )


def read_vecnormalize(
    path: Path, trust_pickle: bool, obs_shape: tuple[int, ...]
) -> tuple[ObsNormalize | None, dict]:
    """A VecNormalize ``.pkl`` → the observation normaliser (None when it did not normalise observations).

    The file is a pickled ``VecNormalize`` object, so it can only be read by unpickling (and needs
    stable_baselines3 installed to resolve its classes).
    """
    if not path.is_file():
        raise ValueError(
            f"VecNormalize statistics {path}: {'is a folder' if path.is_dir() else 'does not exist'}"
        )
    if not trust_pickle:
        raise ValueError(
            f"VecNormalize statistics {path}: a pickle file, which can only be read by unpickling; {TRUST}"
        )
    with open(path, "rb") as f:
        try:
            stats = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as err:
            raise ValueError(
                f"VecNormalize statistics {path}: cannot be unpickled ({type(err).__name__}: {err}); "
                f"expected the file VecNormalize.save() writes (stable_baselines3 must be installed)"
            ) from err
    info = {"kind": "vecnormalize", "path": str(path), "sha256": file_sha256(path)}
    obs_rms = getattr(stats, "obs_rms", None)
    if not hasattr(stats, "norm_obs") or obs_rms is None:
        raise ValueError(
            f"VecNormalize statistics {path}: holds a {type(stats).__name__}, not a VecNormalize"
        )
    if not stats.norm_obs:
        return None, {**info, "norm_obs": False}
    if isinstance(obs_rms, dict):
        raise ValueError(
            f"VecNormalize statistics {path}: per-key (Dict observation) statistics; not supported"
        )
    mean, var = np.asarray(obs_rms.mean, np.float64), np.asarray(obs_rms.var, np.float64)
    if mean.shape != tuple(obs_shape) or var.shape != tuple(obs_shape):
        raise ValueError(
            f"VecNormalize statistics {path}: statistics of shape {list(mean.shape)} but the env's "
            f"observations have shape {list(obs_shape)}"
        )
    clip, eps = float(stats.clip_obs), float(stats.epsilon)
    return ObsNormalize(mean, var, eps, clip), {**info, "norm_obs": True, "clip_obs": clip, "epsilon": eps}


def _json_safe(value: Any) -> Any:
    """policy_kwargs for the record: JSON values kept, anything else (classes) as its name or repr."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "__name__", repr(value))


def load_sb3(
    path: str | Path,
    env_id: str,
    trust_pickle: bool = False,
    *,
    vecnormalize: str | Path | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> LoadedPolicy:
    """An SB3 ``MlpPolicy``/``CnnPolicy`` zip → a :class:`LoadedPolicy` whose module gives
    ``predict(deterministic=True)``.

    ``vecnormalize``: the ``VecNormalize.save()`` file the policy was trained behind; its observation
    statistics go into the module (needs ``trust_pickle``). ``env_kwargs`` go to ``tasks.from_env``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"sb3 policy {path}: {'is a folder, not a file' if path.is_dir() else 'does not exist'}"
        )
    contents = read_zip(path)
    family = detect_family(contents.state, contents.data, path)
    kwargs, unpickled = read_policy_kwargs(contents.data, trust_pickle, path)
    check_features_extractor(kwargs, path)
    activation, activation_name = activation_from(kwargs, family, path)
    algorithm = algorithm_name(family, contents.data, kwargs)
    layout = read_layout(family, contents.state, kwargs, path)

    trunk = read_image_trunk(family, contents.state, path)

    task = tasks.from_env(env_id, **(env_kwargs or {}))
    channels_last = check_image_fits(trunk, task, env_id, path) if trunk is not None else False
    check_fits(layout, task, algorithm, env_id, path, image=trunk is not None)
    task = replace(task, output=layout.output)

    before: list[tuple[str, nn.Module]] = []
    normalization = None
    if vecnormalize is not None:
        normalizer, normalization = read_vecnormalize(
            Path(vecnormalize), trust_pickle, task.observation.shape
        )
        if normalizer is not None:
            before.append(("normalize", normalizer))
    # SB3's preprocess_obs: an image space (uint8, three dims) is divided by 255 unless normalize_images=False
    if task.observation.dtype == "uint8" and len(task.observation.shape) == 3:
        before.append(("scale", ScaleImage(bool(kwargs.get("normalize_images", True)))))
    if trunk is not None:
        if channels_last:
            before.append(("to_channels_first", ChannelsFirst()))
        before += nature_cnn(trunk.convs, trunk.linear)
    elif len(task.observation.shape) > 1:
        before.append(("flatten", nn.Flatten(1)))  # SB3's FlattenExtractor
    after: list[tuple[str, nn.Module]] = []
    if layout.action_kind == "box":
        low, high = tasks.action_bounds(task)
        steps: dict[str, Callable[[], nn.Module]] = {
            "hardtanh": lambda: nn.Hardtanh(-layout.mean_clip, layout.mean_clip),
            "tanh": nn.Tanh,
            "unscale": lambda: Unscale(low, high),
            "clip": lambda: ClipToBounds(low, high),
        }
        after = [(step, steps[step]()) for step in layout.after]
    model = mlp_policy(layout.layers, activation, before, after)

    info = {
        "format": "stable-baselines3 zip",
        "algorithm": algorithm,
        "policy_class": policy_class_name(contents.data)[1],
        "sb3_version": contents.version,
        "features_extractor": "NatureCNN" if trunk is not None else "FlattenExtractor",
        "layers": [int(layout.layers[0][0].shape[1])] + [int(w.shape[0]) for w, _ in layout.layers],
        "activation": activation_name,
        "after": list(layout.after),
        "use_sde": bool(contents.data.get("use_sde", False)),
        "policy_kwargs": _json_safe(kwargs),
        "unpickled": (["policy_kwargs"] if unpickled else []) + (["vecnormalize"] if normalization else []),
        "normalization": normalization,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return LoadedPolicy(model, task, KIND, str(path), file_sha256(path), info)
