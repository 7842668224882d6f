"""Emulated measurements in the report: off the latency axes, labelled in the tables, and the
``make verify-arm64`` record shown beside x86 (arm64 / x86 / manifest returns and output parity)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from reports.build import main
from reports.charts import Style, bubble, latency_cdf
from reports.load import load_arm64, load_benchmarks, load_sessions
from reports.summary import ReportData
from tests.reports.factory import make_results, run_rows, write_bench_run, write_session


def record(passed: bool = True) -> dict:
    """A verify.json as ``python -m deploy.arm64`` writes it (the fields the report reads)."""
    returns = [
        {"variant": "float", "format": "onnx", "backend": "onnxruntime", "status": "ok", "reason": "",
         "manifest_return": 8.9769, "mean_return": 8.9769, "x86_return": 8.9769, "equal_to_x86": True,
         "equal_to_manifest": True},
        {"variant": "int8-static", "format": "onnx", "backend": "onnxruntime", "status": "ok", "reason": "",
         "manifest_return": 8.9769, "mean_return": 8.9769, "x86_return": 8.9769, "equal_to_x86": True,
         "equal_to_manifest": True},
        {"variant": "float", "format": "openvino", "backend": "openvino", "status": "unavailable",
         "reason": "openvino is not installed", "manifest_return": 8.9769, "mean_return": None,
         "x86_return": 8.9769, "equal_to_x86": False, "equal_to_manifest": False},
    ]  # fmt: skip
    parity = [
        {"variant": "float", "format": "onnx", "backend": "onnxruntime", "precision": "fp32",
         "max_abs_diff": 3.8e-6, "same_actions": 1.0, "rule": "max |Δ| ≤ 0.0001 × 1", "ok": True},
        {"variant": "int8-static", "format": "onnx", "backend": "onnxruntime", "precision": "int8",
         "max_abs_diff": 2.7e-3, "same_actions": 1.0 if passed else 0.98, "rule": "the same actions",
         "ok": passed},
    ]  # fmt: skip
    return {
        "passed": passed,
        "seconds": 383.0,
        "arm64": {"machine": "aarch64", "python": "3.11.2", "numpy": "2.4.6", "onnxruntime": "1.31.1"},
        "openvino": {"imports": False, "error": "importing openvino failed on arm64 (exit 1)"},
        "returns": returns,
        "parity": parity,
        "sessions": [{"variant": "float", "backend": "onnxruntime", "episodes_equal_x86": True}],
    }


def emulated_session(folder: Path, n: int) -> Path:
    path = write_session(folder, n, f"2026-12-0{n}T10:00:00+00:00", variant="float")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["target"] = "arm64"
    meta["host"] = {"hostname": "hostA", "cpu": "x86 test CPU", "arch": "aarch64", "emulated": True}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_emulated_cells_stay_off_the_latency_axes(tmp_path: Path) -> None:
    results = make_results(tmp_path / "results")
    rows = [{**r, "emulated": 1, "host": "qemu"} for r in run_rows("arm64", "qemu", "2026-12-01T10:00:00Z")]
    write_bench_run(results / "benchmark", rows, "20261201T100000Z")
    sessions, _ = load_sessions(results / "sessions", 12)
    data = ReportData(results, load_benchmarks(results / "benchmark"), sessions)
    emulated = data.cells["host"] == "qemu"
    assert emulated.any() and (data.cells.loc[emulated, "emulated"] == 1).all()
    assert data.emulated_cells == int(emulated.sum())
    assert not (data.device_cells["host"] == "qemu").any()
    assert all(host != "qemu" for _, _, host in data.panels)
    style_cells = Style.of(data.cells)
    fig, caption = bubble(data, style_cells)
    assert len(fig.axes) >= len(data.panels)
    assert f"{data.emulated_cells} cell(s) measured under emulation" in caption
    _, cdf_caption = latency_cdf(data, style_cells)
    assert "measured under emulation are left out" in cdf_caption


def test_the_arm64_record_sits_beside_x86(tmp_path: Path) -> None:
    results = make_results(tmp_path / "results")
    (results / "arm64").mkdir()
    (results / "arm64" / "verify.json").write_text(json.dumps(record(passed=False)))
    # Two make verify-arm64 runs keep sessions of the same name in their own folders: both are plotted.
    for stamp, n in (("20261201T100000Z", 5), ("20261202T100000Z", 6)):
        csv = emulated_session(results / "sessions" / "arm64-emulated" / stamp, n)
        for suffix in (".csv", ".json"):
            csv.with_suffix(suffix).rename(csv.parent / f"session_float-onnxruntime{suffix}")
    out = tmp_path / "out"
    with redirect_stdout(io.StringIO()):
        assert main(["--results", str(results), "--out", str(out), "--sessions", "3"]) == 0
    md = (out / "report.md").read_text()
    assert "## arm64 under emulation (make verify-arm64)" in md
    assert "onnxruntime 1.31.1); OpenVINO does not load there (importing openvino failed" in md
    assert "Verdict: FAILED" in md
    assert (
        "| float | onnx | onnxruntime | fp32 | 8.9769 | 8.9769 | 8.9769 | 3.8e-06 | 1.000 | ok | ok |" in md
    )
    assert "| FAILED: needs the same actions | ok |" in md
    assert "| – | 8.9769 | 8.9769 | – | – |  | unavailable: openvino is not installed |" in md
    session_lines = [line for line in md.splitlines() if line.startswith("| session_float-onnxruntime |")]
    assert len(session_lines) == 2 and all(
        "| arm64 | hostA | aarch64 | emulated |" in s for s in session_lines
    )
    assert "their latencies are the emulator's" in md
    assert (out / "sessions" / "session_float-onnxruntime.png").is_file()
    assert len(list((out / "sessions").rglob("session_float-onnxruntime.png"))) == 2
    html = (out / "index.html").read_text()
    assert '<section id="arm64">' in html and 'href="#arm64"' in html


def test_an_unreadable_arm64_record_is_a_warning(tmp_path: Path) -> None:
    results = make_results(tmp_path / "results")
    (results / "arm64").mkdir()
    (results / "arm64" / "verify.json").write_text("{not json")
    warnings: list[str] = []
    assert load_arm64(results, warnings) is None and "unreadable" in warnings[0]
    (results / "arm64" / "verify.json").write_text(json.dumps({"passed": True}))
    warnings.clear()
    assert load_arm64(results, warnings) is None and "not a deploy.arm64 record" in warnings[0]
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    assert "arm64 section left out" in err.getvalue()
    assert "arm64 under emulation" not in (tmp_path / "out" / "report.md").read_text()
