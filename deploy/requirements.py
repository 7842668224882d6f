"""The pinned pip requirements of an edge install, derived from the one list of versions.

Names: pyproject.toml's ``edge`` extra plus the pip packages of the runtimes the target profile's backends
need (:data:`RUNTIMES`). Versions: constraints.txt, line for line with its environment markers (Jetson's
Python 3.10 gets its own pins there). Nothing here repeats a version.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.profiles import TargetProfile

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10: the `edge` extra installs tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "constraints.txt"
EDGE_EXTRA = "edge"


@dataclass(frozen=True)
class Runtime:
    """What one backend needs on a device besides the ``edge`` extra."""

    pip: tuple[str, ...] = ()
    """pip distributions (their versions come from constraints.txt)."""
    system: tuple[str, ...] = ()
    """Python modules the device's OS image provides; the venv is then made with the system site-packages."""


#: Per backend a target profile may list. ``torch`` is absent on purpose: the edge path never installs it.
RUNTIMES: dict[str, Runtime] = {
    "numpy": Runtime(),
    "onnxruntime": Runtime(pip=("onnxruntime",)),
    "openvino": Runtime(pip=("openvino",)),
    # JetPack ships TensorRT's Python bindings built for its CUDA and Python (3.10); PyPI's aarch64 TensorRT
    # wheels are for SBSA servers, not Jetson. cuda-python (device memory) is a plain pip wheel.
    "tensorrt": Runtime(pip=("cuda-python",), system=("tensorrt",)),
}


class RequirementsError(ValueError):
    """A backend without a known device runtime, or a package constraints.txt does not pin."""


_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.+?))?\s*$"
)


def canonical(name: str) -> str:
    """PEP 503 name: ``Jinja2`` → ``jinja2``, ``typing_extensions`` → ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(requirement: str) -> tuple[str, str, str | None]:
    """``name [extras] spec ; marker`` → (name, spec, marker)."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise RequirementsError(f"cannot read requirement {requirement!r}")
    return match.group(1), match.group(2), match.group(3)


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, list[tuple[str, str | None]]]:
    """Canonical name → its ``name==version`` pins, each with its environment marker (or ``None``)."""
    pins: dict[str, list[tuple[str, str | None]]] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, spec, marker = _split(line)
        if not spec.startswith("=="):
            raise RequirementsError(f"{path}: {line!r} is not an exact pin (name==version)")
        pins.setdefault(canonical(name), []).append((f"{name}{spec}", marker))
    return pins


def edge_extra(path: Path = PYPROJECT) -> list[tuple[str, str | None]]:
    """The ``edge`` extra of pyproject.toml as (name, marker) pairs."""
    extras = tomllib.loads(path.read_text())["project"]["optional-dependencies"]
    return [(name, marker) for name, _, marker in map(_split, extras[EDGE_EXTRA])]


def profile_backends(profile: TargetProfile) -> tuple[str, ...]:
    """Every device backend the profile's formats use, in first-mentioned order (the first is the default).

    Workstation-only references (``Backend.on_device`` False: torch) are left out of bundles and images.
    """
    from backends.registry import get_backend

    seen: dict[str, None] = {}
    for plan in profile.formats.values():
        seen.update(dict.fromkeys(b for b in plan.backends if get_backend(b).on_device))
    return tuple(seen)


def runtime_for(backend: str) -> Runtime:
    try:
        return RUNTIMES[backend]
    except KeyError:
        raise RequirementsError(
            f"backend {backend!r} has no device runtime (known: {', '.join(RUNTIMES)}); "
            f"add it to deploy.requirements.RUNTIMES or drop it from the target profile"
        ) from None


def _and(*markers: str | None) -> str:
    present = [m for m in markers if m]
    if not present:
        return ""
    return "; " + " and ".join(f"({m})" if len(present) > 1 else m for m in present)


@dataclass(frozen=True)
class EdgeRequirements:
    """What an edge install of one target gets."""

    target: str
    backends: tuple[str, ...]
    pins: tuple[str, ...]
    """``name==version[; marker]`` lines for requirements-edge.txt."""
    system: tuple[str, ...]
    """Modules expected from the OS image (the venv sees its site-packages when this is not empty)."""

    def text(self, constraints_name: str = "constraints.txt") -> str:
        """requirements-edge.txt: the pins, plus the constraints file for their dependencies' versions."""
        head = (
            f"# NeuroQuant edge requirements, target {self.target} (backends: {', '.join(self.backends)}).\n"
            f"# Written by `python -m deploy.bundle` from pyproject.toml [{EDGE_EXTRA}] and the target's\n"
            f"# runtimes; every version comes from {constraints_name}, which also pins their dependencies.\n"
        )
        system = f"# From the OS image, not pip: {', '.join(self.system)}\n" if self.system else ""
        return head + system + f"-c {constraints_name}\n" + "".join(f"{p}\n" for p in self.pins)


def edge_requirements(
    profile: TargetProfile,
    pyproject: Path = PYPROJECT,
    constraints: Path = CONSTRAINTS,
    env_packages: Sequence[str] = (),
) -> EdgeRequirements:
    """The ``edge`` extra plus the profile's runtimes and the task's ``env_packages`` (box2d, mujoco …:
    ``tasks.envs.env_packages``), each pinned by every matching constraints line."""
    backends = profile_backends(profile)
    runtimes = [runtime_for(b) for b in backends]
    wanted = dict.fromkeys(edge_extra(pyproject))
    wanted.update(dict.fromkeys((name, None) for r in runtimes for name in r.pip))
    wanted.update(dict.fromkeys((name, None) for name in env_packages))
    pins = read_constraints(constraints)
    lines: dict[str, None] = {}
    for name, marker in wanted:
        found = pins.get(canonical(name))
        if not found:
            raise RequirementsError(f"{constraints}: no pin for {name!r}; add `{name}==<version>` there")
        lines.update(dict.fromkeys(f"{pin}{_and(pin_marker, marker)}" for pin, pin_marker in found))
    system = tuple(dict.fromkeys(m for r in runtimes for m in r.system))
    return EdgeRequirements(profile.name, backends, tuple(sorted(lines, key=str.lower)), system)
