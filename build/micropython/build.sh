#!/bin/sh
# Build the MicroPython 1.27 Unix port and mpy-cross from the vendored source tarball.
# Output (cached; a second run with the same tarball does nothing):
#   build/cache/micropython/bin/micropython   the Unix port (runs the agent on a simulated Bitaxe)
#   build/cache/micropython/bin/mpy-cross     compiles the agent's modules to .mpy
#   build/cache/micropython/bin/micropython-hashpilot   the Unix port with the agent frozen in
#                                             (manifest_unix.py; as an ESP32 image carries it)
# `build.sh frozen` refreshes only the frozen binary (incremental: seconds when nothing changed).
# Needs gcc, make and python3 only. FROZEN_MANIFEST= (no frozen modules needing git submodules),
# SSL/FFI/BTREE off (mbedTLS, libffi and berkeley-db are not in the tarball).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tarball=$here/micropython-1.27.0-unix-src.tar.xz
cache=${MPY_CACHE:-$root/build/cache/micropython}
src=$cache/micropython-1.27.0
stamp=$cache/bin/.source-sha256
want=$(sha256sum "$tarball" | cut -d' ' -f1)
jobs=$(nproc 2>/dev/null || echo 2)
UNIX_OPTS="MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_PY_FFI=0"

frozen() {
    # The agent's sources are inputs here: make re-freezes and relinks only what changed.
    make -s -C "$src/ports/unix" -j"$jobs" BUILD=build-hashpilot MPY_LIB_DIR="$here/lib" \
        FROZEN_MANIFEST="$here/manifest_unix.py" $UNIX_OPTS >>"$cache/build.log" 2>&1 \
        || { tail -30 "$cache/build.log"; exit 1; }
    cp "$src/ports/unix/build-hashpilot/micropython" "$cache/bin/micropython-hashpilot.new"
    mv "$cache/bin/micropython-hashpilot.new" "$cache/bin/micropython-hashpilot"
}

if [ "${1:-}" = frozen ]; then
    [ -x "$cache/bin/mpy-cross" ] || { echo "micropython: run build.sh first" >&2; exit 1; }
    frozen
    exit 0
fi
if [ -x "$cache/bin/micropython" ] && [ -x "$cache/bin/mpy-cross" ] && [ -f "$stamp" ] \
        && [ "$(cat "$stamp")" = "$want" ]; then
    echo "micropython: cached in $cache/bin"
    frozen
    exit 0
fi
rm -rf "$cache"
mkdir -p "$cache/bin"
tar -xJf "$tarball" -C "$cache"
echo "micropython: building mpy-cross and the Unix port (about a minute)"
make -s -C "$src/mpy-cross" -j"$jobs" >"$cache/build.log" 2>&1 || { tail -30 "$cache/build.log"; exit 1; }
make -s -C "$src/ports/unix" -j"$jobs" FROZEN_MANIFEST= $UNIX_OPTS >>"$cache/build.log" 2>&1 \
    || { tail -30 "$cache/build.log"; exit 1; }
cp "$src/ports/unix/build-standard/micropython" "$src/mpy-cross/build/mpy-cross" "$cache/bin/"
echo "$want" > "$stamp"
frozen
"$cache/bin/micropython" -c "import sys; print('micropython: built', sys.implementation.name, sys.version)"
