"""The edge path never imports torch or gymnasium (docs/contracts.md#layout-and-dependency-rules): proved in a
fresh interpreter.

A meta-path hook refuses (and records) any attempt to import them, then real sessions run on the
torch-free backends; afterwards neither is in ``sys.modules`` and nothing even tried to import them.
The slow variant builds a virtual environment with only numpy, onnxruntime and psutil.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "gymnasium", "pandas", "matplotlib", "onnx")

_PROBE = """
import importlib.abc, json, sys
FORBIDDEN = {forbidden!r}
attempts = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            attempts.append(name)
            raise ImportError(f"{{name}} is not allowed on the edge path")
        return None

sys.meta_path.insert(0, Block())
from edge_runtime.cli import main
codes = {{}}
for backend, variant in {runs!r}:
    codes[backend] = main(["--manifest", {manifest!r}, "--variant", variant, "--backend", backend,
                           "--fps", "0", "--episodes", "3", "--out", {out!r}, "--quiet"])
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(FORBIDDEN))
print(json.dumps({{"codes": codes, "attempts": attempts, "loaded": loaded}}))
"""


def _runs() -> list[tuple[str, str]]:
    runs = [("numpy", "float")]
    for backend, module, variant in (("onnxruntime", "ort", "int8-static"), ("openvino", "ov", "float")):
        if (REPO / f"backends/{module}.py").is_file():
            runs.append((backend, variant))
    return runs


def _probe(
    python: str, manifest: Path, out: Path, runs: list[tuple[str, str]], env: dict[str, str] | None = None
):
    code = _PROBE.format(forbidden=FORBIDDEN, runs=runs, manifest=str(manifest), out=str(out))
    proc = subprocess.run(
        [python, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_edge_sessions_import_no_torch_nor_gymnasium(manifest_path: Path, tmp_path: Path) -> None:
    runs = _runs()
    result = _probe(sys.executable, manifest_path, tmp_path, runs)
    assert result["attempts"] == [] and result["loaded"] == []
    available = {b for b, _ in runs}
    for backend, code in result["codes"].items():
        # openvino may be absent on a machine (exit 1 with the install hint); the others must run.
        assert code == 0 or (backend == "openvino" and backend not in available), result
    assert len(list(tmp_path.glob("session_*.json"))) == sum(c == 0 for c in result["codes"].values())


@pytest.mark.slow
def test_fresh_venv_with_only_numpy_onnxruntime_psutil(manifest_path: Path, tmp_path: Path) -> None:
    """What a device installs: pip install -c constraints.txt numpy onnxruntime psutil, repo on PYTHONPATH."""
    if not (REPO / "backends/ort.py").is_file():
        pytest.skip("backends/ort.py is not written yet")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(REPO / "constraints.txt"),
            "numpy",
            "onnxruntime",
            "psutil",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        pytest.skip(f"cannot install into a fresh venv here (no package index?): {install.stderr[-500:]}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("VIRTUAL_ENV", None)
    result = _probe(
        python, manifest_path, tmp_path / "out", [("numpy", "float"), ("onnxruntime", "int8-static")], env
    )
    assert result["codes"] == {"numpy": 0, "onnxruntime": 0}
    assert result["attempts"] == [] and result["loaded"] == []


#: Modules an onnxruntime session must not load on Linux, with what each cost the 64 MB peak-RSS budget
#: when it did (issue 5): numpy.random ~2 MB (the env's start-state generator; the session uses the
#: stdlib's), _hashlib = OpenSSL's libcrypto ~3.3 MB (the artifact's sha256; common.fileio uses CPython's
#: built-in sha256), psutil ~1.5 MB (RSS, USS and its version: /proc instead), numpy.ma ~0.7 MB
#: (np.percentile).
HEAVY = ("numpy.random", "_hashlib", "psutil", "numpy.ma")

_HEAVY_PROBE = """
import json, sys
from edge_runtime.cli import main
code = main(["--manifest", {manifest!r}, "--variant", "float", "--backend", "onnxruntime",
             "--fps", "0", "--episodes", "3", "--out", {out!r}, "--quiet"])
print(json.dumps({{"code": code, "loaded": sorted(set(sys.modules) & set({heavy!r}))}}))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the /proc readers replace psutil on Linux only"
)
def test_an_onnxruntime_session_loads_none_of_the_memory_heavy_modules(manifest_path: Path, tmp_path) -> None:
    code = _HEAVY_PROBE.format(manifest=str(manifest_path), out=str(tmp_path), heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}
    summary = json.loads(next(tmp_path.glob("session_*.json")).read_text())
    assert summary["end_uss_mb"] > 0  # read from /proc/self/smaps_rollup, not psutil
    split = summary["end_rss_split_mb"]  # RssAnon / RssFile: which part of the RSS a peak came from
    assert split["anon"] > 0 and split["file"] > 0
    assert split["anon"] + split["file"] <= summary["peak_rss_mb"] + 1.0
    # Private memory is part of the resident set and includes the anonymous pages (all private here).
    assert split["anon"] - 1.0 <= summary["end_uss_mb"] <= split["anon"] + split["file"] + 1.0
