#!/usr/bin/env bash
# The edge install: one virtual environment with this bundle's pinned requirements and nothing else (no torch).
# The same script runs on a device (run.sh calls it on the first start) and in the Dockerfile's edge stage.
#   ./install_edge.sh [VENV]      VENV defaults to .venv next to this script; PYTHON=python3.11 picks the Python.
# Versions: requirements-edge.txt (written from pyproject.toml's `edge` extra and constraints.txt).
# Targets whose runtime comes with the OS image (Jetson: JetPack's TensorRT) get the system site-packages too.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
. "$HERE/bundle.env"
VENV="${1:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.neuroquant-installed"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "install_edge.sh: NeuroQuant needs Python >= 3.10; $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)" >&2
    exit 1
fi

# Apple silicon (the arm64 target's macOS path; not run by NeuroQuant's CI — checked only that every pin has a
# macosx arm64 wheel): pip picks the macosx_*_arm64 wheels by itself, provided the Python is a native arm64
# one. onnxruntime's macOS wheel carries the CoreML execution provider the arm64 profile lists first.
if [ "$(uname -s)" = Darwin ]; then
    py_arch="$("$PYTHON" -c 'import platform; print(platform.machine())')"
    macos="$(sw_vers -productVersion 2>/dev/null || echo 0)"
    if [ "$py_arch" != arm64 ] && [ "$(sysctl -n hw.optional.arm64 2>/dev/null || echo 0)" = 1 ]; then
        echo "install_edge.sh: $PYTHON is an $py_arch Python under Rosetta on Apple silicon: it would install" \
            "x86_64 wheels and no CoreML; use a native arm64 Python (Homebrew's /opt/homebrew/bin/python3," \
            "or python.org's universal2 installer)" >&2
        exit 1
    fi
    if [ "$py_arch" = arm64 ] && [ "${macos%%.*}" -lt 14 ]; then
        echo "install_edge.sh: macOS $macos: the pinned onnxruntime and numpy publish arm64 wheels for" \
            "macOS 14 and later only; update macOS (or pin onnxruntime<=1.23.2 in requirements-edge.txt)" >&2
        exit 1
    fi
    echo "install_edge.sh: macOS $macos on $py_arch: installing the macosx arm64 wheels (onnxruntime with" \
        "CoreML, OpenVINO for ARM CPUs); this path is documented but unverified by NeuroQuant's CI" >&2
fi

venv_flags=()
if [ "$NQ_SYSTEM_SITE_PACKAGES" = 1 ]; then
    venv_flags+=(--system-site-packages)
fi
rm -f "$STAMP"
if ! "$PYTHON" -m venv ${venv_flags[@]+"${venv_flags[@]}"} "$VENV"; then
    echo "install_edge.sh: $PYTHON cannot create a virtual environment; on Debian, Ubuntu and JetPack" \
        "install python3-venv (apt-get install python3-venv)" >&2
    exit 1
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$HERE/requirements-edge.txt"

for module in $NQ_SYSTEM_MODULES; do
    if ! "$VENV/bin/python" -c "import $module" 2>/dev/null; then
        echo "install_edge.sh: warning: Python module $module (from the OS image, e.g. JetPack) is not" \
            "importable; its backend will be unavailable, the others work" >&2
    fi
done
touch "$STAMP"
echo "install_edge.sh: $NQ_TARGET edge requirements installed into $VENV" >&2
