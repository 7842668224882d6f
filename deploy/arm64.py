"""``python -m deploy.arm64 [--bundle dist/neuroquant-arm64.tar.gz]``: the arm64 bundle, installed and run
on an arm64 Debian under qemu-user emulation (``make verify-arm64``).

What it proves, and what it cannot: that the bundle a user copies to a Raspberry Pi or a Graviton box
installs there (its own ``install_edge.sh``, its pinned aarch64 wheels), passes its hash check and runs
every variant on every backend it lists with the same results as on x86. Emulated time is not device
time: the sessions record ``emulated: true`` and the report keeps them off its latency axes.

Steps (as root; a failure is one message naming the fix, and a non-zero exit):

1. qemu-user's aarch64 interpreter (re-)registered with binfmt_misc, mounted if it is not
   (``deploy/arm64_tools.sh`` installs debootstrap and a qemu that runs onnxruntime: ≥ 10);
2. an arm64 Debian bookworm root built once by ``debootstrap`` (5 min 49 s here) into a cache outside the
   checkout (``--root``), built aside and renamed, so an interrupted build is never taken for a finished one;
3. the bundle unpacked into it; ``/proc``, ``/sys`` and ``/dev`` bound, DNS and the CA bundle copied in;
   the bundle's ``install_edge.sh`` run into a venv kept per requirements file (3 min 7 s under emulation
   the first time; reused while ``requirements-edge.txt`` is unchanged);
4. ``./run.sh`` (hash check, then ``python -m edge_runtime``) for every ``ok`` variant on each of its
   backends among ``--backends``: a session of ``--episodes`` episodes, uncapped, seed 0;
5. ``python -m deploy.check`` on arm64 and on this host over the same files and observations, compared:
   outputs (fp32 ≤ 1e-4, fp16 ≤ 1e-2 of the outputs' scale, int8 the same actions), the return of each
   artifact (equal to x86's and to the manifest's), and each session's episodes against the same session
   run here.

Results: the sessions' CSV and JSON in ``results/sessions/arm64-emulated/<time>/``, the comparison in
``results/arm64/verify.json`` (what ``make report`` shows beside x86).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.manifest import Manifest, load_manifest
from common.cli import ExampleFormatter
from deploy.check import OUTPUTS, REPORT, output_key, run_check
from deploy.requirements import REPO
from edge_runtime.cli import env_settings
from gridworld.core import build_model

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neuroquant"
DEFAULT_ROOT = CACHE / "arm64-bookworm"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
#: python3-venv and pip for install_edge.sh; ca-certificates for pip's TLS.
DEBIAN_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
READY = ".neuroquant-root-ready"
QEMU = "qemu-aarch64-static"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
INSIDE = Path("/opt/neuroquant")
"""Where the bundle is unpacked inside the root; venvs go to ``/opt/neuroquant-venv/<requirements hash>``."""
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
"""Largest output difference arm64 vs x86, relative to the outputs' scale (max(1, max |output|)). fp16 is
looser: onnxruntime on arm64 computes fp16 graphs in half precision, on x86 it widens them to float32
(measured: max |ΔQ| 0.037 on Q-values of ~10). int8 variants must pick the same actions instead."""
TOOLS_FIX = "run deploy/arm64_tools.sh as root (debootstrap, qemu-user-static >= 10)"


class Arm64Error(RuntimeError):
    """Something the emulated check needs is missing or failed; the message names the fix."""


def _run(cmd: Sequence[str], what: str, fix: str) -> None:
    try:
        subprocess.run(list(cmd), check=True, text=True, capture_output=True)
    except FileNotFoundError as err:
        raise Arm64Error(f"{what}: {err.filename} not found; {fix}") from None
    except subprocess.CalledProcessError as err:
        tail = "\n  ".join((err.stderr or err.stdout or "").strip().splitlines()[-5:])
        raise Arm64Error(f"{what} failed (exit {err.returncode}); {fix}\n  {tail}") from None


# ---------------------------------------------------------------------------------------------- the root


def missing_prerequisite(root: Path = DEFAULT_ROOT) -> str | None:
    """Why the check cannot run here without installing anything, or None (what a test skips on)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs an x86-64 Linux host, this is {platform.system()} {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root (chroot and bind mounts)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed ({TOOLS_FIX})"
    if not (root / READY).is_file():
        return f"no cached arm64 root at {root} (make verify-arm64 builds it, ~6 min)"
    return None


def register_qemu() -> None:
    """Register qemu's aarch64 interpreter with binfmt_misc, mounting it if needed. Registered anew each
    time: the ``F`` flag keeps the interpreter file opened at registration, so a qemu upgraded since would
    otherwise not be the one that runs."""
    if shutil.which(QEMU) is None or not BINFMT_CONF.is_file():
        raise Arm64Error(f"{QEMU} or {BINFMT_CONF} is missing; {TOOLS_FIX}")
    if not (BINFMT / "register").exists():
        fix = "the kernel needs binfmt_misc (a container needs --privileged)"
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc", fix)
    entry = BINFMT / "qemu-aarch64"
    if entry.is_file():
        entry.write_text("-1")
    _run(["/lib/systemd/systemd-binfmt", str(BINFMT_CONF)], "registering qemu-aarch64", TOOLS_FIX)


def ensure_root(root: Path) -> float:
    """The cached arm64 Debian root, built by debootstrap if missing; returns the seconds spent building."""
    if (root / READY).is_file():
        return 0.0
    if shutil.which("debootstrap") is None:
        raise Arm64Error(f"debootstrap is not installed; {TOOLS_FIX}")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the arm64 Debian {SUITE} root in {root} (debootstrap, ~6 min, once)", file=sys.stderr)
    start = time.perf_counter()
    cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={DEBIAN_PACKAGES}", SUITE]
    _run([*cmd, str(partial), MIRROR], "debootstrap of the arm64 root", f"check that {MIRROR} is reachable")
    (partial / READY).write_text(f"{SUITE} {MIRROR} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return time.perf_counter() - start


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc, /sys and /dev bound into the root (onnxruntime reads the CPU list in /sys), DNS and the
    host's CA bundle copied in (pip's TLS); everything unmounted again, also on failure."""
    for src in (Path("/etc/resolv.conf"), CA_BUNDLE):
        if src.is_file():
            dst = root / src.relative_to("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    done: list[Path] = []
    try:
        for name in ("proc", "sys", "dev"):
            (root / name).mkdir(exist_ok=True)
            _run(["mount", "--bind", f"/{name}", str(root / name)], f"binding /{name}", "run as root")
            done.append(root / name)
        yield
    finally:
        for target in reversed(done):
            if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(target)], capture_output=True)


@dataclass
class Chroot:
    """Runs commands in the arm64 root, in a clean environment (no host Python paths leak in)."""

    root: Path
    venv: Path
    """The edge venv inside the root (``NQ_VENV`` for run.sh)."""

    def __call__(self, script: str, what: str, fix: str, timeout: float = 3600) -> str:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PIP_CERT": str(CA_BUNDLE),
            "SSL_CERT_FILE": str(CA_BUNDLE),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_DEFAULT_TIMEOUT": "180",
            "NQ_VENV": str(self.venv),
            "NQ_EMULATED": "1",  # the session's host block: emulated, whatever /proc/cpuinfo says
            "SDL_VIDEODRIVER": "dummy",
            "SDL_AUDIODRIVER": "dummy",
        }
        cmd = ["chroot", str(self.root), "/bin/bash", "-c", script]
        try:
            proc = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Arm64Error(f"{what}: still running after {timeout:.0f} s under emulation; {fix}") from None
        if proc.returncode != 0:
            tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
            raise Arm64Error(f"{what} failed on arm64 (exit {proc.returncode}); {fix}\n  {tail}")
        return proc.stdout

    def python(self, code: str, what: str, fix: str) -> str:
        return self(f"{self.venv}/bin/python -c '{code}'", what, fix).strip()


# ---------------------------------------------------------------------------------------------- compare


def reference_observations(manifest: Manifest) -> np.ndarray:
    """The observations both machines run every artifact on: every gridworld state, or seeded rollouts of
    random actions in any other task (made once, here, and copied: the env itself may differ by arch)."""
    settings = env_settings(manifest)
    if settings is not None:
        s = settings
        model = build_model(s["layout"], s["obs_mode"], s["layout_seed"], s["max_steps"])
        return model.observations.reshape(len(model.observations), -1).astype(np.float32)
    from benchmarks.observations import random_rollout_observations

    return np.ascontiguousarray(random_rollout_observations(manifest.task_spec(), 512), dtype=np.float32)


def compare_outputs(
    manifest: Manifest, arm: dict[str, np.ndarray], x86: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per (artifact, backend) run on both: the largest output difference and the share of observations
    where both pick the same action (the same argmax; box actions within 1e-3 of the scale)."""
    discrete = manifest.task_spec().action.kind == "discrete"
    rows = []
    for entry in manifest.artifacts:
        for backend in entry.backends:
            key = output_key(entry, backend)
            if key not in arm or key not in x86:
                continue
            a, b = arm[key].astype(np.float64), x86[key].astype(np.float64)
            diff, scale = float(np.abs(a - b).max()), max(1.0, float(np.abs(b).max()))
            if discrete:
                same = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
            else:
                same = float(np.all(np.abs(a - b) <= 1e-3 * scale, axis=1).mean())
            bound = TOLERANCE.get(entry.precision)
            rows.append(
                {
                    "variant": entry.variant,
                    "format": entry.format,
                    "backend": backend,
                    "precision": entry.precision,
                    "max_abs_diff": diff,
                    "same_actions": same,
                    "rule": f"max |Δ| ≤ {bound:g} × {scale:.3g}" if bound else "the same actions",
                    "ok": bool(diff <= bound * scale if bound else same == 1.0),
                }
            )
    return rows


def compare_returns(arm: dict[str, Any], x86: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (artifact, backend): its return on arm64, on x86 and in the manifest (the export's gate)."""
    key = ("variant", "format", "backend")
    here = {tuple(r[k] for k in key): r for r in x86["artifacts"]}
    rows = []
    for r in arm["artifacts"]:
        x = here.get(tuple(r[k] for k in key), {})
        ret = r.get("mean_return")
        rows.append(
            {
                **{k: r.get(k) for k in (*key, "status", "reason", "manifest_return")},
                "mean_return": ret,
                "x86_return": x.get("mean_return"),
                "equal_to_x86": ret is not None and ret == x.get("mean_return"),
                "equal_to_manifest": ret is not None and ret == r.get("manifest_return"),
            }
        )
    return rows


def episode_returns(csv_path: Path) -> list[float]:
    """Per-episode returns of a session, from its frames."""
    import pandas as pd

    frames = pd.read_csv(csv_path, usecols=["episode", "reward"])
    return frames.groupby("episode")["reward"].sum().round(9).tolist()


def x86_session(manifest: Path, variant: str, backend: str, episodes: int, out: Path) -> Path | None:
    """The same session on this host (same manifest, seed and episodes); its CSV, or None if it failed."""
    cmd = [sys.executable, "-m", "edge_runtime", "--manifest", str(manifest), "--variant", variant]
    cmd += ["--backend", backend, "--fps", "0", "--episodes", str(episodes), "--quiet", "--seed", "0"]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    found = sorted(out.glob("session_*.csv"))
    return found[0] if proc.returncode == 0 and found else None


# ---------------------------------------------------------------------------------------------- verify


def pairs(manifest: Manifest, backends: Sequence[str]) -> list[tuple[str, str]]:
    """(variant, backend) of every ``ok`` artifact on each of its listed backends among ``backends``."""
    ok = [e for e in manifest.artifacts if e.status == "ok"]
    return [(e.variant, b) for e in ok for b in e.backends if b in backends]


def unpack(bundle: Path, root: Path) -> str:
    """The bundle unpacked into ``root``/opt/neuroquant (replacing what was there); its folder name."""
    if not bundle.is_file():
        raise Arm64Error(f"{bundle}: no arm64 bundle; make export TARGET=arm64 && make bundle TARGET=arm64")
    dest = root / INSIDE.relative_to("/")
    with tarfile.open(bundle) as tar:
        top = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        if len(top) != 1:
            raise Arm64Error(
                f"{bundle}: not a NeuroQuant bundle (one top folder expected, found {sorted(top)})"
            )
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        tar.extractall(dest, filter="data")
    return top.pop()


def install(run: Chroot, there: Path) -> float:
    """The bundle's install_edge.sh into the venv for its requirements, unless that venv is complete."""
    if (run.root / run.venv.relative_to("/") / ".neuroquant-installed").is_file():
        return 0.0
    start = time.perf_counter()
    fix = "an aarch64 wheel missing for a version requirements-edge.txt pins? (see pip's error)"
    run(
        f"cd {there} && ./install_edge.sh {run.venv}",
        "install_edge.sh (the bundle's pinned requirements)",
        fix,
    )
    return time.perf_counter() - start


def verify(bundle: Path, root: Path, results: Path, episodes: int, backends: Sequence[str]) -> dict[str, Any]:
    started = time.perf_counter()
    if os.geteuid() != 0:
        raise Arm64Error("needs root (debootstrap, chroot, bind mounts): run it as root")
    register_qemu()
    build_s = ensure_root(root)
    folder = unpack(bundle, root)
    here, there = root / INSIDE.relative_to("/") / folder, INSIDE / folder
    manifest_rel = next(here.glob("artifacts/*/manifest.json")).relative_to(here)
    manifest = load_manifest(here / manifest_rel)
    requirements = hashlib.sha256((here / "requirements-edge.txt").read_bytes()).hexdigest()[:12]
    run = Chroot(root, Path("/opt/neuroquant-venv") / requirements)
    np.savez(here / "reference.npz", obs=reference_observations(manifest))
    record: dict[str, Any] = {"bundle": str(bundle), "root": str(root), "root_build_s": round(build_s, 1)}
    sessions = []
    with mounted(root):
        record["install_s"] = round(install(run, there), 1)
        fix = "the wheel installed but does not load under emulation: see the error"
        code = "import json, platform, numpy, onnxruntime as o; print(json.dumps([platform.machine(), "
        code += "platform.python_version(), numpy.__version__, o.__version__]))"
        found = json.loads(run.python(code, "importing numpy and onnxruntime", fix))
        record["arm64"] = dict(zip(("machine", "python", "numpy", "onnxruntime"), found, strict=True))
        try:
            ov = run.python("import openvino; print(openvino.__version__)", "importing openvino", fix)
            record["openvino"] = {"imports": True, "version": ov}
        except Arm64Error as err:
            record["openvino"] = {"imports": False, "error": str(err)}
        for variant, backend in pairs(manifest, backends):
            t, out = time.perf_counter(), f"results/sessions/{variant}-{backend}"
            cmd = f"./run.sh --variant {variant} --backend {backend} --fps 0 --episodes {episodes} --quiet"
            run(f"cd {there} && {cmd} --seed 0 --out {out}", f"session {variant} on {backend}", "see above")
            (csv_path,) = sorted((here / out).glob("session_*.csv"))
            sessions.append((variant, backend, csv_path, round(time.perf_counter() - t, 1)))
        t = time.perf_counter()
        check = (
            f"{run.venv}/bin/python -m deploy.check {manifest_rel} --obs reference.npz --out check-aarch64"
        )
        # exit 1: an artifact failed to run there; it is in check.json as `error` and fails the comparison
        run(f"cd {there} && {{ {check} || [ $? -eq 1 ]; }}", "deploy.check on arm64", "see the error above")
        record["check_s"] = round(time.perf_counter() - t, 1)
    with tempfile.TemporaryDirectory(prefix="neuroquant-arm64-") as tmp:
        work = Path(tmp)
        x86 = run_check(here / manifest_rel, here / "reference.npz", work / "check-x86")
        arm = json.loads((here / "check-aarch64" / REPORT).read_text())
        with np.load(here / "check-aarch64" / OUTPUTS) as a, np.load(work / "check-x86" / OUTPUTS) as b:
            record["parity"] = compare_outputs(manifest, dict(a), dict(b))
        record["returns"] = compare_returns(arm, x86)
        record["arm64_host"], record["x86_host"] = arm["host"], x86["host"]
        dest = results / "sessions" / "arm64-emulated" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        record["sessions_dir"] = str(dest)
        record["sessions"] = [
            _keep_session(s, dest, here / manifest_rel, episodes, work / "x86-sessions") for s in sessions
        ]
    record["passed"] = (
        all(p["ok"] for p in record["parity"])
        and all(r["equal_to_x86"] for r in record["returns"] if r["status"] == "ok")
        and not any(r["status"] == "error" for r in record["returns"])
        and all(s["stop_reason"] == "completed" and s["episodes_equal_x86"] for s in record["sessions"])
    )
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def _keep_session(
    session: tuple[str, str, Path, float], dest: Path, manifest: Path, episodes: int, work: Path
) -> dict[str, Any]:
    """Copy an arm64 session into ``dest`` and compare its episodes with the same session run here."""
    variant, backend, csv_path, wall = session
    dest.mkdir(parents=True, exist_ok=True)
    name = f"session_{variant}-{backend}"
    shutil.copyfile(csv_path, dest / f"{name}.csv")
    shutil.copyfile(csv_path.with_suffix(".json"), dest / f"{name}.json")
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    mine = x86_session(manifest, variant, backend, episodes, work / f"{variant}-{backend}")
    return {
        "variant": variant,
        "backend": backend,
        "stop_reason": summary["stop_reason"],
        "episodes": summary["episodes"],
        "mean_return": summary["returns"]["mean_return"],
        "episodes_equal_x86": mine is not None and episode_returns(csv_path) == episode_returns(mine),
        "lat_p50_us_emulated": summary["latency_us"]["p50"],
        "wall_s": wall,
        "host": {k: summary["host"][k] for k in ("arch", "emulated", "python", "runtime")},
        "csv": str(dest / f"{name}.csv"),
    }


def _print(record: dict[str, Any]) -> None:
    arm, ov = record["arm64"], record["openvino"]
    built = f"built in {record['root_build_s']} s" if record["root_build_s"] else "cached"
    installed = f"{record['install_s']} s" if record["install_s"] else "venv reused"
    print(
        f"arm64 under emulation: Python {arm['python']}, numpy {arm['numpy']}, onnxruntime "
        f"{arm['onnxruntime']}; root {built}; install_edge.sh {installed}"
    )
    print(f"openvino on arm64: {'imports, ' + ov['version'] if ov['imports'] else ov['error']}")
    print(f"{'variant':<15}{'backend':<12}{'arm64':>9}{'x86':>9}{'manifest':>10}  outputs vs x86")
    parity = {(p["variant"], p["format"], p["backend"]): p for p in record["parity"]}
    for r in record["returns"]:
        p = parity.get((r["variant"], r["format"], r["backend"]))

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"

        same = f"max|Δ| {p['max_abs_diff']:.2g}, same action {p['same_actions']:.1%}" if p else r["reason"]
        verdict = "" if p is None else ("ok" if p["ok"] else "FAIL: " + p["rule"])
        print(
            f"{r['variant']:<15}{r['backend']:<12}{num(r['mean_return']):>9}{num(r['x86_return']):>9}"
            f"{num(r['manifest_return']):>10}  {same} {verdict}"
        )
    for s in record["sessions"]:
        print(
            f"session {s['variant']}/{s['backend']}: {s['stop_reason']}, {s['episodes']} episodes, return "
            f"{s['mean_return']:.4f}, episodes equal to x86: {s['episodes_equal_x86']}, "
            f"p50 {s['lat_p50_us_emulated']:.0f} µs emulated ({s['wall_s']} s)"
        )
    verdict = "PASSED" if record["passed"] else "FAILED"
    print(f"{verdict} in {record['seconds']} s; sessions in {record['sessions_dir']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.arm64",
        description="Install and run the arm64 bundle in an emulated arm64 Debian; compare it with x86.",
        epilog="Run it as root.\n"
        "Example: python -m deploy.arm64 --bundle dist/neuroquant-arm64.tar.gz --episodes 5",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("--bundle", type=Path, default=REPO / "dist" / "neuroquant-arm64.tar.gz")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the arm64 root (built if missing)")
    parser.add_argument("--results", type=Path, default=REPO / "results", help="for sessions/ and arm64/")
    parser.add_argument("--episodes", type=int, default=20, help="episodes of each session")
    parser.add_argument("--backends", default="onnxruntime,openvino", help="backends to run sessions on")
    args = parser.parse_args(argv)
    try:
        record = verify(args.bundle, args.root, args.results, args.episodes, args.backends.split(","))
    except Arm64Error as err:
        print(f"python -m deploy.arm64: error: {err}", file=sys.stderr)
        return 2
    out = args.results / "arm64" / "verify.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    _print(record)
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
