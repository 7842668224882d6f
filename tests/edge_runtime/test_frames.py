"""The per-frame log: binary while the loop runs, the CSV from it at the end or after a hard kill."""

from __future__ import annotations

import io
import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge_runtime.frames import (
    CSV_COLUMNS,
    FrameLog,
    FrameLogError,
    csv_text,
    finish,
    main,
    read_blocks,
    record_dtype,
    record_format,
)

REPO = Path(__file__).resolve().parents[2]


def _row(frame: int, action: object, late: int = 0) -> tuple:
    """A loop row: (t0, episode, frame, action, reward, cumulative, latency, env, busy, mem, interval, miss,
    lateness), ns where timed."""
    return (1_000_000 * (frame + 1), 0, frame, action, 1.5, 1.5 * (frame + 1), 4123, 5000, 9500, 40.5,
            1_000_000, frame % 2, late)  # fmt: skip


def test_discrete_and_box_rows_come_back_as_the_session_csv(tmp_path: Path) -> None:
    log = FrameLog(tmp_path / "d.frames", None, epoch_offset_ns=7)
    log.write([_row(0, 2), _row(1, 0)], "float/onnx")
    log.write([_row(2, 1, late=250)], "fp16/onnx")  # a swap: the next block names the new model
    log.close()
    assert list(csv_text(tmp_path / "d.frames")) == [
        "1000007,0,0,2,1.5,1.5,0.004123,0.005000,0.009500,40.50,,0,float/onnx\n"  # frame 0: no fps
        "2000007,0,1,0,1.5,3,0.004123,0.005000,0.009500,40.50,1000.00,1,float/onnx\n",
        "3000007,0,2,1,1.5,4.5,0.004123,0.005000,0.009500,40.50,1000.00,0,fp16/onnx\n",
    ]
    box = FrameLog(tmp_path / "b.frames", 4, epoch_offset_ns=0)
    box.write([_row(0, np.array([[0.5, -1.0], [2.0, 0.125]], np.float32))], "float/onnx")  # a 2×2 action
    box.close()
    assert next(csv_text(tmp_path / "b.frames")).split(",")[3] == "0.5;-1;2;0.125"  # row-major


def test_finish_gathers_the_summary_figures_even_when_the_csv_cannot_be_written(tmp_path: Path) -> None:
    log = FrameLog(tmp_path / "s.frames", None, epoch_offset_ns=0)
    log.write([_row(i, 0, late=10 * i) for i in range(5)], "float/onnx")
    log.close()

    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    columns, error = finish(tmp_path / "s.frames", FullDisk(), ("latency", "lateness", "interval"))  # type: ignore[arg-type]
    assert error is not None and "No space left" in error
    latency, lateness, interval = (columns[k] for k in ("latency", "lateness", "interval"))
    assert latency.count == 5 and latency.min == latency.max == 4123
    assert lateness.count == 5 and (lateness.min, lateness.max, lateness.mean) == (0, 40, 20)
    assert interval.count == 4 and interval.min == 1_000_000  # the first frame has no previous one


@pytest.mark.parametrize("dims", [None, 1, 6])
def test_the_numpy_view_of_a_record_is_its_struct_layout(dims: int | None) -> None:
    assert record_dtype(dims).itemsize == struct.calcsize(record_format(dims))


def test_a_block_cut_by_a_kill_keeps_its_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "k.frames"
    log = FrameLog(path, None, epoch_offset_ns=0)
    log.write([_row(i, 0) for i in range(3)], "float/onnx")
    log.write([_row(i, 1) for i in range(3, 6)], "float/onnx")
    log.close()
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # the last record half-written
    blocks = [
        np.frombuffer(data, record_dtype(header["action_dims"])) for header, _, data in read_blocks(path)
    ]
    assert [len(b) for b in blocks] == [3, 2]
    assert blocks[1]["frame"].tolist() == [3, 4] and blocks[1]["action"].tolist() == [1, 1]


def test_finish_stops_at_a_damaged_block_and_keeps_what_came_before(tmp_path: Path) -> None:
    path = tmp_path / "d.frames"
    log = FrameLog(path, None, epoch_offset_ns=0)
    log.write([_row(i, 0) for i in range(3)], "float/onnx")
    log.close()
    with open(path, "ab") as f:
        f.write(b"garbage that is no block")
    columns, error = finish(path, io.StringIO(), ("latency",))
    assert error is not None and "damaged block" in error and columns["latency"].count == 3


def test_a_file_that_is_not_a_frame_log_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "session_1.frames"
    tampered = {"magic": "neuroquant-frames", "version": 1, "struct": record_format(None), "action_dims": 3}
    bad.write_text(json.dumps(tampered) + "\n")
    with pytest.raises(FrameLogError, match="damaged header"):
        list(read_blocks(bad))
    bad.write_text("timestamp_ns,episode\n1,2\n")
    with pytest.raises(FrameLogError, match="not a NeuroQuant frame log"):
        list(read_blocks(bad))
    assert main([str(bad)]) == 2
    assert "not a NeuroQuant frame log" in capsys.readouterr().err
    assert bad.exists() and not (tmp_path / "session_1.csv").exists()  # nothing written, nothing lost


def test_a_session_killed_hard_gets_its_csv_from_the_frame_log(manifest_path: Path, tmp_path: Path) -> None:
    """SIGKILL: no JSON, a CSV with its header only; the frames flushed so far (every --flush-s) are in
    session_1.frames, and ``python -m edge_runtime.frames`` writes the CSV from them."""
    cmd = [
        sys.executable, "-m", "edge_runtime", "--manifest", str(manifest_path), "--variant", "float",
        "--backend", "numpy", "--out", str(tmp_path), "--quiet", "--fps", "500", "--episodes", "1000000",
        "--flush-s", "0.1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    frames = tmp_path / "session_1.frames"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not frames.is_file() or frames.stat().st_size < 5000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    csv = tmp_path / "session_1.csv"
    assert csv.read_text() == ",".join(CSV_COLUMNS) + "\n" and not (tmp_path / "session_1.json").exists()

    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime.frames", str(frames)], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(csv)
    assert tuple(df.columns) == CSV_COLUMNS and len(df) >= 20
    assert (df["frame"].to_numpy() == np.arange(len(df))).all()  # every flushed frame, in order
    assert (df["artifact"] == "float/onnx").all() and df["fps"].iloc[1:].notna().all()
    assert not frames.exists()


def test_a_finished_session_leaves_its_csv_and_no_frame_log(manifest_path: Path, tmp_path: Path) -> None:
    from edge_runtime.cli import main as run

    assert run(["--manifest", str(manifest_path), "--variant", "float", "--backend", "numpy", "--fps", "0",
                "--episodes", "3", "--out", str(tmp_path), "--quiet"]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session_1.csv", "session_1.json"]
    summary = json.loads((tmp_path / "session_1.json").read_text())
    assert summary["csv_write_s"] > 0 and len(pd.read_csv(tmp_path / "session_1.csv")) == summary["frames"]
