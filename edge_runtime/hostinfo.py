"""What machine a session ran on (CPU model, arch, OS, Python, runtime versions), for its JSON summary.

Why it matters: latency figures mean nothing without the CPU and the runtime version next to them, and
sessions from several devices end up in one report.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    """The marketing name of the CPU where the OS exposes it, else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        # x86 says "model name"; many arm64 boards only say "Hardware" or "Model".
        for key in ("model name", "Model", "Hardware", "cpu model"):
            if fields.get(key):
                return fields[key]
    if sys.platform == "darwin":
        import subprocess  # imported here: it costs memory on the device and only macOS needs it

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


#: /proc/cpuinfo vendor strings of x86 CPUs: seen from an arm64 process, the CPU is emulated (qemu-user
#: passes the host's /proc/cpuinfo through).
X86_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


def emulated() -> bool:
    """True where this process runs another architecture's code under emulation (qemu-user): its latency
    is not the device's. ``NQ_EMULATED=1`` says so outright (``make verify-arm64`` sets it); otherwise an
    arm64 process on a CPU whose /proc/cpuinfo names an x86 vendor is emulated."""
    if os.environ.get("NQ_EMULATED", "") not in ("", "0"):
        return True
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() in ("aarch64", "arm64") and cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        return any(vendor in text for vendor in X86_VENDORS)
    return False


def package_version(name: str) -> str | None:
    """``module.__version__`` of an already-importable module (importlib.metadata costs ~1 MB to import)."""
    module = sys.modules.get(name)
    if module is None:
        try:
            module = __import__(name)
        except ImportError:
            return None
    return str(getattr(module, "__version__", None) or "") or None


def host_info(runtime: str, extra_packages: tuple[str, ...] = ("numpy",)) -> dict[str, object]:
    """Host description; ``runtime`` is the backend's own version string.

    psutil's version is listed only when something already imported it (not on Linux, where the session
    reads ``/proc``): importing it just to print its version cost ~1.5 MB of the session's peak RSS.
    """
    if "psutil" in sys.modules and "psutil" not in extra_packages:
        extra_packages = (*extra_packages, "psutil")
    versions = {name: package_version(name) for name in extra_packages}
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "arch": platform.machine(),
        "emulated": emulated(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtime": runtime,
        "versions": {k: v for k, v in versions.items() if v is not None},
    }
