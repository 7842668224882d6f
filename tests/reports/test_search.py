"""The compression search's studies (results/search/<study>/) in the report, and ``python -m reports.search``
drawing one study's Pareto chart on its own."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from reports import search
from reports.build import main as report_main
from tests.reports.conftest import Built
from tests.reports.factory import CHOSEN_REASON, FIXED, TRIALS, make_results, write_study
from tests.reports.test_build import PNG, ROWS_PER_PAIR, check_page, parse_page

STUDY = "x-x86"
CHOSEN_LINE = (
    "Chosen: trial 1 (pruned-40, int8-static, onnxruntime): p99 21.0 µs, 23.4 KiB, return ratio 1.000 — "
    + CHOSEN_REASON
)


@dataclass
class Report:
    results: Path
    out: Path
    stderr: str

    @property
    def html(self) -> str:
        return (self.out / "index.html").read_text()

    @property
    def md(self) -> str:
        return (self.out / "report.md").read_text()


def build(results: Path, out: Path) -> Report:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert report_main(["--results", str(results), "--out", str(out), "--sessions", "0"]) == 0
    return Report(results, out, err.getvalue())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The fixture results with one good study and one whose search.json is not JSON."""
    root = tmp_path_factory.mktemp("search")
    results = make_results(root / "results")
    write_study(results / "search" / STUDY)
    write_study(results / "search" / "bad-x86")
    (results / "search" / "bad-x86" / "search.json").write_text("{not json")
    return build(results, root / "out")


def test_the_loader_reads_a_study(tmp_path: Path) -> None:
    write_study(tmp_path / "search" / STUDY)
    warnings: list[str] = []
    (study,) = search.load_studies(tmp_path, warnings)
    assert warnings == []
    assert study.name == STUDY and study.title == f"x on x86: {len(TRIALS)} trials"
    assert list(study.trials["number"]) == [t[0] for t in TRIALS]
    assert len(study.fixed) == len(FIXED)
    assert study.chosen_trial()["number"] == 1
    assert search.chosen_line(study) == CHOSEN_LINE
    # True/False/empty stay the text the search wrote; an empty calibration is missing, not 0
    assert list(study.trials["per_channel"]) == ["", "True", "False", "", "", "True"]
    assert study.trials["calibration"].isna().sum() == 4
    assert search.load_studies(tmp_path / "nowhere", warnings) == [] and warnings == []


def test_a_broken_study_folder_is_a_warning(tmp_path: Path) -> None:
    for name in ("no-json", "bad-json", "not-a-record", "bad-trials"):
        write_study(tmp_path / "search" / name)
    (tmp_path / "search" / "no-json" / "search.json").unlink()
    (tmp_path / "search" / "bad-json" / "search.json").write_text("{not json")
    (tmp_path / "search" / "not-a-record" / "search.json").write_text(json.dumps({"study": "x"}))
    (tmp_path / "search" / "bad-trials" / "trials.csv").write_text("number,status\n0,ok\n")
    warnings: list[str] = []
    assert search.load_studies(tmp_path, warnings) == []
    assert len(warnings) == 4 and all("left out of the report" in w for w in warnings)
    text = "\n".join(warnings)
    assert "bad-json/search.json: unreadable JSON" in text
    assert "bad-trials/trials.csv: missing column(s) return_ratio, lat_p99_us, size_bytes" in text
    assert "no-json/search.json: missing; rerun the study with `make search" in text
    assert "not-a-record/search.json: not a search record (needs task, target" in text


def test_a_study_that_chose_nothing(tmp_path: Path) -> None:
    """No trial kept the return: no star, no dominance list, the reason in the chosen line."""
    folder = write_study(tmp_path / STUDY)
    meta = json.loads((folder / "search.json").read_text())
    meta.update(chosen=None, chosen_reason="no trial passes its gate with return ≥ 0.99", dominance=[])
    (folder / "search.json").write_text(json.dumps(meta))
    trials = pd.read_csv(folder / "trials.csv").assign(chosen=0)
    trials.to_csv(folder / "trials.csv", index=False)
    study = search.load_study(folder)
    assert study.chosen_trial() is None
    assert search.chosen_line(study) == "No trial chosen: no trial passes its gate with return ≥ 0.99"
    assert search.dominance_table(study).empty
    fig, _ = search.pareto_chart(study)
    assert "searched" not in {t.get_text() for t in fig.axes[0].texts}
    plt.close(fig)


