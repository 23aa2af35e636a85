"""Benchmark of the simulator's UART pacing: pipelined register reads vs wire time.

    python -m hal.sim.bench_uart [--model S21] [--reps 5]

Starts `hashpilot sim` in its own process, addresses chain 0, then pipelines 3 register reads per
chip (0x8C, 0x4C, 0xB4) in one write and times the answers at 115200 baud and, after a broadcast
0x28 write, at 3.125 Mbaud. Prints achieved throughput as a fraction of wire speed, where wire
time = (first command + every answer) * 10 bits / baud.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import psutil
import serial

from hal import codec, families, framer, models

REGS = (families.REG_TOTAL_HASH, families.REG_ERROR_COUNT, families.REG_TEMP_READ)


def _drain(port, quiet_s=0.2):
    port.timeout = 0.02
    last = time.monotonic()
    while time.monotonic() - last < quiet_s:
        if port.read(65536):
            last = time.monotonic()


def _collect(port, nbytes, timeout_s):
    """Raw bytes until nbytes arrived (framing is checked afterwards, off the clock)."""
    buf = bytearray()
    t_last = None
    deadline = time.monotonic() + timeout_s
    port.timeout = 0.05      # blocking reads: a busy host loop would steal the sim's CPU
    while len(buf) < nbytes and time.monotonic() < deadline:
        data = port.read(max(1, port.in_waiting))
        if data:
            buf.extend(data)
            t_last = time.monotonic()
    return bytes(buf), t_last


def run_once(port, addrs, baud, frame_len):
    cmds = b''.join(codec.read_reg(r, a) for a in addrs for r in REGS)
    want = len(addrs) * len(REGS)
    t0 = time.monotonic()
    port.write(cmds)
    data, t_last = _collect(port, want * frame_len, 10.0)
    elapsed = (t_last or time.monotonic()) - t0
    frames = framer.ResponseFramer(frame_len).feed(data)
    got = sum(1 for f in frames if codec.decode_response(f)['kind'] == 'reg')
    wire = (7 + want * frame_len) * 10.0 / baud
    return {'baud': baud, 'reads': want, 'answers': got, 'elapsed_s': elapsed,
            'wire_s': wire, 'ratio': wire / elapsed if elapsed > 0 else 0.0}


def main(argv=None):
    ap = argparse.ArgumentParser(prog='python -m hal.sim.bench_uart')
    ap.add_argument('--model', default='S21')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--json', action='store_true', help='also print the figures as JSON')
    args = ap.parse_args(argv)
    model = models.get(args.model)
    fam = families.get(model['chip'])
    tmp = tempfile.mkdtemp(prefix='hpbench-')
    ports_file = os.path.join(tmp, 'ports.json')
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, '-m', 'agent', 'sim', '--model', model['name'],
                             '--ports-file', ports_file], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(ports_file):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit('simulator did not start')
            time.sleep(0.02)
        with open(ports_file) as f:
            ports = json.load(f)
        ps = psutil.Process(proc.pid)
        port = serial.serial_for_url(ports['chains'][0], baudrate=115200)
        n = model['chips_per_board']
        step = families.address_interval(n)
        port.write(codec.chain_inactive())
        addrs = [i * step for i in range(n)]
        port.write(b''.join(codec.set_address(a) for a in addrs))
        port.write(codec.write_reg(families.REG_TEMP_ENABLE, 1, broadcast=True))
        _drain(port)
        results = []
        for baud in (115200, 3125000):
            if baud != 115200:
                port.write(codec.write_reg(families.REG_UART_BAUD, fam['fast_bauds'][baud],
                                           broadcast=True))
                time.sleep(0.1)
                _drain(port)
            for frame_len in (9, 11):
                if frame_len == 11:
                    port.write(codec.write_reg(families.REG_VERSION_ROLLING,
                                               families.VERSION_ROLLING_ON, broadcast=True))
                else:
                    port.write(codec.write_reg(families.REG_VERSION_ROLLING, 0, broadcast=True))
                _drain(port)
                cpu0 = sum(ps.cpu_times()[:2])
                runs = [run_once(port, addrs, baud, frame_len) for _ in range(args.reps)]
                cpu_ms = (sum(ps.cpu_times()[:2]) - cpu0) * 1e3 / args.reps
                ratios = sorted(r['ratio'] for r in runs)
                res = {'baud': baud, 'frame_len': frame_len, 'reads': runs[0]['reads'],
                       'answers_min': min(r['answers'] for r in runs),
                       'wire_ms': runs[0]['wire_s'] * 1e3,
                       'elapsed_ms_median': sorted(r['elapsed_s'] for r in runs)[len(runs) // 2] * 1e3,
                       'ratio_median': ratios[len(ratios) // 2], 'ratio_min': ratios[0],
                       'sim_cpu_ms_per_burst': cpu_ms}
                results.append(res)
                print('%8d baud %2d-byte answers: %d reads, %d answered, wire %.1f ms, '
                      'elapsed %.1f ms (median of %d), throughput %.1f %% of wire speed '
                      '(min %.1f %%); simulator CPU %.1f ms per burst'
                      % (baud, frame_len, res['reads'], res['answers_min'],
                         res['wire_ms'], res['elapsed_ms_median'], args.reps,
                         100 * res['ratio_median'], 100 * res['ratio_min'], cpu_ms),
                      flush=True)
        port.close()
        if args.json:
            print(json.dumps(results))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0


if __name__ == '__main__':
    sys.exit(main())
