"""MQTT link against a real Mosquitto: retained birth/meta, Will on SIGKILL, outages lose nothing.

HASHPILOT_OUTAGE_S (default 6) sets the broker outage of the no-loss test, e.g. 120 for a
2-minute run; HASHPILOT_KILL_OUTAGE_S (default 3) the outage of the kill -9 test.
"""

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from agent.mqtt_link import MqttLink, backoff_delay_s, check_settings
from agent.outbox import Outbox
from hal import models
from mqtt_schema import consumer, payloads
from mqtt_schema.bench import sample_status
from tests.broker import Broker

pytestmark = [pytest.mark.e2e]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTAGE_S = float(os.environ.get('HASHPILOT_OUTAGE_S', '6'))
KILL_OUTAGE_S = float(os.environ.get('HASHPILOT_KILL_OUTAGE_S', '3'))

# A publisher process using the link: prints its boot_id, publishes telemetry every PERIOD s.
PUBLISHER = r'''
import json, queue, sys, time
from agent.mqtt_link import MqttLink
from mqtt_schema import payloads
cfg = json.loads(sys.argv[1]); period = float(sys.argv[2])
link = MqttLink(cfg, queue.Queue())
link.start()
print(link.session['boot_id'], flush=True)
status = {'state': 'running', 'boards': [{'index': 0, 'chips': [
    {'temp_c': 60.5, 'freq_mhz': 525.0, 'hashrate_ghs': 1070.0, 'err_pct': 0.1, 'state': 'ok'}]}]}
while True:
    link.publish('telemetry', payloads.build_telemetry(status, link.session))
    time.sleep(period)
'''


@pytest.fixture
def broker():
    b = Broker()
    b.start()
    yield b
    b.close()


def link_settings(b, tmp_path, **kw):
    s = {'site': 'site1', 'rig': 'rig-%d' % random.randrange(1 << 30), 'host': b.host, 'port': b.port,
         'state_dir': str(tmp_path / 'outbox'), 'backoff_min_s': 0.2, 'backoff_max_s': 1.0,
         'keepalive_s': 5, 'outbox_flush_s': 0.2, 'firmware': 'test', 'model': 'S21'}
    s.update(kw)
    return s


class Sub:
    """Subscriber collecting messages; persistent MQTT v5 session so its own reconnects lose nothing."""

    def __init__(self, b, topic, client_id=None, persistent=False):
        self.msgs = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or 'sub-%d' % random.randrange(1 << 30),
                             protocol=mqtt.MQTTv5)
        self.c.reconnect_delay_set(0.2, 1.0)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.c.connect(b.host, b.port, 5, clean_start=not persistent, properties=props)
        self.c.loop_start()
        assert self.subscribed.wait(10), 'subscriber got no SUBACK'

    def _on_message(self, c, u, msg):
        with self.cond:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.retain))
            self.cond.notify_all()

    def decoded(self, suffix):
        with self.cond:
            msgs = list(self.msgs)
        return [(consumer.decode(t, p), r) for t, p, r in msgs if t.endswith('/' + suffix)]

    def wait(self, pred, timeout_s=20.0):
        return wait_for(pred, timeout_s)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def spawn_publisher(settings, period_s=0.1):
    env = dict(os.environ, PYTHONPATH=REPO)
    p = subprocess.Popen([sys.executable, '-c', PUBLISHER, json.dumps(settings), str(period_s)],
                         stdout=subprocess.PIPE, env=env, cwd=REPO)
    boot_id = p.stdout.readline().decode().strip()
    assert boot_id, 'publisher did not start'
    return p, boot_id


def kill9(p):
    p.send_signal(signal.SIGKILL)
    p.wait()


# --- tests -------------------------------------------------------------------------------------

def test_backoff_has_full_jitter_and_bounds():
    rnd = random.Random(42)
    first = [backoff_delay_s(0, 1.0, 60.0, rnd) for _ in range(1000)]
    assert all(0.1 <= d <= 1.0 for d in first)
    assert max(first) - min(first) > 0.8           # a fleet spreads over the whole window
    assert len(set(round(d, 3) for d in first)) > 500
    later = [backoff_delay_s(4, 1.0, 60.0, rnd) for _ in range(1000)]
    assert max(later) > 12.0 and sum(later) / len(later) > 5.0   # window grows as 2**attempt
    capped = [backoff_delay_s(30, 1.0, 60.0, rnd) for _ in range(1000)]
    assert max(capped) <= 60.0 and max(capped) > 50.0
    a = [backoff_delay_s(3, 1.0, 60.0, random.Random(1)) for _ in range(3)]
    b = [backoff_delay_s(3, 1.0, 60.0, random.Random(2)) for _ in range(3)]
    assert a != b


