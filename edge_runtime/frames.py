"""The session's per-frame log: fixed-size binary records while the loop runs, the CSV written from them when
the session ends.

Why binary first: formatting one 13-column CSV row costs CPython 1.1–1.7 µs, packing the same values into a
record and writing it 0.3–0.45 µs. Either happens at a flush, off the frame itself, but an uncapped loop pays
every µs of it in frame rate: on CartPole (a ~14 µs frame) the text log alone was 12 % of the frame and kept
the loop under 0.8 × 1 / (bare env step + bare inference) (docs/edge-loop.md). Flight controllers log the same
way (binary on board, text on the ground). The text is still written, in the same process, once the loop has
stopped (``csv_write_s`` in the session JSON says what it cost), so a finished, stopped or crashed session
leaves the same ``session_<N>.csv`` as before.

``session_<N>.frames`` holds every flushed frame: a kill loses at most ``--flush-s`` of frames, as the CSV
did. After a hard kill (SIGKILL, power loss) the CSV has only its header; ``python -m edge_runtime.frames
session_<N>.frames`` writes it from the records.

Layout: one JSON header line (``magic``, ``version``, ``struct``, ``action_dims``, ``epoch_offset_ns``), then
blocks. A block is ``b"NQFB"``, the artifact's name (uint16 length + UTF-8), a uint32 record count and the
records (``struct`` format, little endian): ``timestamp`` (perf_counter ns), ``episode``, ``frame``, the
action (one int64, or the bytes of ``action_dims`` float32 for a box task), ``reward``, ``cumulative``,
``latency``, ``env``, ``busy`` (ns), ``mem_mb``, ``interval`` (ns since the previous frame's start),
``deadline_miss``, ``lateness`` (ns; 0 uncapped). A block cut short by a kill yields its whole records and
ends the file.
"""

from __future__ import annotations

import argparse
import functools
import json
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from common.cli import ExampleFormatter
from common.fileio import atomic_write
from edge_runtime.stats import Histogram

CSV_COLUMNS = (
    "timestamp_ns",
    "episode",
    "frame",
    "action",
    "reward",
    "cumulative_reward",
    "latency_ms",
    "env_ms",
    "frame_ms",
    "mem_mb",
    "fps",
    "deadline_miss",
    "artifact",
)
"""The columns of docs/contracts.md#the-session-files, in order. ``timestamp_ns``: frame start, Unix epoch ns
(monotonic clock + one offset); ``frame``: frame index in the session; ``action``: the index (discrete tasks)
or the ``;``-joined vector (box tasks); ``latency_ms``: the ``infer_one`` call; ``env_ms``: the env step
alone, so the simulator's cost is never read as the device's; ``frame_ms``: the frame's busy time (inference +
action rule + env step); ``mem_mb``: last RSS sample; ``fps``: 1 / interval between this frame's start and the
previous one's (empty for the first frame); ``deadline_miss``: 1 if the frame started later than the
tolerance; ``artifact``: the model that acted."""

MAGIC = "neuroquant-frames"
VERSION = 1
BLOCK = b"NQFB"
_BLOCK_HEAD = struct.Struct("<4sH")
_COUNT = struct.Struct("<I")
# %-formatting is ~15% faster than f-strings here; latency/frame_ms keep 1 ns resolution in ms.
_ROW_FORMAT = "%d,%d,%d,%s,%.6g,%.6g,%.6f,%.6f,%.6f,%.2f,%.2f,%d,%s\n"
#: Records formatted per piece of CSV text: bounds what the end of a session holds at once (~0.5 MB of
#: record tuples and text) however long it ran.
CSV_CHUNK = 1024


class FrameLogError(ValueError):
    """The file is not a NeuroQuant frame log (or its header is damaged)."""


def _fields(action_dims: int | None) -> list[tuple[str, str, Any]]:
    """A record's fields as ``(name, struct code, numpy type)``. A box action is its float32 values' bytes
    (``ndarray.tobytes``: ~0.3 µs a frame less to pack than the values one by one)."""
    if action_dims is None:
        action = ("action", "q", "<i8")
    else:
        action = ("action", f"{4 * action_dims}s", ("<f4", (action_dims,)))
    return [
        ("timestamp", "q", "<i8"), ("episode", "q", "<i8"), ("frame", "q", "<i8"), action,
        ("reward", "d", "<f8"), ("cumulative", "d", "<f8"), ("latency", "q", "<i8"), ("env", "q", "<i8"),
        ("busy", "q", "<i8"), ("mem_mb", "d", "<f8"), ("interval", "q", "<i8"), ("deadline_miss", "B", "u1"),
        ("lateness", "q", "<i8"),
    ]  # fmt: skip


