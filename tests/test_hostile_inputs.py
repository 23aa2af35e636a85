"""Hostile inputs outside the command path (issue 17): ports files that are not what the
simulator writes, retained commands on the broker."""

import os
import queue
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.mqtt_link import MqttLink
from tests.broker import Broker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PORTS = {
    'a JSON list': '["S21", "/dev/ttyS1"]',
    'unknown model': '{"model": "S99", "chains": ["a", "b", "c"], "board": "d"}',
    '5000-deep nest': '[' * 5000 + ']' * 5000,
    '5000-deep object': '{"model": ' + '{"a": ' * 5000 + '1' + '}' * 5000 + '}',
    'chains not strings': '{"model": "S21", "chains": [1, 2, 3], "board": "d"}',
    'time_scale nan': '{"model": "S21", "chains": ["a", "b", "c"], "board": "d", "time_scale": NaN}',
    'time_scale 1e400': '{"model": "S21", "chains": ["a", "b", "c"], "board": "d", "time_scale": 1e400}',
    'model a number': '{"model": 21, "chains": ["a", "b", "c"], "board": "d"}',
    'huge integer': '{"model": "S21", "chains": ["a", "b", "c"], "board": "d", "baud": %s}' % ('9' * 5000),
    'not JSON': 'model = S21',
    'binary junk': '\x00\xff\xfe garbage',
    'empty': '',
}


@pytest.mark.parametrize('case', sorted(PORTS))
def test_bad_ports_file_is_a_clear_error(tmp_path, case):
    pf = tmp_path / 'ports.json'
    pf.write_bytes(PORTS[case].encode('utf-8', 'surrogateescape'))
    p = subprocess.run([sys.executable, '-m', 'agent', 'run', '--ports-file', str(pf), '--site', 's',
                        '--rig', 'r', '--state-dir', str(tmp_path / 'state'), '--broker', '127.0.0.1:1'],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert 'Traceback' not in p.stderr
    assert 'config error' in p.stderr and ('ports_file' in p.stderr or 'rig.model' in p.stderr), p.stderr


def test_retained_commands_are_never_applied(tmp_path):
    with Broker() as b:
        root = 'hashpilot/v1/site1/rigR/'
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect(b.host, b.port, 10)
        pub.loop_start()
        pub.publish(root + 'cmd/reset_safety', b'{"id": "left-behind"}', qos=1, retain=True).wait_for_publish(5)
        q = queue.Queue()
        link = MqttLink({'site': 'site1', 'rig': 'rigR', 'host': b.host, 'port': b.port,
                         'state_dir': str(tmp_path / 'ob'), 'backoff_min_s': 0.2, 'backoff_max_s': 1.0}, q)
        link.start()
        try:
            deadline = time.monotonic() + 10
            while not link.get_status()['subscribed'] and time.monotonic() < deadline:
                time.sleep(0.05)
            pub.publish(root + 'cmd/identify', b'{"id": "live"}', qos=1).wait_for_publish(5)
            got = q.get(timeout=10)
            assert got[0] == 'identify'
            time.sleep(0.3)
            assert q.empty()
            assert link.get_status()['cmd_retained'] == 1
        finally:
            link.stop(drain_s=0)
            pub.disconnect()
            pub.loop_stop()


def test_flood_beyond_the_inbox_is_answered_busy():
    """CommandInbox: beyond max_pending, commands are answered busy (op and id kept), beyond
    max_busy counted as dropped by the link (queue.Full), never buffered without bound."""
    import queue as q
    from agent.inbox import CommandInbox
    from agent.scheduler import Scheduler
    from hal.clock import Clock
    sched = Scheduler(Clock(1.0))
    ran, busy = [], []
    box = CommandInbox(sched, lambda op, data: ran.append(op), max_pending=10,
                       on_busy=lambda op, cid: busy.append((op, cid)), max_busy=50)
    full = 0
    for i in range(100):
        try:
            box.put_nowait(('identify', b'{"id": "c%d", "ts": 1}' % i))
        except q.Full:
            full += 1
    assert full == 40
    sched._run_inbox(0)
    assert len(ran) == 10 and len(busy) == 50 and busy[0] == ('identify', 'c10')
    assert box.pending == 0 and box.busy == []


def test_client_certificate_without_ca_in_the_config_means_tls(tmp_path):
    """[mqtt] tls_cert + tls_key without tls_ca: TLS against the system CA store, never plaintext."""
    from agent import config, mqtt_link
    b = Broker(tls=True)      # not started: only its throw-away client certificate is used
    try:
        path = tmp_path / 'c.toml'
        path.write_text('[rig]\nsite = "s"\nrig = "r"\n[mqtt]\nbroker = "127.0.0.1:8883"\n'
                        'tls_cert = "%s"\ntls_key = "%s"\n' % (b.client_cert, b.client_key))
        cfg = config.load_file(str(path))
        s = mqtt_link.settings_from_config(cfg, str(tmp_path / 'ob'), 'fw', 'S21')
        assert s['tls'] is True and s['cert_file'] == b.client_cert and 'ca_file' not in s
        assert MqttLink(s, queue.Queue()).tls
    finally:
        b.close()
