"""`hashpilot bench fleet --cluster nats-sites`: site brokers with uplinks into the NATS cluster.

Per site: one Mosquitto (the large-site limits of fleet/brokerconf, anonymous, loopback) that
the site's rigs connect to, and one `hashpilot fleet uplink` that forwards the site's traffic in
batches to the 3-node cluster (uplink k starts on node k mod 3, the others are its failover).
The consumers take their sites from the cluster (`ingest --nats`, live + durable paths). A node
killed mid-run takes some uplinks' connections and some JetStream leaders with it; the rigs stay
on their site broker, which holds their messages until the cluster has stored them.
"""

import json
import os
import subprocess

from fleet import brokerconf


def sites_of(args):
    return ['site%d' % k for k in range(-(-args.rigs // args.rigs_per_site))]


def start_site_brokers(bench, mosquitto, free_port, wait_port, user):
    bench.site_ports = []
    bench.site_brokers = []
    for k, site in enumerate(sites_of(bench.args)):
        d = os.path.join(bench.dir, 'mq-' + site)
        os.makedirs(os.path.join(d, 'data'), exist_ok=True)
        port = free_port()
        extra = ['user %s' % user, 'log_dest file %s' % os.path.join(d, 'mosquitto.log'),
                 'log_type error', 'log_type warning',
                 # the uplink holds up to 65 535 messages unacknowledged while the cluster
                 # elects a leader: the site broker must keep sending meanwhile (live path)
                 'max_inflight_messages 0']
        conf = os.path.join(d, 'mosquitto.conf')
        with open(conf, 'w') as f:
            f.write(brokerconf.conf_text(d, [(port, '127.0.0.1')], auth=False, extra=extra))
        p = subprocess.Popen([mosquitto, '-c', conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bench.procs.append(p)
        wait_port(port, p, what='mosquitto ' + site)
        bench.sampler.add('site_brokers', p.pid)
        bench.site_ports.append(port)
        bench.site_brokers.append(p)


def nats_urls(bench, first):
    ports = bench.cluster.client_ports
    first %= len(ports)
    order = ports[first:] + ports[:first]
    return ['127.0.0.1:%d' % p for p in order]


def start_uplinks(bench):
    a = bench.args
    bench.uplinks = []
    for k, site in enumerate(sites_of(a)):
        rep = os.path.join(bench.dir, 'up-%s.json' % site)
        ready = os.path.join(bench.dir, 'up-%s.ready' % site)
        argv = ['--site', site, '--site-broker', '127.0.0.1:%d' % bench.site_ports[k],
                '--report', rep, '--ready-file', ready, '--idle-exit-s', str(a.idle_exit_s),
                '--idle-after-file', os.path.join(bench.dir, 'publishers-done'),
                '--flush-s', str(a.uplink_flush_s)]
        argv += [x for u in nats_urls(bench, k) for x in ('--nats', u)]
        p = bench._py('fleet.uplink', argv, 'up-%s.log' % site)
        bench.sampler.add('uplinks', p.pid)
        bench.uplinks.append((p, rep, ready))
    return [r for _p, _rep, r in bench.uplinks]


def consumer_argv(bench, i):
    return [x for u in nats_urls(bench, i) for x in ('--nats', u)]


def wait_uplinks(bench, timeout_s):
    for p, _rep, _ready in bench.uplinks:
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(30)
    open(os.path.join(bench.dir, 'uplinks-done'), 'w').close()


def uplink_summary(bench, kill_wall_s):
    reps = []
    for p, rep, _ready in bench.uplinks:
        if not os.path.exists(rep):
            raise RuntimeError('uplink failed: %s' % bench.log_tail(os.path.basename(rep)[:-5] + '.log'))
        with open(rep) as f:
            reps.append(json.load(f))
    outages = [o for r in reps for o in r['nats_outages']]
    after = [o for o in outages if kill_wall_s is None or o['at'] >= kill_wall_s - 1]
    out = {'uplinks': len(reps), 'messages': sum(r['messages'] for r in reps),
           'batches': sum(r['batches'] for r in reps), 'retries': sum(r['retries'] for r in reps),
           'nats_reconnects': sum(r['nats_reconnects'] for r in reps),
           'reconnected_after_kill': len(after),
           'outage_max_s': max([o['down_s'] for o in after], default=None),
           'outages': after,
           'js_ack_ms_p99_max': max([r['js_ack_ms']['p99'] or 0 for r in reps], default=None),
           'js_ack_ms_max': max([r['js_ack_ms']['max'] or 0 for r in reps], default=None),
           'cpu_us_per_msg': [r.get('cpu_us_per_msg') for r in reps]}
    return out
