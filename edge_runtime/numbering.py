"""Session numbers taken atomically: two runs started at the same moment never share ``session_<N>``.

Why ``O_CREAT | O_EXCL``: creating the CSV is the claim. The OS guarantees exactly one creator per path,
so a run that loses the race sees ``FileExistsError`` and tries the next number. Scanning for the highest
existing number first only makes the search short; it is not what makes it safe.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_SESSION_FILE = re.compile(r"^session_(\d+)\.(csv|json|frames)$")


def highest_session(out_dir: Path) -> int:
    """The largest ``N`` among ``session_<N>.csv``/``.json``/``.frames`` in ``out_dir`` (0 if none)."""
    best = 0
    if out_dir.is_dir():
        for entry in os.scandir(out_dir):
            m = _SESSION_FILE.match(entry.name)
            if m:
                best = max(best, int(m.group(1)))
    return best


def claim_session(out_dir: str | Path, max_tries: int = 10_000) -> tuple[int, Path, int]:
    """Create ``out_dir/session_<N>.csv`` exclusively; return ``(N, path, open file descriptor)``.

    Numbers start at 1. The caller owns the descriptor (wrap it with ``os.fdopen``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = highest_session(out_dir) + 1
    for _ in range(max_tries):
        path = out_dir / f"session_{n}.csv"
        # A leftover JSON or frame log without its CSV still owns its number.
        if not any((out_dir / f"session_{n}.{kind}").exists() for kind in ("json", "frames")):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            else:
                return n, path, fd
        n += 1
    raise RuntimeError(f"could not claim a session number in {out_dir} after {max_tries} tries")