def record_format(action_dims: int | None) -> str:
    """The ``struct`` format of one record (little endian, no padding); ``action_dims`` None: a discrete
    action (one int64), else that many float32 as bytes."""
    return "<" + "".join(code for _, code, _ in _fields(action_dims))


@functools.cache
def record_dtype(action_dims: int | None) -> np.dtype:
    """The same record as a numpy structured dtype, to read a block's columns without a tuple per frame."""
    return np.dtype(
        [(name, *kind) if isinstance(kind, tuple) else (name, kind) for name, _, kind in _fields(action_dims)]
    )


class FrameLog:
    """Appends blocks of session rows (the loop's tuples) to ``path``; one ``write`` per block."""

    def __init__(self, path: Path, action_dims: int | None, epoch_offset_ns: int) -> None:
        self.action_dims = action_dims
        self.record = struct.Struct(record_format(action_dims))
        self.file: BinaryIO = open(path, "xb")
        header = {
            "magic": MAGIC,
            "version": VERSION,
            "struct": self.record.format,
            "action_dims": action_dims,
            "epoch_offset_ns": epoch_offset_ns,
        }
        self.file.write(json.dumps(header).encode() + b"\n")

    def write(self, rows: list[tuple], artifact: str) -> None:
        """One block: ``rows`` are the loop's tuples ``(t0, episode, frame, action, reward, cumulative,
        latency, env, busy, mem_mb, interval, miss, lateness)``, all acted on by ``artifact``."""
        pack = self.record.pack
        if self.action_dims is None:
            records = b"".join([pack(*row) for row in rows])
        else:  # the action is the clipped array: its float32 bytes go inline
            if rows[0][3].dtype != np.float32:  # a backend's outputs, not float32: converted once a block
                rows = [(*row[:3], row[3].astype(np.float32), *row[4:]) for row in rows]
            records = b"".join(
                [
                    pack(t0, ep, fr, a.tobytes(), r, cum, lat, env, busy, mem, iv, miss, late)
                    for t0, ep, fr, a, r, cum, lat, env, busy, mem, iv, miss, late in rows
                ]
            )
        name = artifact.encode()
        self.file.write(_BLOCK_HEAD.pack(BLOCK, len(name)) + name + _COUNT.pack(len(rows)) + records)

    def flush(self) -> None:
        """Hand the written blocks to the OS: a kill after this loses none of them."""
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_header(f: BinaryIO, path: Path) -> dict[str, Any]:
    line = f.readline(4096)
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise FrameLogError(
            f"{path}: not a NeuroQuant frame log (session_<N>.frames written by edge_runtime)"
        )
    if header.get("version") != VERSION:
        raise FrameLogError(
            f"{path}: frame log version {header.get('version')!r}; this reader knows {VERSION}"
        )
    dims = header.get("action_dims")
    if not (dims is None or (type(dims) is int and dims > 0)) or header.get("struct") != record_format(dims):
        raise FrameLogError(f"{path}: damaged header (action_dims {dims!r}, record {header.get('struct')!r})")
    return header


def read_blocks(path: Path) -> Iterator[tuple[dict[str, Any], str, bytes]]:
    """``(header, artifact, records' bytes)`` per block. Stops at a block cut short (a kill during its
    write), after yielding its whole records."""
    with open(path, "rb") as f:
        header = read_header(f, path)
        size = struct.calcsize(header["struct"])
        while True:
            head = f.read(_BLOCK_HEAD.size)
            if len(head) < _BLOCK_HEAD.size:
                return
            magic, name_len = _BLOCK_HEAD.unpack(head)
            if magic != BLOCK:
                raise FrameLogError(f"{path}: damaged block at byte {f.tell() - len(head)}")
            name = f.read(name_len).decode(errors="replace")
            count_bytes = f.read(_COUNT.size)
            if len(count_bytes) < _COUNT.size:
                return
            (count,) = _COUNT.unpack(count_bytes)
            data = f.read(count * size)
            whole = len(data) - len(data) % size
            yield header, name, data[:whole]
            if whole < count * size:
                return


