"""``python -m reports --results results --out reports/out``

Aggregates the benchmark CSV/JSON files and the edge-session CSV/JSON files under --results into a
bubble chart (latency p99 × exact return × peak RSS, with the Pareto front), latency CDFs, model size vs
return, per-session plots, a Pareto chart per compression-search study (if search/ has any), report.md
(Markdown tables to paste into a README) and one self-contained index.html. Reads files only; nothing is
written unless the whole report could be built.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.cli import dataclass_parser, parse_dataclass
from reports import search
from reports.charts import write_charts
from reports.html import render_html
from reports.load import ReportError, load_arm64, load_benchmarks, load_sessions
from reports.summary import ReportData
from reports.tables import render_markdown


@dataclass
class ReportConfig:
    """What to report on and where to put it."""

    results: str = "results"
    """Folder with benchmark/ (bench_<target>_<host>_<time>.csv + .json from `make bench`), sessions/
    (session_<N>.csv + .json from `python -m edge_runtime`, searched recursively) and, if a compression
    search ran, search/<study>/ (trials.csv, fixed.csv, search.json from `make search`)."""
    out: str = "reports/out"
    """Output folder for index.html, report.md and the PNG charts (sessions/ holds the session plots). The
    report is built in a temporary folder inside it; its files replace the old ones only once all exist."""
    sessions: int = 12
    """Plot at most this many edge sessions, the newest (by the JSON's started_at); 0 = none."""
    svg: bool = True
    """Also write the bubble chart as bubble.svg."""

    def __post_init__(self) -> None:
        if self.sessions < 0:
            raise ValueError(f"--sessions must be ≥ 0 (0 = no session plots), got {self.sessions}")


def publish(build: Path, out: Path) -> list[Path]:
    """Move every file of ``build`` into ``out`` (same file system: each move is an atomic rename);
    index.html last, so a page that exists always has its charts next to it."""
    files = sorted(
        (p for p in build.rglob("*") if p.is_file()), key=lambda p: (p.name == "index.html", str(p))
    )
    moved = []
    for path in files:
        dest = out / path.relative_to(build)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        moved.append(dest)
    return moved


def build_report(config: ReportConfig) -> tuple[ReportData, list[Path]]:
    """Read, check, draw and write; a :class:`ReportError` before anything in ``out`` is touched."""
    results, out = Path(config.results), Path(config.out)
    bench = load_benchmarks(results / "benchmark")
    sessions, left_out = load_sessions(results / "sessions", config.sessions)
    arm64 = load_arm64(results, bench.warnings)
    studies = search.load_studies(results, bench.warnings)
    data = ReportData(results, bench, sessions, left_out, arm64, studies)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        build = Path(tmp)
        data.charts = write_charts(data, build, svg=config.svg)
        data.search_charts = search.write_charts(data.studies, build)
        (build / "report.md").write_text(render_markdown(data), encoding="utf-8")
        (build / "index.html").write_text(render_html(data, build), encoding="utf-8")
        written = publish(build, out)
    return data, written


def main(argv: Sequence[str] | None = None) -> int:
    """0 with the report written; 2 with one line on stderr for result files that cannot be reported on."""
    parser = dataclass_parser(
        ReportConfig,
        prog="python -m reports",
        description=(__doc__ or "").strip().split("\n\n")[1],
        epilog=(
            "exit status: 0 report written, 1 writing to --out failed, 2 missing or malformed result files "
            "or an --out that cannot be a folder (checked before anything is read).\n"
            "Example: python -m reports --results results --out reports/out"
        ),
    )
    config: ReportConfig = parse_dataclass(
        ReportConfig, parser, list(argv) if argv is not None else None, outputs={"out": "dir"}
    )
    try:
        data, written = build_report(config)
    except ReportError as err:
        print(f"python -m reports: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"python -m reports: error: cannot write the report to {config.out}: {err}", file=sys.stderr)
        return 1
    for warning in data.bench.warnings:
        print(f"python -m reports: warning: {warning}", file=sys.stderr)
    by_name = {p.relative_to(config.out).as_posix(): p for p in written}
    print(f"python -m reports: {data.sources()}; {len(data.problems)} failed/skipped entries")
    print(f"  markdown:     {by_name['report.md']}")
    print(f"  bubble chart: {by_name['bubble.png']}")
    print(f"  report:       {by_name['index.html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
