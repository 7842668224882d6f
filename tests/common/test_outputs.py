"""An output path that cannot be written is refused before any work: one line, exit status 2, nothing
created — for every command line that writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from common.fileio import output_problem


def test_output_problem_names_what_is_wrong(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert output_problem(tmp_path / "new" / "deeper") is None  # created later, under a writable folder
    assert output_problem(tmp_path) is None
    assert output_problem(a_file) == f"{a_file} exists and is not a folder"
    assert (
        output_problem(a_file / "sub") == f"{a_file} is not a folder, so {a_file / 'sub'} cannot be created"
    )
    assert output_problem(tmp_path / "d.npz", "file") is None
    assert output_problem(a_file, "file") is None  # an existing file may be replaced
    assert output_problem(tmp_path, "file") == f"{tmp_path} is a folder, not a file name"
    assert output_problem(a_file / "d.npz", "file") is not None
    assert output_problem("relative/new/folder") is None  # resolved against the working directory


def _main(module: str) -> Callable[[list[str]], int]:
    import importlib

    return importlib.import_module(module).main


COMMANDS = {
    "train": ("train.__main__", ["--dataset", "d.npz", "--out", "{bad}"]),
    "collect": ("train.collect", ["--episodes", "2", "--out", "{bad}/d.npz"]),
    "distill": ("train.distill", ["--teacher", "t.safetensors", "--dataset", "d.npz", "--out", "{bad}"]),
    "dqn": ("train.dqn", ["--out", "{bad}"]),
    "export": ("export.__main__", ["--target", "x86", "--out", "{bad}"]),
    "benchmarks": ("benchmarks.__main__", ["--manifest", "m.json", "--out", "{bad}"]),
    "benchmarks-sessions": ("benchmarks.__main__", ["--manifest", "m.json", "--sessions-dir", "{bad}"]),
    "reports": ("reports.build", ["--out", "{bad}"]),
    "bundle": ("deploy.bundle", ["--out", "{bad}"]),
    "edge_runtime": ("edge_runtime.cli", ["--manifest", "m.json", "--variant", "float", "--out", "{bad}"]),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_cli_refuses_an_output_under_a_file(name: str, tmp_path: Path, capsys) -> None:
    module, args = COMMANDS[name]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    bad = blocker / "out"
    argv = [a.replace("{bad}", str(bad)) for a in args]
    try:
        code = _main(module)(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert ": error: --" in err[-1]  # argparse's usage lines, then the one error line
    assert f"{blocker} is not a folder" in err[-1] and "choose another --" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written
