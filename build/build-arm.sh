#!/bin/bash
# Build `hashpilot` for ARM inside an emulated Debian bookworm root (debootstrap + qemu-user-static).
# Usage: build/build-arm.sh [armhf|aarch64]     (default armhf)
# The root is cached in build/cache/rootfs-<arch> (about 600 MB); outputs go to build/out/<arch>/.
# Needs root and the Debian packages debootstrap, qemu-user-static, binfmt-support.
# binfmt_misc: registered through update-binfmts when possible; without it the chroot cannot
# exec ARM programs (dpkg, pip, gcc spawn children), so the script stops with a clear message.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
ARCH=${1:-armhf}
case "$ARCH" in
    armhf) DEB_ARCH=armhf; QEMU=qemu-arm ;;
    aarch64|arm64) ARCH=aarch64; DEB_ARCH=arm64; QEMU=qemu-aarch64 ;;
    *) echo "build-arm.sh: unknown arch $ARCH (armhf|aarch64)" >&2; exit 2 ;;
esac
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RFS=$HERE/cache/rootfs-$ARCH
OUT=$HERE/out/$ARCH
PKGS=python3,python3-venv,python3-dev,python3-pip,gcc,libc6-dev,zlib1g-dev,binutils,ca-certificates,file
mkdir -p "$HERE/cache" "$OUT"

log() { echo "build-arm.sh[$ARCH] $(date -u +%H:%M:%S) $*"; }
need() { command -v "$1" >/dev/null || { echo "build-arm.sh: $1 missing (apt-get install $2)" >&2; exit 1; }; }
need debootstrap debootstrap
need "$QEMU-static" qemu-user-static
need update-binfmts binfmt-support
[ "$(id -u)" = 0 ] || { echo "build-arm.sh: run as root (debootstrap, chroot, mounts)" >&2; exit 1; }

# binfmt_misc: qemu-user-static registers with the F flag (interpreter opened at registration),
# so the chroot needs no copy of qemu inside it.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ ! -e "/proc/sys/fs/binfmt_misc/$QEMU" ]; then
    update-binfmts --enable "$QEMU" 2>/dev/null || true
fi
if ! grep -q enabled "/proc/sys/fs/binfmt_misc/$QEMU" 2>/dev/null; then
    echo "build-arm.sh: binfmt_misc registration for $QEMU is not possible here; ARM children" \
         "cannot run in the chroot. Run on a host with binfmt_misc (or register it there)." >&2
    exit 1
fi

t_start=$(date +%s)
MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ ! -e "$RFS/.hp-stage1" ]; then
    log "debootstrap stage 1 (foreign) into $RFS"
    rm -rf "$RFS"
    debootstrap --foreign --arch="$DEB_ARCH" --variant=minbase --include="$PKGS" \
        bookworm "$RFS" "$MIRROR"
    cp "/usr/bin/$QEMU-static" "$RFS/usr/bin/"   # also lets a plain `chroot` work on F-less hosts
    touch "$RFS/.hp-stage1"
fi
if [ ! -e "$RFS/.hp-stage2" ]; then
    log "debootstrap stage 2 (emulated)"
    chroot "$RFS" /debootstrap/debootstrap --second-stage
    touch "$RFS/.hp-stage2"
fi
log "root ready ($(( $(date +%s) - t_start )) s so far)"

mount -t proc proc "$RFS/proc" && MOUNTED+=("$RFS/proc")
mount --bind /dev "$RFS/dev" && MOUNTED+=("$RFS/dev")
cp /etc/resolv.conf "$RFS/etc/resolv.conf"
# pip inside the root trusts what the build host trusts (TLS-intercepting proxies, private CAs).
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
cp "$HOST_CA_BUNDLE" "$RFS/etc/ssl/certs/hp-host-ca-bundle.crt"

# Fresh copy of the sources (only what the binary needs).
rm -rf "$RFS/src"
mkdir -p "$RFS/src/build"
tar -C "$ROOT" --exclude=__pycache__ -cf - agent hal mqtt_schema firmware_hooks setup.cfg pyproject.toml \
    | tar -C "$RFS/src" -xf -
cp "$HERE"/build.sh "$HERE"/hashpilot.spec "$HERE"/entry.py "$HERE"/check_modules.py \
   "$HERE"/requirements-build.txt "$RFS/src/build/"

log "PyInstaller build inside the emulated root"
t_build=$(date +%s)
chroot "$RFS" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 PYTHON=/usr/bin/python3 BUILD_VENV=/opt/hp-build-venv \
    PIP_CACHE_DIR=/root/.cache/pip PIP_CERT=/etc/ssl/certs/hp-host-ca-bundle.crt \
    SSL_CERT_FILE=/etc/ssl/certs/hp-host-ca-bundle.crt /bin/bash /src/build/build.sh
t_end=$(date +%s)

rm -rf "$OUT"
mkdir -p "$OUT"
cp -a "$RFS/src/build/out/$ARCH/." "$OUT/"

log "binary test inside the emulated root"
chroot "$RFS" /src/build/out/$ARCH/onefile/hashpilot --version
chroot "$RFS" /src/build/out/$ARCH/onedir/hashpilot/hashpilot --version
file "$OUT/onefile/hashpilot" || true

python3 - "$OUT/build-info.json" "$((t_end - t_start))" "$((t_end - t_build))" <<'EOF'
import json, sys
path, total_s, inner_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path) as f:
    info = json.load(f)
info['emulated'] = True
info['arm_total_s'] = total_s          # includes root creation when it was not cached
info['arm_pyinstaller_step_s'] = inner_s
with open(path, 'w') as f:
    json.dump(info, f, indent=2, sort_keys=True)
print(json.dumps(info, sort_keys=True))
EOF
log "done in $((t_end - t_start)) s (build step $((t_end - t_build)) s)"
