#!/bin/bash
# Test a built hashpilot binary, not the source tree.
# Usage: build/test-binary.sh DIST   (DIST = one-file binary, one-folder dir, or a dir holding one)
#   1. `hashpilot --version` (and its start-up time)
#   2. `sim`, `demo`, `tune report` are left out of the binary: each says so, non-zero exit;
#      `bench --help` lists the benches, and each bench (they need the simulator, the autotune
#      bench or fleet/, all left out) says 'not in this build' with exit 3
#   3. the simulator from the source tree (SIM_PYTHON -m agent sim, default the repo's .venv):
#      the ports file appears with chains and board
#   4. `hashpilot run` against a local Mosquitto: telemetry arrives and health.json is written
# Step 4 is skipped, with a message, when the simulator or Mosquitto is missing.
# Exit 0 = all steps that ran passed.
set -uo pipefail

DIST=${1:?usage: test-binary.sh DIST}
if [ -d "$DIST" ]; then BIN=$DIST/hashpilot; else BIN=$DIST; fi
[ -x "$BIN" ] || { echo "test-binary: $BIN is not executable" >&2; exit 2; }
BIN=$(readlink -f "$BIN")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIM_PYTHON=${SIM_PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d /tmp/hp-bintest.XXXXXX)
PIDS=()
# SIGTERM, then up to 10 s (the agent leaves the boards safe), then SIGKILL.
stop_pids() {
    local p i alive
    for p in "$@"; do kill "$p" 2>/dev/null; done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "$@"; do kill -9 "$p" 2>/dev/null; done
}
cleanup() {
    [ "${#PIDS[@]}" -gt 0 ] && stop_pids "${PIDS[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
fail=0
pass() { echo "PASS: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
skip() { echo "SKIP: $*"; }
# A command exists in this build when `hashpilot CMD --help` exits 0.
has_cmd() { "$BIN" "$1" --help >/dev/null 2>&1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { local i=0; while [ ! -s "$1" ] && [ "$i" -lt "$(($2 * 10))" ]; do sleep 0.1; i=$((i + 1)); done; [ -s "$1" ]; }

# 1. --version
out=$("$BIN" --version 2>&1)
if [[ "$out" =~ ^hashpilot\ [0-9][0-9A-Za-z.+_-]*$ ]]; then
    t0=$(date +%s%N); "$BIN" --version >/dev/null; t1=$(date +%s%N)
    pass "--version -> '$out' ($(( (t1 - t0) / 1000000 )) ms)"
else
    bad "--version printed '$out'"
fi

# 2. what a control board never runs is not in the binary, and the binary says so
for cmd in "sim|--model S21" "demo|" "tune report|x.json"; do
    name=${cmd%|*}
    # shellcheck disable=SC2086 # word splitting wanted: the command and its arguments
    out=$("$BIN" $name ${cmd#*|} 2>&1 </dev/null); rc=$?
    if [ "$rc" != 0 ] && [[ "$out" == *"$name: not in this build"*"pip install hashpilot"* ]]; then
        pass "$name: left out of the binary, says so (exit $rc)"
    else
        bad "$name: expected 'not in this build' and a non-zero exit, got $rc: $(echo "$out" | tail -3)"
    fi
done

out=$("$BIN" bench --help 2>&1); rc=$?
if [ "$rc" = 0 ] && [[ "$out" == *sweep*autotune*fleet*work* ]]; then
    pass "bench --help: lists sweep, autotune, fleet, work"
else
    bad "bench --help: expected exit 0 and the four benches, got $rc: $(echo "$out" | tail -3)"
fi
for cmd in "sweep|--repeat 1" "autotune|" "fleet|--rigs 10" "work|"; do
    name="bench ${cmd%|*}"
    # shellcheck disable=SC2086 # word splitting wanted: the command and its arguments
    out=$("$BIN" $name ${cmd#*|} 2>&1 </dev/null); rc=$?
    if [ "$rc" = 3 ] && [[ "$out" == *"$name: not in this build"*"-m agent $name"* ]] \
            && [[ "$out" != *Traceback* ]]; then
        pass "$name: left out of the binary, says so (exit 3)"
    else
        bad "$name: expected 'not in this build' and exit 3, got $rc: $(echo "$out" | tail -3)"
    fi
done

# 3. the simulator, from the source tree (the binary runs against it in step 4)
SIM_PORTS=$WORK/ports.json
sim_up=0
if [ -x "$SIM_PYTHON" ]; then
    (cd "$ROOT" && exec "$SIM_PYTHON" -m agent sim --model S21 --ports-file "$SIM_PORTS" \
        --time-scale 10) >"$WORK/sim.log" 2>&1 &
    PIDS+=($!)
    if wait_file "$SIM_PORTS" 30 && python3 - "$SIM_PORTS" <<'EOF'
import json, os, sys
p = json.load(open(sys.argv[1]))
assert p['model'] == 'S21' and p['chains'] and p['board'], p
for dev in p['chains'] + [p['board']]:
    assert os.path.exists(dev), dev
EOF
    then
        sim_up=1
        pass "sim (source tree): ports file with $(python3 -c "import json,sys;print(len(json.load(open(sys.argv[1]))['chains']))" "$SIM_PORTS") chains"
    else
        bad "sim (source tree): no valid ports file within 30 s: $(tail -5 "$WORK/sim.log")"
    fi
else
    skip "sim: no source-tree python $SIM_PYTHON (make setup, or set SIM_PYTHON)"
fi

# 4. run + Mosquitto
if ! has_cmd run; then
    skip "run: this build has no 'run' command yet"
elif [ "$sim_up" != 1 ]; then
    skip "run: needs the simulator (step 3)"
elif ! command -v mosquitto >/dev/null || ! command -v mosquitto_sub >/dev/null; then
    skip "run: mosquitto / mosquitto_sub not installed (apt-get install mosquitto mosquitto-clients)"
else
    port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n%s' "$port" \
        "$([ "$(id -u)" = 0 ] && echo 'user root')" > "$WORK/mosquitto.conf"
    mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    mkdir -p "$WORK/state"
    timeout 90 mosquitto_sub -h 127.0.0.1 -p "$port" -t 'hashpilot/v1/bintest/r1/telemetry' -v \
        -C 1 -W 90 >"$WORK/sub.out" 2>&1 &
    SUB=$!
    "$BIN" run --ports-file "$SIM_PORTS" --broker "127.0.0.1:$port" --site bintest --rig r1 \
        --state-dir "$WORK/state" --time-scale 10 >"$WORK/run.log" 2>&1 &
    AGENT=$!
    if wait "$SUB" && [ -s "$WORK/sub.out" ]; then
        pass "run: telemetry on $(head -c 200 "$WORK/sub.out" | head -1 | cut -d' ' -f1)"
    else
        bad "run: no telemetry within 90 s: $(tail -5 "$WORK/run.log")"
    fi
    if wait_file "$WORK/state/health.json" 30 && python3 - "$WORK/state/health.json" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))
assert h.get('healthy') is True and isinstance(h.get('ts'), (int, float)) and h.get('version'), h
EOF
    then
        pass "run: health.json written (upgrade health contract)"
    else
        bad "run: no healthy health.json in the state dir (docs/integrators.md, health contract)"
    fi
    # The init scripts stop the agent with SIGTERM and allow 30 s before SIGKILL.
    kill "$AGENT"
    t0=$(date +%s)
    while kill -0 "$AGENT" 2>/dev/null && [ $(($(date +%s) - t0)) -lt 30 ]; do sleep 0.1; done
    if kill -0 "$AGENT" 2>/dev/null; then
        kill -9 "$AGENT"
        bad "run: still running 30 s after SIGTERM"
    else
        wait "$AGENT"
        pass "run: exited $? within $(($(date +%s) - t0)) s of SIGTERM"
    fi
fi

[ "$fail" = 0 ] && echo "test-binary: OK ($BIN)" || echo "test-binary: FAILED ($BIN)"
exit "$fail"
