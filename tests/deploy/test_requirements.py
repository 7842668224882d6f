"""Edge requirements: the `edge` extra plus the target's runtimes, every version from constraints.txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.profiles import known_targets, load_profile
from backends.registry import backend_names
from deploy.requirements import (
    RUNTIMES,
    RequirementsError,
    canonical,
    edge_requirements,
    profile_backends,
    read_constraints,
)
from tests.deploy.conftest import REPO


def _names(pins: tuple[str, ...]) -> set[str]:
    return {canonical(p.split("==")[0]) for p in pins}


def test_every_profile_backend_has_a_device_runtime_and_torch_none() -> None:
    assert set(RUNTIMES) <= set(backend_names()) and "torch" not in RUNTIMES
    for target in known_targets():
        assert set(profile_backends(load_profile(target))) <= set(RUNTIMES), target


@pytest.mark.parametrize("target", ["x86", "arm64", "jetson"])
def test_pins_come_from_constraints_only(target: str) -> None:
    reqs = edge_requirements(load_profile(target))
    constraint_lines = {
        line.split(";")[0].strip() for line in (REPO / "constraints.txt").read_text().splitlines()
    }
    for pin in reqs.pins:
        assert pin.split(";")[0].strip() in constraint_lines, pin
    names = _names(reqs.pins)
    assert {"numpy", "onnxruntime", "psutil", "gymnasium", "pygame", "tomli"} <= names
    assert not names & {"torch", "tensorrt", "onnx", "pandas", "matplotlib"}
    assert reqs.backends[0] == "onnxruntime"  # run.sh's default backend


def test_runtimes_per_target() -> None:
    x86, jetson = (edge_requirements(load_profile(t)) for t in ("x86", "jetson"))
    assert "openvino" in _names(x86.pins) and x86.system == ()
    assert "cuda-python" in _names(jetson.pins) and "openvino" not in _names(jetson.pins)
    assert jetson.system == ("tensorrt",)  # JetPack's bindings, never pip-installed
    # JetPack 6 runs Python 3.10: numpy and onnxruntime carry a pin for it and one for newer Pythons
    numpy = [p for p in jetson.pins if p.startswith("numpy==")]
    assert len(numpy) == 2 and all("python_version" in p for p in numpy)
    assert "tomli==2.5.0; python_version < '3.11'" in jetson.pins
    assert jetson.text().splitlines()[4] == "-c constraints.txt"


def test_missing_pin_is_an_error(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "\n".join(
            line
            for line in (REPO / "constraints.txt").read_text().splitlines()
            if not line.startswith("psutil")
        )
    )
    with pytest.raises(RequirementsError, match="no pin for 'psutil'"):
        edge_requirements(load_profile("x86"), constraints=constraints)
    constraints.write_text("numpy>=2\n")
    with pytest.raises(RequirementsError, match="not an exact pin"):
        read_constraints(constraints)


def test_a_task_bundle_installs_its_env_packages() -> None:
    """LunarLander needs box2d, HalfCheetah mujoco and imageio (with mujoco's Python marker); CartPole
    nothing beyond gymnasium."""
    from tasks.envs import env_packages

    assert env_packages("CartPole-v1") == () and env_packages("LunarLander-v3") == ("box2d",)
    assert env_packages("HalfCheetah-v5") == ("mujoco", "imageio")
    profile = load_profile("x86")
    cheetah = edge_requirements(profile, env_packages=env_packages("HalfCheetah-v5"))
    assert {"mujoco", "imageio"} <= _names(cheetah.pins)
    assert any(p.startswith("mujoco==") and 'python_version >= "3.11"' in p for p in cheetah.pins)
    assert "box2d" in _names(edge_requirements(profile, env_packages=("box2d",)).pins)
    assert _names(edge_requirements(profile).pins) == _names(
        edge_requirements(profile, env_packages=env_packages("CartPole-v1")).pins
    )
