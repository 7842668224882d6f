"""Pacing policies, deadline misses and dropped slots, atomic numbering, the live line."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from edge_runtime.live import LiveLine
from edge_runtime.numbering import claim_session, highest_session
from edge_runtime.pacing import PACING_POLICIES, PREWARM_GUARD_US, Pacer


@pytest.mark.parametrize("policy", PACING_POLICIES)
def test_each_policy_holds_the_grid(policy: str) -> None:
    shots = []
    pacer = Pacer(200, policy, warm=lambda: shots.append(time.perf_counter_ns()))
    pacer.start(time.perf_counter_ns())
    first = pacer.deadline_ns
    for _ in range(10):
        deadline = pacer.wait()
        started = time.perf_counter_ns()
        assert started >= deadline  # never early
        pacer.advance(started)
    assert pacer.deadline_ns - first == 10 * pacer.period_ns + pacer.dropped_slots * pacer.period_ns
    if policy == "spin-prewarm":
        assert pacer.prewarm_shots == len(shots) > 0
    else:
        assert shots == []


@pytest.mark.parametrize(("every_us", "most", "total"), [(100.0, 10, 25), (0.0, 1, 5)])
def test_prewarm_shots_fill_the_window_and_stop_short_of_the_deadline(
    every_us: float, most: int, total: int
) -> None:
    shots: list[int] = []
    pacer = Pacer(
        50, prewarm_us=1000, prewarm_every_us=every_us, warm=lambda: shots.append(time.perf_counter_ns())
    )
    pacer.start(time.perf_counter_ns() + 5_000_000)  # the first deadline leaves room for the whole window
    fired = 0
    for _ in range(5):
        shots.clear()
        deadline = pacer.wait()
        pacer.advance(time.perf_counter_ns())
        # 1000 µs window, one shot per 100 µs, none in the last 30 µs: 10 on time, fewer after a late wake-up.
        assert len(shots) <= most  # 10 at most: none in the guard (an 11th would fire at the deadline)
        fired += len(shots)
        first = deadline - 1_000_000
        assert all(t >= first + i * 100_000 for i, t in enumerate(shots))  # never ahead of the schedule
        # The last may start at deadline − 30 µs; the slack is for the clock read inside warm().
        assert shots[-1] < deadline - PREWARM_GUARD_US * 1e3 + 200_000
    assert fired >= total and pacer.prewarm_shots == fired


def test_late_frames_are_counted_and_overrun_slots_dropped() -> None:
    pacer = Pacer(100, "hybrid", tolerance_us=500)
    pacer.start(0)
    period = pacer.period_ns
    assert pacer.advance(100_000) == 100_000  # 0.1 ms late: within tolerance, on the grid
    assert pacer.deadline_ns == period
    late = pacer.advance(period + 2_500_000 + 3 * period)  # overran three whole slots
    assert late == 2_500_000 + 3 * period and late > pacer.tolerance_ns
    assert pacer.dropped_slots == 3
    assert pacer.deadline_ns == 5 * period  # back on the grid, no burst of catch-up frames


def test_uncapped_never_waits_and_default_tolerance_is_a_tenth_of_the_period() -> None:
    pacer = Pacer(0)
    pacer.start(123)
    assert pacer.uncapped and pacer.wait() == 123
    assert Pacer(50).tolerance_ns == 2_000_000


def test_bad_pacing_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="spin-prewarm, hybrid, sleep"):
        Pacer(10, "busy")
    with pytest.raises(ValueError, match="fps"):
        Pacer(-1)
    with pytest.raises(ValueError, match="prewarm_every_us"):
        Pacer(10, prewarm_every_us=-5)


def _claim_many(out: str, n: int, queue: multiprocessing.Queue) -> None:
    numbers = []
    for _ in range(n):
        number, _, fd = claim_session(out)
        os.close(fd)
        numbers.append(number)
    queue.put(numbers)


def test_session_numbers_are_unique_under_a_race(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(str(tmp_path), 25, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    numbers = [n for _ in procs for n in queue.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(numbers) == list(range(1, 76))
    assert highest_session(tmp_path) == 75


def test_a_leftover_json_keeps_its_number(tmp_path: Path) -> None:
    (tmp_path / "session_4.json").write_text("{}")
    number, path, fd = claim_session(tmp_path)
    os.close(fd)
    assert number == 5 and path.name == "session_5.csv"


def test_live_line_prints_at_most_twice_a_second() -> None:
    with pytest.raises(ValueError, match="twice a second"):
        LiveLine(io.StringIO(), interval_s=0.1)
    out = io.StringIO()
    live = LiveLine(out)
    live.update(frame=10, episode=1, fps=99.5, latency_us=12.3, mem_mb=55.0, action=1, reward=-0.3, misses=0)
    text = out.getvalue()
    assert "99.5 FPS" in text and "12.3 µs" in text and "55.0 MB" in text and "forward" in text
