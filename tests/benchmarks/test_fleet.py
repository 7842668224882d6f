"""``--executor ray`` (benchmarks.fleet) on a local Ray instance, and its parts that need no Ray.

The Ray tests start one local instance for the module (``ray.init(num_cpus=2, resources={"target_x86":
1})``): the same cells give the same rows as the local executor apart from timings, measured on the Ray
worker; a target no node offers is skipped after ``--ray-wait-s``, not waited on for ever.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import benchmarks.matrix as matrix
from benchmarks import fleet
from benchmarks.matrix import REPO, BenchConfig, BenchError, RunContext, load_inputs, prepare_common
from tests.backends.artifact_factory import copy_manifest
from tests.benchmarks.test_matrix import bench, read_pair

#: Two cells (one measured, one that cannot load: numpy cannot run QDQ) × two cheap scenarios.
CELLS = ("--cells", "float:numpy,int8-static:numpy", "--scenarios", "latency,loop_uncapped")
#: Columns a cell must reproduce whichever executor runs it. Left out: run_id and timestamp (per run),
#: timings and memory (load_ms … lateness_p99_us, rss), and iterations (latency runs for --min-seconds).
COMPARED = (
    "target", "host", "arch", "cpu", "variant", "backend", "format", "precision", "artifact_status",
    "scenario", "status", "reason", "size_bytes", "params", "mean_return", "success_rate", "oracle_ratio",
    "action_agreement", "unit",
)  # fmt: skip


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A local Ray instance with one x86 'device' (this machine), shut down after the module."""
    ray = pytest.importorskip("ray", reason='Ray is the optional fleet extra: pip install -e ".[fleet]"')
    # address="local": a new instance even where `ray start` runs a cluster on this machine (or left
    # /tmp/ray/ray_current_cluster behind), which ray.init() would otherwise try to join.
    ray.init(
        address="local",
        num_cpus=2,
        resources={"target_x86": 1},
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def _compared(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: r[k] for k in COMPARED} for r in rows]


def test_ray_gives_the_local_rows_measured_on_the_worker(
    local_ray: Any, manifest_path: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """~2 s once Ray is up (the fixture's ray.init takes 5-8 s, its shutdown 1-2 s, on 2 shared cores)."""
    code, _, _ = bench(capsys, manifest_path, tmp_path / "local", *CELLS)
    assert code == 0
    _, local_rows, local_meta = read_pair(tmp_path / "local")
    # The driver now reports another hostname: rows that still carry this machine's name were measured
    # by the Ray worker process (a separate interpreter the patch does not reach), not by the driver.
    real = matrix.describe_host()
    monkeypatch.setattr(matrix, "describe_host", lambda: {**real, "hostname": "driver-host"})
    code, out, _ = bench(capsys, manifest_path, tmp_path / "ray", *CELLS, "--executor", "ray")
    assert code == 0 and "wrote" in out
    (csv_path,) = (tmp_path / "ray").glob("*.csv")
    assert "_driver-host_" in csv_path.name  # the driver names and writes the one result pair
    _, ray_rows, ray_meta = read_pair(tmp_path / "ray")
    assert _compared(ray_rows) == _compared(local_rows)
    assert {r["host"] for r in ray_rows} == {socket.gethostname()}
    assert [r["status"] for r in ray_rows] == ["ok", "ok", "failed", "failed"]
    assert ray_rows[0]["lat_p50_us"] != "" and ray_rows[1]["loop_fps"] != ""
    assert ray_meta["host"]["hostname"] == "driver-host"
    assert list(ray_meta["hosts"]) == [socket.gethostname()]
    assert ray_meta["args"]["executor"] == "ray"
    summary = [(c["name"], c["status"], c["host"]) for c in ray_meta["cells"]]
    assert summary == [(c["name"], c["status"], c["host"]) for c in local_meta["cells"]]


def test_a_target_without_a_node_is_skipped_after_the_wait(
    local_ray: Any, manifest_path: Path, tmp_path: Path, capsys
) -> None:
    def to_jetson(m: dict[str, Any]) -> None:
        m["target"] = "jetson"

    manifest = copy_manifest(manifest_path, tmp_path / "jetson", to_jetson)
    t0 = time.perf_counter()
    code, out, _ = bench(
        capsys, manifest, tmp_path / "out", *CELLS, "--executor", "ray", "--ray-wait-s", "1"
    )  # fmt: skip
    assert code == 0 and time.perf_counter() - t0 < 30
    _, rows, meta = read_pair(tmp_path / "out")
    assert len(rows) == 4
    for r in rows:
        assert (r["target"], r["status"], r["host"]) == ("jetson", "skipped", "")
        assert r["reason"] == "no Ray node offers target_jetson (waited 1 s)"
    assert meta["hosts"] == {} and "no Ray node offers target_jetson" in out
    assert local_ray.cluster_resources().get("target_x86") == 1  # the cluster is still up


# ------------------------------------------------------------------------------------------------------
def test_without_ray_the_ray_executor_is_one_error_line(
    manifest_path: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    code, out, err = bench(capsys, manifest_path, tmp_path / "out", *CELLS, "--executor", "ray")
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("python -m benchmarks: error: --executor ray needs Ray")
    assert 'pip install -e ".[fleet]"' in line and "pip install ray" in line
    assert not (tmp_path / "out").exists()


def test_benchmarks_import_without_ray() -> None:
    code = (
        "import sys, benchmarks.__main__, benchmarks.fleet\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "print(sorted(benchmarks.matrix.EXECUTORS))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['local', 'ray']"


def test_an_address_nothing_answers_on_fails_fast() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BenchError, match=rf"nothing answers at --address 127.0.0.1:{port}.*ray start --head"):
        fleet._check_listening(f"127.0.0.1:{port}")
    fleet._check_listening("auto")  # Ray's to resolve


def test_nodes_find_the_manifest_relative_to_their_checkout(tmp_path: Path) -> None:
    assert fleet.worker_manifest_ref(REPO / "artifacts/x86/manifest.json") == "artifacts/x86/manifest.json"
    outside = tmp_path / "manifest.json"
    assert fleet.worker_manifest_ref(outside) == str(outside.resolve())
    assert REPO / fleet.worker_manifest_ref(outside) == outside.resolve()


def test_a_node_with_another_manifest_gives_failed_rows_with_its_host(
    manifest_path: Path, tmp_path: Path
) -> None:
    """The Ray task's body, called here directly: it refuses a manifest that is not the driver's."""
    config = BenchConfig(manifest=manifest_path, out=tmp_path, cells=("float:numpy",), scenarios=("latency",))
    manifest, (cell,) = load_inputs(config)
    common = prepare_common(manifest, manifest_path, None, tmp_path, Path.cwd())
    ctx = RunContext(config, manifest, tmp_path, common, {"run_id": "r", "timestamp": "t", "target": "x86"})
    for ref, sha, message in (
        (str(manifest_path), "0" * 64, "differs from the driver's manifest"),
        (str(tmp_path / "nope.json"), "0" * 64, "no manifest at"),
    ):
        report = fleet.run_on_node(cell, ctx, ref, sha)
        ((row,),) = [report.rows]
        assert row["status"] == "failed" and message in row["reason"]
        assert row["host"] == socket.gethostname() and report.summary["host"] == socket.gethostname()
