"""``python -m benchmarks`` end to end on the small real artifact set: files, rows, failures, filters, errors.

Every run here is real (real backends in real cell subprocesses) with small iteration counts; the figures
themselves are not checked — speed is the benchmark's output, never a test's assertion.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from backends.manifest import file_sha256
from benchmarks.__main__ import main
from benchmarks.matrix import REPO, BenchConfig, Cell, load_inputs, run_cell, write_spec
from benchmarks.rows import COLUMNS, safe_host
from edge_runtime.cli import load_backend, resolve_plan
from edge_runtime.config import SessionConfig
from gridworld.oracle import evaluate_policy
from tests.backends.artifact_factory import copy_manifest

#: Small but real: 700 latency calls (enough for a p99), short loops, no host rows.
FAST = [
    "--min-iters", "700", "--min-seconds", "0.05", "--warmup-ms", "10", "--batch-passes", "20",
    "--loop-episodes", "5", "--loop-frames", "300", "--paced-seconds", "0.1", "--paced-fps", "50",
    "--no-env", "--no-trainer", "--no-progress",
]  # fmt: skip
LAT = ("lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_max_us")


def bench(capsys: pytest.CaptureFixture[str], manifest: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["--manifest", str(manifest), "--out", str(out), *FAST, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_pair(out: Path) -> tuple[list[str], list[dict[str, str]], dict[str, Any]]:
    """Header, rows and JSON of the only result pair in ``out``."""
    (csv_path,) = sorted(out.glob("bench_*.csv"))
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    meta = json.loads(csv_path.with_suffix(".json").read_text())
    return header, rows, meta


def by_cell(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    cells: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in rows:
        cells.setdefault((r["variant"], r["backend"]), {})[r["scenario"]] = r
    return cells


@pytest.fixture(scope="module")
def tiny_run(manifest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """float on every backend, int8-static on onnxruntime, and on numpy (which cannot run QDQ: failed)."""
    out = tmp_path_factory.mktemp("bench")
    code = main(
        [
            "--manifest", str(manifest_path), "--out", str(out), *FAST,
            "--variants", "float,int8-static", "--backends", "onnxruntime,numpy,openvino",
            "--cells", ",".join(["float:onnxruntime", "float:numpy", "float:openvino",
                                 "int8-static:onnxruntime", "int8-static:numpy"]),
        ]
    )  # fmt: skip
    header, rows, meta = read_pair(out)
    return {"code": code, "out": out, "header": header, "rows": rows, "meta": meta}


def test_csv_has_exactly_the_schema_columns_and_one_row_per_cell_and_scenario(
    tiny_run, manifest_path
) -> None:
    assert tiny_run["code"] == 0
    assert tuple(tiny_run["header"]) == COLUMNS
    rows = tiny_run["rows"]
    keys = [(r["variant"], r["backend"], r["scenario"]) for r in rows]
    assert len(keys) == len(set(keys))
    cells = by_cell(rows)
    assert set(cells) == {
        ("float", "onnxruntime"),
        ("float", "numpy"),
        ("float", "openvino"),
        ("int8-static", "onnxruntime"),
        ("int8-static", "numpy"),
    }
    for scenarios in cells.values():
        assert list(scenarios) == ["latency", "batch100", "loop_uncapped", "loop_paced"]
    (csv_path,) = tiny_run["out"].glob("*.csv")
    assert re.fullmatch(rf"bench_x86_{safe_host(socket.gethostname())}_\d{{8}}T\d{{6}}Z\.csv", csv_path.name)
    assert {r["run_id"] for r in rows} == {tiny_run["meta"]["run_id"]}
    assert {r["target"] for r in rows} == {"x86"}


def test_measured_cells_are_ok_with_ordered_percentiles(tiny_run) -> None:
    cells = by_cell(tiny_run["rows"])
    for key in [("float", b) for b in ("onnxruntime", "numpy", "openvino")] + [
        ("int8-static", "onnxruntime")
    ]:
        for scenario, r in cells[key].items():
            assert r["status"] == "ok" and r["reason"] == "", (key, scenario, r["reason"])
            for col in ("load_ms", "first_infer_ms", "rss_mb", "peak_rss_mb", "size_bytes", "params"):
                assert float(r[col]) > 0, (key, col)
            assert float(r["rss_mb"]) <= float(r["peak_rss_mb"])
        lat = cells[key]["latency"]
        assert int(lat["iterations"]) >= 700
        values = [float(lat[c]) for c in LAT]
        assert values == sorted(values), (key, values)
        assert (lat["lat_p999_us"] == "") == (int(lat["iterations"]) < 6643)  # too few for a p99.9
        batch = cells[key]["batch100"]
        assert int(batch["iterations"]) == 20 and float(batch["batch100_ms"]) > 0 and batch["unit"] == "obs/s"
        for scenario in ("loop_uncapped", "loop_paced"):
            loop = cells[key][scenario]
            assert float(loop["loop_fps"]) > 0
            assert 0.0 <= float(loop["success_rate"]) <= 1.0 and loop["mean_return"] != ""
        assert cells[key]["loop_uncapped"]["deadline_misses"] == ""  # no deadlines without pacing
        assert cells[key]["loop_paced"]["deadline_misses"] != ""


def test_artifact_facts_come_from_the_manifest(tiny_run, manifest_path) -> None:
    manifest = json.loads(manifest_path.read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "float/onnx")
    lat = by_cell(tiny_run["rows"])[("float", "onnxruntime")]["latency"]
    assert (lat["format"], lat["precision"], lat["artifact_status"]) == ("onnx", "fp32", "ok")
    assert int(lat["size_bytes"]) == entry["size_bytes"] and int(lat["params"]) == entry["params"]
    # The loop rows evaluate the policy through the cell's own backend (one infer_one per state) over
    # every start state: the same figures as an exact evaluation of the model run here in one batch.
    cfg = SessionConfig(manifest=str(manifest_path), variant="float", backend="onnxruntime")
    plan = resolve_plan(cfg)
    backend = load_backend(cfg, plan)
    want = evaluate_policy(plan.model, lambda obs: backend.infer(obs.reshape(len(obs), -1)).argmax(axis=1))
    for scenario in ("loop_uncapped", "loop_paced"):
        loop = by_cell(tiny_run["rows"])[("float", "onnxruntime")][scenario]
        for col in ("mean_return", "success_rate", "oracle_ratio"):
            assert float(loop[col]) == pytest.approx(getattr(want, col), abs=1e-6), (scenario, col)


def test_a_cell_that_cannot_load_fails_with_the_reason_and_the_others_run(tiny_run) -> None:
    cells = by_cell(tiny_run["rows"])
    failed = cells[("int8-static", "numpy")]
    for r in failed.values():
        assert r["status"] == "failed" and "cannot load int8-static/onnx on numpy" in r["reason"]
        assert r["lat_p50_us"] == "" and r["load_ms"] == ""
    # A cell after it in manifest order (the OpenVINO IRs come after the ONNX files) still ran.
    assert cells[("float", "openvino")]["latency"]["status"] == "ok"


def test_json_describes_host_settings_and_cells(tiny_run, manifest_path) -> None:
    meta = tiny_run["meta"]
    assert meta["schema"] == 1 and meta["target"] == "x86"
    assert meta["manifest_sha256"] == file_sha256(manifest_path)
    assert meta["csv"] == next(tiny_run["out"].glob("*.csv")).name
    host = meta["host"]
    for key in ("hostname", "cpu", "arch", "cores", "os", "python", "versions"):
        assert host[key], key
    assert "numpy" in host["versions"] and "onnxruntime" in host["versions"]
    assert meta["args"]["min_iters"] == 700 and meta["args"]["variants"] == ["float", "int8-static"]
    statuses = {(c["variant"], c["backend"]): c["status"] for c in meta["cells"]}
    assert statuses[("float", "numpy")] == "ok" and statuses[("int8-static", "numpy")] == "failed"
    for c in meta["cells"]:
        assert c["seconds"] > 0
        # The edge path rule holds in the cell processes too: no torch, no gymnasium.
        assert c["heavy_modules"] == [], c


def _tampered_manifest(manifest_path: Path, tmp: Path) -> Path:
    """Failures first in the manifest: a tampered file, a runtime that is not installed; then good cells."""
    good = manifest_path.parent / "float/model.onnx"
    tampered = tmp / "edited/tampered.onnx"  # next to the copied manifest: paths stay relative
    tampered.parent.mkdir(parents=True)
    data = bytearray(good.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))

    def edit(m: dict[str, Any]) -> None:
        base = next(a for a in m["artifacts"] if a["name"] == "float/onnx")
        m["artifacts"].insert(
            0,
            {
                **base,
                "name": "tampered/onnx",
                "variant": "tampered",
                "path": tampered.name,
                "backends": ["numpy"],
            },
        )
        m["artifacts"].insert(
            1,
            {
                **base,
                "name": "float/tensorrt",
                "format": "tensorrt",
                "path": "float.engine",
                "backends": ["tensorrt"],
            },
        )
        for a in m["artifacts"]:
            if a["name"] == "fp16/onnx":  # gate-failed, yet measured
                a["status"], a["reason"] = "failed", "action agreement 0.9 < 0.99"

    return copy_manifest(manifest_path, tmp / "edited", edit)


def test_tampered_missing_runtime_and_pending_cells_do_not_stop_the_matrix(
    manifest_path: Path, tmp_path: Path, capsys
) -> None:
    manifest = _tampered_manifest(manifest_path, tmp_path)
    code, out, _ = bench(
        capsys, manifest, tmp_path / "out",
        "--variants", "tampered,float,fp16,int8-static", "--backends", "numpy,tensorrt",
        "--scenarios", "latency,loop_uncapped",
    )  # fmt: skip
    assert code == 0
    _, rows, meta = read_pair(tmp_path / "out")
    cells = by_cell(rows)
    assert [c["name"] for c in meta["cells"]][:2] == ["tampered:numpy", "float:tensorrt"]
    for r in cells[("tampered", "numpy")].values():
        assert r["status"] == "failed" and "sha256" in r["reason"] and "does not match" in r["reason"]
    for r in cells[("float", "tensorrt")].values():
        assert r["status"] == "skipped" and "tensorrt" in r["reason"]
    for r in cells[("int8-static", "tensorrt")].values():
        assert r["status"] == "skipped" and "pending-on-device" in r["reason"]
    for key in (("float", "numpy"), ("fp16", "numpy")):
        assert [r["status"] for r in cells[key].values()] == ["ok", "ok"], key
    assert cells[("fp16", "numpy")]["latency"]["artifact_status"] == "failed"
    assert "tampered:numpy" in out and "not ok:" in out  # the summary names what did not run


def test_a_timed_out_cell_gives_failed_rows(manifest_path: Path, tmp_path: Path, capsys) -> None:
    code, _, _ = bench(
        capsys, manifest_path, tmp_path, "--cells", "float:numpy", "--scenarios", "latency",
        "--min-seconds", "30", "--cell-timeout", "2",
    )  # fmt: skip
    assert code == 0
    _, rows, meta = read_pair(tmp_path)
    (row,) = rows
    assert row["status"] == "failed" and "timed out after 2 s" in row["reason"]
    assert row["load_ms"] != ""  # what the cell measured before it was killed is kept
    assert meta["cells"][0]["status"] == "failed"


def test_a_crashing_cell_process_is_a_failed_outcome(manifest_path: Path, tmp_path: Path) -> None:
    config = BenchConfig(manifest=manifest_path, out=tmp_path)
    manifest, _ = load_inputs(config)
    entry = next(a for a in manifest.artifacts if a.name == "float/onnx")
    garbage = tmp_path / "observations.npy"
    garbage.write_bytes(b"not an npy file")
    common = {"manifest": str(manifest_path), "observations": str(garbage), "sessions_dir": str(tmp_path)}
    outcome = run_cell(Cell("float:numpy", "model", ("latency",), entry, "numpy"), config, tmp_path, common)
    assert outcome.status == "failed"
    assert (
        outcome.reason.startswith("cell process exited with status 1") and "pickle" in outcome.reason.lower()
    )


def test_a_rerun_writes_a_second_pair(manifest_path: Path, tmp_path: Path, capsys) -> None:
    args = ("--cells", "float:numpy", "--scenarios", "latency")
    for _ in range(2):
        code, out, _ = bench(capsys, manifest_path, tmp_path, *args)
        assert code == 0 and "wrote" in out
    csvs, jsons = sorted(tmp_path.glob("bench_*.csv")), sorted(tmp_path.glob("bench_*.json"))
    assert len(csvs) == 2 and len(jsons) == 2
    assert {p.stem for p in csvs} == {p.stem for p in jsons}
    runs = {json.loads(p.read_text())["run_id"] for p in jsons}
    assert len(runs) == 2


def test_filters_select_cells_and_scenarios(manifest_path: Path, tmp_path: Path, capsys) -> None:
    code, _, _ = bench(
        capsys, manifest_path, tmp_path, "--cells", "float:numpy,int8-static:onnxruntime",
        "--variants", "float", "--scenarios", "batch100,loop_paced",
    )  # fmt: skip
    assert code == 0
    _, rows, _ = read_pair(tmp_path)
    assert [(r["variant"], r["backend"], r["scenario"]) for r in rows] == [
        ("float", "numpy", "batch100"),
        ("float", "numpy", "loop_paced"),
    ]


ENV_FAST = ("--env-seconds", "0.05", "--env-repeats", "1", "--env-vector-envs", "64")
TRAINER_FAST = ("--trainer-steps", "3", "--trainer-repeats", "1", "--trainer-warmup", "1")


def test_env_rows(manifest_path: Path, tmp_path: Path, capsys) -> None:
    code, _, _ = bench(
        capsys,
        manifest_path,
        tmp_path,
        "--scenarios",
        "env_single,env_vector",
        "--env",
        "--trainer",
        *ENV_FAST,
    )
    assert code == 0
    _, rows, meta = read_pair(tmp_path)
    assert [(r["scenario"], r["unit"]) for r in rows] == [
        ("env_single", "steps/s"),
        ("env_vector", "env-steps/s"),
    ]
    for r in rows:
        assert r["status"] == "ok" and float(r["value"]) > 0
        assert (r["variant"], r["backend"], r["format"], r["precision"]) == ("-", "-", "-", "-")
        assert r["lat_p50_us"] == "" and r["size_bytes"] == ""
    assert [c["name"] for c in meta["cells"]] == ["env"]  # --trainer alone adds no trainer row here


@pytest.mark.slow
def test_trainer_row(manifest_path: Path, tmp_path: Path, capsys) -> None:
    """Imports torch and collects the default buffer: ~5-10 s on 2 shared cores."""
    code, _, _ = bench(capsys, manifest_path, tmp_path, "--scenarios", "trainer", "--trainer", *TRAINER_FAST)
    assert code == 0
    _, (row,), meta = read_pair(tmp_path)
    assert (row["scenario"], row["status"], row["unit"], row["iterations"]) == (
        "trainer",
        "ok",
        "steps/s",
        "3",
    )
    assert float(row["value"]) > 0 and meta["cells"][0]["heavy_modules"] == ["gymnasium", "torch"]


_WITHOUT_TORCH = """
import importlib.abc, runpy, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
sys.argv = ["benchmarks.cell", sys.argv[1]]
runpy.run_module("benchmarks.cell", run_name="__main__", alter_sys=True)
"""


def test_trainer_row_is_skipped_where_torch_is_not_installed(manifest_path: Path, tmp_path: Path) -> None:
    config = BenchConfig(manifest=manifest_path, out=tmp_path, scenarios=("trainer",))
    _, cells = load_inputs(config)
    (cell,) = cells
    spec, result = write_spec(cell, config, tmp_path, {})
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(result.read_text())["scenarios"]["trainer"]
    assert row["status"] == "skipped" and row["reason"].startswith("torch is not installed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--variants", "float,nope"), "unknown variant(s) 'nope' in --variants"),
        (("--backends", "tflite"), "unknown backend(s) 'tflite' in --backends"),
        (("--cells", "float"), "unknown cell(s) 'float' in --cells"),
        (("--variants", "pruned-50", "--backends", "openvino"), "no cell passes"),
    ],
)
def test_bad_filters_are_one_error_line_and_write_nothing(
    manifest_path: Path, tmp_path: Path, capsys, args: tuple[str, ...], message: str
) -> None:
    code, out, err = bench(capsys, manifest_path, tmp_path / "out", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "has:" in lines[0] or "cells are:" in lines[0]  # the fix: what the manifest offers
    assert not (tmp_path / "out").exists()


def test_missing_or_corrupt_manifest(tmp_path: Path, capsys) -> None:
    code, _, err = bench(capsys, tmp_path / "nope.json", tmp_path / "out")
    assert code == 2 and "no such manifest" in err and "make export" in err
    corrupt = tmp_path / "manifest.json"
    corrupt.write_text('{"schema": 1, "artifacts": [')
    code, _, err = bench(capsys, corrupt, tmp_path / "out")
    assert code == 2 and "not valid JSON" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_scenario_and_bad_numbers_are_refused(manifest_path: Path, tmp_path: Path, capsys) -> None:
    for args, message in (
        (("--scenarios", "latency,warp"), "unknown scenario(s) warp"),
        (("--min-iters", "0"), "--min-iters must be ≥ 1"),
        (("--paced-fps", "0"), "--paced-fps must be > 0"),
        (("--executor", "slurm"), "invalid choice: 'slurm'"),
        (("--ray-wait-s", "-1"), "--ray-wait-s must be ≥ 0"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            bench(capsys, manifest_path, tmp_path, *args)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_help_explains_every_flag(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # whatever the terminal width wrapped
    for f in fields(BenchConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
    assert "pending-on-device" in text and "Exit status" in text


def test_sessions_dir_keeps_the_loop_sessions(manifest_path: Path, tmp_path: Path, capsys) -> None:
    sessions = tmp_path / "sessions"
    code, _, _ = bench(
        capsys, manifest_path, tmp_path / "out", "--cells", "float:numpy",
        "--scenarios", "loop_uncapped,loop_paced", "--sessions-dir", str(sessions),
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in sessions.iterdir()) == [
        "session_1.csv", "session_1.json", "session_2.csv", "session_2.json",
    ]  # fmt: skip
    shutil.rmtree(sessions)
