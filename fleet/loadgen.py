"""`hashpilot fleet loadgen`: N virtual rigs publishing real hashpilot payloads to a broker.

Every rig has its own boot id, per-topic sequence numbers, retained birth and meta on each
connect, a Will (`status` online: false) and QoS 1 telemetry/chips at real rates (10 s / 60 s,
or `--rate-scale K` times faster), spread evenly over the period. Payload bodies come from the
agent's own builders (`mqtt_schema.payloads` on `mqtt_schema.bench.sample_status`); per message
only the envelope (seq, ts, boot_id) is encoded and spliced in front of the pre-built body, so
one process can feed tens of thousands of rigs.

Like the agent: QoS 1 messages stay in a per-connection outbox until their PUBACK and are sent
again after a reconnect; messages built while offline wait in the outbox; reconnects back off
with the agent's full-jitter rule (`mqtt_schema.reconnect.backoff_delay_s`) and rotate over the
`--broker` list (failover). `--storm-at S` drops every connection at once after S seconds (a
broker-restart storm seen from the agents' side); `--no-jitter` reconnects in lockstep.

One process keeps at most `--max-conns` connections (the open-file limit); more rigs share a
connection (`--rigs-per-conn`), each still with its own topics, seq and birth (the connection's
Will covers its first rig). Prints one JSON report at the end (or to `--report FILE`).
"""

import argparse
import asyncio
import random
import resource
import sys
import time

import cbor2

from fleet import fmt
from fleet.aiomqtt import Client, MqttError
from mqtt_schema import bench as schema_bench
from mqtt_schema import codec, payloads, topics
from mqtt_schema.reconnect import backoff_delay_s

KINDS = ('telemetry', 'chips')
PERIODS_S = {'telemetry': 10.0, 'chips': 60.0}
TICK_S = 0.05


class Bodies:
    """Pre-built payloads for `variants` sample rigs: per message only the envelope values
    (seq, ts, boot_id) are encoded. CBOR comes out byte for byte as the agent sends it
    (codec.encode: canonical key order, the envelope keys among the others)."""

    ENVELOPE = ('v', 'seq', 'ts', 'boot_id')
    VARIABLE = ('ts', 'seq', 'boot_id')     # in canonical order; v is always 1

    def __init__(self, model='S21', variants=8, fmt='cbor'):
        self.fmt = fmt
        self.model = model
        self.parts = {k: [] for k in KINDS}
        for v in range(variants):
            status = schema_bench.sample_status(model, seed=v + 1)
            sess = payloads.new_session('00000000')
            for kind, build in (('telemetry', payloads.build_telemetry),
                                ('chips', payloads.build_chips)):
                wire = build(status, sess, 0)
                encode = self._encode_json if fmt == 'json' else self._encode_cbor
                self.parts[kind].append(encode(wire))

    def _encode_json(self, wire):
        rest = dict((k, x) for k, x in wire.items() if k not in self.ENVELOPE)
        body = codec.encode(rest, 'json')           # b'{...}'
        return b',' + body[1:] if len(body) > 2 else b'}'

    def _encode_cbor(self, wire):
        """-> 4 segments: the payload is segments[0], ts, segments[1], seq, segments[2], boot_id,
        segments[3] (canonical order puts the keys of length 2, 3 and 7 so)."""
        n = len(wire)
        segs = []
        cur = [bytes((0xa0 | n,)) if n < 24 else bytes((0xb8, n))]
        for k in sorted(wire, key=codec._key_order):
            cur.append(cbor2.dumps(k))
            if k in self.VARIABLE:
                segs.append(b''.join(cur))
                cur = []
            else:
                cur.append(codec.encode(wire[k]))
        segs.append(b''.join(cur))
        if len(segs) != 4:
            raise ValueError('envelope keys missing from a %d-key payload' % n)
        return segs

    def payload(self, kind, variant, seq, ts_ms, boot_id):
        parts = self.parts[kind][variant % len(self.parts[kind])]
        if self.fmt == 'json':
            return b'{"v":1,"seq":%d,"ts":%d,"boot_id":"%s"%s' % (seq, ts_ms, boot_id.encode(), parts)
        s0, s1, s2, s3 = parts
        return b''.join((s0, cbor2.dumps(ts_ms), s1, cbor2.dumps(seq), s2, cbor2.dumps(boot_id), s3))


