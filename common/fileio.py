"""Atomic file writes and file hashes.

Every output NeuroQuant writes goes through a temp file in the destination folder and a rename, so a
crash or a bad input never leaves a half-written dataset, checkpoint, manifest or GIF behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[str], None], exclusive: bool = False) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` onto ``path``; on any error remove the temp file.

    ``exclusive``: hard-link instead of rename, so an existing ``path`` is never replaced
    (``FileExistsError``): two writers racing for one name cannot both win.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the result the mode a plain open() would (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_UMASK)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def output_problem(path: str | Path, kind: str = "dir") -> str | None:
    """Why ``path`` cannot become an output folder (``kind="dir"``) or file (``"file"``); ``None`` if it can.

    The CLIs ask before any work starts, so a bad ``--out`` costs one error line rather than a traceback
    after minutes of training or measuring. Nothing is created.
    """
    path = Path(path)
    if kind == "dir" and path.exists() and not path.is_dir():
        return f"{path} exists and is not a folder"
    if kind == "file" and path.is_dir():
        return f"{path} is a folder, not a file name"
    existing = path if kind == "dir" else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder, so {path} cannot be created"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; read once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: str | Path, text: str, exclusive: bool = False) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), exclusive)


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """``payload`` as indented JSON (values JSON cannot hold, such as paths, written as strings)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def _sha256() -> Any:
    """A new sha256 object from CPython's built-in implementation, falling back to ``hashlib``'s.

    ``import hashlib`` loads OpenSSL's libcrypto (~3.3 MB of RSS) even to hash a 100 KB model, and the
    edge runtime checks every artifact's sha256 before loading it inside a 64 MB budget. The built-in
    module (``_sha256`` up to Python 3.11, ``_sha2`` from 3.12) gives the same digests without it.
    """
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # Python ≥ 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]  # Python ≤ 3.11
        except ImportError:
            from hashlib import sha256
    return sha256()


def file_sha256(path: str | Path) -> str:
    h = _sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
