"""Faults on the site-uplink path, with a real nats-server (JetStream, one node) and Mosquitto:
a consumer whose feed dies exits non-zero, a fetch that fails at once backs off instead of
spinning, one bad batch does not stop the durable path, and the uplink acknowledges each
message on the client it came on, only once its own batch is stored."""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from broker import Broker, free_port
from fleet import natsbatch
from fleet.aiomqtt import Client
from fleet.cluster import NATS

pytestmark = pytest.mark.skipif(not os.path.exists(NATS), reason='nats-server not installed')


def _wait_port(port, proc):
    end = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < end and proc.poll() is None, 'nats-server did not start'
            time.sleep(0.1)


@pytest.fixture
def nats_url():
    port = free_port()
    d = tempfile.mkdtemp(prefix='hp-nats1-')
    p = subprocess.Popen([NATS, '-a', '127.0.0.1', '-p', str(port), '-js', '-sd', d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, p)
        yield 'nats://127.0.0.1:%d' % port
    finally:
        p.terminate()
        p.wait(20)
        shutil.rmtree(d, ignore_errors=True)


def test_consumer_exits_nonzero_when_its_nats_feed_dies():
    # a server without JetStream: NatsFeed.run() gives up on the stream and raises; the consumer
    # must say so and exit 1 (it used to run on without a feed until --duration-s, then exit 0)
    port = free_port()
    p = subprocess.Popen([NATS, '-a', '127.0.0.1', '-p', str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, p)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, '-m', 'fleet.ingest', '--nats', '127.0.0.1:%d' % port,
                            '--sites', 's0', '--nats-setup-s', '2', '--duration-s', '40'],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ))
    finally:
        p.terminate()
        p.wait(20)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert 'feed stopped' in r.stderr
    assert time.monotonic() - t0 < 35


class Sink:
    """The consumer side of NatsFeed: on_message raises for topics under 'bad/'."""

    def __init__(self):
        self.stopping = False
        self.writer = None
        self.got = []

    def on_message(self, topic, payload, retain, dup):
        if topic.startswith('bad/'):
            raise KeyError(topic)
        self.got.append(topic)


async def _feed(url, sink, site='s0'):
    import nats
    from fleet.ingest import build_parser
    from fleet.ingest_nats import NatsFeed
    args = build_parser().parse_args(['--nats', url, '--sites', site])
    feed = NatsFeed(sink, args)
    feed.nc = await nats.connect(servers=[url])
    feed.js = feed.nc.jetstream(timeout=5)
    await natsbatch.ensure_stream(feed.js, replicas=1)
    sub = await feed.js.pull_subscribe(natsbatch.subject(site), durable='t-' + site,
                                       stream=natsbatch.STREAM)
    return feed, sub


def test_pull_backs_off_on_errors_that_come_back_at_once(nats_url):
    async def go():
        sink = Sink()
        feed, sub = await _feed(nats_url, sink)
        await feed.nc.close()             # every fetch now fails at once
        # stop from a thread: a loop that never yields would never run a call_later
        threading.Timer(1.5, setattr, (sink, 'stopping', True)).start()
        await asyncio.wait_for(feed._pull(sub), 30)
        return feed.stats
    stats = asyncio.run(go())
    assert stats['fetch_errors'] >= 1, stats
    assert stats['fetch_errors'] + stats['fetch_timeouts'] <= 30, stats     # backed off


def test_one_bad_batch_does_not_stop_the_durable_path(nats_url):
    async def go():
        sink = Sink()
        feed, sub = await _feed(nats_url, sink)
        subj = natsbatch.subject('s0')
        await feed.js.publish(subj, natsbatch.encode([('bad/x', b'1', False)]),
                              headers={'Nats-Msg-Id': 'b1'})
        await feed.js.publish(subj, natsbatch.encode([('ok/y', b'2', False)]),
                              headers={'Nats-Msg-Id': 'b2'})
        task = asyncio.get_running_loop().create_task(feed._pull(sub))
        end = time.monotonic() + 20
        while not sink.got and not task.done() and time.monotonic() < end:
            await asyncio.sleep(0.05)
        sink.stopping = True
        await asyncio.wait_for(task, 10)
        await feed.nc.close()
        return sink.got, feed.stats
    got, stats = asyncio.run(go())
    assert got == ['ok/y'], stats
    assert stats['bad_batches'] == 1, stats


def test_uplink_acks_each_message_on_its_own_client_after_its_batch_is_stored(nats_url):
    """A reconnect's queued messages can arrive before the uplink's `client` is the new one:
    their PUBACKs must still go out with their own batch, on the client they came on."""
    from fleet import uplink
    topic = 'hashpilot/v1/s0/r1/telemetry'

    async def go(b):
        args = uplink.build_parser().parse_args(['--site', 's0', '--site-broker', '%s:%d' % (b.host, b.port),
                                                 '--nats', nats_url, '--replicas', '1'])
        up = uplink.Uplink(args)
        up.sem = asyncio.Semaphore(4)
        await up.nats_connect()
        old = Client('uplink-old', version=5, clean=True)
        await old.connect(b.host, b.port)
        new = Client('uplink-s0', version=5, clean=False, session_expiry_s=600, receive_max=100)
        new.on_message = up.receiver(new)
        new.manual_ack, new.ack_pending = True, None
        await new.connect(b.host, b.port)
        await new.subscribe([('hashpilot/v1/s0/+/+', 1)])
        up.client = old                   # mqtt_loop has not yet switched to `new`
        pub = Client('rig', version=5, clean=True)
        await pub.connect(b.host, b.port)

        async def arrive(n):
            end = time.monotonic() + 10
            while len(up.buf) < n and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert len(up.buf) == n
        pub.publish(topic, b'first')
        await arrive(1)
        up.flush()                        # batch 1: 'first'
        end = time.monotonic() + 10
        while up.inflight and time.monotonic() < end:
            await asyncio.sleep(0.02)
        pub.publish(topic, b'second')     # stays in buf: its batch is not stored
        await arrive(1)
        await asyncio.sleep(0.2)          # the PUBACK of 'first' reaches the broker
        new.disconnect()
        again = []
        back = Client('uplink-s0', version=5, clean=False, session_expiry_s=600,
                      on_message=lambda t, p, r, d: again.append(p))
        await back.connect(b.host, b.port)
        await asyncio.sleep(1.0)
        stored = (await up.js.stream_info(natsbatch.STREAM)).state.messages
        for c in (back, old, pub):
            c.disconnect()
        await up.nc.close()
        return again, stored, up.stats
    with Broker() as b:
        again, stored, stats = asyncio.run(go(b))
    assert stored == 1
    assert stats['acked_messages'] == 1, stats
    assert again == [b'second'], again   # 'first' was acked with its batch, 'second' was not
