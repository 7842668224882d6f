#!/usr/bin/env bash
# Starts an edge session from this unpacked NeuroQuant bundle:
#   ./run.sh --variant float --fps 10 [--episodes 20 --out results/sessions …]   (./run.sh --help: every flag)
#   ./run.sh --register-engines   (Jetson: after build_engines.sh, enters the engines it built into the manifest)
# 1. checks every file against the manifest's sha256 and SHA256SUMS: a modified bundle is refused (exit 1);
# 2. creates .venv next to this script with install_edge.sh on the first start (NQ_VENV=… puts it elsewhere);
# 3. runs `python -m edge_runtime` with this bundle's manifest and defaults (bundle.env); flags given here
#    come after the defaults and win. Relative paths are relative to this folder.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
# shellcheck source=/dev/null
. ./bundle.env
VENV="${NQ_VENV:-$HERE/.venv}"

"${PYTHON:-python3}" -m deploy.verify "$HERE"
if [ "${1:-}" = "--register-engines" ]; then
    # after `sh artifacts/<target>/build_engines.sh`: the engines it built go into the manifest (deploy/engines.py)
    exec "${PYTHON:-python3}" -m deploy.engines "$HERE"
fi
if [ ! -f "$VENV/.neuroquant-installed" ]; then
    ./install_edge.sh "$VENV"
fi

defaults=(--manifest "artifacts/$NQ_TARGET/manifest.json" --backend "$NQ_BACKEND" --out results/sessions)
if [ -n "$NQ_VARIANT" ]; then
    defaults+=(--variant "$NQ_VARIANT")
fi
exec "$VENV/bin/python" -m edge_runtime "${defaults[@]}" "$@"
