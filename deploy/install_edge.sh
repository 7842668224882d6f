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