def test_the_pareto_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_study(tmp_path / STUDY)
    assert search.main([str(folder)]) == 0
    png = (folder / "pareto.png").read_bytes()
    assert png[:8] == PNG and len(png) > 20_000
    assert capsys.readouterr().out.strip() == f"python -m reports.search: {folder / 'pareto.png'}"
    assert search.main([str(folder), "--out", str(tmp_path / "elsewhere" / "front.png")]) == 0
    assert (tmp_path / "elsewhere" / "front.png").read_bytes()[:8] == PNG

    study = search.load_study(folder)
    fig, caption = search.pareto_chart(study)
    (ax,) = fig.axes
    assert ax.get_title() == "x on x86: 6 trials"
    assert ax.get_xscale() == "linear"  # p99 spans 12–60 µs: under 10×
    assert {t.get_text() for t in ax.texts} == {"searched"} | {f"{v}/{b}" for v, b, *_ in FIXED}
    assert "1 trial(s) that failed to build or measure are not drawn" in caption
    plt.close(fig)
    study.trials["lat_p99_us"] *= study.trials["number"] ** 2 + 1  # 48 µs … 1,560 µs: log scale
    fig, _ = search.pareto_chart(study)
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_the_chart_cli_explains_itself_and_refuses_a_bad_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        search.main(["--help"])
    assert exc.value.code == 0
    assert "Example: python -m reports.search results/search/cartpole-x86" in capsys.readouterr().out
    assert search.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"python -m reports.search: error: {tmp_path / 'search.json'}: missing; " + (
        "rerun the study with `make search TASK=… TARGET=…`"
    )


def test_the_report_shows_the_study(report: Report) -> None:
    page = check_page(report.html, rows=2 * ROWS_PER_PAIR)
    assert '<section id="search"><h2>Compression search</h2>' in report.html
    assert 'href="#search"' in report.html
    assert f'<h3 id="search-{STUDY}">x on x86: 6 trials ({STUDY})</h3>' in report.html
    assert CHOSEN_LINE in report.html
    assert len(page.images) == 4 + 1  # the four charts and the study's Pareto chart (no session plots)
    assert (report.out / "search" / f"{STUDY}.png").read_bytes()[:8] == PNG
    # a trials-table row per trial, the Pareto front highlighted
    assert page.column(f"trials-{STUDY}", "trial") == [str(float(t[0])) for t in TRIALS]
    assert page.column(f"trials-{STUDY}", "front") == ["", "Pareto · chosen", "", "", "Pareto", ""]
    assert report.html.count('<tr class="pareto">') == 2
    assert page.column(f"trials-{STUDY}", "status")[2] == "gate-failed"
    assert "return ratio 0.710 &lt; 0.99" in report.html
    # the dominance list: one line per fixed variant that passed its gate
    assert page.rows[f"dominance-{STUDY}"] == [
        ["float", "onnxruntime", "yes", "better", "better", "better", "yes"],
        ["int8-static", "onnxruntime", "yes", "better", "better", "no", "yes"],
    ]


def test_report_md_has_the_chosen_line_and_the_front(report: Report) -> None:
    md = report.md
    assert f"## Compression search: x on x86: 6 trials (`{STUDY}`)" in md
    assert CHOSEN_LINE in md
    front = [line for line in md.splitlines() if "| Pareto" in line]
    assert front == [
        "| 1 | Pareto · chosen | pruned-40 | int8-static | onnxruntime | 1.000 | 21.0 | 23.4 | 81.0 |",
        "| 4 | Pareto | distilled-10 | fp32 | numpy | 0.992 | 26.0 | 11.7 | 84.0 |",
    ]  # only the front's rows
    assert "| trial | front | source | precision | backend | return ratio | p99 µs | size KiB |" in md
    assert f"![Pareto chart of x on x86: 6 trials](search/{STUDY}.png)" in md


def test_a_malformed_study_is_left_out_with_a_warning(report: Report) -> None:
    assert "python -m reports: warning:" in report.stderr and "bad-x86/search.json: unreadable JSON" in (
        report.stderr
    )
    assert "bad-x86" not in report.md and 'id="search-bad-x86"' not in report.html
    assert "bad-x86/search.json: unreadable JSON" in report.html  # the page lists the warnings too
    assert STUDY in report.md  # the good study and the rest of the report are still there
    assert "## Target `x86`" in report.md


def test_no_search_results_no_section(built: Built, tmp_path: Path) -> None:
    for text in ((built.out / "index.html").read_text(), (built.out / "report.md").read_text()):
        assert "Compression search" not in text and 'id="search"' not in text
    assert not (built.out / "search").exists()
    results = make_results(tmp_path / "results")
    (results / "search").mkdir()  # an empty search folder: the same
    empty = build(results, tmp_path / "out")
    assert "Compression search" not in empty.html and "Compression search" not in empty.md
    assert empty.stderr == "" and len(parse_page(empty.html).images) == 4
