"""``python -m reports.session`` turns a session CSV into PNG plots."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from edge_runtime.cli import main as edge_main
from reports.session import SessionReportError, main, write_plots


def test_session_plots_are_written(manifest_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    argv = ["--manifest", str(manifest_path), "--variant", "float", "--backend", "numpy", "--fps", "0",
            "--episodes", "4", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    assert edge_main(argv, stream=io.StringIO()) == 0
    paths = write_plots(tmp_path / "session_1.csv", tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["session_1.png", "session_1_fps.png", "session_1_latency.png", "session_1_reward.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_bad_csv_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "session_9.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SessionReportError, match="missing column"):
        write_plots(bad)
    assert main([str(tmp_path / "nope.csv")]) == 1
    assert "no such session CSV" in capsys.readouterr().err
