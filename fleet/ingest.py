"""`hashpilot fleet ingest`: the scalable consumer of hashpilot telemetry.

- MQTT 5 shared subscription (`--group G` -> `$share/G/hashpilot/v1/+/+/<kind>`): several ingest
  processes split the load; without a group every message comes to this one.
- Persistent session (clean start off, `--session-expiry-s`): while a consumer restarts, the
  broker queues its share and delivers it on return. Messages are acknowledged only after the
  store has them (`fleet/store.py` writer thread), so a crash loses nothing; what comes twice is
  dropped by `Sequencer` here and by the store's (site, rig, boot_id, seq) keys across consumers.
- Decoding with `mqtt_schema.consumer` (compiled tables); per-kind end-to-end latency (receive
  time minus the payload's ts) and loss by sequence gaps.

Runs until SIGTERM/SIGINT or `--duration-s`, then prints one JSON report (or `--report FILE`);
`--seen FILE` also dumps every (topic, boot_id) -> received seqs, so a benchmark can merge what
several consumers got.
"""

import argparse
import array
import asyncio
import marshal
import os
import random
import resource
import signal
import sys
import time

from fleet import fmt
from fleet.aiomqtt import Client, MqttError
from mqtt_schema import codec, consumer

KINDS = ('telemetry', 'chips', 'status', 'alarm')


class Sequencer:
    """Per stream (topic, boot_id): highest seq and the holes below it.

    check() -> 'new' (next or later: a jump opens holes), 'late' (fills a hole: out of order but
    new) or 'dup' (seen already). Memory stays small: a hole set only exists while there are holes.
    """

    __slots__ = ('streams', 'dups', 'late', 'seen', 'keep_seen')

    def __init__(self, keep_seen=False):
        self.streams = {}
        self.dups = 0
        self.late = 0
        self.keep_seen = keep_seen
        self.seen = {}

    def check(self, topic, boot_id, seq):
        key = (topic, boot_id)
        st = self.streams.get(key)
        if st is None:
            st = self.streams[key] = [0, None]
        hi = st[0]
        if seq == hi + 1:
            st[0] = seq
            verdict = 'new'
        elif seq > hi:
            holes = st[1]
            if holes is None:
                holes = st[1] = set()
            holes.update(range(hi + 1, seq))
            st[0] = seq
            verdict = 'new'
        else:
            holes = st[1]
            if holes is not None and seq in holes:
                holes.discard(seq)
                if not holes:
                    st[1] = None
                self.late += 1
                verdict = 'late'
            else:
                self.dups += 1
                return 'dup'
        if self.keep_seen:
            a = self.seen.get(key)
            if a is None:
                a = self.seen[key] = array.array('I')
            a.append(seq)
        return verdict

    def gaps(self):
        """Seqs missing below each stream's highest (a lone consumer: lost or still in flight)."""
        return sum(len(st[1]) for st in self.streams.values() if st[1])


def _cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentiles(values, ps=(50, 99)):
    if not values:
        return dict(('p%d_ms' % p, None) for p in ps)
    s = sorted(values)
    out = dict(('p%d_ms' % p, s[min(len(s) - 1, int(len(s) * p / 100.0))]) for p in ps)
    out['max_ms'] = s[-1]
    return out