def test_settings_are_strict(tmp_path):
    ok = {'site': 's', 'rig': 'r', 'state_dir': str(tmp_path)}
    assert check_settings(ok)['format'] == 'cbor'
    for bad, word in (({'sitee': 'x'}, 'sitee'), ({'port': '1883'}, 'port'), ({'rig': 'a/b'}, 'rig'),
                      ({'format': 'xml'}, 'format'), ({'password': 'p'}, 'password'),
                      ({'backoff_min_s': 5.0, 'backoff_max_s': 1.0}, 'backoff_min_s')):
        with pytest.raises(ValueError, match=word):
            check_settings(dict(ok, **bad))


@pytest.mark.parametrize('fmt,protocol', [('cbor', 5), ('json', 311)])
def test_birth_meta_retained_and_payloads_decode(broker, tmp_path, fmt, protocol):
    s = link_settings(broker, tmp_path, format=fmt, protocol=protocol)
    link = MqttLink(s, queue.Queue())
    link.set_meta(payloads.build_meta(models.get('S21'), link.session, firmware='test', fmt=fmt))
    link.start()
    try:
        assert wait_for(link.is_connected)
        status = sample_status('S21')
        link.publish('telemetry', payloads.build_telemetry(status, link.session))
        assert wait_for(lambda: link.get_status()['queued'] == 0)   # PUBACK removed it
        late = Sub(broker, link.root + '#')                        # subscribes after the fact
        assert late.wait(lambda: len(late.decoded('status')) and len(late.decoded('meta')))
        birth, retained = late.decoded('status')[0]
        assert retained and birth['online'] is True and birth['boot_id'] == link.session['boot_id']
        assert birth['session_seq'] == 1 and birth['model'] == 'S21'
        meta, retained = late.decoded('meta')[0]
        assert retained and meta['boards'] == 3 and meta['chips_per_board'] == 108
        assert meta['fields']['chips.bd']['t'] == ['temp_c', 'degC', 0.1]
        assert late.decoded('telemetry') == []                     # telemetry is not retained
        link.publish('chips', payloads.build_chips(status, link.session))
        link.publish('telemetry', payloads.build_telemetry(status, link.session))
        assert late.wait(lambda: late.decoded('chips') and late.decoded('telemetry'))
        chips = late.decoded('chips')[0][0]
        assert chips['boot_id'] == link.session['boot_id'] and chips['seq'] == 1
        want = [c['temp_c'] for c in status['boards'][1]['chips']]
        assert chips['boards'][1]['temp_c'] == want
        tele = late.decoded('telemetry')[0][0]
        assert tele['seq'] == 2 and len(tele['boards']) == 3 and tele['hashrate_ghs'] > 150000
        assert link.get_status()['dropped'] == 0
        n = len(late.decoded('status'))
        assert link.rebirth()                                      # on demand, e.g. `rebirth` command
        assert late.wait(lambda: len(late.decoded('status')) > n)
        assert late.decoded('status')[-1][0]['online'] is True
        late.close()
    finally:
        link.stop()


def test_commands_are_queued_not_executed(broker, tmp_path):
    q = queue.Queue()
    link = MqttLink(link_settings(broker, tmp_path), q)
    link.start()
    try:
        assert wait_for(lambda: link.get_status()['subscribed'])
        sub = Sub(broker, link.root + 'cmd/result')
        sub.c.publish(link.root + 'cmd/set_freq', json.dumps({'id': 'c1', 'args': {'mhz': 500}}), qos=1)
        op, data = q.get(timeout=5)
        cmd, reason = consumer.parse_command(op, data)
        assert reason is None and cmd == {'op': 'set_freq', 'id': 'c1', 'args': {'mhz': 500}}
        link.publish('cmd/result', payloads.build_cmd_result(link.session, 'c1', True, op='set_freq'))
        assert sub.wait(lambda: sub.decoded('cmd/result'))
        assert sub.decoded('cmd/result')[0][0]['ok'] is True
        time.sleep(0.3)
        assert q.empty()   # our own cmd/result is not taken for a command
        sub.close()
    finally:
        link.stop()


def test_credentials_required(tmp_path):
    with Broker(username='rig', password='s3cret') as b:
        bad = MqttLink(link_settings(b, tmp_path / 'a'), queue.Queue())
        good = MqttLink(link_settings(b, tmp_path / 'b', username='rig', password='s3cret'), queue.Queue())
        bad.start()
        good.start()
        try:
            assert wait_for(good.is_connected)
            time.sleep(1.0)
            assert not bad.is_connected()
        finally:
            bad.stop(drain_s=0)
            good.stop()


