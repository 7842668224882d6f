#!/usr/bin/env bash
# The host tools `make verify-arm64` needs, installed where missing (Debian/Ubuntu, as root): debootstrap, and
# qemu-user-static >= 10. Debian bookworm's qemu 7.2 crashes (SIGSEGV) loading onnxruntime's aarch64 library
# (1.31.1 and 1.32.0 alike); bookworm-backports' 10.0 runs it. Elsewhere: says what to install, exits 1.
set -euo pipefail
MIN_QEMU=10

qemu_major() {
    qemu-aarch64-static --version 2>/dev/null | sed -n 's/^qemu-aarch64 version \([0-9]*\)\..*/\1/p'
}

have_tools() {
    command -v debootstrap >/dev/null 2>&1 && [ "$(qemu_major || echo 0)" -ge "$MIN_QEMU" ] 2>/dev/null
}

if have_tools; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "arm64_tools.sh: needs debootstrap and qemu-user-static >= $MIN_QEMU (found: $(qemu_major || echo none));" \
        "install them as root (Debian bookworm: qemu-user-static from bookworm-backports)" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static >/dev/null
if [ "$(qemu_major || echo 0)" -lt "$MIN_QEMU" ] && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
    echo "arm64_tools.sh: qemu $(qemu_major) is older than $MIN_QEMU; installing it from bookworm-backports" >&2
    cat > /etc/apt/sources.list.d/neuroquant-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-user-static >/dev/null
fi
if ! have_tools; then
    echo "arm64_tools.sh: qemu-user-static $(qemu_major || echo none) is older than $MIN_QEMU after installing;" \
        "install a newer one (your distribution's backports)" >&2
    exit 1
fi
echo "arm64_tools.sh: debootstrap and qemu-aarch64 $(qemu_major) installed" >&2
