"""The ``neuroquant`` console script runs each stage's own ``main``: same flags, same help, same exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.console import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common.console", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name} " in out and f"python -m {command.module}" in out and command.example in out
    assert main([]) == 2  # no command: the same text, and a usage error


def test_unknown_command_exits_2_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy-to-mars"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"neuroquant: unknown command 'deploy-to-mars'; commands: {', '.join(COMMANDS)}"
    ]


@pytest.mark.parametrize(("name", "module"), [("export", "export"), ("run", "edge_runtime")])
def test_a_command_is_its_module(name: str, module: str) -> None:
    mine, theirs = (
        _run(name, "--help"),
        subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
        ),
    )
    assert mine.returncode == theirs.returncode == 0 and mine.stdout == theirs.stdout
    bad = _run(name, "--no-such-flag")
    assert bad.returncode == 2 and f"python -m {module}: error:" in bad.stderr


def test_the_console_script_is_installed_under_that_name() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert "[project.scripts]\n# " in text and '\nneuroquant = "common.console:main"\n' in text
