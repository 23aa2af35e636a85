#!/bin/bash
# Run build/test-binary.sh on an ARM build from the x86 host, through qemu-user (binfmt_misc).
# Usage: build/test-binary-arm.sh [armhf|aarch64] [onefile|onedir]
# QEMU_LD_PREFIX points at a small prefix holding only the emulated root's libraries: with the
# whole root as prefix, qemu would also redirect /dev/ptmx to the root's (unusable) device node
# and the simulator's openpty() would fail with ENODEV. Mosquitto and the checks run natively.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ARCH=${1:-armhf}
MODE=${2:-onedir}
RFS=$HERE/cache/rootfs-$ARCH
PREFIX=$HERE/cache/qemu-prefix-$ARCH
[ -d "$RFS/usr/lib" ] || { echo "test-binary-arm: no emulated root $RFS (make build-armhf)" >&2; exit 2; }
if [ ! -e "$PREFIX/lib" ]; then
    mkdir -p "$PREFIX/etc"
    ln -sfn "$RFS/usr/lib" "$PREFIX/lib"
    ln -sfn "$RFS/usr" "$PREFIX/usr"
    ln -sfn "$RFS/etc/ld.so.cache" "$PREFIX/etc/ld.so.cache"
fi
DIST=$HERE/out/$ARCH/$MODE/hashpilot
QEMU_LD_PREFIX=$PREFIX exec "$HERE/test-binary.sh" "$DIST"
