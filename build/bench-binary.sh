#!/bin/bash
# Print size and start-up figures of a build: build/bench-binary.sh [ARCH] [RUNS]
# Start-up = wall time of `hashpilot --version` (median of RUNS, default 11; first run excluded
# so the page cache is warm - the figure a restarted service sees).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ARCH=${1:-$(uname -m)}
RUNS=${2:-11}
OUT=$HERE/out/$ARCH
median_ms() {
    local bin=$1 i t0 t1
    "$bin" --version >/dev/null
    for ((i = 0; i < RUNS; i++)); do
        t0=$(date +%s%N); "$bin" --version >/dev/null; t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000000 ))
    done | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}
mib() { awk "BEGIN{printf \"%.1f\", $1/1048576}"; }
onefile=$OUT/onefile/hashpilot
onedir=$OUT/onedir/hashpilot
echo "bench-binary ($ARCH): one-file $(mib "$(stat -c %s "$onefile")") MiB," \
     "one-folder $(mib "$(du -sb "$onedir" | cut -f1)") MiB"
echo "bench-binary ($ARCH): tarball (gzip -9) of one-folder $(mib "$(tar -C "$OUT/onedir" -cf - hashpilot | gzip -9 | wc -c)") MiB"
if "$onefile" --version >/dev/null 2>&1; then
    echo "bench-binary ($ARCH): start-up (--version, median of $RUNS) one-file $(median_ms "$onefile") ms," \
         "one-folder $(median_ms "$onedir/hashpilot") ms"
else
    echo "bench-binary ($ARCH): binaries do not run on this machine; start-up not measured"
fi
