"""CPU time a benchmark did not get: the hypervisor's steal and the guest's run-queue wait (Linux only).

On a shared VM the same benchmark moves by tens of percent between runs minutes apart. These counters say
why: ``host_steal`` is time the hypervisor gave this VM's vCPUs to someone else while they wanted to run,
summed over the vCPUs (``/proc/stat``); ``run_queue_wait`` is time this process's main thread waited for a
CPU inside the guest (``/proc/self/schedstat``). Read around a measurement, they tell a slow or late
result caused by the host from one caused here.
"""

from __future__ import annotations

import os


def contention_ms() -> dict[str, float] | None:
    """``{"host_steal": ms, "run_queue_wait": ms}`` since boot, or ``None`` where the counters don't exist."""
    try:
        with open("/proc/stat") as f:
            cpu = f.readline().split()
        with open("/proc/self/schedstat") as f:
            wait_ns = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    steal = int(cpu[8]) if len(cpu) > 8 and cpu[0] == "cpu" else 0
    return {"host_steal": steal * tick_ms, "run_queue_wait": wait_ns / 1e6}


def contention_since(before: dict[str, float] | None) -> dict[str, float] | None:
    """Milliseconds of each counter since ``before`` (a :func:`contention_ms` reading), or ``None``."""
    now = contention_ms()
    if before is None or now is None:
        return None
    return {key: now[key] - before[key] for key in now}
