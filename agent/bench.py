"""`hashpilot bench`: benchmarks that print figures. `sweep`: one pipelined read of every chip's
temperature and both counters, elapsed time against the wire-time lower bound.

The simulator runs in its own process (started here, stopped at the end); the driver reaches it
through real ptys, as in production through /dev/ttyS*.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from agent.cli import summary
from hal import families, models
from hal.rig import Rig, run_parallel


class SimProcess:
    """`hashpilot sim` in a child process; ports file read once it appears."""

    def __init__(self, model, seed=1, time_scale=1.0, extra=(), start_timeout_s=30.0):
        self.dir = tempfile.mkdtemp(prefix='hashpilot-bench-')
        self.ports_file = os.path.join(self.dir, 'ports.json')
        self.log_path = os.path.join(self.dir, 'sim.log')
        cmd = [sys.executable, '-m', 'agent', 'sim', '--model', model, '--seed', str(seed),
               '--time-scale', str(time_scale), '--ports-file', self.ports_file] + list(extra)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=root)
        end = time.monotonic() + start_timeout_s
        self.ports = None
        while time.monotonic() < end:
            if os.path.exists(self.ports_file):
                try:
                    with open(self.ports_file) as f:
                        self.ports = json.load(f)
                    break
                except ValueError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.ports is None:
            self.stop()
            with open(self.log_path) as f:
                raise RuntimeError('simulator did not start: %s' % f.read()[-2000:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def sweep_chain(drv):
    """One pipelined batch: temperature (if any), 0x8C, 0x4C of every chip. Returns figures."""
    fam = drv.family
    regs = [families.REG_TOTAL_HASH, families.REG_ERROR_COUNT]
    if fam['die_temp']:
        regs.insert(0, families.REG_TEMP_READ)
    reqs = [(c.addr, r) for c in drv.chips for r in regs]
    drv.listen(0.0)                     # count what already arrived: not part of this sweep
    t = drv.transport
    tx0, rx0 = t.tx_bytes, t.rx_bytes
    t0 = time.monotonic()
    values = drv.read_registers(reqs)
    elapsed = time.monotonic() - t0
    tx, rx = t.tx_bytes - tx0, t.rx_bytes - rx0
    bound = max(tx, rx) * 10.0 / t.baud
    return {'elapsed_s': elapsed, 'tx_bytes': tx, 'rx_bytes': rx, 'bound_s': bound,
            'requests': len(reqs), 'missing': sum(1 for v in values.values() if v is None),
            'retries': drv.last_read_stats.get('retries', 0), 't0': t0}


def run_sweep(args):
    extra = []
    with SimProcess(args.model, args.seed, args.time_scale, extra) as sim:
        rig = Rig.from_ports_file(sim.ports_file, window=args.window)
        try:
            baud = args.baud if args.baud != families.RESET_BAUD else None
            t_init = time.monotonic()
            counts = rig.start(baud=baud, ticket_bits=args.ticket_bits)
            init_s = time.monotonic() - t_init
            conc, seq = [], []
            for _ in range(args.repeat):
                t0 = time.monotonic()
                per = run_parallel([(lambda d=d: sweep_chain(d)) for d in rig.chains])
                el = time.monotonic() - t0
                b = max(p['bound_s'] for p in per)
                conc.append({'elapsed_s': el, 'bound_s': b, 'ratio': el / b, 'chains': per})
                t0 = time.monotonic()
                per = [sweep_chain(d) for d in rig.chains]
                el = time.monotonic() - t0
                b = sum(p['bound_s'] for p in per)
                seq.append({'elapsed_s': el, 'bound_s': b, 'ratio': el / b, 'chains': per})
            status = rig.get_status()
        finally:
            rig.close()

    def summary(runs):
        return {'median_elapsed_s': statistics.median(r['elapsed_s'] for r in runs),
                'median_bound_s': statistics.median(r['bound_s'] for r in runs),
                'median_ratio': statistics.median(r['ratio'] for r in runs),
                'ratios': [round(r['ratio'], 3) for r in runs],
                'missing': sum(p['missing'] for r in runs for p in r['chains']),
                'retries': sum(p['retries'] for r in runs for p in r['chains']),
                'tx_bytes_per_chain': runs[-1]['chains'][0]['tx_bytes'],
                'rx_bytes_per_chain': runs[-1]['chains'][0]['rx_bytes']}

    return {'model': args.model, 'baud': args.baud, 'seed': args.seed,
            'time_scale': args.time_scale, 'repeat': args.repeat,
            'chips_per_chain': counts, 'init_s': init_s,
            'requests_per_chain': conc[0]['chains'][0]['requests'],
            'window': rig.chains[0].last_read_stats.get('window'),
            'os_baud_ok': [c['transport']['os_baud_ok'] for c in status['chains']],
            'bound_rule': 'per chain max(tx_bytes, rx_bytes) * 10 / baud (rx includes nonce '
                          'frames that arrived during the sweep)',
            'concurrent': dict(summary(conc), bound='max over chains (chains swept at once)'),
            'sequential': dict(summary(seq), bound='sum over chains (one chain after another)')}


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot bench', description=summary(__doc__))
    sub = p.add_subparsers(dest='what', required=True)
    s = sub.add_parser('sweep', help='UART sweep: every chip read once, vs wire-time bound')
    s.add_argument('--model', default='S21', type=str.upper, choices=sorted(models.MODELS))
    s.add_argument('--baud', type=int, default=115200)
    s.add_argument('--seed', type=int, default=1)
    s.add_argument('--repeat', type=int, default=5, help='sweeps to run (median reported)')
    s.add_argument('--time-scale', type=float, default=1.0,
                   help='simulator physics speed (init ramp takes ~7 s of physics time)')
    s.add_argument('--ticket-bits', type=int, default=8)
    s.add_argument('--window', type=int, default=None, help='requests in flight (auto)')
    s.add_argument('--json', action='store_true')
    from agent import bench_autotune
    bench_autotune.add_arguments(sub.add_parser('autotune', help='autotuner vs the oracle'))
    from fleet import bench as fleet_bench
    fleet_bench.add_arguments(sub.add_parser('fleet', help='broker + load generator + consumers: '
                                                           'msgs/s, latency, loss, CPU/RSS (JSON)'))
    from agent import bench_work
    bench_work.add_arguments(sub.add_parser('work', help='work path: latency, CPU, failover'))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.what == 'sweep':
        model = models.get(args.model)
        fam = families.get(model['chip'])
        if args.baud != families.RESET_BAUD and args.baud not in fam['fast_bauds']:
            print('hashpilot bench: %s supports %s baud' % (
                fam['name'], ', '.join(str(b) for b in [families.RESET_BAUD]
                                       + sorted(fam['fast_bauds']))), file=sys.stderr)
            return 2
        if args.repeat < 1:
            print('hashpilot bench: --repeat must be >= 1', file=sys.stderr)
            return 2
        res = run_sweep(args)
        if args.json:
            print(json.dumps(res, indent=1))
        else:
            for mode in ('concurrent', 'sequential'):
                r = res[mode]
                print('%s %d baud, %s: elapsed %.4f s, bound %.4f s, ratio %.3f (%s)'
                      % (res['model'], res['baud'], mode, r['median_elapsed_s'],
                         r['median_bound_s'], r['median_ratio'], r['bound']))
        return 0
    if args.what == 'work':
        from agent import bench_work
        return bench_work.run_cli(args)
    if args.what == 'autotune':
        from agent import bench_autotune
        return bench_autotune.run_cli(args)
    if args.what == 'fleet':
        from fleet import bench as fleet_bench
        return fleet_bench.run_cli(args)
    return 2
