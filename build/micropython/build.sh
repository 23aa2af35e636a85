#!/bin/sh
# Build the MicroPython 1.27 Unix port and mpy-cross from the vendored source tarball.
# Output (cached; a second run with the same tarball does nothing):
#   build/cache/micropython/bin/micropython   the Unix port (runs the agent on a simulated Bitaxe)
#   build/cache/micropython/bin/mpy-cross     compiles the agent's modules to .mpy
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
if [ -x "$cache/bin/micropython" ] && [ -x "$cache/bin/mpy-cross" ] && [ -f "$stamp" ] \
        && [ "$(cat "$stamp")" = "$want" ]; then
    echo "micropython: cached in $cache/bin"
    exit 0
fi
jobs=$(nproc 2>/dev/null || echo 2)
rm -rf "$cache"
mkdir -p "$cache/bin"
tar -xJf "$tarball" -C "$cache"
echo "micropython: building mpy-cross and the Unix port (about a minute)"
make -s -C "$src/mpy-cross" -j"$jobs" >"$cache/build.log" 2>&1 || { tail -30 "$cache/build.log"; exit 1; }
make -s -C "$src/ports/unix" -j"$jobs" FROZEN_MANIFEST= MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 \
    MICROPY_PY_FFI=0 >>"$cache/build.log" 2>&1 || { tail -30 "$cache/build.log"; exit 1; }
cp "$src/ports/unix/build-standard/micropython" "$src/mpy-cross/build/mpy-cross" "$cache/bin/"
echo "$want" > "$stamp"
"$cache/bin/micropython" -c "import sys; print('micropython: built', sys.implementation.name, sys.version)"
