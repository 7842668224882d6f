"""The on-device loop: observation → ``infer_one`` → argmax → env step, paced, logged, watched.

Why it is written the way it is:
- It drives the gridworld on :class:`gridworld.core.GridWorldCore` (numpy only) and any other task through
  Gymnasium (:mod:`edge_runtime.envs`), and imports no torch: the device may not have it, and it costs
  memory (docs/contracts.md#layout-and-dependency-rules).
- The per-frame path does the minimum: four clock reads, the inference, the action rule, the env step and
  one tuple appended to a buffer. Packing the buffer into the binary frame log, sampling RSS, the live
  line and the pygame window happen on a slower clock (≤ every ``flush_s`` / ``mem_sample_ms`` / 0.5 s)
  checked with one comparison per frame, after the frame's work and before the wait for the next
  deadline, so they use slack time instead of delaying a frame start.
- The CSV is written from the frame log once the loop has stopped (:mod:`edge_runtime.frames`: text
  costs ~1.2 µs a row, the record 0.3–0.45 µs). The latency, lateness and interval figures of the summary
  are read back from it too, into fixed-size histograms (:mod:`edge_runtime.stats`): nothing the session
  holds grows with its length, during the loop or after it.
- Frames reach the OS at least every ``flush_s``: a kill loses at most that much. Whatever ends the
  session (completion, the watchdog, SIGINT/SIGTERM, a crashing backend) the remaining rows are flushed,
  the CSV written and ``session_<N>.json`` written with the reason.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np

from backends.base import Backend
from backends.manifest import ArtifactEntry, Manifest
from edge_runtime.config import SessionConfig
from edge_runtime.envs import GridLoopEnv, GymLoopEnv
from edge_runtime.frames import CSV_COLUMNS, FrameLog, finish
from edge_runtime.hostinfo import host_info
from edge_runtime.live import LiveLine
from edge_runtime.numbering import claim_session
from edge_runtime.pacing import Pacer
from edge_runtime.stats import Histogram
from edge_runtime.swap import Swapper
from gridworld.core import ACTION_NAMES, GridModel
from tasks import NonFiniteAction, TaskSpec, action_bounds, clip_action, confidence_interval

STOP_COMPLETED = "completed"
STOP_BUDGET = "latency_budget_exceeded"
STOP_SIGNAL = "signal"
STOP_NON_FINITE = "error: non-finite action"

_MB = 1024.0 * 1024.0
#: Rows buffered before a flush regardless of time: bounds memory at high FPS (~1 MB of tuples).
FLUSH_ROWS = 2048


@dataclass
class SessionPlan:
    """Everything resolved before the loop starts: which artifact, which env, which limits."""

    manifest: Manifest
    manifest_path: Path
    entry: ArtifactEntry
    task: TaskSpec
    """What the artifact acts in (docs/contracts.md#the-task-spec): its env, observation and action rule."""
    model: GridModel | None
    """The gridworld's tables when the task is the gridworld (its ``max_steps`` is the episode limit);
    None for any other task, which runs through Gymnasium."""
    fps: float
    latency_budget_ms: float
    target: str


@dataclass
class SessionResult:
    number: int
    csv_path: Path
    json_path: Path
    stop_reason: str
    summary: dict[str, Any] = field(repr=False)

    @property
    def exit_code(self) -> int:
        """0 completed, 3 watchdog, 128+signal, 1 error (documented in ``--help``)."""
        if self.stop_reason == STOP_COMPLETED:
            return 0
        if self.stop_reason == STOP_BUDGET:
            return 3
        if self.stop_reason == STOP_SIGNAL:
            return 128 + int(self.summary.get("signal_number") or signal.SIGTERM)
        return 1


def rss_reader() -> Any:
    """A cheap RSS probe in bytes: ``/proc/self/statm`` on Linux (no import: psutil alone adds ~2 MB of
    RSS), else psutil where installed (macOS, Windows), else nothing."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        page = os.sysconf("SC_PAGE_SIZE")
        return lambda: int(statm.read_text().split()[1]) * page
    try:
        import psutil
    except ImportError:
        return lambda: 0
    proc = psutil.Process()
    return lambda: proc.memory_info().rss


def peak_rss_mb(samples_peak_mb: float) -> float:
    """The OS high-water mark of this process where available (it also sees peaks between samples).

    Linux: ``VmHWM`` from ``/proc/self/status``, not ``ru_maxrss`` — the latter survives ``exec``, so a
    session started from a large parent process would report the parent's peak. macOS: ``ru_maxrss``
    (bytes there). Elsewhere: the sampled peak.
    """
    status = _proc_kb_fields_mb()
    if "VmHWM" in status:
        return max(status["VmHWM"], samples_peak_mb)
    if sys.platform == "darwin":
        import resource

        return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _MB, samples_peak_mb)
    return samples_peak_mb


def _proc_kb_fields_mb(name: str = "status") -> dict[str, float]:
    """The ``Key: N kB`` fields of ``/proc/self/<name>`` in MB (``status``: VmHWM, RssAnon, RssFile …;
    ``smaps_rollup``: Private_Clean, Private_Dirty …); empty off Linux or when it cannot be read."""
    path = Path("/proc/self") / name
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields = (line.split() for line in text.splitlines())
    return {f[0].rstrip(":"): int(f[1]) / 1024.0 for f in fields if len(f) == 3 and f[2] == "kB"}


def rss_split_mb() -> dict[str, float] | None:
    """``{"anon": RssAnon, "file": RssFile}`` in MB from ``/proc/self/status`` (Linux), else None.

    The file-backed part (shared libraries' code pages) depends on the kernel's page cache, not on this
    program: measured with the same venv, onnxruntime + numpy map ~24 MB of file pages when they were read
    from disk and ~39 MB right after pip wrote them (large page-cache folios are mapped whole), while the
    anonymous part stayed at 21.6 MB. Recording both says which one a peak came from.
    """
    status = _proc_kb_fields_mb()
    if "RssAnon" not in status or "RssFile" not in status:
        return None
    return {"anon": round(status["RssAnon"], 2), "file": round(status["RssFile"], 2)}


def _uss_mb() -> float | None:
    """Memory private to this process (no shared libraries), read once at the end: it is slow (smaps).

    Linux: ``Private_Clean + Private_Dirty`` of ``/proc/self/smaps_rollup`` (what psutil's ``uss`` sums,
    without importing psutil at the end of a session: that import alone raised the peak RSS by ~1.5 MB).
    Elsewhere: psutil where installed.
    """
    rollup = _proc_kb_fields_mb("smaps_rollup")
    if "Private_Clean" in rollup and "Private_Dirty" in rollup:
        return rollup["Private_Clean"] + rollup["Private_Dirty"]
    try:
        import psutil
    except ImportError:
        return None
    try:
        return psutil.Process().memory_full_info().uss / _MB
    except (psutil.Error, OSError):
        return None


def _percentiles(histogram: Histogram) -> dict[str, float | None]:
    """p50 … p99.9, max and mean in µs."""
    keys = ("p50", "p90", "p99", "p99.9")
    if not histogram.count:
        return {**dict.fromkeys(keys), "max": None, "mean": None}
    qs = (50, 90, 99, 99.9)
    out = {k: round(histogram.percentile(q) / 1e3, 3) for k, q in zip(keys, qs, strict=True)}  # type: ignore[operator]
    out["max"] = round(histogram.max / 1e3, 3)  # type: ignore[operator]
    out["mean"] = round(histogram.mean / 1e3, 3)  # type: ignore[operator]
    return out


class Session:
    """One session: owns the CSV, the JSON summary, the signal handlers and the loop."""

    def __init__(
        self,
        config: SessionConfig,
        plan: SessionPlan,
        backend: Backend,
        live_stream: TextIO | None = None,
        loader: Callable[[Manifest, ArtifactEntry, str], Backend] | None = None,
    ) -> None:
        """``loader`` opens a replacement artifact for a hot swap (``edge_runtime.swap``) the way the CLI
        opened ``backend``; without it the session does not swap."""
        self.config = config
        self.plan = plan
        self.backend = backend
        self.live_stream = live_stream
        self.loader = loader
        self.swapper: Swapper | None = None
        self.swap_requested = False
        self.artifact_runs: list[tuple[int, str]] = [(0, plan.entry.name)]
        """(first frame, artifact name) of each model that acted, in order (the CSV's ``artifact``)."""
        self.loaded: list[Backend] = []
        """Backends a swap opened: closed when the session ends (the caller closes ``backend``)."""
        self.stop_reason: str | None = None
        self.signal_number: int | None = None
        self.error_traceback: str | None = None
        self.error_detail: str | None = None

    # ---------------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only set flags: the loop checks them once per frame, so a row is never half-recorded.
        if self.stop_reason is None:
            self.stop_reason = STOP_SIGNAL
            self.signal_number = signum

    def _on_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        self.swap_requested = True  # the loop starts the load at its next housekeeping

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        handlers: list[tuple[int, Any]] = [
            (signal.SIGINT, self._on_signal),
            (signal.SIGTERM, self._on_signal),
        ]
        if self.loader is not None and hasattr(signal, "SIGHUP"):  # no SIGHUP on Windows: --control there
            handlers.append((signal.SIGHUP, self._on_hangup))
        for sig, handler in handlers:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (embedded use): the caller handles signals
                break
        return previous

    # ---------------------------------------------------------------------------------------------------
    def run(self) -> SessionResult:
        cfg = self.config
        number, csv_path, fd = claim_session(cfg.out)
        json_path = csv_path.with_suffix(".json")
        self.csv = os.fdopen(fd, "w", newline="")
        self.csv.write(",".join(CSV_COLUMNS) + "\n")
        self.csv.flush()
        self.rows: list[tuple] = []
        self.epoch_offset_ns = time.time_ns() - time.perf_counter_ns()
        action = self.plan.task.action
        self.frames_path = csv_path.with_suffix(".frames")
        self.log = FrameLog(
            self.frames_path,
            None if action.kind == "discrete" else len(action.low or ()),
            self.epoch_offset_ns,
        )
        self.csv_write_s: float | None = None
        self.csv_error: str | None = None
        self.started_at = datetime.now(timezone.utc)
        previous_handlers = self._install_signal_handlers()
        window = None
        self.columns: dict[str, Histogram] = {}
        """Histograms of the frame log's latency, lateness and interval, read back when the session ends."""
        self.episode_stats: list[tuple[float, bool | None, int, float | None]] = []
        self.frames = 0
        self.misses = 0
        self.total_reward = 0.0
        self.rss_peak_mb = 0.0
        self.pacer: Pacer | None = None
        t_start = time.perf_counter_ns()
        try:
            # The one broad boundary (docs/contracts.md#code-conventions allows it here only): whatever a
            # backend, the env or the window raises mid-session becomes stop reason "error: …" with the CSV
            # flushed and the JSON written, instead of a traceback that loses the last rows.
            try:
                if cfg.render:
                    window = self._open_window()
                self._loop(window)
            except NonFiniteAction as err:
                self.stop_reason = STOP_NON_FINITE
                self.error_detail = str(err)
            except Exception as err:
                self.stop_reason = f"error: {type(err).__name__}: {err}"
                self.error_traceback = traceback.format_exc()
        finally:
            elapsed_ns = time.perf_counter_ns() - t_start
            try:
                if self.swapper is not None:
                    self.swapper.wait(timeout=30.0)  # a load still running must not outlive the session
                    if self.swapper.ready is not None:
                        self.loaded.append(self.swapper.ready.backend)  # loaded too late: closed below
                self._flush()
                self.log.close()
                self._write_csv()
                if window is not None:
                    window.close()
                summary = self._summary(number, csv_path, elapsed_ns)
                _write_json_atomically(json_path, summary)
                for loaded in self.loaded:  # after the summary, which asks the backend for its version
                    loaded.close()
            finally:
                # Restored last: a second SIGTERM while the summary is written must not kill it half-way.
                for sig, handler in previous_handlers.items():
                    signal.signal(sig, handler)
        return SessionResult(number, csv_path, json_path, summary["stop_reason"], summary)

    def _open_window(self) -> Any:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        from gridworld.render import PygameWindow, render_rgb

        if self.plan.model is not None:
            frame = render_rgb(self.plan.model.layout, 0, 0, 0)
        else:  # the env's own picture, to size the window
            probe = GymLoopEnv(self.plan.task, self.config.seed, render=True)
            try:
                probe.reset()
                frame = probe.frame()
            finally:
                probe.close()
        # fps=0: the window must not sleep; the pacer owns the timing.
        return PygameWindow(
            frame.shape[1], frame.shape[0], fps=0, title=f"NeuroQuant edge — {self.plan.entry.name}"
        )

    # ---------------------------------------------------------------------------------------------------
    def _loop(self, window: Any) -> None:
        cfg, plan = self.config, self.plan
        env: GridLoopEnv | GymLoopEnv
        if plan.model is not None:
            env = GridLoopEnv(plan.model, cfg.seed)
        else:
            env = GymLoopEnv(plan.task, cfg.seed, render=window is not None)
        try:
            self._run_frames(env, window)
        finally:
            env.close()

    def _run_frames(self, env: GridLoopEnv | GymLoopEnv, window: Any) -> None:
        cfg, plan, backend = self.config, self.plan, self.backend
        discrete = plan.task.action.kind == "discrete"
        low, high = (None, None) if discrete else action_bounds(plan.task)
        obs = env.reset()
        optimal = env.optimal_return()

        pacer = Pacer(
            plan.fps,
            cfg.pacing,
            spin_us=cfg.spin_us,
            prewarm_us=cfg.prewarm_us,
            prewarm_every_us=cfg.prewarm_every_us,
            tolerance_us=cfg.miss_tolerance_us,
            warm=lambda: backend.infer_one(obs),
        )
        self.pacer = pacer
        swapper = None
        if self.loader is not None:
            swapper = self.swapper = Swapper(
                manifest_path=plan.manifest_path,
                backend_name=cfg.backend,
                follow=cfg.follow or plan.entry.variant,
                task=plan.task.to_dict(),
                model_input=plan.manifest.model_input,
                load=self.loader,
                sample_obs=lambda: obs,
                control=cfg.control,
            )
        read_rss = rss_reader()
        names = ACTION_NAMES if plan.model is not None else None
        live = None if cfg.quiet else LiveLine(self.live_stream, action_names=names)
        render = None
        if window is not None and isinstance(env, GymLoopEnv):

            def render() -> None:
                window.show(env.frame())

        elif window is not None:
            from gridworld.render import render_rgb

            layout = plan.model.layout
            core = env.core

            def render() -> None:
                window.show(render_rgb(layout, *core.agent))

        # Locals: attribute and global lookups cost real time at 50,000+ frames a second.
        clock = time.perf_counter_ns
        infer_one = backend.infer_one
        step = env.step
        isfinite = math.isfinite
        rows_append = self.rows.append
        budget_ns = round(plan.latency_budget_ms * 1e6)
        tolerance_ns = pacer.tolerance_ns
        uncapped = pacer.uncapped
        max_frames = cfg.max_frames if cfg.max_frames is not None else sys.maxsize
        episodes_wanted = cfg.episodes
        flush_ns = round(cfg.flush_s * 1e9)
        mem_ns = round(cfg.mem_sample_ms * 1e6)
        live_ns = live.interval_ns if live is not None else sys.maxsize

        mem_mb = read_rss() / _MB
        self.rss_peak_mb = mem_mb
        episode, frame, cumulative, ep_len, misses = 0, 0, 0.0, 0, 0
        now = clock()
        next_flush, next_mem, next_live = now + flush_ns, now + mem_ns, now + live_ns
        next_house = min(next_flush, next_mem, next_live)
        flush_frame = FLUSH_ROWS
        live_frame, live_t = 0, now
        prev_start = 0
        # Everything alive now (modules, the runtime, the tables) lives for the whole session: freezing it
        # keeps the collector's full passes — milliseconds over numpy/onnxruntime's objects — off the
        # frame path; the loop's own garbage (row tuples) is young and cheap to collect.
        gc.freeze()
        pacer.start(now)
        deadline = now
        try:
            while True:
                if not uncapped:
                    deadline = pacer.wait()
                t0 = clock()
                q = infer_one(obs)
                t1 = clock()
                if discrete:
                    action = int(q.argmax())
                    # argmax picks a NaN or +inf before any number: testing the chosen value alone
                    # catches them at the cost of one scalar check (np.isfinite on the row costs ~1 µs)
                    if not isfinite(q[action]):
                        raise NonFiniteAction(f"non-finite action: the model returned {q.tolist()}")
                else:  # box: clip only; the graph unscales (docs/contracts.md#the-task-spec)
                    action = clip_action(q, low, high)
                ta = clock()
                obs, reward, terminated, truncated = step(action)
                t2 = clock()
                cumulative += reward
                ep_len += 1
                lat = t1 - t0
                if uncapped:
                    late = miss = 0
                else:
                    late = t0 - deadline
                    miss = 1 if late > tolerance_ns else 0
                    misses += miss
                    pacer.advance(t0)
                rows_append(
                    (
                        t0,
                        episode,
                        frame,
                        action,
                        reward,
                        cumulative,
                        lat,
                        t2 - ta,
                        t2 - t0,
                        mem_mb,
                        t0 - prev_start,
                        miss,
                        late,
                    )
                )
                prev_start = t0
                frame += 1
                if terminated or truncated:
                    self.episode_stats.append((cumulative, env.success(terminated), ep_len, optimal))
                    self.total_reward += cumulative
                    episode += 1
                    cumulative, ep_len = 0.0, 0
                    if episode >= episodes_wanted:
                        self.stop_reason = STOP_COMPLETED
                    else:
                        obs = env.reset()
                        optimal = env.optimal_return()
                if lat > budget_ns and self.stop_reason is None:
                    self.stop_reason = STOP_BUDGET
                if frame >= max_frames and self.stop_reason is None:
                    self.stop_reason = STOP_COMPLETED
                if render is not None:
                    render()
                if frame >= flush_frame:
                    self._flush()
                    flush_frame = frame + FLUSH_ROWS
                if t2 >= next_house:
                    now = clock()
                    if now >= next_mem:
                        mem_mb = read_rss() / _MB
                        if mem_mb > self.rss_peak_mb:
                            self.rss_peak_mb = mem_mb
                        next_mem = now + mem_ns
                        if swapper is not None:  # swaps are looked after on the RSS clock (≤ 100 ms)
                            if self.swap_requested:
                                self.swap_requested = False
                                swapper.request()
                            swapper.poll_control()
                            ready = swapper.take(frame)
                            if ready is not None:  # the frame boundary: the next frame uses the new model
                                self.loaded.append(ready.backend)
                                backend, infer_one = ready.backend, ready.backend.infer_one
                                self.backend = backend
                                self.artifact_runs.append((frame, ready.entry.name))
                    if now >= next_flush:
                        self._flush()
                        next_flush = now + flush_ns
                        flush_frame = frame + FLUSH_ROWS
                    if now >= next_live and live is not None:
                        # The frames not yet flushed (≤ FLUSH_ROWS, ≤ flush_s): the recent ones.
                        window_lat = np.array([row[6] for row in self.rows], dtype=np.int64)
                        live.update(
                            frame=frame,
                            episode=episode,
                            fps=(frame - live_frame) * 1e9 / max(1, now - live_t),
                            latency_us=float(np.median(window_lat)) / 1e3 if window_lat.size else 0.0,
                            mem_mb=mem_mb,
                            action=action,
                            reward=self.total_reward + cumulative,
                            misses=misses,
                        )
                        live_frame, live_t = frame, now
                        next_live = now + live_ns
                    next_house = min(next_flush, next_mem, next_live)
                if self.stop_reason is not None:
                    break
        finally:
            gc.unfreeze()
            # Also after a crash: the summary counts what was recorded up to it.
            self.frames, self.misses = frame, misses
            self.partial_episode = (cumulative, ep_len) if ep_len else None
            if live is not None:
                live.close()

    # ---------------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Hand the buffered rows to the frame log (one block per model that acted) and the log to the OS."""
        rows = self.rows
        if not rows:
            return
        for segment, name in self._by_artifact(rows):
            self.log.write(segment, name)
        self.log.flush()
        rows.clear()

    def _write_csv(self) -> None:
        """The session CSV from the frame log, once the loop has stopped, and the columns the summary needs;
        the log goes once the CSV holds its rows. A failed write (a full disk) keeps the log, for
        ``python -m edge_runtime.frames``."""
        t0 = time.perf_counter()
        paced = self.pacer is not None and not self.pacer.uncapped
        wanted = ("latency", "interval", "lateness") if paced else ("latency", "interval")
        self.columns, self.csv_error = finish(self.frames_path, self.csv, wanted)
        try:
            self.csv.close()
        except OSError as err:  # the last buffered text did not fit either
            self.csv_error = self.csv_error or f"{type(err).__name__}: {err}"
        if self.csv_error is None:
            self.frames_path.unlink()
            self.csv_write_s = time.perf_counter() - t0

    def _by_artifact(self, rows: list[tuple]) -> list[tuple[list[tuple], str]]:
        """The buffered rows cut where a swap changed the model, each run with its artifact's name. Rows are
        consecutive frames (``row[2]`` is the frame index); ``artifact_runs`` says from which frame on each
        model acted."""
        first, last = rows[0][2], rows[-1][2]
        runs = self.artifact_runs
        out = []
        for i, (start, name) in enumerate(runs):
            end = runs[i + 1][0] if i + 1 < len(runs) else last + 1
            lo, hi = max(start, first), min(end, last + 1)
            if lo < hi:
                out.append((rows[lo - first : hi - first], name))
        return out

    def histogram(self, name: str) -> Histogram:
        """``latency``, ``lateness`` (paced sessions) or ``interval`` (from the second frame on) of every
        frame, ns, once the session has ended (read back from its frame log, in fixed memory)."""
        return self.columns.get(name) or Histogram()

    def _summary(self, number: int, csv_path: Path, elapsed_ns: int) -> dict[str, Any]:
        cfg, plan, entry = self.config, self.plan, self.plan.entry
        lat, late, intervals = (self.histogram(k) for k in ("latency", "lateness", "interval"))
        pacer = self.pacer
        stats = self.episode_stats
        returns = np.array([s[0] for s in stats])
        frames = lat.count
        paced = pacer is not None and not pacer.uncapped
        partial = getattr(self, "partial_episode", None)
        summary: dict[str, Any] = {
            "session": number,
            "csv": csv_path.name,
            "stop_reason": self.stop_reason or "error: the session ended without a reason",
            "signal_number": self.signal_number,
            "target": plan.target,
            "task": plan.task.name,
            "env_id": plan.task.env.id,
            "manifest_target": plan.manifest.target,
            "backend": self.backend.name,
            "variant": entry.variant,
            "artifact": {
                "name": entry.name,
                "format": entry.format,
                "precision": entry.precision,
                "path": str(plan.manifest.artifact_path(entry)),
                "sha256": entry.sha256,
                "size_bytes": entry.size_bytes,
            },
            "manifest": str(plan.manifest_path),
            "host": host_info(self.backend.runtime_version()),
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "duration_s": round(elapsed_ns / 1e9, 6),
            "requested_fps": plan.fps,
            "pacing": {
                "policy": cfg.pacing if paced else "uncapped",
                "spin_us": cfg.spin_us,
                "prewarm_us": cfg.prewarm_us,
                "prewarm_every_us": cfg.prewarm_every_us,
                "miss_tolerance_us": (pacer.tolerance_ns / 1e3) if pacer is not None else None,
                "prewarm_shots": pacer.prewarm_shots if pacer is not None else 0,
                "dropped_slots": pacer.dropped_slots if pacer is not None else 0,
            },
            "latency_budget_ms": plan.latency_budget_ms,
            "frames": frames,
            "latency_us": _percentiles(lat),
            "lateness_us": _percentiles(late) if paced else None,
            "deadline_misses": int(self.misses),
            "fps": {
                "mean": round(frames / (elapsed_ns / 1e9), 3) if elapsed_ns > 0 and frames else None,
                # 1e9 / the interval's percentile: the rate falls as the interval grows (p1 of the rate
                # is 1e9 / p99 of the interval).
                **(
                    {
                        "p50": round(1e9 / intervals.percentile(50), 3),
                        "p1": round(1e9 / intervals.percentile(99), 3),
                        "min": round(1e9 / intervals.max, 3),
                        "max": round(1e9 / intervals.min, 3),
                    }
                    if intervals.count and intervals.min
                    else dict.fromkeys(("p50", "p1", "min", "max"))
                ),
            },
            "peak_rss_mb": round(peak_rss_mb(self.rss_peak_mb), 2),
            "sampled_peak_rss_mb": round(self.rss_peak_mb, 2),
            "end_uss_mb": round(uss, 2) if (uss := _uss_mb()) is not None else None,
            "end_rss_split_mb": rss_split_mb(),
            "csv_write_s": round(self.csv_write_s, 6) if self.csv_write_s is not None else None,
            "swaps": self.swapper.log if self.swapper is not None else [],
            "artifacts_used": [name for _, name in self.artifact_runs],
            "episodes_requested": cfg.episodes,
            "episodes": len(stats),
            # Every reward of the session: finished episodes plus the one a stop cut short.
            "total_reward": round(float(returns.sum()) + (partial[0] if partial else 0.0), 6),
            "returns": _returns(stats),
            "partial_episode": {"return": round(partial[0], 6), "length": partial[1]} if partial else None,
            "config": cfg.to_dict(),
        }
        if self.csv_error:  # the frames are kept: python -m edge_runtime.frames writes the CSV from them
            summary["csv_error"] = self.csv_error
            summary["frames_log"] = self.frames_path.name
        if self.error_detail:
            summary["error_detail"] = self.error_detail
        if self.error_traceback:
            summary["traceback"] = self.error_traceback
        return summary


def _returns(stats: list[tuple[float, bool | None, int, float | None]]) -> dict[str, Any]:
    """The finished episodes' figures: mean return, its 95% CI (two episodes or more), success rate where
    the env says, and on the gridworld the oracle ratio (the BFS optimum from each episode's start)."""
    if not stats:
        keys = ("mean_return", "ci95", "success_rate", "mean_length", "oracle_return", "oracle_ratio")
        return dict.fromkeys(keys)
    returns = np.array([s[0] for s in stats])
    successes = [s[1] for s in stats if s[1] is not None]
    out: dict[str, Any] = {
        "mean_return": round(float(returns.mean()), 6),
        "ci95": [round(v, 6) for v in confidence_interval(returns)[2]] if len(returns) > 1 else None,
        "success_rate": round(float(np.mean(successes)), 6) if successes else None,
        "mean_length": round(float(np.mean([s[2] for s in stats])), 3),
        "oracle_return": None,
        "oracle_ratio": None,
    }
    optimal = [s[3] for s in stats]
    if all(o is not None for o in optimal):
        oracle = np.array(optimal, dtype=np.float64)
        out["oracle_return"] = round(float(oracle.mean()), 6)
        out["oracle_ratio"] = round(float(returns.sum() / oracle.sum()), 6) if oracle.sum() else None
        out["note"] = "per finished episode; optimal return = the BFS oracle's from that episode's start"
    else:
        out["note"] = "per finished episode; episode i was reset with seed (--seed) + i"
    return out


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)
