"""`hashpilot bench work`: the work path on a simulated rig against two test pools (separate
processes): notify -> job frame and nonce -> share latency, CPU with the work path on against
the same rig idle (polling only), RSS, the pools' own invalid/stale counts, failover to the
backup after the main pool is killed (SIGKILL) and fail-back after it returns.

CPU and RSS are this process's (rig driver, work engine, Stratum client: the agent's work
path without MQTT and safety); the simulator and the pools run in their own processes.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from agent.bench import SimProcess
from agent.work.rigwork import WorkRig
from hal import families, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_arguments(p):
    p.add_argument('--model', default='S21', type=str.upper, choices=sorted(models.MODELS))
    p.add_argument('--seconds', type=float, default=60.0, help='mining phase (wall s)')
    p.add_argument('--idle-seconds', type=float, default=10.0, help='idle phase (wall s)')
    p.add_argument('--clean-every-s', type=float, default=30.0)
    p.add_argument('--job-every-s', type=float, default=2.0,
                   help='new job (no clean_jobs) period of the pools: latency samples')
    p.add_argument('--check-bits', type=int, default=8, help='simulated solutions\' zero bits')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--agent', action='store_true',
                   help='instead: the whole agent process (hashpilot run + Mosquitto), CPU and '
                        'RSS without pools and with the work path on')
    p.add_argument('--json', action='store_true')


def pool_difficulty_for(check_bits):
    """A pool difficulty every simulated solution meets: a hash with b leading zero bits is
    below 2^(256-b); the target of difficulty 2^-k is ~2^(224+k) (DIFF1 just under 2^224)."""
    return 1.0 / (1 << (33 - check_bits))


class PoolProcess:
    def __init__(self, difficulty, clean_every_s, port=0, tag='a', job_every_s=2.0):
        self.dir = tempfile.mkdtemp(prefix='hashpilot-pool-')
        self.status_file = os.path.join(self.dir, 'status-%s.json' % tag)
        cmd = [sys.executable, '-m', 'agent', 'pool', '--port', str(port), '--difficulty',
               repr(difficulty), '--clean-every-s', str(clean_every_s), '--job-every-s',
               str(job_every_s), '--status-file', self.status_file]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.url, self.port = info['url'], info['port']

    def counts(self):
        try:
            with open(self.status_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def _rss_mb():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(('VmRSS:', 'VmHWM:')):
                out[line.split(':')[0]] = int(line.split()[1]) / 1024.0
    return out.get('VmRSS'), out.get('VmHWM')


def _cpu_pct(fn, seconds):
    c0, w0 = time.process_time(), time.monotonic()
    fn(seconds)
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - w0)


def run(args):
    model = models.get(args.model)
    fam = families.get(model['chip'])
    baud = max(fam['fast_bauds']) if fam['fast_bauds'] else None
    diff = pool_difficulty_for(args.check_bits)
    sim = SimProcess(args.model, args.seed, 1.0, ['--work-check-bits', str(args.check_bits)])
    pools = [PoolProcess(diff, args.clean_every_s, tag='a', job_every_s=args.job_every_s),
             PoolProcess(diff, args.clean_every_s, tag='b', job_every_s=args.job_every_s)]
    wr = None
    res = {'model': args.model, 'check_bits': args.check_bits, 'pool_difficulty': diff,
           'load1_start': os.getloadavg()[0]}
    try:
        wr = WorkRig(sim.ports_file, [{'url': p.url, 'user': 'bench.%s' % args.model.lower(),
                                       'password': 'x'} for p in pools],
                     baud=baud, start_pools=False, pool_kw={'failback_s': 2.0})
        time.sleep(2.0)
        res['cpu_idle_pct'] = _cpu_pct(time.sleep, args.idle_seconds)
        wr.start_pools()
        half = args.seconds / 2.0
        res['cpu_work_pct'] = _cpu_pct(time.sleep, half)
        res['rss_mb'], res['rss_peak_mb'] = _rss_mb()
        t_kill = time.monotonic()
        pools[0].kill()
        dead_counts = pools[0].counts()
        time.sleep(min(10.0, half / 2.0))
        t_first = wr.first_accepted(1, t_kill)
        res['failover_s'] = None if t_first is None else t_first - t_kill
        revived = PoolProcess(diff, args.clean_every_s, port=pools[0].port, tag='a2',
                              job_every_s=args.job_every_s)
        pools.append(revived)
        t_rev = time.monotonic()
        time.sleep(max(5.0, half - min(10.0, half / 2.0)))
        t_back = wr.first_accepted(0, t_rev)
        res['failback_s'] = None if t_back is None else t_back - t_rev
        st = wr.engine.get_status()
        res['notify_samples'] = len(wr.engine.lat_notify_s)
        res['notify_to_frame_max_ms'] = 1000 * max(wr.engine.lat_notify_s or [0.0])
        res.update({k: st[k] for k in ('notify_to_frame_p99_ms', 'nonce_to_share_p99_ms',
                                       'nonces', 'hw_errors', 'stale_nonces', 'submitted',
                                       'duplicates', 'jobs', 'frames')})
        totals = {}
        for c in [dead_counts, pools[1].counts(), revived.counts()]:
            for k, v in c.items():
                totals[k] = totals.get(k, 0) + v
        res['pool'] = totals
        res['pools'] = {'main_before_kill': dead_counts, 'backup': pools[1].counts(),
                        'main_revived': revived.counts()}
        seen = totals.get('accepted', 0) + totals.get('stale', 0) + totals.get('invalid', 0) \
            + totals.get('duplicate', 0)
        res['stale_pct'] = 100.0 * totals.get('stale', 0) / seen if seen else None
        res['alarms_raised'] = sorted(set(wr.alarms()))
        res['errors'] = [repr(e) for e in wr.errors[:5]]
        res['load1_end'] = os.getloadavg()[0]
    finally:
        if wr is not None:
            wr.stop()
        for p in pools:
            p.stop()
        sim.stop()
    return res


def _proc_cpu_s(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def _proc_rss_mb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return None


def _free_port():
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _agent_phase(tmp, sim, broker_port, pool_url, seconds, warm_s=15.0):
    """Start `hashpilot run` (with or without a pool), wait warm_s, measure CPU over seconds."""
    name = 'work' if pool_url else 'idle'
    cfg = os.path.join(tmp, name + '.toml')
    with open(cfg, 'w') as f:
        f.write('[rig]\nsite = "bench"\nrig = "%s"\nports_file = "%s"\n\n[mqtt]\n'
                'broker = "127.0.0.1:%d"\n\n[state]\nstate_dir = "%s"\n'
                % (name, sim.ports_file, broker_port, os.path.join(tmp, 'state-' + name)))
        if pool_url:
            f.write('\n[[pool]]\nurl = "%s"\nuser = "bench"\npassword = "x"\n' % pool_url)
    log = open(os.path.join(tmp, name + '.log'), 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'agent', 'run', '--config', cfg], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(warm_s)
        if proc.poll() is not None:
            raise RuntimeError('agent exited: see %s' % log.name)
        c0, w0 = _proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu = 100.0 * (_proc_cpu_s(proc.pid) - c0) / (time.monotonic() - w0)
        return cpu, _proc_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def run_agent(args):
    tmp = tempfile.mkdtemp(prefix='hashpilot-benchagent-')
    port = _free_port()
    mconf = os.path.join(tmp, 'mosquitto.conf')
    with open(mconf, 'w') as f:
        f.write('listener %d 127.0.0.1\nallow_anonymous true\n' % port)
    broker = subprocess.Popen(['mosquitto', '-c', mconf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    sim = SimProcess(args.model, args.seed, 1.0, ['--work-check-bits', str(args.check_bits)])
    pool = PoolProcess(pool_difficulty_for(args.check_bits), args.clean_every_s, tag='agent')
    res = {'model': args.model, 'load1_start': os.getloadavg()[0]}
    try:
        res['agent_cpu_idle_pct'], res['agent_rss_idle_mb'] = _agent_phase(
            tmp, sim, port, None, args.idle_seconds)
        res['agent_cpu_work_pct'], res['agent_rss_work_mb'] = _agent_phase(
            tmp, sim, port, pool.url, args.seconds)
        res['pool'] = pool.counts()
        res['load1_end'] = os.getloadavg()[0]
    finally:
        pool.stop()
        sim.stop()
        broker.terminate()
        broker.wait(10)
    return res


def run_cli(args):
    res = run_agent(args) if args.agent else run(args)
    if args.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        for k in sorted(res):
            print('%s: %s' % (k, res[k]))
    return 0
