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


class FakeClock:
    """``perf_counter_ns`` stand-in: every read moves time on by 1 µs; a shot moves it by its duration."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns


def _shots(start_before_us: int, every_us: float, shot_us: int = 10, first_shot_us: int = 10) -> list[int]:
    """Shot times (µs before a deadline at t = 10 s) of one frame whose prewarm begins ``start_before_us``
    before the deadline; the first shot takes ``first_shot_us``, the others ``shot_us``."""
    deadline = 10_000_000_000
    clock = FakeClock(deadline - start_before_us * 1_000)
    fired: list[int] = []

    def warm() -> None:
        fired.append((deadline - clock.now_ns) // 1_000)
        clock.now_ns += (shot_us if len(fired) > 1 else first_shot_us) * 1_000

    pacer = Pacer(50, prewarm_us=1000, prewarm_every_us=every_us, warm=warm)
    pacer._prewarm(deadline, clock)
    assert pacer.prewarm_shots == len(fired)
    return fired


def test_prewarm_shots_fill_the_window_on_schedule_and_stop_short_of_the_deadline() -> None:
    # Every 100 µs from 1000 µs before the deadline; none in the last 30 µs (an 11th would be at ~0).
    assert _shots(1200, 100.0) == [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]
    assert PREWARM_GUARD_US == 30
    # A late wake-up starts at once and keeps the period; one too close to the deadline fires none.
    assert _shots(450, 100.0) == [449, 349, 249, 149, 49]
    assert _shots(25, 100.0) == []
    # 0 = a single shot per frame.
    assert _shots(1200, 0.0) == [1000]
    # Shots slower than the period go back to back, never in a catch-up burst, and still stop in time.
    assert _shots(1200, 100.0, shot_us=250, first_shot_us=250) == [1000, 749, 498, 247]
    # After one slow shot the schedule restarts from then: no burst for the slots it overran.
    assert _shots(1200, 100.0, first_shot_us=450) == [1000, 549, 449, 349, 249, 149, 49]


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


@pytest.mark.parametrize("leftover", ["session_4.json", "session_4.frames"])
def test_a_leftover_json_or_frame_log_keeps_its_number(tmp_path: Path, leftover: str) -> None:
    """A frame log whose CSV was deleted is still a session's record (python -m edge_runtime.frames)."""
    (tmp_path / leftover).write_text("{}")
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
