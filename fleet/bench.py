"""`hashpilot bench fleet`: broker + load generator + consumers on this machine, one JSON report.

Starts a Mosquitto with the large-site limits (fleet/brokerconf, anonymous on a loopback port
from the OS), optionally VictoriaMetrics and the chip-array store, `--consumers` ingest
processes in one shared-subscription group, then `hashpilot fleet loadgen` processes for the
rigs. Figures: messages/s, end-to-end latency p50/p99/max per kind (consumer receive time minus
the payload's ts), loss (expected seqs from the generators minus the union of what the consumers
received; duplicates; seq gaps), CPU (% of one core over the run) and peak RSS of broker,
consumers and generators, the load average. `--restart-broker-at-s T` stops the broker (SIGTERM,
state saved) at T s and starts it again: the reconnect storm and its loss.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from fleet import bench_sites, brokerconf
from fleet.brokerconf import free_port
from fleet.ingest import load_seen, percentiles

MOSQUITTO = shutil.which('mosquitto') or '/usr/sbin/mosquitto'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FD_RESERVE = 500


def _user():
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return 'root'


def wait_port(port, proc, timeout_s=15.0, what='server'):
    import socket
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError('%s exited with %s' % (what, proc.returncode))
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('%s did not listen on %d' % (what, port))


class Sampler:
    """CPU seconds and peak RSS of named process groups, sampled every second."""

    def __init__(self):
        self.groups = {}
        self.rss = {}
        self.cpu = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, group, pid):
        with self._lock:
            try:
                self.groups.setdefault(group, []).append(psutil.Process(pid))
            except psutil.Error:
                pass

    def _sample(self):
        with self._lock:
            for group, procs in self.groups.items():
                rss = 0
                for p in procs:
                    try:
                        t = p.cpu_times()
                        self.cpu[(group, p.pid)] = t.user + t.system
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.rss[group] = max(self.rss.get(group, 0), rss)

    def _run(self):
        while not self._stop.wait(1.0):
            self._sample()

    def start(self):
        self.t0 = time.monotonic()
        self.thread.start()

    def stop(self):
        self._sample()
        self._stop.set()
        self.wall_s = time.monotonic() - self.t0

    def figures(self, group):
        cpu = sum(v for (g, _pid), v in self.cpu.items() if g == group)
        return {'cpu_s': round(cpu, 1), 'cpu_pct_of_one_core': round(100.0 * cpu / max(self.wall_s, 1e-9), 1),
                'peak_rss_mb': round(self.rss.get(group, 0) / 1048576.0, 1),
                'processes': len(self.groups.get(group, ()))}


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix='hp-benchfleet-')
        self.procs = []
        self.broker = None
        self.sampler = Sampler()
        self.port = free_port()
        self.vm_port = None

    # --- processes --------------------------------------------------------------------------
    def _py(self, module, argv, log):
        env = dict(os.environ)
        env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
        out = open(os.path.join(self.dir, log), 'w')
        p = subprocess.Popen([sys.executable, '-m', module] + argv, stdout=out,
                             stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.procs.append(p)
        return p

    def start_broker(self):
        if self.args.cluster == 'nats':
            return self.start_cluster()
        if self.args.cluster == 'nats-sites':
            self.start_cluster()
            bench_sites.start_site_brokers(self, MOSQUITTO, free_port, wait_port, _user())
            return None
        conf = os.path.join(self.dir, 'mosquitto.conf')
        extra = ['user %s' % _user(), 'log_dest file %s' % os.path.join(self.dir, 'mosquitto.log'),
                 'log_type error', 'log_type warning']
        os.makedirs(os.path.join(self.dir, 'data'), exist_ok=True)
        with open(conf, 'w') as f:
            f.write(brokerconf.conf_text(self.dir, [(self.port, '127.0.0.1')], auth=False, extra=extra))
        self.broker = subprocess.Popen([MOSQUITTO, '-c', conf], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        wait_port(self.port, self.broker, what='mosquitto')
        self.sampler.add('broker', self.broker.pid)

    def start_cluster(self):
        from fleet.cluster import NatsCluster
        self.cluster = NatsCluster(base_dir=os.path.join(self.dir, 'nats'))
        self.cluster.start()
        for pid in self.cluster.pids():
            self.sampler.add('broker', pid)

    def brokers(self, first=0):
        """host:port list, rotated to start at node `first` (the rest are failover targets)."""
        if self.args.cluster == 'nats-sites':     # the rigs' site brokers
            return ['127.0.0.1:%d' % p for p in self.site_ports]
        if self.args.cluster != 'nats':
            return ['127.0.0.1:%d' % self.port]
        b = self.cluster.brokers()
        first %= len(b)
        return b[first:] + b[:first]

    def stop_broker(self):
        self.broker.send_signal(signal.SIGTERM)   # saves the persistence database
        self.broker.wait(60)

    def start_store(self):
        from fleet import store
        a = self.args
        argv = {}
        if 'vm' in a.store:
            self.vm_port = free_port()
            cmd = store.vm_command(os.path.join(self.dir, 'vm'), self.vm_port)
            vm = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(vm)
            wait_port(self.vm_port, vm, what='victoria-metrics')
            self.sampler.add('store', vm.pid)
            argv['--vm-url'] = 'http://127.0.0.1:%d' % self.vm_port
        if 'chips' in a.store:
            argv['--chips-db'] = os.path.join(self.dir, 'chips.sqlite')
        return [x for kv in argv.items() for x in kv]

    def start_consumers(self, store_argv):
        a = self.args
        self.consumers = []
        for i in range(a.consumers):
            files = dict((k, os.path.join(self.dir, 'c%d.%s' % (i, k))) for k in ('report', 'seen', 'ready'))
            if a.cluster == 'nats-sites':
                argv = bench_sites.consumer_argv(self, i)
                done = 'uplinks-done'
            else:
                argv = [x for b in self.brokers(i) for x in ('--broker', b)]
                done = 'publishers-done'
            argv += ['--client-id', 'bench-c%d' % i,
                    '--idle-exit-s', str(a.idle_exit_s), '--report', files['report'],
                    '--idle-after-file', os.path.join(self.dir, done),
                    '--seen', files['seen'], '--ready-file', files['ready']] + store_argv
            if a.cluster.startswith('nats'):     # no $share on NATS: consumers split the sites
                sites = -(-a.rigs // a.rigs_per_site)
                mine = ['site%d' % k for k in range(sites) if k % a.consumers == i]
                if not mine:
                    continue
                argv += ['--protocol', '311', '--sites', ','.join(mine)]
                if a.cluster == 'nats-sites':
                    argv += ['--ack-wait-s', str(a.ack_wait_s)]
            elif a.consumers > 1 or a.shared:
                argv += ['--group', 'bench']
            p = self._py('fleet.ingest', argv, 'c%d.log' % i)
            self.sampler.add('consumers', p.pid)
            self.consumers.append((p, files))
        end = time.monotonic() + (120 if a.cluster.startswith('nats') else 30)
        ready = [f['ready'] for _p, f in self.consumers]
        if a.cluster == 'nats-sites':
            ready += bench_sites.start_uplinks(self)
        while not all(os.path.exists(f) for f in ready):
            if time.monotonic() > end or any(p.poll() is not None for p, _f in self.consumers):
                raise RuntimeError('consumers did not subscribe: %s' % self.log_tail('c0.log'))
            time.sleep(0.05)

    def start_loadgens(self):
        a = self.args
        per_proc_conns = max(1, min(psutil.Process().rlimit(psutil.RLIMIT_NOFILE)[0],
                                    _broker_fd_limit()) - FD_RESERVE)
        rigs_per_conn = max(a.rigs_per_conn, -(-a.rigs // per_proc_conns))
        procs = max(1, a.loadgen_procs)
        self.loadgens = []
        step = -(-a.rigs // procs)
        for k in range(procs):
            first = k * step
            n = min(step, a.rigs - first)
            if n <= 0:
                break
            rep = os.path.join(self.dir, 'lg%d.json' % k)
            argv = [x for b in self.brokers() for x in ('--broker', b)] + [
                    '--rigs', str(n), '--first-rig', str(first), '--rigs-per-site', str(a.rigs_per_site),
                    '--duration-s', str(a.duration_s), '--rate-scale', str(a.rate_scale),
                    '--rigs-per-conn', str(rigs_per_conn), '--report', rep,
                    '--max-conns', str(max(1, per_proc_conns // procs)),
                    '--source-ip', '127.0.0.%d' % (k + 1), '--drain-s', str(a.drain_s),
                    '--backoff-min-s', str(a.backoff_min_s), '--backoff-max-s', str(a.backoff_max_s),
                    '--connect-rate', str(a.connect_rate),
                    '--publishing-file', os.path.join(self.dir, 'lg%d.publishing' % k)]
            if a.no_jitter:
                argv.append('--no-jitter')
            if a.cluster == 'nats':
                argv += ['--protocol', '311']
            elif a.cluster == 'nats-sites':
                argv += ['--broker-per-site']
            p = self._py('fleet.loadgen', argv, 'lg%d.log' % k)
            self.sampler.add('loadgen', p.pid)
            self.loadgens.append((p, rep))

    def log_tail(self, name):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()[-1500:]
        except OSError:
            return ''

    # --- run --------------------------------------------------------------------------------
    def run(self):
        a = self.args
        load_before = os.getloadavg()
        self.start_broker()
        store_argv = self.start_store() if a.store != 'none' else []
        self.start_consumers(store_argv)
        self.sampler.start()
        t0 = time.monotonic()
        self.start_loadgens()
        restart = None
        if a.restart_broker_at_s is not None:
            restart = self._restart_at(t0)
        elif a.kill_node_at_s is not None:
            restart = self._kill_node_at(t0)
        for p, _rep in self.loadgens:
            p.wait()
        open(os.path.join(self.dir, 'publishers-done'), 'w').close()
        if a.cluster == 'nats-sites':
            bench_sites.wait_uplinks(self, a.idle_exit_s + 120)
        for p, _files in self.consumers:
            try:
                p.wait(a.idle_exit_s + 60)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
        self.sampler.stop()
        return self.collect(load_before, restart)

    def _restart_at(self, t0):
        """Wait until the generators publish, then stop/start the broker at restart_broker_at_s."""
        a = self.args
        time.sleep(max(0.0, a.restart_broker_at_s - (time.monotonic() - t0)))
        t = time.monotonic()
        self.stop_broker()
        stopped_s = time.monotonic() - t
        time.sleep(a.broker_down_s)
        self.start_broker()
        return {'at_s': round(t - t0, 1), 'stop_s': round(stopped_s, 2), 'down_s': a.broker_down_s}

    def _kill_node_at(self, t0):
        a = self.args
        time.sleep(max(0.0, a.kill_node_at_s - (time.monotonic() - t0)))
        # a slow ramp (loaded machine) must not put the kill before the load: at least
        # min(T, 10) s of publishing first
        files = [os.path.join(self.dir, 'lg%d.publishing' % k) for k in range(len(self.loadgens))]
        while not all(os.path.exists(f) for f in files):
            if all(p.poll() is not None for p, _rep in self.loadgens):
                break
            time.sleep(0.1)
        t_pub = max([os.path.getmtime(f) for f in files if os.path.exists(f)], default=time.time())
        time.sleep(max(0.0, min(a.kill_node_at_s, 10.0) - (time.time() - t_pub)))
        node, leaders = a.kill_node, None
        if node < 0:     # the node leading the stream the traffic goes through: the worst case
            leaders = self.cluster.leaders()
            stream = 'HP' if a.cluster == 'nats-sites' else '$MQTT_msgs'
            node = leaders.get(stream, 2)
        self.kill_wall_s = time.time()
        self.cluster.kill(node)
        out = {'killed_node': node, 'at_s': round(time.monotonic() - t0, 1),
               'after_publishing_s': round(self.kill_wall_s - t_pub, 1)}
        if leaders is not None:
            out['leaders_on_killed_node'] = sorted(k for k, v in leaders.items() if v == node)
            out['leaders_elsewhere'] = sum(1 for v in leaders.values() if v != node)
        return out

    def _generator_reports(self):
        gens = []
        for p, rep in self.loadgens:
            if p.returncode != 0 or not os.path.exists(rep):
                raise RuntimeError('loadgen failed: %s' % self.log_tail('lg0.log'))
            with open(rep) as f:
                gens.append(json.load(f))
        return gens

    def _consumer_reports(self):
        """(reports, {stream: [seq arrays]}, {kind: live latencies}, {kind: build times}, backlog)."""
        reps, seen, hist = [], {}, []
        lat, lts = {'telemetry': [], 'chips': []}, {'telemetry': [], 'chips': []}
        for _p, files in self.consumers:
            with open(files['report']) as f:
                reps.append(json.load(f))
            s, l, ts = load_seen(files['seen'])
            for key, seqs in s.items():
                seen.setdefault(key, []).append(seqs)
            for kind in lat:
                lat[kind].extend(l.get(kind, ()))
                lts[kind].extend(ts.get(kind, ()))
            hist.extend(l.get('historical', ()))
        return reps, seen, lat, lts, hist

    @staticmethod
    def _generator_summary(gens):
        out = {'ramp_s': max(g['ramp_s'] for g in gens)}
        for key in ('connects', 'disconnects', 'unacked_at_end', 'replayed', 'backlog'):
            out[key] = sum(g[key] for g in gens)
        return out

    def collect(self, load_before, restart):
        a = self.args
        gens = self._generator_reports()
        reps, seen, lat, lts, hist = self._consumer_reports()
        loss = self._loss(gens, seen)
        first = min(r['first_rx_ms'] for r in reps if r['first_rx_ms'])
        last = max(r['last_rx_ms'] for r in reps if r['last_rx_ms'])
        received = loss['telemetry']['received'] + loss['chips']['received']
        out = {'rigs': a.rigs, 'duration_s': a.duration_s, 'rate_scale': a.rate_scale,
               'cluster': a.cluster, 'consumers': a.consumers, 'store': a.store,
               'connections': sum(g['connections'] for g in gens),
               'rigs_per_conn': gens[0]['rigs_per_conn'],
               'msgs_per_s': round(received / max(1e-3, (last - first) / 1000.0), 1),
               'latency': dict((k, percentiles(v)) for k, v in lat.items()),
               'latency_backlog': dict(percentiles(hist), messages=len(hist)),
               'loss': loss,
               'broker': self.sampler.figures('broker'),
               'consumer': self.sampler.figures('consumers'),
               'loadgen': self.sampler.figures('loadgen'),
               'consumer_cpu_us_per_msg': [r.get('cpu_us_per_msg') for r in reps],
               'consumer_cbor_parser': sorted(set(r.get('cbor_parser') for r in reps)),
               'loadavg_before': [round(x, 2) for x in load_before],
               'loadavg_after': [round(x, 2) for x in os.getloadavg()],
               'cpus': os.cpu_count(), 'generator': self._generator_summary(gens)}
        if self.sampler.groups.get('store'):
            out['store_proc'] = self.sampler.figures('store')
            out['store_written'] = [r.get('store') for r in reps]
        kill_s = getattr(self, 'kill_wall_s', None)
        if kill_s is not None:
            out['latency_failover_window'] = failover_window(lat, lts, kill_s)
            out['latency_failover_first_10s'] = failover_window(lat, lts, kill_s, after_s=10)
        if a.cluster == 'nats-sites':
            out['uplink'] = bench_sites.uplink_summary(self, kill_s)
            out['site_brokers'] = self.sampler.figures('site_brokers')
            out['uplinks_proc'] = self.sampler.figures('uplinks')
            out['consumer_nats'] = [r.get('nats') for r in reps]
        if restart is not None:
            storms = [g.get('storm') for g in gens if g.get('storm')]
            out['broker_restart'] = restart
            out['storm'] = storms[0] if len(storms) == 1 else storms
        return out

    def _loss(self, gens, seen):
        out = {}
        for kind in ('telemetry', 'chips'):
            expected = sum(g['expected'][kind] for g in gens)
            unique = total = gaps = 0
            for key, arrays in seen.items():
                if not key.split('|', 1)[0].endswith('/' + kind):
                    continue
                union = set()
                for arr in arrays:
                    total += len(arr)
                    union.update(arr)
                unique += len(union)
                gaps += max(union) - len(union)
            out[kind] = {'expected': expected, 'received': unique, 'lost': expected - unique,
                         'duplicates': total - unique, 'seq_gaps': gaps}
        return out

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            self.broker.wait(30)
        if getattr(self, 'cluster', None) is not None:
            self.cluster.stop()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def failover_window(lat, lts, kill_s, after_s=60):
    """Live latency of the messages built from 1 s before a node kill to after_s after it."""
    out = {}
    for kind in lat:
        out[kind] = percentiles([x for x, t in zip(lat[kind], lts[kind]) if kill_s - 1 <= t <= kill_s + after_s])
    return out


def _broker_fd_limit():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def add_arguments(p):
    p.add_argument('--rigs', type=int, default=1000)
    p.add_argument('--duration-s', type=float, default=60.0)
    p.add_argument('--rate-scale', type=float, default=1.0)
    p.add_argument('--consumers', type=int, default=1)
    p.add_argument('--shared', action='store_true', help='shared subscription even with one consumer')
    p.add_argument('--store', choices=('none', 'vm', 'chips', 'vm+chips'), default='none')
    p.add_argument('--loadgen-procs', type=int, default=1)
    p.add_argument('--rigs-per-conn', type=int, default=1)
    p.add_argument('--connect-rate', type=float, default=2000.0)
    p.add_argument('--rigs-per-site', type=int, default=1000)
    p.add_argument('--cluster', choices=('none', 'nats', 'nats-sites'), default='none',
                   help='nats: rigs on a 3-node NATS cluster (MQTT + JetStream R3) instead of one '
                        'Mosquitto; nats-sites: rigs on per-site Mosquittos, uplinks into the cluster')
    p.add_argument('--kill-node-at-s', type=float, default=None, help='cluster: SIGKILL a node at T s')
    p.add_argument('--kill-node', type=int, default=2,
                   help='node to kill; -1: the leader of the stream the telemetry goes through')
    p.add_argument('--uplink-flush-s', type=float, default=0.05, help='nats-sites: batch period')
    p.add_argument('--ack-wait-s', type=float, default=30.0, help='nats-sites: consumer ack wait')
    p.add_argument('--restart-broker-at-s', type=float, default=None)
    p.add_argument('--broker-down-s', type=float, default=2.0)
    p.add_argument('--backoff-min-s', type=float, default=1.0)
    p.add_argument('--backoff-max-s', type=float, default=30.0)
    p.add_argument('--no-jitter', action='store_true')
    p.add_argument('--drain-s', type=float, default=30.0)
    p.add_argument('--idle-exit-s', type=float, default=5.0)
    p.add_argument('--keep', action='store_true', help='keep the work directory (logs)')
    p.add_argument('--json', action='store_true', help='(always JSON; kept for symmetry)')


def run_cli(args):
    bench = Bench(args)
    try:
        rep = bench.run()
    except RuntimeError as e:
        print('hashpilot bench fleet: %s' % e, file=sys.stderr)
        return 1
    finally:
        bench.close()
    print(json.dumps(rep, indent=1, sort_keys=True))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot bench fleet', description=__doc__.split('\n')[0])
    add_arguments(p)
    return run_cli(p.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
