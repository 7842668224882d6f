"""``--executor ray``: the benchmark matrix on a Ray cluster — a lab of x86 boxes, M1 laptops and Jetsons.

Each cell becomes a Ray task that needs one unit of the custom resource of the manifest's target
(``target_jetson``, …) and calls :func:`benchmarks.matrix.measure_cell` on the node Ray picks, which
starts the same ``python -m benchmarks.cell`` process there as the local executor does here; the task
returns the cell's rows and the driver writes the one result pair. A device joins the fleet with
``ray start --address=<head>:6379 --resources='{"target_jetson": 1}'``.

What every node needs (this version ships no code or artifacts): a checkout of the same commit, installed
with the ``fleet`` extra, the same Ray and Python version as the head (Ray refuses a node or driver whose
Python differs even in the patch level, unless RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor), and the
export at the same path relative to the checkout (copied, or on a shared file system). A task checks that
its node's manifest has the driver's sha256, and the backends check every artifact's.

Ray is imported only inside the functions below, so ``import benchmarks`` works without it.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backends.manifest import Manifest, ManifestError, file_sha256, load_manifest
from benchmarks.matrix import (
    REPO,
    BenchError,
    Cell,
    CellReport,
    Outcome,
    RunContext,
    cell_report,
    describe_host,
    measure_cell,
    prepare_common,
    unrun_report,
)

#: Seconds between two looks at the cluster while cells are queued or running.
POLL_S = 0.5
#: Seconds to wait for a TCP answer from ``--address HOST:PORT`` before saying nothing listens there (Ray
#: itself retries for minutes).
CONNECT_CHECK_S = 5.0


def target_resource(target: str) -> str:
    """The custom resource a node offers to run ``target``'s cells: ``target_jetson`` for ``jetson``."""
    return f"target_{target}"


def import_ray() -> Any:
    """Ray, or one :class:`BenchError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise BenchError(
            f'--executor ray needs Ray, which is not installed ({err}): pip install -e ".[fleet]" '
            f"-c constraints.txt (or pip install {_ray_pin()})"
        ) from None
    return ray


def _ray_pin() -> str:
    """``ray==<version>`` from constraints.txt (the one list of versions), or plain ``ray``."""
    try:
        from deploy.requirements import read_constraints

        pins = read_constraints().get("ray")
    except (ImportError, OSError, ValueError):
        pins = None
    return pins[0][0] if pins else "ray"


# ------------------------------------------------------------------------------------------------------
def worker_manifest_ref(path: Path) -> str:
    """The manifest as a node finds it: relative to the checkout when inside it (each node's checkout may
    live elsewhere), else the absolute path (the same on every node: a shared file system)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)


def _node_manifest(path: Path, sha256: str) -> Manifest:
    """This node's copy of the driver's manifest; :class:`BenchError` if it is missing or another one."""
    if not path.is_file():
        raise BenchError(f"no manifest at {path} on this node: every node needs the checkout and the export")
    if file_sha256(path) != sha256:
        raise BenchError(f"{path} on this node differs from the driver's manifest: copy the same export here")
    return load_manifest(path)


def run_on_node(cell: Cell, ctx: RunContext, manifest_ref: str, manifest_sha256: str) -> CellReport:
    """The Ray task, on the device: :func:`measure_cell` with this node's manifest and a scratch folder of
    its own, so the rows carry this node's host, arch and cpu."""
    path = REPO / manifest_ref  # an absolute ref stays as it is
    with tempfile.TemporaryDirectory(prefix="nq_bench_") as tmp:
        work = Path(tmp)
        try:
            manifest = _node_manifest(path, manifest_sha256)
            common = prepare_common(manifest, path, ctx.config.sessions_dir, work, REPO)
        except (BenchError, ManifestError, OSError) as err:
            return cell_report(cell, Outcome("failed", str(err), 0.0), ctx, describe_host())
        return measure_cell(cell, dataclasses.replace(ctx, manifest=manifest, work=work, common=common))


