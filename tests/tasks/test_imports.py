"""``import tasks`` stays on the edge path: neither torch nor gymnasium is loaded, and the gridworld's
exact evaluation and the action rule need neither."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_tasks_loads_neither_torch_nor_gymnasium() -> None:
    code = (
        "import sys, numpy as np, tasks\n"
        "spec = tasks.get('gridworld')\n"
        "tasks.evaluate(spec, lambda obs: np.zeros((len(obs), 3), np.float32))\n"  # exact: numpy only
        "tasks.select_actions(spec, np.zeros((1, 3), np.float32))\n"
        "print(sorted(m for m in ('torch', 'gymnasium') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