class Rig:
    __slots__ = ('index', 'site', 'name', 'root', 'session', 'variant')

    def __init__(self, index, site, name, boot_id):
        self.index = index
        self.site = site
        self.name = name
        self.root = topics.root(site, name)
        self.session = payloads.new_session(boot_id)
        self.variant = index


class Conn:
    """One broker connection carrying one or more rigs, with its outbox and reconnect state."""

    def __init__(self, gen, cid, rigs):
        self.gen = gen
        self.cid = cid
        self.rigs = rigs
        self.client = None
        self.pending = []            # (topic, payload) built while offline, in order
        self.attempt = 0
        self.session_seq = 0
        if gen.args.broker_per_site:    # the site's own broker, no failover
            self.broker_index = (rigs[0].index // gen.args.rigs_per_site) % len(gen.brokers)
        else:
            self.broker_index = cid % len(gen.brokers)
        self.connecting = False
        self.down_since = None

    def _new_client(self):
        g = self.gen
        first = self.rigs[0]
        will = payloads.build_will(first.session, self.session_seq + 1)
        user, pw = g.creds.get((first.site, first.name), (None, None))
        c = Client(user or 'lg-%s-%d' % (g.args.site_prefix, self.cid), version=g.version,
                   keepalive_s=g.args.keepalive_s, clean=True, username=user, password=pw,
                   will=(first.root + 'status', codec.encode(will, g.args.format), 1, True),
                   on_ack=g.on_ack, on_lost=self.on_lost)
        if self.client is not None:
            c.unacked = self.client.unacked   # the outbox survives the connection
            c._next_pid = self.client._next_pid
        return c

    async def connect(self):
        g = self.gen
        self.connecting = True
        while not g.stopping:
            host, port = g.brokers[self.broker_index]
            self.client = self._new_client()
            try:
                await self.client.connect(host, port, timeout_s=g.args.connect_timeout_s,
                                          local_addr=g.local_addr)
                break
            except (OSError, MqttError, asyncio.TimeoutError):
                g.stats['connect_failures'] += 1
                self.attempt += 1
                if len(g.brokers) > 1 and g.args.failover:
                    self.broker_index = (self.broker_index + 1) % len(g.brokers)
                await asyncio.sleep(g.backoff_s(self.attempt))
        self.connecting = False
        if g.stopping and not self.client.connected:
            return
        self.attempt = 0
        self.session_seq += 1
        g.stats['connects'] += 1
        g.connect_times.append(time.monotonic())
        if self.down_since is not None:
            g.outage_s.append(time.monotonic() - self.down_since)
            self.down_since = None
        g.stats['replayed'] += self.client.resend_unacked(codec.mark_historical)
        for rig in self.rigs:
            self.birth(rig)
        for topic, data in self.pending:   # built while offline: backlog, h: true like the agent
            self.client.publish(topic, codec.mark_historical(data), 1)
        g.stats['backlog'] += len(self.pending)
        self.pending = []

    def birth(self, rig):
        g = self.gen
        fmt = g.args.format
        b = payloads.build_birth(rig.session, self.session_seq, 'loadgen', g.bodies.model)
        self.client.publish(rig.root + 'status', codec.encode(b, fmt), 1, retain=True)
        if g.meta:
            self.client.publish(rig.root + 'meta', g.meta, 1, retain=True)
        g.stats['births'] += 1

    def send(self, topic, data):
        c = self.client
        if c is not None and c.connected:
            c.publish(topic, data, 1)
        else:
            self.pending.append((topic, data))

    def on_lost(self, client, exc):
        g = self.gen
        if g.stopping or client is not self.client:
            return
        g.stats['disconnects'] += 1
        self.down_since = time.monotonic()
        self.attempt += 1
        if g.args.failover and len(g.brokers) > 1:
            self.broker_index = (self.broker_index + 1) % len(g.brokers)
        delay = g.backoff_s(self.attempt - 1)
        g.loop.call_later(delay, lambda: g.loop.create_task(self.connect()))


class LoadGen:
    def __init__(self, args):
        self.args = args
        self.version = 5 if args.protocol == 5 else 4
        self.brokers = [parse_broker(b) for b in args.broker]
        self.local_addr = (args.source_ip, 0) if args.source_ip else None
        self.rnd = random.Random(args.seed)
        self.bodies = Bodies(args.model, args.variants, args.format)
        self.meta = None
        if not args.no_meta:
            from hal import models
            self.meta = codec.encode(payloads.build_meta(models.get(args.model),
                                                         payloads.new_session('00000000'),
                                                         ts_ms=0, firmware='loadgen',
                                                         fmt=args.format), args.format)
        self.creds = load_credentials(args.credentials) if args.credentials else {}
        self.stopping = False
        self.loop = None
        self.outage_s = []
        self.connect_times = []
        self.stats = {'connects': 0, 'disconnects': 0, 'connect_failures': 0, 'births': 0,
                      'replayed': 0, 'backlog': 0, 'acked': 0, 'sent': dict.fromkeys(KINDS, 0)}
        self.rigs = []
        boot_rnd = random.Random(args.seed * 7919 + args.first_rig)
        for i in range(args.first_rig, args.first_rig + args.rigs):
            site = '%s%d' % (args.site_prefix, i // args.rigs_per_site)
            self.rigs.append(Rig(i, site, 'r%d' % i, '%08x' % boot_rnd.getrandbits(32)))
        per = max(args.rigs_per_conn, -(-len(self.rigs) // args.max_conns))
        self.conns = [Conn(self, args.first_rig + k, self.rigs[j:j + per])
                      for k, j in enumerate(range(0, len(self.rigs), per))]
        self.rigs_per_conn = per
        # each rig's slot in each period (shuffled, evenly spread: no synchronised bursts)
        order = list(range(len(self.rigs)))
        self.rnd.shuffle(order)
        self.slot_rigs = {}
        for kind in KINDS:
            slots = max(1, int(round(PERIODS_S[kind] / args.rate_scale / TICK_S)))
            table = [[] for _ in range(slots)]
            for pos, r in enumerate(order):
                table[pos * slots // len(order)].append((self.conns[r // per], self.rigs[r]))
            self.slot_rigs[kind] = table

    def backoff_s(self, attempt):
        a = self.args
        if a.no_jitter:
            return min(a.backoff_max_s, a.backoff_min_s * (2 ** min(attempt, 32)))
        return backoff_delay_s(attempt, a.backoff_min_s, a.backoff_max_s, self.rnd)

    def on_ack(self, client, pid):
        self.stats['acked'] += 1

    def _publish_slot(self, kind, slot, ts_ms):
        bodies = self.bodies
        n = 0
        for conn, rig in self.slot_rigs[kind][slot]:
            seq = payloads.next_seq(rig.session, kind)
            rig.variant += 1
            conn.send(rig.root + kind, bodies.payload(kind, rig.variant, seq, ts_ms,
                                                      rig.session['boot_id']))
            n += 1
        self.stats['sent'][kind] += n

    async def _ramp(self):
        """Initial connects at --connect-rate per second (a site powering up, not a storm)."""
        rate = self.args.connect_rate
        t0 = time.monotonic()
        for i, conn in enumerate(self.conns):
            self.loop.create_task(conn.connect())
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)

    def connected(self):
        return sum(1 for c in self.conns if c.client is not None and c.client.connected)

    async def run(self):
        a = self.args
        self.loop = asyncio.get_running_loop()
        t_ramp = time.monotonic()
        await self._ramp()
        end = time.monotonic() + self.args.ramp_timeout_s
        while self.connected() < len(self.conns) and time.monotonic() < end:
            await asyncio.sleep(0.05)
        ramp_s = time.monotonic() - t_ramp
        if a.publishing_file:
            open(a.publishing_file, 'w').close()
        t0 = time.monotonic()
        tick = 0
        storm = None
        while True:
            now = time.monotonic()
            if now - t0 >= a.duration_s:
                break
            if a.storm_at_s is not None and storm is None and now - t0 >= a.storm_at_s:
                storm = self._storm()
            while tick * TICK_S <= now - t0:
                ts_ms = int(time.time() * 1000)
                for kind in KINDS:
                    table = self.slot_rigs[kind]
                    self._publish_slot(kind, tick % len(table), ts_ms)
                tick += 1
            await asyncio.sleep(max(0.0, t0 + tick * TICK_S - time.monotonic()))
        drained = await self._drain(a.drain_s)
        self.stopping = True
        for conn in self.conns:
            if conn.client is not None:
                conn.client.disconnect()
        await asyncio.sleep(0.2)
        return self.report(ramp_s, time.monotonic() - t0, drained, storm)

    def _storm(self):
        """Drop every connection at once (no DISCONNECT: the broker sends the Wills)."""
        t = time.monotonic()
        for conn in self.conns:
            if conn.client is not None and conn.client.connected:
                conn.client.abort()
        return {'at_s': t, 'connections': len(self.conns)}

    async def _drain(self, limit_s):
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if not self.unacked():
                return True
            await asyncio.sleep(0.05)
        return False

    def unacked(self):
        n = 0
        for c in self.conns:
            n += len(c.pending) + (len(c.client.unacked) if c.client is not None else 0)
        return n

    def storm_report(self, storm):
        """Reconnects after losing the broker: outage per connection, peak connects per second."""
        outs = sorted(self.outage_s)
        late = [t for t in self.connect_times[len(self.conns):]]
        per_s = {}
        for t in late:
            per_s[int(t)] = per_s.get(int(t), 0) + 1
        return {'connections': len(self.conns), 'dropped_by_generator': storm is not None,
                'reconnected': len(outs),
                'outage_p50_s': round(outs[len(outs) // 2], 2) if outs else None,
                'outage_p99_s': round(outs[min(len(outs) - 1, int(len(outs) * 0.99))], 2) if outs else None,
                'outage_max_s': round(outs[-1], 2) if outs else None,
                'reconnect_peak_per_s': max(per_s.values()) if per_s else 0,
                'jitter': not self.args.no_jitter}

    def report(self, ramp_s, run_s, drained, storm):
        last_seq = {}
        for kind in KINDS:
            last_seq[kind] = sum(r.session['seq'].get(kind, 0) for r in self.rigs)
        out = {'rigs': len(self.rigs), 'first_rig': self.args.first_rig,
               'connections': len(self.conns), 'rigs_per_conn': self.rigs_per_conn,
               'brokers': ['%s:%d' % b for b in self.brokers], 'rate_scale': self.args.rate_scale,
               'ramp_s': round(ramp_s, 2), 'run_s': round(run_s, 2),
               'drained': drained, 'unacked_at_end': self.unacked(),
               'expected': last_seq, 'streams': {k: len(self.rigs) for k in KINDS}}
        out.update(self.stats)
        out['sent'] = dict(self.stats['sent'])
        if storm is not None or self.outage_s:
            out['storm'] = self.storm_report(storm)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out['cpu_s'] = round(ru.ru_utime + ru.ru_stime, 2)
        out['rss_mb'] = round(ru.ru_maxrss / 1024.0, 1)
        return out


def load_credentials(path):
    """credentials.csv of `hashpilot fleet broker-config` -> {(site, rig): (username, password)}."""
    import csv
    with open(path, newline='') as f:
        return dict(((r['site'], r['rig']), (r['username'], r['password'])) for r in csv.DictReader(f))


def parse_broker(text):
    host, _, port = text.rpartition(':')
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError('broker must be host:port, got %r' % text)
    return host, int(port)


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot fleet loadgen',
                                description='virtual rigs publishing real hashpilot payloads')
    p.add_argument('--broker', action='append', required=True,
                   help='host:port; repeat for several brokers (rigs spread over them, failover)')
    p.add_argument('--rigs', type=int, default=100)
    p.add_argument('--first-rig', type=int, default=0, help='index of the first rig (split runs)')
    p.add_argument('--duration-s', type=float, default=60.0, help='publishing time after the ramp')
    p.add_argument('--rate-scale', type=float, default=1.0,
                   help='K times the real rates (telemetry 10/K s, chips 60/K s)')
    p.add_argument('--model', default='S21')
    p.add_argument('--format', choices=codec.FORMATS, default='cbor')
    p.add_argument('--protocol', type=int, choices=(5, 311), default=5)
    p.add_argument('--site-prefix', default='site', help='site name prefix (site<k>)')
    p.add_argument('--rigs-per-site', type=int, default=1000)
    p.add_argument('--rigs-per-conn', type=int, default=1)
    p.add_argument('--max-conns', type=int, default=None,
                   help='connections per process (default: open-file limit - 200)')
    p.add_argument('--connect-rate', type=float, default=2000.0, help='initial connects per second')
    p.add_argument('--connect-timeout-s', type=float, default=5.0)
    p.add_argument('--ramp-timeout-s', type=float, default=300.0,
                   help='publishing starts when every connection is up or after this long')
    p.add_argument('--keepalive-s', type=int, default=60)
    p.add_argument('--backoff-min-s', type=float, default=1.0)
    p.add_argument('--backoff-max-s', type=float, default=120.0)
    p.add_argument('--no-jitter', action='store_true', help='lockstep exponential back-off')
    p.add_argument('--no-failover', dest='failover', action='store_false',
                   help='keep each connection on its own broker after a disconnect')
    p.add_argument('--broker-per-site', action='store_true',
                   help='site k connects to broker k mod N (site brokers), without failover')
    p.add_argument('--storm-at-s', type=float, default=None,
                   help='drop every connection at once after this many seconds')
    p.add_argument('--publishing-file', default=None, help='created when publishing starts')
    p.add_argument('--drain-s', type=float, default=10.0, help='wait for PUBACKs at the end')
    p.add_argument('--no-meta', action='store_true', help='births without the retained meta')
    p.add_argument('--variants', type=int, default=8)
    p.add_argument('--source-ip', default=None, help='bind to this loopback address (127.0.0.x)')
    p.add_argument('--credentials', default=None,
                   help='credentials.csv from broker-config: each connection logs in as its first rig')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--report', default=None, help='write the JSON report here instead of stdout')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.broker_per_site:
        args.failover = False
    if args.rigs < 1 or args.rate_scale <= 0 or args.rigs_per_conn < 1 or args.duration_s < 0:
        print('hashpilot fleet loadgen: need --rigs >= 1, --rate-scale > 0, --rigs-per-conn >= 1',
              file=sys.stderr)
        return 2
    if args.max_conns is None:
        args.max_conns = max(1, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    try:
        gen = LoadGen(args)
    except (ValueError, argparse.ArgumentTypeError) as e:
        print('hashpilot fleet loadgen: %s' % e, file=sys.stderr)
        return 2
    rep = asyncio.run(gen.run())
    fmt.emit_json(rep, args.report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
