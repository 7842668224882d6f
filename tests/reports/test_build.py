"""``python -m reports`` end to end on fixture results: the files, report.md, index.html and bad input."""

from __future__ import annotations

import base64
import io
import re
from contextlib import redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import pytest

import reports.build
from reports.build import main
from tests.reports.conftest import Built
from tests.reports.factory import HEADER, bench_row, make_results, run_rows, write_bench_run, write_session

PNG = b"\x89PNG\r\n\x1a\n"
ROWS_PER_PAIR = 9 * 4 + 4 + 3  # nine measured cells × four scenarios, the skipped TensorRT cell, throughput


class PageParser(HTMLParser):
    """The <img> sources; per table id its header cells and its body rows (a cell: ``data-v`` if it has one,
    else its text)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headers: dict[str, list[dict[str, str | None]]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.body_attrs: dict[str, str | None] = {}
        self._table = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "img":
            self.images.append(attr.get("src") or "")
        elif tag == "table":
            self._table = attr.get("id") or ""
            self.headers[self._table], self.rows[self._table] = [], []
        elif tag == "th" and self._table:
            self.headers[self._table].append({**attr, "text": ""})
        elif tag == "tr" and self._table and self.headers[self._table]:
            self.rows[self._table].append([])
        elif tag == "td" and self._table:
            self._cell = [attr["data-v"]] if "data-v" in attr else []
        elif tag == "body":
            self.body_attrs = attr

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._table and self.headers[self._table] and not self.rows[self._table]:
            self.headers[self._table][-1]["text"] = (self.headers[self._table][-1]["text"] or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[self._table][-1].append(self._cell[0] if self._cell else "")
            self._cell = None
        elif tag == "table":
            self._table = ""

    def column(self, table: str, header: str) -> list[str]:
        index = [h["text"] for h in self.headers[table]].index(header)
        return [row[index] for row in self.rows[table]]


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def png_from_data_uri(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix) :], validate=True)


def check_page(html: str, rows: int) -> PageParser:
    """What every rendering of the page must show: all rows, embedded PNGs, nothing fetched from outside."""
    page = parse_page(html)
    assert len(page.rows["all-rows"]) == rows
    assert page.images
    for src in page.images:
        assert png_from_data_uri(src)[:8] == PNG
    assert not re.search(r"https?://", html), "the page must not reference external URLs"
    assert not re.search(r"<(link|script)[^>]+(src|href)=", html)
    return page


def test_outputs_are_written_and_paths_printed(built: Built) -> None:
    for name in (
        "index.html",
        "report.md",
        "bubble.png",
        "bubble.svg",
        "latency_cdf.png",
        "size_vs_return.png",
        "comparison.png",
        "sessions/session_2.png",
    ):
        assert (built.out / name).is_file(), name
    # The report shows the combined session plot only; the per-plot PNGs are reports.session's own output.
    assert not (built.out / "sessions" / "session_2_latency.png").exists()
    for name in ("bubble.png", "latency_cdf.png", "size_vs_return.png", "comparison.png"):
        data = (built.out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 20_000, name
    # --sessions 2: the two newest are session_3 (no frames: listed, not plotted) and session_2
    assert not (built.out / "sessions" / "session_1.png").exists()
    assert not (built.out / "sessions" / "session_3.png").exists()
    assert not list(built.out.glob(".build-*")), "the temporary build folder is removed"
    last = built.stdout.strip().splitlines()[-3:]
    assert last[1].endswith(str(built.out / "bubble.png")) and last[2].endswith(str(built.out / "index.html"))
    assert "4 older rows replaced" in built.stdout


def test_markdown_tables(built: Built) -> None:
    md = (built.out / "report.md").read_text()
    assert "## Target `x86`" in md and "## Target `arm64`" in md
    header = (
        "| task | variant | backend | format | precision | size KB | params | p50 µs | p99 µs | "
        "batch100 ms | peak RSS MB | return | CI low | CI high | oracle ratio | agreement | action error | "
        "loop FPS | status |"
    )
    assert md.count(header) == 2
    # the newer x86 run re-measured float/onnxruntime at half the latency: its row wins
    assert (
        "| gridworld | float | onnxruntime | onnx | fp32 | 135.4 | 34,435 | 12.0 | 25.2 | 0.240 | 92.0 "
        "| 8.80 | – | – | 1.000 |" in md
    )
    assert "| float | onnxruntime | onnx | fp32 | 135.4 | 34,435 | 24.0 | 50.4 |" not in md
    assert "| int8-static | openvino | openvino | int8 | 44.8 | 34,435 | 16.0 | 33.6 |" in md
    assert "| 3.10 | – | – | 0.352 | 0.620 | – | 40,000 | ok · gate failed |" in md
    assert "| float | tensorrt | tensorrt | fp16 |" + " – |" * 13 + " skipped · pending on device |" in md
    assert "| x86 | hostA | env_single | 81,234 | steps/s | ok |  |" in md
    assert "| arm64 | hostB | trainer | 1,236 | steps/s | ok |  |" in md
    assert (
        "- **x86 @ hostA**: x86 test CPU (x86_64, Linux-6.1-test, 4 cores), Python 3.11.7; numpy 2.4.6" in md
    )
    assert "## Comparison across targets and hosts" in md
    assert "| variant | backend | arm64 @ hostB p99 µs | arm64 @ hostB return | x86 @ hostA p99 µs |" in md
    assert (
        "| x86 | hostA | pruned-50 | onnxruntime | batch100 | failed | onnxruntime: RuntimeError: bad alloc |"
        in md
    )
    assert "| arm64 | hostB | float | tensorrt | latency | skipped | tensorrt: no CUDA device |" in md
    assert "| session_3 | skipped | no frames recorded (stop: error: backend crashed) |" in md
    assert "![Latency, return and memory per variant × backend](bubble.png)" in md


def test_html_is_self_contained(built: Built) -> None:
    html = (built.out / "index.html").read_text()
    page = check_page(html, rows=2 * ROWS_PER_PAIR)
    assert len(page.images) == 4 + 1  # four charts and the one plotted session
    assert len(page.rows["cells-x86"]) == len(page.rows["cells-arm64"]) == 10
    assert (
        len(page.rows["problems"]) == 2 * (4 + 1) + 2 + 1
    )  # TensorRT ×4 and a failed batch per pair, gates, session
    assert len(page.rows["comparison"]) == 9 and len(page.rows["hosts"]) == 2
    p99 = page.column("cells-x86", "p99 µs")
    assert float(p99[page.column("cells-x86", "variant").index("distilled")]) == 12.6  # raw value for sorting
    assert 'class="sortable"' in html and "addEventListener" in html
    assert "tensorrt: no CUDA device" in html and "Failed and skipped" in html


def test_only_failed_and_skipped_rows_still_make_a_report(tmp_path: Path) -> None:
    common = {
        "run_id": "r",
        "timestamp": "2026-11-20T10:00:00Z",
        "target": "jetson",
        "host": "nano",
        "arch": "aarch64",
        "format": "onnx",
        "precision": "fp32",
        "artifact_status": "ok",
    }
    rows = [
        bench_row(
            **common,
            variant="float",
            backend="onnxruntime",
            scenario="latency",
            status="failed",
            reason="onnxruntime: Illegal instruction",
        ),
        bench_row(
            **common,
            variant="float",
            backend="tensorrt",
            scenario="latency",
            status="skipped",
            reason="artifact pending-on-device",
        ),
    ]
    write_bench_run(tmp_path / "results" / "benchmark", rows, "20261120T100000Z", with_json=False)
    out = tmp_path / "out"
    assert main(["--results", str(tmp_path / "results"), "--out", str(out), "--no-svg"]) == 0
    assert (out / "bubble.png").is_file() and not (out / "bubble.svg").exists()
    md = (out / "report.md").read_text()
    assert (
        "| jetson | nano | float | onnxruntime | latency | failed | onnxruntime: Illegal instruction |" in md
    )
    assert "| jetson | nano | float | tensorrt | latency | skipped | artifact pending-on-device |" in md
    check_page((out / "index.html").read_text(), rows=2)


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_no_result_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")], capsys)
    assert f"{tmp_path / 'results' / 'benchmark'}/" in err and "make bench" in err
    assert not (tmp_path / "out").exists()


def test_missing_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = tmp_path / "benchmark"
    bench.mkdir()
    keep = [c for c in HEADER if c not in ("lat_p99_us", "status")]
    (bench / "bench_x86_h_1.csv").write_text(",".join(keep) + "\n" + ",".join("1" for _ in keep) + "\n")
    err = _error(["--results", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert "bench_x86_h_1.csv: missing column(s) status, lat_p99_us" in err


def test_malformed_session_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_bench_run(tmp_path / "benchmark", run_rows("x86", "h", "2026-11-20T10:00:00Z"), "1")
    write_session(tmp_path / "sessions", 1, "2026-11-21T10:00:00+00:00", frames=20)
    (tmp_path / "sessions" / "session_1.csv").write_text("timestamp_ns,episode\n1,0\n")
    err = _error(["--results", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert "session_1.csv: missing column(s)" in err and "latency_ms" in err


def test_a_failed_build_leaves_the_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_bench_run(tmp_path / "results" / "benchmark", run_rows("x86", "h", "2026-11-20T10:00:00Z"), "1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("previous report")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(reports.build, "render_html", broken)
    assert main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]
    assert (out / "index.html").read_text() == "previous report"


def test_bad_flag_value() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--sessions", "-1"])
    assert exc.value.code == 2


def test_tasks_sit_side_by_side_with_their_return_ci(tmp_path: Path) -> None:
    """A CartPole run beside the gridworld's: its own bubble-chart panel, its CI in the tables."""
    from reports.load import load_benchmarks
    from reports.summary import ReportData

    results = make_results(tmp_path / "results")
    pole = [
        {**r, "task": "cartpole", "run_id": "pole", "mean_return": 480.0, "return_ci_low": 471.5,
         "return_ci_high": 488.5, "oracle_ratio": ""}
        for r in run_rows("x86", "hostA", "2026-11-22T09:00:00Z")
        if r["variant"] != "-"
    ]  # fmt: skip
    write_bench_run(results / "benchmark", pole, "20261122T090000Z")
    data = ReportData(results, load_benchmarks(results / "benchmark"), [])
    assert data.tasks == ["cartpole", "gridworld"]
    assert ("cartpole", "x86", "hostA") in data.panels and ("gridworld", "x86", "hostA") in data.panels
    cells = data.cells[data.cells["task"] == "cartpole"]
    assert (cells.dropna(subset=["lat_p99_us"])["return_ci_low"] == 471.5).all()
    # The gridworld's cells are untouched by the other task's rows with the same (target, host, variant).
    assert (data.cells[data.cells["task"] == "gridworld"]["mean_return"] != 480.0).all()
    out = tmp_path / "out"
    with redirect_stdout(io.StringIO()):
        assert main(["--results", str(results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| cartpole | float | onnxruntime | onnx | fp32 |" in md and "| 480.00 | 471.50 | 488.50 |" in md