# ------------------------------------------------------------------------------------------------------
def _check_listening(address: str) -> None:
    """Fail fast on a ``HOST:PORT`` nothing answers on (``auto`` and the like are Ray's to resolve)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_CHECK_S).close()
    except OSError as err:
        raise BenchError(
            f"nothing answers at --address {address} ({err}); start the head there with "
            "`ray start --head --port=6379`"
        ) from None


@contextmanager
def connected(ray: Any, address: str) -> Iterator[None]:
    """Join the cluster for the run and leave it after; a caller already joined (a test, a notebook) is
    used as it is."""
    if ray.is_initialized():
        yield
        return
    _check_listening(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise BenchError(
            f"cannot join a Ray cluster at --address {address}: {_first_line(err)} (start one with "
            "`ray start --head`; with token authentication, set RAY_AUTH_MODE=token and copy the head's "
            '~/.ray/auth_token here; see docs/benchmarks.md, "Fleet")'
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def offers(ray: Any, resource: str) -> bool:
    """Whether a live node of the cluster has ``resource`` (busy or not)."""
    return ray.cluster_resources().get(resource, 0) > 0


def wait_for_node(ray: Any, resource: str, wait_s: float) -> bool:
    """Whether a node offering ``resource`` is in the cluster, or joins it within ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while not offers(ray, resource):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def no_node_reason(resource: str, wait_s: float, left: bool = False) -> str:
    return f"no Ray node offers {resource}{' any more' if left else ''} (waited {wait_s:g} s)"


def run_ray(cells: list[Cell], ctx: RunContext, done: Callable[[Cell, CellReport], None]) -> list[CellReport]:
    """Every cell as a Ray task on a node of its target; reports in cell order.

    A task asks for ``{target_<target>: 1}`` and each device offers exactly 1, so a device runs one cell
    at a time: two latency measurements side by side on one device would share its cores, caches and
    memory bandwidth and measure each other (the reason the local executor runs cells in turn). Devices of
    one target share the cells between them, and each row says which host measured it.

    Ray keeps a task nobody can run queued for ever, so the driver watches the cluster: when no node has
    offered the resource for ``--ray-wait-s`` seconds (before the first cell, or after the last such node
    left), the cells not yet finished are cancelled and become ``skipped`` rows with the reason.

    A task runs with Ray's environment for one CPU (OMP_NUM_THREADS=1, as the model cells set anyway);
    the trainer row sets its torch threads itself (--trainer-threads).
    """
    ray = import_ray()
    resource = target_resource(ctx.manifest.target)
    wait_s = ctx.config.ray_wait_s
    reports: dict[int, CellReport] = {}

    def finish(i: int, report: CellReport) -> None:
        reports[i] = report
        done(cells[i], report)

    def skip(indices: list[int], reason: str) -> None:
        for i in indices:
            finish(i, unrun_report(cells[i], ctx, "skipped", reason))

    with connected(ray, ctx.config.address):
        if not wait_for_node(ray, resource, wait_s):
            skip(list(range(len(cells))), no_node_reason(resource, wait_s))
            return [reports[i] for i in range(len(cells))]
        task = ray.remote(run_on_node)
        ctx_ref = ray.put(ctx)
        args = (ctx_ref, worker_manifest_ref(ctx.config.manifest), file_sha256(ctx.config.manifest))
        index = {
            task.options(
                name=f"benchmark {cell.name}", num_cpus=1, resources={resource: 1}, max_retries=0
            ).remote(cell, *args): i
            for i, cell in enumerate(cells)
        }
        pending = list(index)
        missing_since: float | None = None
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                for ref in ready:
                    try:
                        report = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the node or its worker died mid-cell
                        reason = f"Ray task failed: {_first_line(err)}"
                        report = unrun_report(cells[index[ref]], ctx, "failed", reason)
                    finish(index[ref], report)
                if not pending or offers(ray, resource):
                    missing_since = None
                    continue
                missing_since = missing_since or time.monotonic()
                if time.monotonic() - missing_since >= wait_s:
                    _cancel(ray, pending)
                    skip([index[ref] for ref in pending], no_node_reason(resource, wait_s, left=True))
                    pending = []
        finally:  # interrupted: stop the queued and running cells before leaving
            _cancel(ray, pending)
    return [reports[i] for i in range(len(cells))]


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Drop queued tasks and kill running ones with their worker; Ray ends the worker's child (the cell
    process) with it (checked on Linux). Without force, the KeyboardInterrupt Ray raises in a task waits
    until subprocess.run wakes up, which a quiet cell delays up to --cell-timeout."""
    for ref in refs:
        ray.cancel(ref, force=True)