def csv_text(path: Path) -> Iterator[str]:
    """The session CSV's rows (no header) for the frame log at ``path``, a piece at a time."""
    for header, name, data in read_blocks(path):
        yield from _csv_pieces(header, name, data)


def _csv_pieces(header: dict[str, Any], name: str, data: bytes) -> Iterator[str]:
    record = struct.Struct(header["struct"])
    step = record.size * CSV_CHUNK
    for start in range(0, len(data), step):
        records = list(record.iter_unpack(data[start : start + step]))
        yield _format(records, name, header["action_dims"], header["epoch_offset_ns"])


def finish(path: Path, out: TextIO, columns: tuple[str, ...]) -> tuple[dict[str, Histogram], str | None]:
    """What a session does with its frame log when the loop has stopped, in one pass: the CSV rows to
    ``out``, and a :class:`~edge_runtime.stats.Histogram` of each of ``columns`` for its summary
    (``interval``: every frame but the first). Returns ``(histograms, error)``: a failed write (a full disk)
    stops the CSV, not the reading; a damaged block stops both there. Memory: one block at a time."""
    histograms = {name: Histogram() for name in columns}
    error = None
    try:
        for header, name, data in read_blocks(path):
            block = np.frombuffer(data, dtype=record_dtype(header["action_dims"]))
            for column, histogram in histograms.items():
                histogram.add(block[column][block["frame"] > 0] if column == "interval" else block[column])
            if error is None:
                try:
                    for text in _csv_pieces(header, name, data):
                        out.write(text)
                except OSError as err:
                    error = f"{type(err).__name__}: {err}"
    except FrameLogError as err:  # the summary still counts the blocks before the damage
        error = error or str(err)
    return histograms, error


def _format(records: list[tuple], name: str, dims: int | None, offset_ns: int) -> str:
    fmt = _ROW_FORMAT
    nan = float("nan")
    if dims is None:
        rows = records
    else:  # the action's float32 values back into one ";"-joined field
        values = struct.Struct(f"<{dims}f").unpack
        rows = [(*r[:3], ";".join([f"{v:.6g}" for v in values(r[3])]), *r[4:]) for r in records]
    text = "".join(
        [
            fmt
            % (
                t0 + offset_ns,
                ep,
                fr,
                a,
                r,
                cum,
                lat / 1e6,
                env / 1e6,
                busy / 1e6,
                mem,
                1e9 / iv if fr else nan,
                miss,
                name,
            )
            for t0, ep, fr, a, r, cum, lat, env, busy, mem, iv, miss, _late in rows
        ]
    )
    return text.replace(",nan,", ",,")  # the first frame has no previous one to rate against


def write_csv(frames: Path, csv: Path) -> int:
    """Write the full CSV (header + rows) of ``frames`` to ``csv`` atomically; return the rows written."""
    rows = 0

    def write(tmp: str) -> None:
        nonlocal rows
        with open(tmp, "w", newline="") as out:
            out.write(",".join(CSV_COLUMNS) + "\n")
            for text in csv_text(frames):
                out.write(text)
                rows += text.count("\n")

    atomic_write(csv, write)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_runtime.frames",
        description="Write the CSV of a session killed before it could (SIGKILL, power loss) from its "
        "session_<N>.frames; the frame log is removed once the CSV holds its rows.",
        epilog="Example: python -m edge_runtime.frames results/sessions/session_3.frames",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("frames", type=Path, nargs="+", help="session_<N>.frames files")
    parser.add_argument("--keep", action="store_true", help="keep the frame log after writing the CSV")
    args = parser.parse_args(argv)
    code = 0
    for path in args.frames:
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            code = 2
            continue
        csv = path.with_suffix(".csv")
        t0 = time.perf_counter()
        try:
            rows = write_csv(path, csv)
        except (FrameLogError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            code = 2
            continue
        if not args.keep:
            path.unlink()
        print(f"{csv}: {rows} rows ({time.perf_counter() - t0:.2f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