class Ingest:
    def __init__(self, args, writer=None):
        self.args = args
        self.writer = writer
        self.version = 5 if args.protocol == 5 else 4
        self.brokers = [parse_broker(b) for b in args.broker]
        self.seq = Sequencer(keep_seen=bool(args.seen))
        self.lat = dict((k, array.array('i')) for k in KINDS)
        self.lat_ts = dict((k, array.array('I')) for k in KINDS)   # build time (s) of each
        self.lat_hist = array.array('i')     # backlog replayed by rigs after an outage (h: true)
        self.historical = 0
        self.count = dict.fromkeys(KINDS, 0)
        self.other = 0
        self.errors = 0
        self.bytes = 0
        self.connects = 0
        self.client = None
        self.rnd = random.Random()
        self.stopping = False
        self.feed = None
        self.t_first = None
        self.t_last = None
        self.cpu_first = 0.0
        self.loop = None
        self.nats_feed = None

    def filters(self):
        kinds = self.args.kinds.split(',')
        sites = self.args.sites.split(',') if self.args.sites else ['+']
        base = ['hashpilot/v1/%s/+/%s' % (site, k) for site in sites for k in kinds]
        if self.args.group:
            return [('$share/%s/%s' % (self.args.group, f), 1) for f in base]
        return [(f, 1) for f in base]

    def on_message(self, topic, payload, retain, dup):
        now_ms = time.time() * 1000.0
        self.bytes += len(payload)
        kind = topic[topic.rfind('/') + 1:]
        try:
            msg = consumer.decode(topic, payload)
        except ValueError:
            self.errors += 1           # junk: counted, acknowledged, never redelivered forever
            return None
        if kind not in self.count:
            self.other += 1
            return None
        if self.t_first is None:
            self.t_first = now_ms
            self.cpu_first = _cpu_s()
        self.t_last = now_ms
        self.count[kind] += 1
        ts = msg.get('ts_ms')
        boot, seq = msg.get('boot_id'), msg.get('seq')
        verdict = 'new'
        if kind in ('telemetry', 'chips', 'alarm') and isinstance(seq, int):
            verdict = self.seq.check(topic, boot, seq)
            if verdict == 'dup':
                return None
        # latency of the first arrival only: a copy (redelivery, replay, the other NATS path)
        # is dropped above
        if msg.get('historical'):
            self.historical += 1
            if isinstance(ts, int):
                self.lat_hist.append(int(now_ms - ts))
        elif isinstance(ts, int) and not retain:
            self.lat[kind].append(int(now_ms - ts))
            self.lat_ts[kind].append(ts // 1000)
        if self.feed is not None and verdict == 'new':
            self.feed(topic, msg)      # a late message goes to history, never over newer state
        if self.writer is not None and kind in ('telemetry', 'chips'):
            parts = topic.split('/')
            if kind == 'telemetry':
                self.writer.put('telemetry', (parts[2], parts[3], msg))
            else:
                self.writer.put('chips', (parts[2], parts[3], boot, seq, ts, msg))
        return None

    async def connect_loop(self):
        a = self.args
        attempt = 0
        index = 0
        while not self.stopping:
            host, port = self.brokers[index % len(self.brokers)]
            c = Client(a.client_id, version=self.version, keepalive_s=30,
                       clean=not a.persistent, session_expiry_s=a.session_expiry_s if a.persistent else None,
                       receive_max=65535, on_message=self.on_message,
                       username=a.username, password=a.password)
            if self.writer is not None:
                c.manual_ack = True
            try:
                await c.connect(host, port, timeout_s=10.0)
                self.client = c
                self.connects += 1
                # always (re)subscribe, even onto a present session: Mosquitto 2.0.11 restores
                # a persistent session after a restart without its shared subscriptions, and
                # subscribing again is idempotent
                await c.hold(self.filters(), a.ready_file)
                attempt = 0
            except (OSError, MqttError, asyncio.TimeoutError) as e:
                print('ingest: %s:%d: %s' % (host, port, e), file=sys.stderr)
            if self.stopping:
                return
            index += 1 if len(self.brokers) > 1 else 0
            attempt += 1
            # consumers come back quickly (capped at 1 s): after a broker restart they must be
            # subscribed again before the rigs' jittered reconnects deliver their backlog
            await asyncio.sleep(min(1.0, 0.05 * attempt) * (0.5 + self.rnd.random()))

    def attach_writer(self, store, args):
        vm = store.VictoriaMetrics(args.vm_url) if args.vm_url else None
        chips = store.ChipStore(args.chips_db) if args.chips_db else None
        self.writer = store.Writer(vm, chips, args.flush_s, on_commit=self._committed,
                                   on_error=lambda e: print('ingest: store: %s' % e, file=sys.stderr))

    def mark(self):
        """Queue the PUBACKs received so far behind the writer's pending items."""
        c = self.client
        if c is not None and c.ack_pending:
            self.writer.put(None, None, (c, c.ack_pending))
            c.ack_pending = []

    def _committed(self, tokens):    # writer thread
        self.loop.call_soon_threadsafe(self._send_acks, tokens)

    def _send_acks(self, tokens):
        for client, pids in tokens:
            if client == 'js':
                self.nats_feed.send_acks(pids)
            elif client is self.client:   # a new connection gets those messages again
                client.send_acks(pids)

    def report(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = {'client_id': self.args.client_id, 'group': self.args.group,
               'messages': dict(self.count), 'other': self.other, 'decode_errors': self.errors,
               'bytes': self.bytes, 'duplicates': self.seq.dups, 'late': self.seq.late,
               'gaps': self.seq.gaps(), 'streams': len(self.seq.streams), 'connects': self.connects,
               'cpu_s': round(ru.ru_utime + ru.ru_stime, 2), 'rss_mb': round(ru.ru_maxrss / 1024.0, 1),
               'first_rx_ms': self.t_first, 'last_rx_ms': self.t_last, 'latency': {},
               'cbor_parser': codec.cbor_parser()}
        total = sum(self.count.values())
        if total > 1:
            out['cpu_us_per_msg'] = round((_cpu_s() - self.cpu_first) * 1e6 / (total - 1), 1)
        for kind in ('telemetry', 'chips'):
            out['latency'][kind] = percentiles(self.lat[kind])
        out['historical'] = self.historical
        if self.nats_feed is not None:
            out['nats'] = self.nats_feed.stats
        out['latency_historical'] = percentiles(self.lat_hist)
        if self.writer is not None:
            out['store'] = {'written': dict(self.writer.written), 'errors': self.writer.errors}
        return out

    def dump_seen(self, path):
        data = {}
        for (topic, boot), seqs in self.seq.seen.items():
            data['%s|%s' % (topic, boot)] = seqs.tobytes()
        for kind, lat in self.lat.items():
            data['__lat__' + kind] = lat.tobytes()
            data['__lts__' + kind] = self.lat_ts[kind].tobytes()
        data['__lat__historical'] = self.lat_hist.tobytes()
        with open(path, 'wb') as f:
            marshal.dump(data, f)


def load_seen(path):
    """({'topic|boot': array('I') of seqs}, {kind: array('i') of latencies in ms},
    {kind: array('I') of the messages' build times in s}) from an ingest --seen file."""
    with open(path, 'rb') as f:
        data = marshal.load(f)
    seen, lat, lts = {}, {}, {}
    for key, raw in data.items():
        a = array.array('i' if key.startswith('__lat__') else 'I')
        a.frombytes(raw)
        if key.startswith('__lat__'):
            lat[key[7:]] = a
        elif key.startswith('__lts__'):
            lts[key[7:]] = a
        else:
            seen[key] = a
    return seen, lat, lts


def parse_broker(text):
    host, _, port = text.rpartition(':')
    if not host or not port.isdigit():
        raise ValueError('broker must be host:port, got %r' % text)
    return host, int(port)


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot fleet ingest', description=__doc__.split('\n')[0])
    p.add_argument('--broker', action='append', default=[], help='host:port (repeat: failover)')
    p.add_argument('--group', default=None, help='shared subscription group ($share/GROUP/...)')
    p.add_argument('--client-id', default='hashpilot-ingest')
    p.add_argument('--kinds', default='telemetry,chips,status,alarm')
    p.add_argument('--sites', default=None,
                   help='only these sites (comma list): partitions consumers where the broker has '
                        'no shared subscriptions (NATS MQTT), and keeps each rig on one consumer')
    p.add_argument('--protocol', type=int, choices=(5, 311), default=5)
    p.add_argument('--nats', action='append', default=None,
                   help='NATS cluster node host:port (repeat): take --sites from the site uplinks '
                        '(fleet/uplink.py) instead of an MQTT broker (fleet/ingest_nats.py)')
    p.add_argument('--fetch-batch', type=int, default=64, help='--nats: batches per pull')
    p.add_argument('--ack-wait-s', type=float, default=30.0, help='--nats: redelivery after')
    p.add_argument('--max-ack-pending', type=int, default=20000, help='--nats: unacked batches')
    p.add_argument('--nats-setup-s', type=float, default=60.0,
                   help='--nats: give up (exit 1) if the stream or a consumer is not there by then')
    p.add_argument('--clean', dest='persistent', action='store_false',
                   help='no persistent session (default: persistent)')
    p.add_argument('--session-expiry-s', type=int, default=3600)
    p.add_argument('--username', default=None)
    p.add_argument('--password', default=None)
    p.add_argument('--vm-url', default=None, help='VictoriaMetrics, e.g. http://127.0.0.1:8428')
    p.add_argument('--chips-db', default=None, help='SQLite file for per-chip snapshot arrays')
    p.add_argument('--flush-s', type=float, default=0.5)
    p.add_argument('--duration-s', type=float, default=None)
    p.add_argument('--idle-exit-s', type=float, default=None,
                   help='stop when nothing arrived for this long (after the first message)')
    p.add_argument('--idle-after-file', default=None,
                   help='--idle-exit-s counts only once this file exists (the publishers are done)')
    p.add_argument('--report', default=None)
    p.add_argument('--ready-file', default=None, help='created once subscribed')
    p.add_argument('--seen', default=None, help='dump received seqs per stream here (marshal)')
    return p


async def _main(args, ing):
    loop = ing.loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.nats:
        from fleet.ingest_nats import NatsFeed
        ing.nats_feed = NatsFeed(ing, args)
        task = loop.create_task(ing.nats_feed.run())
    else:
        task = loop.create_task(ing.connect_loop())
    t0 = time.monotonic()
    rc = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except asyncio.TimeoutError:
            pass
        if task.done():          # the feed died (or gave up): say so, exit non-zero
            exc = None if task.cancelled() else task.exception()
            print('ingest: feed stopped: %r' % (exc,), file=sys.stderr)
            rc = 1
            break
        if ing.writer is not None:
            ing.mark()
        if args.duration_s is not None and time.monotonic() - t0 >= args.duration_s:
            break
        if args.idle_exit_s is not None and ing.t_last is not None and \
                time.time() * 1000.0 - ing.t_last > args.idle_exit_s * 1000.0 and \
                (args.idle_after_file is None or os.path.exists(args.idle_after_file)):
            break
    ing.stopping = True
    if ing.writer is not None:
        ing.mark()
        await loop.run_in_executor(None, ing.writer.close)
        await asyncio.sleep(0.1)     # the last batch's PUBACKs
    if ing.client is not None:
        ing.client.disconnect()
    task.cancel()
    if ing.nats_feed is not None:
        await ing.nats_feed.close()
    await asyncio.sleep(0.05)
    return rc


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.broker and not args.nats or args.nats and not args.sites:
        print('hashpilot fleet ingest: need --broker, or --nats with --sites', file=sys.stderr)
        return 2
    try:
        ing = Ingest(args)
    except ValueError as e:
        print('hashpilot fleet ingest: %s' % e, file=sys.stderr)
        return 2
    if args.vm_url or args.chips_db:
        from fleet import store
        ing.attach_writer(store, args)
    rc = asyncio.run(_main(args, ing))
    rep = ing.report()
    if args.seen:
        ing.dump_seen(args.seen)
    fmt.emit_json(rep, args.report)
    return rc


if __name__ == '__main__':
    sys.exit(main())
