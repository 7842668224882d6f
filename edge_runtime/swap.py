"""Hot swap: a running session takes a new artifact without stopping and without a late frame.

A swap is asked for by ``SIGHUP`` (reload the manifest, load the variant of ``--follow``, default the one
running) or by writing a variant name (optionally ``variant backend``) into the file of ``--control``. The
new artifact is loaded the way the session's first one was (``Backend.from_manifest``: status, sha256,
input and output shapes checked) and warmed with a few inferences, all in a background thread; the loop
picks the ready backend up at a frame boundary, so the swap itself is one reference assignment between two
frames. A replacement that fails any check is refused: the running model keeps acting and the refusal is
recorded with its reason. Every request ends up in ``session_<N>.json``'s ``swaps``; the CSV's
``artifact`` column names the model that acted on each frame.

What a swap may not change: the task. The new artifact must come from a manifest of the same task (env,
observation shape and dtype, action space); a manifest re-exported for another task is refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Backend
from backends.manifest import ArtifactEntry, Manifest, load_manifest

WARM_CALLS = 20
"""Inferences on the current observation before a new backend is handed to the loop: the first calls of a
fresh onnxruntime / OpenVINO session allocate and are several times slower than the steady state."""


@dataclass
class Ready:
    """A loaded, warmed replacement, waiting for the loop's next frame boundary."""

    backend: Backend
    entry: ArtifactEntry
    manifest: Manifest
    request: dict[str, Any]


@dataclass
class Swapper:
    """Loads replacements in a background thread and hands them over through :attr:`ready`."""

    manifest_path: Path
    backend_name: str
    follow: str
    """The variant a SIGHUP loads (the running one unless ``--follow`` says otherwise)."""
    task: dict[str, Any]
    """The running task (``TaskSpec.to_dict()``): a replacement must act in the same one."""
    model_input: tuple[tuple[int, ...], str]
    load: Callable[[Manifest, ArtifactEntry, str], Backend]
    """Opens an entry on the named backend as the session's first artifact was opened (the profile's
    settings, status and hash checks)."""
    sample_obs: Callable[[], np.ndarray]
    """The latest observation, for warming (read from the loop's side without locking: any one will do)."""
    control: Path | None = None
    ready: Ready | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _control_mtime: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.control is not None and self.control.exists():
            self._control_mtime = self.control.stat().st_mtime  # a file left from before is not a request

    # ---------------------------------------------------------------- requests (the loop's thread)
    def poll_control(self) -> None:
        """Start a load if the control file changed since it was last read."""
        if self.control is None:
            return
        try:
            mtime = self.control.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._control_mtime:
            return
        self._control_mtime = mtime
        words = self.control.read_text().split()
        if not words:
            return
        self.request(words[0], words[1] if len(words) > 1 else None, source=f"control file {self.control}")

    def request(self, variant: str | None = None, backend: str | None = None, source: str = "SIGHUP") -> None:
        """Load ``variant`` (default ``follow``) on ``backend`` (default the session's) in the background;
        a request while another load runs is recorded as refused."""
        record = {
            "requested_at": time.time(),
            "source": source,
            "variant": variant or self.follow,
            "backend": backend or self.backend_name,
        }
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self.log.append({**record, "status": "refused", "reason": "a previous swap is still loading"})
                return
            self._thread = threading.Thread(
                target=self._load, args=(record,), name="swap-loader", daemon=True
            )
            self._thread.start()

    # ---------------------------------------------------------------- loading (the loader thread)
    def _load(self, record: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            manifest = load_manifest(self.manifest_path)
            if manifest.task_spec().to_dict() != self.task or manifest.model_input != self.model_input:
                raise ValueError(
                    f"{self.manifest_path} is now a manifest of another task ({manifest.task_spec().name}, "
                    f"input {manifest.model_input}); a session keeps its task"
                )
            entry = manifest.for_backend(record["variant"], record["backend"])
            backend = self.load(manifest, entry, record["backend"])
            try:
                obs = self.sample_obs()
                for _ in range(WARM_CALLS):
                    out = backend.infer_one(obs)
                if not np.all(np.isfinite(out)):
                    raise ValueError(f"the new model returns non-finite outputs {np.asarray(out).tolist()}")
            except BaseException:
                backend.close()
                raise
        except Exception as err:  # a refusal, whatever the cause: the running model keeps acting
            self.log.append(
                {
                    **record,
                    "status": "refused",
                    "reason": f"{type(err).__name__}: {err}",
                    "load_s": _since(started),
                }
            )
            return
        record.update(artifact=entry.name, sha256=entry.sha256, load_s=_since(started))
        self.ready = Ready(backend, entry, manifest, record)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current load (if any) finished (tests, and the end of a session)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ---------------------------------------------------------------- the swap (the loop's thread)
    def take(self, frame: int) -> Ready | None:
        """The ready replacement, recorded as swapped in at ``frame``; None if there is none."""
        ready = self.ready
        if ready is None:
            return None
        self.ready = None
        self.log.append({**ready.request, "status": "swapped", "frame": frame, "swapped_at": time.time()})
        return ready


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)
