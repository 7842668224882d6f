"""README.md's commands stay real: every ``make``, ``python -m`` and ``neuroquant`` command in its shell
blocks names a Makefile target, module or console command that exists, with flags that its ``--help`` lists.

Nothing is run but ``--help`` and ``make -n`` (which only prints), so the test is fast and writes nothing.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_LINES = 200
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")
"""Fenced blocks whose lines are shell commands (the first word of the info string)."""
OPERATORS = ("&&", "||", ";", "|", "&")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
PYTHONS = ("python", "python3", ".venv/bin/python", ".venv/bin/python3")
MAKE_OPTIONS_WITH_ARG = ("-C", "-f", "-I", "-j", "-l", "-o", "-W")
MAKE_RULE = re.compile(r"^([^\s#:=][^#:=]*?)\s*::?(?!=)")
"""A rule line of the Makefile (``targets: prerequisites``), not an assignment (``:=``)."""


@dataclass(frozen=True)
class Command:
    line: int
    """Line of README.md where the command starts."""
    env: tuple[tuple[str, str], ...]
    """``NAME=value`` words before the command."""
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        words = [*(f"{k}={v}" for k, v in self.env), *self.words]
        return " ".join(shlex.quote(w) if not w or re.search(r"\s", w) else w for w in words)

    @property
    def kind(self) -> str:
        if self.words[0] == "make":
            return "make"
        return "neuroquant" if self.words[0] == "neuroquant" else "python"


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of each fenced shell block: ``\\`` continuations joined; in a block
    with ``$ `` prompts, only the prompted lines (the others are output), prompt removed."""
    blocks: list[list[tuple[int, str]]] = []
    block: list[tuple[int, str]] | None = None
    in_block = False
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            if in_block and block is not None:
                blocks.append(block)
            info = stripped[3:].split()
            block = [] if not in_block and (info[0].lower() if info else "") in SHELL_LANGUAGES else None
            in_block = not in_block
        elif in_block and block is not None:
            block.append((number, stripped))
    lines: list[tuple[int, str]] = []
    for block in blocks:
        logical: list[tuple[int, str]] = []
        pending: tuple[int, str] | None = None
        for number, line in block:
            if pending is not None:
                number, line = pending[0], pending[1] + " " + line
            pending = (number, line[:-1].rstrip()) if line.endswith("\\") else None
            if pending is None:
                logical.append((number, line))
        if pending is not None:
            logical.append(pending)
        if any(line == "$" or line.startswith("$ ") for _, line in logical):
            logical = [(n, line[2:].strip()) for n, line in logical if line.startswith("$ ")]
        lines += logical
    return lines


def split_commands(line: str) -> list[tuple[tuple[tuple[str, str], ...], tuple[str, ...]]]:
    """The (environment, words) of each command of a shell line: ``# comment`` dropped, split at
    ``&&``, ``||``, ``;``, ``|`` and ``&`` (written apart from the words: ``cql|bcq`` is one word, as in
    the README's ``--algo cql|bcq|td3bc|bc``)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: prose or output rather than a command
        words = re.sub(r"(^|\s)#.*", "", line).split()
    commands, current = [], []
    for word in [*words, ";"]:
        if word in OPERATORS or word.endswith(";"):
            if word.endswith(";") and word != ";":
                current.append(word[:-1])
            env: list[tuple[str, str]] = []
            while current and ASSIGNMENT.match(current[0]):
                name, _, value = current.pop(0).partition("=")
                env.append((name, value))
            if current:
                commands.append((tuple(env), tuple(current)))
            current = []
        else:
            current.append(word)
    return commands


def readme_commands(text: str) -> list[Command]:
    """Every ``make …``, ``python -m …`` (also ``.venv/bin/python -m``) and ``neuroquant …`` command in the
    README's shell blocks, once each, in order."""
    found: dict[tuple, Command] = {}
    for number, line in shell_lines(text):
        for env, words in split_commands(line):
            is_python = words[0] in PYTHONS and len(words) > 2 and words[1] == "-m"
            if (is_python or words[0] in ("make", "neuroquant")) and (env, words) not in found:
                found[env, words] = Command(number, env, words)
    return list(found.values())


