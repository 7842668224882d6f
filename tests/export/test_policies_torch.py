"""``torch:`` policy sources: TorchScript files and factories + safetensors weights, read without
unpickling; a plain chain is rebuilt as an ``mlp_policy`` (so it can be pruned and distilled), anything
else exports as it is with its derived variants skipped; a policy that does not fit the env is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from export.__main__ import main
from export.onnx_export import torch_q_values
from export.policies import load_policy, parse_policy
from export.policies.torch_source import as_chain
from export.task_export import skip_reason
from export.variants import VARIANTS

MODULE = """
import torch
from torch import nn

def chain():
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))

class Doubled(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, x):
        return 2 * self.layer(x)

def doubled():
    return Doubled()

def not_a_module():
    return 3

def three_actions():
    return nn.Sequential(nn.Linear(4, 3))
"""


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's package (``nq_user_policy``) on sys.path, TorchScript files and weights of its modules."""
    (tmp_path / "nq_user_policy.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("nq_user_policy", None)
    import nq_user_policy

    torch.manual_seed(0)
    for name in ("chain", "doubled", "three_actions"):
        model = getattr(nq_user_policy, name)()
        torch.jit.save(torch.jit.script(model), str(tmp_path / f"{name}.pt"))
        save_file(model.state_dict(), str(tmp_path / f"{name}.safetensors"))
    return tmp_path


def test_torchscript_and_factory_give_the_same_function(user_code: Path) -> None:
    scripted = load_policy("torch:chain.pt", "CartPole-v1")
    built = load_policy("torch:nq_user_policy:chain", "CartPole-v1", weights=Path("chain.safetensors"))
    original = torch.jit.load("chain.pt")
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    with torch.inference_mode():
        expected = original(torch.from_numpy(obs)).numpy()
    for policy in (scripted, built):
        assert policy.kind == "torch" and policy.underivable is None and policy.info["rebuilt_as_mlp"]
        assert isinstance(policy.model, nn.Sequential) and hasattr(policy.model, "out")  # prunable
        assert np.abs(torch_q_values(policy.model, obs) - expected).max() <= 1e-6
        assert policy.task.output == "logits" and policy.task.action.n == 2
    assert scripted.sha256 != built.sha256  # the .pt file's hash, the weights file's hash


def test_a_custom_forward_is_exported_as_is_and_not_pruned(user_code: Path) -> None:
    policy = load_policy("torch:doubled.pt", "CartPole-v1")
    assert policy.info["rebuilt_as_mlp"] is False and "nn.Sequential" in policy.underivable
    reason = skip_reason(VARIANTS["pruned-50"], "onnx", "torch", policy.underivable)
    assert reason.startswith("not built from this torch policy: pruning and distillation need")
    assert skip_reason(VARIANTS["int8-static"], "onnx", "torch", policy.underivable) is None
    # a Sequential whose children are a chain but whose forward is not that chain is caught by the probe
    assert as_chain(nn.Sequential(nn.Linear(4, 2)))[0] is not None
    assert as_chain(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.ReLU()))[0] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "torch:nq_user_policy:chain"], "its weights come from --weights"),
        (["--policy", "torch:nq_user_policy:doubled", "--weights", "chain.safetensors"], "do not fit"),
        (
            ["--policy", "torch:nq_user_policy:not_a_module", "--weights", "chain.safetensors"],
            "not an nn.Module",
        ),
        (["--policy", "torch:nq_user_policy:missing", "--weights", "chain.safetensors"], "cannot import"),
        (["--policy", "torch:chain.safetensors"], "not a TorchScript file"),
        (["--policy", "torch:chain.pt", "--weights", "chain.safetensors"], "applies to torch:module:factory"),
        (["--policy", "torch:nq_user_policy:chain", "--weights", "nope.safetensors"], "does not exist"),
        (
            ["--policy", "torch:doubled.pt", "--env", "Pendulum-v1"],
            "does not take Pendulum-v1's",
        ),
        (
            ["--policy", "torch:three_actions.pt"],
            "returns [2, 3] for 2 observations; CartPole-v1 needs [2, 2]",
        ),
    ],
)
def test_refusals(user_code: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    env = [] if "--env" in argv else ["--env", "CartPole-v1"]
    assert main(["--target", "x86", *argv, *env, "--out", "out", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (user_code / "out").exists()


def test_factory_spec_is_not_a_path() -> None:
    assert parse_policy("torch:my_pkg.policies:make") == ("torch", Path("my_pkg.policies:make"))
    with pytest.raises(ValueError, match="does not exist"):
        parse_policy("sb3:my_pkg.policies:make")  # only torch: takes a factory


@pytest.mark.slow  # a TorchScript policy's export with a pruned and a distilled variant: ~30 s
def test_torchscript_export_builds_pruned_and_distilled_variants(user_code: Path) -> None:
    from backends.manifest import load_manifest

    argv = ["--target", "x86", "--policy", "torch:chain.pt", "--env", "CartPole-v1", "--episodes", "5"]
    assert main([*argv, "--out", "out", "--quiet", "--variants", "float,pruned-50,distilled"]) == 0
    manifest = load_manifest(user_code / "out" / "manifest.json")
    by = {a.name: a for a in manifest.artifacts}
    assert manifest.source["kind"] == "torch" and manifest.task_spec().env.id == "CartPole-v1"
    assert by["float/onnx"].status == "ok" and by["float/onnx"].parity["max_abs_diff"] <= 1e-5
    assert by["pruned-50/onnx"].params < by["float/onnx"].params  # built, with fewer units
    assert by["distilled/onnx"].params <= 0.1 * by["float/onnx"].params
    assert by["float/torch"].status == "skipped"
