"""Command lines generated from config dataclasses (CleanRL's ``Args``, d3rlpy's ``*Config``).

The dataclass is the one place a setting is declared: its type, default and the docstring written under
the field become the flag, its parsing and its ``--help`` line, so the three cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import re
import textwrap
import types
import typing
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

from common.fileio import output_problem


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field, read from the source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source (a frozen app): flags without help text
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def comma_list(item_type: type) -> Any:
    """argparse ``type=`` for ``1,2,3`` → ``(1, 2, 3)``."""

    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(item_type(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {item_type.__name__}s, got {text!r}"
            ) from None

    parse.__name__ = f"{item_type.__name__} list"
    return parse


EXAMPLE = re.compile(r"Examples?:")
"""How an example line of a ``--help`` starts."""


class ExampleFormatter(argparse.HelpFormatter):
    """Folds the description and epilog as argparse does, except the lines from the first one starting
    ``Example:`` (or ``Examples:``) on: those are commands to copy, kept whole, one per line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = text.splitlines()
        at = next((i for i, line in enumerate(lines) if EXAMPLE.match(line.strip())), len(lines))
        prose = super()._fill_text("\n".join(lines[:at]), width, indent)
        kept = [indent + line.strip() for line in lines[at:] if line.strip()]
        return "\n".join([prose, *kept] if prose else kept)


class HelpFormatter(ExampleFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one worth showing (not for switches or ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if (
            default is None
            or default is False
            or default == ""
            or default is argparse.SUPPRESS
            or action.required
        ):
            return action.help
        return super()._get_help_string(action)


def _unwrap_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _argument(f: Field, hint: Any, doc: str) -> dict[str, Any]:
    meta = dict(f.metadata)
    kwargs: dict[str, Any] = {"dest": f.name, "help": meta.pop("help", doc).replace("%", "%%")}
    default = (
        f.default
        if f.default is not MISSING
        else (f.default_factory() if f.default_factory is not MISSING else MISSING)
    )
    hint = _unwrap_optional(hint)
    if default is MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        kwargs.update(type=comma_list(item), metavar=f"{item.__name__.upper()},...")
        if isinstance(default, tuple):
            kwargs["default"] = ",".join(
                f"{v:g}" if isinstance(v, float) else str(v) for v in default
            )  # argparse parses string defaults
    elif hint in (int, float, str, Path):
        kwargs["type"] = hint
    kwargs.update(meta)  # choices, metavar, type overrides from field(metadata=...)
    return kwargs


def dataclass_parser(
    cls: type,
    prog: str,
    description: str,
    epilog: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with one ``--flag`` per field of the dataclass ``cls``.

    ``overrides`` (or ``field(metadata=...)``) adds argparse keywords per field, e.g. ``choices``.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter
    )
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not f.init:
            continue
        kwargs = _argument(f, hints[f.name], docs.get(f.name, ""))
        kwargs.update((overrides or {}).get(f.name, {}))
        parser.add_argument(flag_name(f.name), **kwargs)
    return parser


def parse_dataclass(
    cls: type,
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
    outputs: dict[str, str] | None = None,
) -> Any:
    """Parse ``argv`` into ``cls``; a ``ValueError`` from its validation becomes argparse's exit-2 error.

    ``outputs`` names the fields that are output paths (``"dir"`` or ``"file"``): one that cannot be
    written (a file where a folder is wanted, a read-only parent) is refused the same way, before the
    command does any work.
    """
    args = vars(parser.parse_args(argv))
    try:
        config = cls(**args)
    except ValueError as err:
        parser.error(str(err))
    for name, kind in (outputs or {}).items():
        value = getattr(config, name)
        if value is not None and (problem := output_problem(value, kind)):
            parser.error(f"{flag_name(name)}: {problem}; choose another {flag_name(name)}")
    return config