def _environment(env: tuple[tuple[str, str], ...]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return base | dict(env)


@functools.cache
def _run(args: tuple[str, ...], env: tuple[tuple[str, str], ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO, env=_environment(env), capture_output=True, text=True, timeout=180, check=False
    )


@functools.cache
def makefile_targets() -> frozenset[str]:
    targets: set[str] = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        if match := MAKE_RULE.match(line):
            targets.update(match.group(1).split())
    return frozenset(targets)


def _flags(words: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(w.split("=", 1)[0] for w in words if w.startswith("--") and len(w) > 2))


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _check_help(command: Command, module_args: tuple[str, ...], shown: str) -> None:
    where = f"README.md:{command.line}: {command.text}"
    done = _run((sys.executable, "-m", *module_args, "--help"), command.env)
    assert done.returncode == 0, f"{where}: `{shown} --help` exited {done.returncode}:\n{_tail(done.stderr)}"
    missing = [
        flag
        for flag in _flags(command.words)
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", done.stdout)
    ]
    assert not missing, f"{where}: {', '.join(missing)} not in `{shown} --help`"


def _check_python(command: Command) -> None:
    module, rest = command.words[2], command.words[3:]
    args: tuple[str, ...] = (module,)
    top = module.split(".")[0]
    if not ((REPO / top).is_dir() or (REPO / f"{top}.py").is_file()):
        # another project's CLI (pip install, pytest …): its subcommand words go before --help
        words = []
        for word in rest:
            if word.startswith("-"):
                break
            words.append(word)
        args += tuple(words)
    _check_help(command, args, f"python -m {' '.join(args)}")


def _check_neuroquant(command: Command) -> None:
    sub = command.words[1:2] if len(command.words) > 1 and not command.words[1].startswith("-") else ()
    _check_help(command, ("common.console", *sub), " ".join(("neuroquant", *sub)))


def _check_make(command: Command) -> None:
    where = f"README.md:{command.line}: {command.text}"
    targets, assignments = [], []
    words = iter(command.words[1:])
    for word in words:
        if word in MAKE_OPTIONS_WITH_ARG:
            next(words, None)
        elif ASSIGNMENT.match(word):
            assignments.append(word)
        elif not word.startswith("-"):
            targets.append(word)
    unknown = [t for t in targets if t not in makefile_targets()]
    assert not unknown, f"{where}: no Makefile rule for {', '.join(unknown)}"
    done = _run(("make", "-n", *targets, *assignments), command.env)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "No rule to make target" not in output, (
        f"{where}: `make -n {' '.join([*targets, *assignments])}` exited {done.returncode}:\n{_tail(output)}"
    )


COMMANDS = readme_commands(README.read_text()) if README.is_file() else []


def _id(command: Command) -> str:
    return command.text if len(command.text) <= 80 else command.text[:77] + "..."


@pytest.mark.parametrize("command", COMMANDS, ids=[_id(c) for c in COMMANDS])
def test_readme_command_is_real(command: Command) -> None:
    {"make": _check_make, "python": _check_python, "neuroquant": _check_neuroquant}[command.kind](command)


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"README.md has {lines} lines, more than {MAX_LINES}: it is being rewritten into a short front page "
        "(details in docs/); this fails until that rewrite lands"
    )


def test_the_parser_finds_commands_where_a_reader_would() -> None:
    text = "\n".join(
        [
            "```bash",
            "  make run    # the whole pipeline",
            "  CI=true make test-fast && make lint",
            "  python -m train --algo cql|bcq --out runs/cql \\",
            "      --steps 10   # --fps 0 = uncapped",
            "  tar -xzf x.tar.gz && .venv/bin/python -m edge_runtime --fps 10",
            "```",
            "```python",
            "  neuroquant = 1",
            "```",
            "```console",
            "$ neuroquant run --fps 5",
            "neuroquant bundle refused: SHA256SUMS: missing",
            "```",
            "```",
            "make: not a command, no prompt",
            "```",
        ]
    )
    found = [(c.line, c.text) for c in readme_commands(text)]
    assert found == [
        (2, "make run"),
        (3, "CI=true make test-fast"),
        (3, "make lint"),
        (4, "python -m train --algo cql|bcq --out runs/cql --steps 10"),
        (6, ".venv/bin/python -m edge_runtime --fps 10"),
        (12, "neuroquant run --fps 5"),
    ]