def test_tls_with_client_certificate(tmp_path):
    with Broker(tls=True) as b:
        plain = MqttLink(link_settings(b, tmp_path / 'a'), queue.Queue())
        good = MqttLink(link_settings(b, tmp_path / 'b', ca_file=b.ca_file, cert_file=b.client_cert,
                                      key_file=b.client_key), queue.Queue())
        plain.start()
        good.start()
        try:
            assert wait_for(good.is_connected)
            good.publish('alarm', payloads.build_alarm(good.session, 'x', 'raise', 'info', 'tls ok'))
            assert wait_for(lambda: good.get_status()['queued'] == 0)   # PUBACK over TLS
            assert not plain.is_connected()
        finally:
            plain.stop(drain_s=0)
            good.stop()


def test_will_published_when_publisher_is_killed(broker, tmp_path):
    s = link_settings(broker, tmp_path)
    sub = Sub(broker, 'hashpilot/v1/site1/%s/status' % s['rig'])
    p, boot_id = spawn_publisher(s)
    try:
        assert sub.wait(lambda: any(m['online'] for m, _ in sub.decoded('status')))
        kill9(p)
        assert sub.wait(lambda: any(not m['online'] for m, _ in sub.decoded('status')), 10)
        will = [m for m, _ in sub.decoded('status') if not m['online']][0]
        assert will['boot_id'] == boot_id and will['session_seq'] == 1
        late = Sub(broker, 'hashpilot/v1/site1/%s/status' % s['rig'])
        assert late.wait(lambda: late.decoded('status'))
        m, retained = late.decoded('status')[0]
        assert retained and m['online'] is False   # the Will replaced the retained birth
        late.close()
    finally:
        if p.poll() is None:
            kill9(p)
        sub.close()


def seqs(sub, boot_id):
    return [m for m, _ in sub.decoded('telemetry') if m['boot_id'] == boot_id]


@pytest.mark.slow
def test_broker_outage_loses_nothing(broker, tmp_path):
    s = link_settings(broker, tmp_path)
    sub = Sub(broker, 'hashpilot/v1/site1/%s/telemetry' % s['rig'], persistent=True)
    link = MqttLink(s, queue.Queue())
    link.start()
    status = sample_status('S21')
    sent = [0]

    def pump(duration_s):
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            link.publish('telemetry', payloads.build_telemetry(status, link.session))
            sent[0] += 1
            time.sleep(0.1)
    try:
        assert wait_for(link.is_connected)
        time.sleep(0.5)
        pump(1.0)
        broker.stop()
        pump(OUTAGE_S)
        assert not link.is_connected() and link.get_status()['queued'] > 0
        broker.start()
        pump(1.0)
        boot = link.session['boot_id']
        assert sub.wait(lambda: len(set(m['seq'] for m in seqs(sub, boot))) >= sent[0],
                        30 + OUTAGE_S / 4)
        got = seqs(sub, boot)
        assert sorted(set(m['seq'] for m in got)) == list(range(1, sent[0] + 1))
        hist = [i for i, m in enumerate(got) if m.get('historical')]
        assert hist                                                 # the backlog is marked
        newest_hist = max(got[i]['seq'] for i in hist)
        assert any(m['seq'] > newest_hist for m in got[:hist[0]])   # live data went before it
        assert wait_for(lambda: link.get_status()['queued'] == 0)
        st = link.get_status()
        assert st['dropped'] == 0 and st['reconnects'] >= 1 and st['session_seq'] == 2
        print('outage %.0f s: %d messages, %d replayed, all delivered' % (OUTAGE_S, sent[0], st['replayed']))
    finally:
        link.stop()
        sub.close()


def test_publisher_killed_during_outage_delivers_outbox_after_restart(broker, tmp_path):
    s = link_settings(broker, tmp_path)
    sub = Sub(broker, 'hashpilot/v1/site1/%s/telemetry' % s['rig'], persistent=True)
    p, boot1 = spawn_publisher(s)
    p2 = None
    try:
        assert sub.wait(lambda: len(seqs(sub, boot1)) >= 5)
        broker.stop()
        time.sleep(KILL_OUTAGE_S)
        kill9(p)                                     # dies with its backlog on disk only
        ob = Outbox(s['state_dir'])
        stored = [consumer.decode(t, d) for _i, t, d in ob.pending()]
        assert len(stored) >= KILL_OUTAGE_S * 5     # ~10/s published, flushed every 0.2 s
        assert all(m['boot_id'] == boot1 for m in stored)
        want = set(m['seq'] for m in stored)
        broker.start()
        p2, boot2 = spawn_publisher(s)
        assert boot2 != boot1
        assert sub.wait(lambda: want <= set(m['seq'] for m in seqs(sub, boot1)), 30)
        got = seqs(sub, boot1)
        assert sorted(set(m['seq'] for m in got)) == list(range(1, max(want) + 1))   # no gap
        assert all(m.get('historical') for m in got if m['seq'] in want)
        assert sub.wait(lambda: len(seqs(sub, boot2)) >= 3)                        # and live again
    finally:
        for proc in (p, p2):
            if proc is not None and proc.poll() is None:
                kill9(proc)
        sub.close()
