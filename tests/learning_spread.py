"""The spread of the tests whose outcome is a training result, over seeds and float paths.

    python -m tests.learning_spread --seeds 0 1 2 --out docs/test-margins-measured.md

A test that asserts what training, pruning or int8 did to a network asserts a result that moves with the
seed and with the host's float summation order (docs/contracts.md#tests-that-hold-on-every-host). Each such
test takes its seed from the ``learning_seed`` fixture (``NQ_LEARNING_SEED``) and reports its outcome with
``record_property``; this script reruns them under every (float path, seed), reads the outcomes back from
pytest's JUnit XML and prints, per outcome, the worst, median and best value seen on each path. Thresholds are
then set well below the worst value seen and well above what random play reaches (docs/test-margins.md).

The float paths are those ``make test-portable`` uses: the default kernels, MKL's conditional-numerical-
reproducibility path (``MKL_CBWR=COMPATIBLE``, SSE2-era kernels) and ATen's unvectorised kernels
(``ATEN_CPU_CAPABILITY=default``); each changed the summation order on an AMD EPYC host (issue 18).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Tests whose outcome is a training (or pruning, or quantization) result.
TESTS = (
    "tests/train/test_algos.py::test_each_algorithm_learns_the_default_layout",
    "tests/train/test_algos.py::test_cql_conservative_term_lowers_q_of_actions_never_taken",
    "tests/train/test_algos.py::test_bcq_never_picks_a_masked_action",
    "tests/train/test_dqn.py::test_short_run_learns",
    "tests/train/test_distill.py::test_distillation_raises_agreement_with_the_teacher",
    "tests/export/test_prune.py::test_pruning_keeps_the_teachers_return",
)
#: Tests that take no seed (the exporter prunes with seed 0): run once per float path.
TESTS_ONCE = ("tests/export/test_cli.py::test_x86_export",)

#: The float paths: name → environment overrides (``make test-portable`` runs the same two).
PATHS = {
    "default": {},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
}


def run(
    path: str, seed: int, folder: Path, tests: tuple[str, ...]
) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Run ``tests`` once → ([(test id, outcome name, value)], [ids of failed tests])."""
    xml = folder / f"{path.replace('=', '-')}-{seed}.xml"
    env = {**os.environ, **PATHS[path], "NQ_LEARNING_SEED": str(seed)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *tests]
    subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not xml.is_file():
        raise RuntimeError(f"pytest wrote no report for {path}, seed {seed}: run {' '.join(cmd)} to see why")
    values, failed = [], []
    for case in ET.parse(xml).getroot().iter("testcase"):
        test = f"{case.get('name')}"
        values += [(test, p.get("name"), float(p.get("value"))) for p in case.iter("property")]
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(test)
    return values, failed


def table(results: dict[str, dict[tuple[str, str], list[float]]], seeds: list[int]) -> str:
    paths = list(results)
    lines = [
        f"Seeds {', '.join(map(str, seeds))}; per path: worst / median / best.",
        "",
        "| test | outcome | " + " | ".join(paths) + " |",
        "|---|---|" + "---:|" * len(paths),
    ]
    keys = sorted({k for per_path in results.values() for k in per_path})
    for test, name in keys:
        cells = []
        for path in paths:
            v = sorted(results[path].get((test, name), []))
            cells.append(f"{v[0]:.3f} / {statistics.median(v):.3f} / {v[-1]:.3f}" if v else "—")
        lines.append(f"| `{test}` | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m tests.learning_spread --seeds 0 1 2 --paths default MKL_CBWR=COMPATIBLE",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS), help="float paths")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    args = parser.parse_args(argv)
    results: dict[str, dict[tuple[str, str], list[float]]] = {p: defaultdict(list) for p in args.paths}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths:
            for seed in args.seeds:
                start = time.monotonic()
                tests = TESTS + TESTS_ONCE if seed == args.seeds[0] else TESTS
                values, failed = run(path, seed, Path(tmp), tests)
                for test, name, value in values:
                    results[path][(test, name)].append(value)
                note = f"; failed: {', '.join(failed)}" if failed else ""
                print(f"{path}, seed {seed}: {time.monotonic() - start:.0f} s{note}", flush=True)
    text = table(results, args.seeds)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
