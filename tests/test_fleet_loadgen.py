"""Load generator: spliced payloads decode exactly like the agent's builders; a short run against a
real Mosquitto delivers every message once (births, telemetry, chips), a storm reconnects all."""

import json
import os
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker import Broker
from fleet import loadgen, mqttwire
from mqtt_schema import bench as schema_bench
from mqtt_schema import consumer, payloads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('fmt', ['cbor', 'json'])
def test_spliced_payload_equals_builder_output(fmt):
    bodies = loadgen.Bodies('S21', variants=2, fmt=fmt)
    status = schema_bench.sample_status('S21', seed=2)
    for kind, build in (('telemetry', payloads.build_telemetry), ('chips', payloads.build_chips)):
        sess = payloads.new_session('beef0001')
        sess['seq'][kind] = 70000          # multi-byte CBOR integers
        want = consumer.decode(kind, payloads_encode(build(status, sess, 1795000000123), fmt))
        got = consumer.decode(kind, bodies.payload(kind, 1, 70001, 1795000000123, 'beef0001'))
        assert got == want


def test_spliced_cbor_is_the_agents_bytes():
    # canonical CBOR as codec.encode gives it (what every agent sends), so the consumer's strict
    # fast parser sees what it sees in production
    bodies = loadgen.Bodies('S21', variants=3)
    for variant in range(3):
        status = schema_bench.sample_status('S21', seed=variant + 1)
        for kind, build in (('telemetry', payloads.build_telemetry), ('chips', payloads.build_chips)):
            for seq, ts_ms, boot in ((1, 0, '00000000'), (70001, 1795000000123, 'beef0001')):
                sess = payloads.new_session(boot)
                sess['seq'][kind] = seq - 1
                want = payloads_encode(build(status, sess, ts_ms), 'cbor')
                assert bodies.payload(kind, variant, seq, ts_ms, boot) == want


def payloads_encode(wire, fmt):
    from mqtt_schema import codec
    return codec.encode(wire, fmt)


def test_splitter_handles_fragments_and_junk():
    pkt = mqttwire.publish('a/b', b'x' * 300, qos=1, pid=7)
    sp = mqttwire.Splitter()
    got = []
    for i in range(0, len(pkt), 7):
        got += sp.feed(pkt[i:i + 7])
    assert len(got) == 1
    topic, payload, qos, pid, retain, dup = mqttwire.parse_publish(got[0][1], got[0][2])
    assert (topic, payload, qos, pid) == ('a/b', b'x' * 300, 1, 7)
    bad = mqttwire.Splitter()
    assert bad.feed(b'\x30\xff\xff\xff\xff\x01') == [] and bad.error


def _collect(port, counts, lock):
    def on_message(c, u, msg):
        kind = msg.topic.split('/', 4)[4]
        with lock:
            counts.setdefault(kind, set()).add((msg.topic, msg.payload))
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id='t-sub', protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect('127.0.0.1', port)
    c.subscribe('hashpilot/v1/#', qos=1)
    c.loop_start()
    return c


@pytest.mark.slow
def test_short_run_with_storm_delivers_everything():
    with Broker() as b:
        counts, lock = {}, threading.Lock()
        sub = _collect(b.port, counts, lock)
        try:
            out = subprocess.run(
                [sys.executable, '-m', 'fleet.loadgen', '--broker', '127.0.0.1:%d' % b.port,
                 '--rigs', '40', '--rigs-per-conn', '2', '--duration-s', '6', '--rate-scale', '20',
                 '--storm-at-s', '2', '--backoff-min-s', '0.2', '--backoff-max-s', '1'],
                capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert out.returncode == 0, out.stderr
            rep = json.loads(out.stdout)
        finally:
            import time
            time.sleep(1.0)
            sub.loop_stop()
            sub.disconnect()
    assert rep['connections'] == 20 and rep['drained'] and rep['unacked_at_end'] == 0
    assert rep['storm']['reconnected'] == 20 and rep['connects'] == 40
    for kind in ('telemetry', 'chips'):
        assert rep['expected'][kind] == rep['sent'][kind] > 0
        # QoS 1 may repeat a message whose PUBACK was lost in the storm; none may be missing
        assert len(counts[kind]) == rep['expected'][kind]
    assert rep['births'] == 80
