"""`hashpilot bench`: benchmarks that print figures. `sweep`: one pipelined read of every chip's
temperature and both counters, elapsed time against the wire-time lower bound; `autotune`,
`fleet`, `work` live in their own modules (agent/bench_autotune.py, fleet/bench.py,
agent/bench_work.py), imported only when asked for. They run from the source tree: the firmware
binary has no simulator and no fleet tools and says so (exit 3).

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


def _sweep_arguments(s):
    s.add_argument('--model', default='S21', type=str.upper, choices=sorted(models.MODELS))
    s.add_argument('--baud', type=int, default=115200)
    s.add_argument('--seed', type=int, default=1)
    s.add_argument('--repeat', type=int, default=5, help='sweeps to run (median reported)')
    s.add_argument('--time-scale', type=float, default=1.0,
                   help='simulator physics speed (init ramp takes ~7 s of physics time)')
    s.add_argument('--ticket-bits', type=int, default=8)
    s.add_argument('--window', type=int, default=None, help='requests in flight (auto)')
    s.add_argument('--json', action='store_true')


# Each bench's module is imported only when that bench is asked for: the firmware binary leaves
# out the simulator they run against (hal.sim), the autotune bench and fleet/, and says so
# (agent/cli.py SOURCE_ONLY, exit 3) instead of failing on `bench --help`.
def _autotune():
    from agent.bench_autotune import add_arguments, run_cli
    return add_arguments, run_cli


def _fleet():
    from fleet.bench import add_arguments, run_cli
    return add_arguments, run_cli


def _work():
    from agent.bench_work import add_arguments, run_cli
    return add_arguments, run_cli


def _this():
    return _sweep_arguments, run_sweep_cli


# name -> (loader, help, needs the simulator)
BENCHES = {
    'sweep': (_this, 'UART sweep: every chip read once, vs wire-time bound', True),
    'autotune': (_autotune, 'autotuner vs the oracle', True),
    'fleet': (_fleet, 'broker + load generator + consumers: msgs/s, latency, loss, CPU/RSS (JSON)',
              False),
    'work': (_work, 'work path: latency, CPU, failover', True),
}


def require_simulator():
    """Benches run the simulator (`-m agent sim` in a child process): the firmware binary has
    none, and this raises the ModuleNotFoundError that agent/cli.py turns into 'not in this
    build' before anything starts."""
    import hal.sim.main  # noqa: F401


def build_parser(what=None):
    """The bench parser; only `what`'s module is imported (its options), the others are listed."""
    p = argparse.ArgumentParser(prog='hashpilot bench', description=summary(__doc__))
    sub = p.add_subparsers(dest='what', required=True)
    for name in BENCHES:
        load, text, _ = BENCHES[name]
        sp = sub.add_parser(name, help=text)
        if name == what:
            load()[0](sp)
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    what = None
    for a in argv:
        if not a.startswith('-'):
            what = a
            break
    entry = BENCHES.get(what)
    args = build_parser(what if entry else None).parse_args(argv)
    if entry[2]:
        require_simulator()
    return entry[0]()[1](args)


def run_sweep_cli(args):
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
