"""Fixed-FPS pacing: wait for each frame's deadline on a fixed time grid, and say how late the frame began.

Why three policies: ``time.sleep`` alone wakes up late (timer slack, scheduler) and leaves the caches and
the CPU clock cold, so the next inference is slow (onnxruntime #16135, TensorRT #2107 report the same).
Measured with a 6 µs onnxruntime model at 100 FPS: sleep → frame lateness p50 ~185 µs and inference
p50 ~180 µs; sleep, then spin the last ~1 ms → lateness ~0 but inference still ~180 µs; spin plus one
throwaway inference ~300 µs before the deadline → inference p50 ~10 µs. Spinning costs power on a
battery device, hence a setting.

One throwaway shot is not enough on a shared host: the model's code and weights go cold again within a
few hundred microseconds (another tenant on the same core's caches), and the real inference measured
p50 ~22 µs / p99 ~95 µs where back-to-back calls take ~8–12 µs. So ``spin-prewarm`` keeps firing shots
every ``prewarm_every_us`` through the last ``prewarm_us`` before the deadline, and stops
:data:`PREWARM_GUARD_US` short of it so a shot never delays the frame: p50 ~12 µs / p99 ~35 µs for the
real inference in the same measurement (``python -m benchmarks.edge_loop`` reports it per policy).

Deadlines stay on the grid ``t0 + k·period``. A frame that starts later than the tolerance is a deadline
miss (counted by the caller, never absorbed into the schedule); a frame more than a whole period late
drops the grid slots it overran (counted in :attr:`Pacer.dropped_slots`) instead of firing a burst of
back-to-back frames to catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PACING_POLICIES = ("spin-prewarm", "hybrid", "sleep")
"""``spin-prewarm`` (default): sleep, spin the last stretch, fire throwaway inferences every
``prewarm_every_us`` from ``prewarm_us`` before the deadline. ``hybrid``: sleep, then spin the last
``spin_us``. ``sleep``: sleep only."""

PREWARM_GUARD_US = 30.0
"""No prewarm shot starts later than this before the deadline (a shot takes ~10 µs, ~30 µs at p99)."""


class Pacer:
    """Waits for the next deadline of a fixed grid; ``fps == 0`` means uncapped (never waits)."""

    def __init__(
        self,
        fps: float,
        policy: str = "spin-prewarm",
        spin_us: float = 1000.0,
        prewarm_us: float = 1000.0,
        prewarm_every_us: float = 50.0,
        tolerance_us: float | None = None,
        warm: Callable[[], object] | None = None,
    ) -> None:
        if policy not in PACING_POLICIES:
            raise ValueError(f"unknown pacing policy {policy!r}; use one of {', '.join(PACING_POLICIES)}")
        if fps < 0:
            raise ValueError(f"fps must be ≥ 0 (0 = uncapped), got {fps}")
        if spin_us < 0 or prewarm_us < 0 or prewarm_every_us < 0:
            raise ValueError("spin_us, prewarm_us and prewarm_every_us must be ≥ 0")
        self.fps = float(fps)
        self.policy = policy
        self.uncapped = fps == 0
        self.period_ns = 0 if self.uncapped else round(1e9 / fps)
        # A prewarm shot needs spin time before the deadline to land in.
        self.spin_ns = round(max(spin_us, prewarm_us + 200.0 if policy == "spin-prewarm" else 0.0) * 1e3)
        self.prewarm_ns = round(prewarm_us * 1e3)
        self.prewarm_every_ns = round(prewarm_every_us * 1e3)  # 0: a single shot per frame
        self.prewarm_guard_ns = round(PREWARM_GUARD_US * 1e3)
        if tolerance_us is None:
            self.tolerance_ns = self.period_ns // 10
        else:
            if tolerance_us < 0:
                raise ValueError(f"the deadline-miss tolerance must be ≥ 0 µs, got {tolerance_us}")
            self.tolerance_ns = round(tolerance_us * 1e3)
        self.warm = warm
        self.deadline_ns = 0
        self.dropped_slots = 0
        self.prewarm_shots = 0

    def start(self, now_ns: int) -> None:
        """Anchor the grid: the first frame is due now."""
        self.deadline_ns = now_ns

    def wait(self) -> int:
        """Block until the current deadline (per the policy); return the deadline in ``perf_counter_ns``."""
        deadline = self.deadline_ns
        if self.uncapped:
            return deadline
        clock = time.perf_counter_ns
        if self.policy == "sleep":
            remaining = deadline - clock()
            if remaining > 0:
                time.sleep(remaining / 1e9)
            return deadline
        remaining = deadline - self.spin_ns - clock()
        if remaining > 0:
            time.sleep(remaining / 1e9)
        if self.policy == "spin-prewarm" and self.warm is not None:
            self._prewarm(deadline, clock)
        while clock() < deadline:
            pass
        return deadline

    def _prewarm(self, deadline: int, clock: Callable[[], int]) -> None:
        """Throwaway shots every ``prewarm_every`` from ``deadline − prewarm`` (or from now, after a late
        wake-up), none starting later than :data:`PREWARM_GUARD_US` before the deadline."""
        last = deadline - min(self.prewarm_guard_ns, self.prewarm_ns)
        warm, every = self.warm, self.prewarm_every_ns
        now = clock()
        shot = max(deadline - self.prewarm_ns, now)
        while shot <= last:
            while now < shot:
                now = clock()
            if now > last:  # descheduled while waiting: too close to the deadline now
                break
            warm()
            self.prewarm_shots += 1
            if not every:
                break
            now = clock()
            shot = max(shot + every, now)  # after a slow shot, go on from now: no catch-up burst

    def advance(self, started_ns: int) -> int:
        """Move to the next deadline after a frame that started at ``started_ns``; return its lateness (ns).

        Lateness is measured against the deadline the frame was due at. Slots the frame overran entirely
        are dropped (the schedule stays on the grid) and counted.
        """
        late = started_ns - self.deadline_ns
        if self.uncapped:
            self.deadline_ns = started_ns
            return 0
        nxt = self.deadline_ns + self.period_ns
        if started_ns >= nxt:
            skipped = (started_ns - self.deadline_ns) // self.period_ns
            self.dropped_slots += skipped
            nxt = self.deadline_ns + (skipped + 1) * self.period_ns
        self.deadline_ns = nxt
        return late
