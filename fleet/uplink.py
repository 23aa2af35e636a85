"""`hashpilot fleet uplink`: a site broker's rig traffic into the NATS cluster, in batches.

The rigs of a site stay on their site Mosquitto; this process is the site's one client of the
cluster. It holds a persistent MQTT 5 session on the site broker (QoS 1, `hashpilot/v1/<site>/+/+`,
up to 65 535 messages in flight) and every `--flush-s` publishes what came as one NATS message
on `hpd.<site>` (fleet/natsbatch.py) to the JetStream stream `HP` (R3). The site broker's
PUBACKs go out only once JetStream has acknowledged the batch, so a killed cluster node, a
JetStream leader election or a killed uplink loses nothing: the batch is published again with
the same `Nats-Msg-Id` (the stream drops the copy) or the site broker delivers the messages again.

Why batches and NATS itself instead of a Mosquitto bridge into NATS's MQTT port: NATS 2.9 stores
an MQTT QoS 1 publish synchronously in its reader (one message at a time per connection) and
closes the connection when the store times out during an election (4 s), so a bridge stalls
for the whole election and then reconnects; here publishes are pipelined, and each batch reaches
the consumers' plain subscriptions at once, before and regardless of the stream's Raft group.
A batch costs NATS one stored message instead of one per rig message.
"""

import argparse
import asyncio
import os
import random
import resource
import signal
import sys
import time

from fleet import fmt, natsbatch
from fleet.aiomqtt import Client, MqttError


def _nats_servers(urls):
    return [u if '://' in u else 'nats://' + u for u in urls]


