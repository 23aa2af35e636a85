#!/bin/bash
# Build `hashpilot` with PyInstaller (one-folder and one-file) for the machine it runs on.
# Outputs: build/out/<arch>/onedir/hashpilot/, build/out/<arch>/onefile/hashpilot,
#          build/out/<arch>/build-info.json (versions, sizes, build time).
# Caches:  build/cache/venv-<arch> (build venv, rebuilt when requirements-build.txt changes),
#          build/cache/pip, build/cache/work-<arch>-<mode>.
# Env: PYTHON (interpreter for the build venv, default python3), BUILD_VENV (venv path).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PY=${PYTHON:-python3}

case "$(uname -m)" in
    x86_64) ARCH=x86_64 ;;
    armv7l|armv8l|armv6l) ARCH=armhf ;;
    aarch64|arm64) ARCH=aarch64 ;;
    *) ARCH=$(uname -m) ;;
esac

CACHE=$HERE/cache
OUT=$HERE/out/$ARCH
VENV=${BUILD_VENV:-$CACHE/venv-$ARCH}
REQ=$HERE/requirements-build.txt
mkdir -p "$CACHE" "$OUT"

t0=$(date +%s)
stamp=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/pyinstaller" ] || [ "$(cat "$VENV/.req-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "build.sh: creating build venv $VENV ($($PY --version))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --disable-pip-version-check -q --cache-dir "${PIP_CACHE_DIR:-$CACHE/pip}" -U pip wheel setuptools
    # cbor2: pure-Python implementation on every architecture (see requirements-build.txt).
    CBOR2_BUILD_C_EXTENSION=0 "$VENV/bin/pip" install --disable-pip-version-check -q \
        --cache-dir "${PIP_CACHE_DIR:-$CACHE/pip}" --no-binary cbor2 -r "$REQ"
    echo "$stamp" > "$VENV/.req-stamp"
fi

"$VENV/bin/python" "$HERE/check_modules.py" --warn

for mode in onedir onefile; do
    echo "build.sh: PyInstaller $mode ($ARCH)"
    rm -rf "${OUT:?}/$mode"
    (cd "$ROOT" && HASHPILOT_BUILD_MODE=$mode "$VENV/bin/pyinstaller" --noconfirm --clean \
        --log-level WARN --distpath "$OUT/$mode" --workpath "$CACHE/work-$ARCH-$mode" \
        "$HERE/hashpilot.spec")
done
t1=$(date +%s)

onedir_b=$(du -sb "$OUT/onedir/hashpilot" | cut -f1)
onefile_b=$(stat -c %s "$OUT/onefile/hashpilot")
cd "$ROOT" && "$VENV/bin/python" - "$OUT/build-info.json" "$ARCH" "$onedir_b" "$onefile_b" "$((t1 - t0))" <<'EOF'
import json, platform, sys
from importlib import metadata
sys.path.insert(0, '.')
out, arch, onedir_b, onefile_b, secs = sys.argv[1:]
from agent import __version__
deps = {}
for name in ('pyserial', 'paho-mqtt', 'cbor2', 'psutil', 'pyinstaller'):
    deps[name] = metadata.version(name)
info = {'hashpilot': __version__, 'arch': arch, 'python': platform.python_version(),
        'deps': deps, 'onedir_bytes': int(onedir_b), 'onefile_bytes': int(onefile_b),
        'build_s': int(secs), 'libc': '-'.join(platform.libc_ver())}
with open(out, 'w') as f:
    json.dump(info, f, indent=2, sort_keys=True)
print(json.dumps(info, sort_keys=True))
EOF
echo "build.sh: $ARCH one-folder $(awk "BEGIN{printf \"%.1f\", $onedir_b/1048576}") MiB," \
     "one-file $(awk "BEGIN{printf \"%.1f\", $onefile_b/1048576}") MiB, $((t1 - t0)) s"