class Uplink:
    def __init__(self, args):
        self.args = args
        self.site = args.site
        self.subject = natsbatch.subject(args.site)
        self.run_id = '%s-%08x' % (args.site, random.SystemRandom().getrandbits(32))
        self.batch_no = 0
        self.buf = []
        self.buf_acks = []           # (client, packet id) of buf's QoS 1 messages
        self.buf_bytes = 0
        self._flush_soon = False
        self.client = None
        self.nc = self.js = None
        self.sem = None
        self.stopping = False
        self.inflight = 0
        self.t_last_rx = None
        self.ack_ms = []
        self.nats_down_at = None
        self.nats_outages = []       # [{'at': wall time, 'down_s': s, 'to': url}]
        self.stats = {'messages': 0, 'batches': 0, 'bytes': 0, 'retries': 0, 'mqtt_connects': 0,
                      'nats_disconnects': 0, 'nats_reconnects': 0, 'acked_messages': 0}

    # --- site broker ------------------------------------------------------------------------
    def on_message(self, topic, payload, retain, dup, client=None):
        self.buf.append((topic, payload, retain))
        if client is not None and client.rx_pid is not None:
            # acked on the client it came on, once its own batch is stored: after a reconnect
            # the site broker's queued messages arrive with the CONNACK, before self.client
            self.buf_acks.append((client, client.rx_pid))
        self.buf_bytes += len(payload) + len(topic)
        self.t_last_rx = time.monotonic()
        if self.buf_bytes >= self.args.max_batch_bytes and not self._flush_soon:
            # after _on_publish has queued this message's packet id
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def receiver(self, client):
        def on_message(topic, payload, retain, dup):
            self.on_message(topic, payload, retain, dup, client)
        return on_message

    async def mqtt_loop(self):
        a = self.args
        host, _, port = a.site_broker.rpartition(':')
        attempt = 0
        while not self.stopping:
            c = Client(a.client_id or 'uplink-' + a.site, version=5, keepalive_s=30, clean=False,
                       session_expiry_s=a.session_expiry_s, receive_max=65535)
            c.on_message = self.receiver(c)
            c.manual_ack, c.ack_pending = True, None     # the packet ids are kept in buf_acks
            try:
                await c.connect(host, int(port), timeout_s=10.0)
                self.client = c
                self.stats['mqtt_connects'] += 1
                await c.hold([('hashpilot/v1/%s/+/+' % a.site, 1)], a.ready_file)
                attempt = 0
            except (OSError, MqttError, asyncio.TimeoutError) as e:
                print('uplink %s: site broker: %s' % (a.site, e), file=sys.stderr)
            attempt += 1
            await asyncio.sleep(min(2.0, 0.1 * attempt))

    # --- cluster ----------------------------------------------------------------------------
    async def nats_connect(self):
        import nats
        a = self.args
        self.nc = await nats.connect(
            servers=_nats_servers(a.nats), dont_randomize=True, allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=a.reconnect_wait_s, connect_timeout=2,
            ping_interval=5, max_outstanding_pings=2, name='uplink-' + a.site,
            disconnected_cb=self._nats_down, reconnected_cb=self._nats_up,
            error_cb=self._nats_error, pending_size=64 * 1024 * 1024)
        self.js = self.nc.jetstream(timeout=a.ack_timeout_s)
        end = time.monotonic() + 60
        while True:
            try:
                await natsbatch.ensure_stream(self.js, a.replicas)
                break
            except Exception as e:             # noqa: BLE001 - cluster still electing
                if time.monotonic() > end:
                    raise
                print('uplink %s: stream: %r' % (a.site, e), file=sys.stderr)
                await asyncio.sleep(0.5)

    async def _nats_down(self):
        self.stats['nats_disconnects'] += 1
        if self.nats_down_at is None:
            self.nats_down_at = (time.time(), time.monotonic())

    async def _nats_up(self):
        self.stats['nats_reconnects'] += 1
        if self.nats_down_at is not None:
            wall, mono = self.nats_down_at
            self.nats_outages.append({'at': round(wall, 3), 'down_s': round(time.monotonic() - mono, 3),
                                      'to': str(self.nc.connected_url.netloc if self.nc.connected_url else '')})
            self.nats_down_at = None

    async def _nats_error(self, e):
        print('uplink %s: nats: %r' % (self.site, e), file=sys.stderr)

    def flush(self):
        self._flush_soon = False
        if not self.buf:
            return
        entries, self.buf, self.buf_bytes = self.buf, [], 0
        acks, self.buf_acks = self.buf_acks, []
        self.batch_no += 1
        bid = '%s-%d' % (self.run_id, self.batch_no)
        data = natsbatch.encode(entries)
        self.stats['messages'] += len(entries)
        self.stats['batches'] += 1
        self.stats['bytes'] += len(data)
        self.inflight += 1
        asyncio.get_running_loop().create_task(self._send(data, bid, acks))

    async def _send(self, data, bid, acks):
        t0 = time.monotonic()
        try:
            async with self.sem:
                while True:
                    try:
                        await self.js.publish(self.subject, data, headers={'Nats-Msg-Id': bid})
                        break
                    except Exception as e:     # noqa: BLE001 - timeout, no responders, reconnecting
                        self.stats['retries'] += 1
                        if self.stopping:
                            print('uplink %s: batch %s not stored: %r' % (self.site, bid, e), file=sys.stderr)
                            return
                        await asyncio.sleep(self.args.retry_wait_s)
            self.ack_ms.append(int((time.monotonic() - t0) * 1000))
            self.send_acks(acks)
        finally:
            self.inflight -= 1

    def send_acks(self, acks):
        """PUBACKs for a stored batch, each on the client it came on, if still connected (else
        the site broker delivers the message again on the next session)."""
        by_client = {}
        for client, pid in acks:
            by_client.setdefault(client, []).append(pid)
        for client, pids in by_client.items():
            if client.connected:
                client.send_acks(pids)
                self.stats['acked_messages'] += len(pids)

    # --- run --------------------------------------------------------------------------------
    def idle(self):
        a = self.args
        if not a.idle_exit_s or self.t_last_rx is None or self.buf or self.inflight:
            return False
        if a.idle_after_file and not os.path.exists(a.idle_after_file):
            return False
        return time.monotonic() - self.t_last_rx > a.idle_exit_s

    async def run(self):
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.sem = asyncio.Semaphore(self.args.max_inflight_batches)
        await self.nats_connect()
        task = loop.create_task(self.mqtt_loop())
        t0 = time.monotonic()
        while not stop.is_set() and not self.idle():
            if self.args.duration_s and time.monotonic() - t0 > self.args.duration_s:
                break
            self.flush()
            try:
                await asyncio.wait_for(stop.wait(), self.args.flush_s)
            except asyncio.TimeoutError:
                pass
        self.flush()
        end = time.monotonic() + 10
        while self.inflight and time.monotonic() < end:
            await asyncio.sleep(0.05)
        self.stopping = True
        if self.client is not None:
            self.client.disconnect()
        task.cancel()
        await self.nc.close()

    def report(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        acks = sorted(self.ack_ms)

        def pct(p):
            return acks[min(len(acks) - 1, int(len(acks) * p))] if acks else None
        out = dict(self.stats, site=self.site, run_id=self.run_id, nats_outages=self.nats_outages,
                   js_ack_ms={'p50': pct(0.5), 'p99': pct(0.99), 'max': acks[-1] if acks else None},
                   cpu_s=round(ru.ru_utime + ru.ru_stime, 2), rss_mb=round(ru.ru_maxrss / 1024.0, 1))
        if self.stats['batches']:
            out['cpu_us_per_msg'] = round((ru.ru_utime + ru.ru_stime) * 1e6 / max(1, self.stats['messages']), 1)
        return out


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot fleet uplink', description=__doc__.split('\n')[0])
    p.add_argument('--site', required=True, help='site name: forwards hashpilot/v1/<site>/+/+')
    p.add_argument('--site-broker', default='127.0.0.1:1883', help='the site Mosquitto, host:port')
    p.add_argument('--nats', action='append', required=True,
                   help='cluster node host:port or nats://...; repeat (first = preferred)')
    p.add_argument('--client-id', default=None, help='MQTT client id (default uplink-<site>)')
    p.add_argument('--session-expiry-s', type=int, default=7 * 24 * 3600)
    p.add_argument('--flush-s', type=float, default=0.05, help='batch period')
    p.add_argument('--max-batch-bytes', type=int, default=256 * 1024)
    p.add_argument('--max-inflight-batches', type=int, default=512)
    p.add_argument('--ack-timeout-s', type=float, default=2.0, help='JetStream publish ack timeout')
    p.add_argument('--retry-wait-s', type=float, default=0.1)
    p.add_argument('--reconnect-wait-s', type=float, default=0.25)
    p.add_argument('--replicas', type=int, default=3, help='stream replicas if it must be created')
    p.add_argument('--duration-s', type=float, default=None)
    p.add_argument('--idle-exit-s', type=float, default=None)
    p.add_argument('--idle-after-file', default=None)
    p.add_argument('--ready-file', default=None)
    p.add_argument('--report', default=None)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    up = Uplink(args)
    asyncio.run(up.run())
    fmt.emit_json(up.report(), args.report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
