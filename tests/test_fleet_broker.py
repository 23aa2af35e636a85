"""Large-site broker config (fleet/brokerconf): a real Mosquitto accepts it, each rig's password
works and a wrong one is refused, a rig may publish only on its own topics, the consumer user
reads every rig through a shared subscription."""

import csv
import os
import subprocess
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker import MOSQUITTO, _user, free_port
from fleet import brokerconf


def _client(cid, user, pw, port):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, pw)
    result = {}
    c.on_connect = lambda cl, u, f, rc, p: result.setdefault('rc', rc)
    c.connect('127.0.0.1', port)
    c.loop_start()
    end = time.monotonic() + 10
    while 'rc' not in result and time.monotonic() < end:
        time.sleep(0.02)
    return c, result.get('rc')


def test_generated_site_config_enforces_per_rig_acl(tmp_path):
    port = free_port()
    rigs = brokerconf.loadgen_rigs(3, rigs_per_site=2)
    creds = brokerconf.write_site(str(tmp_path), rigs, [(port, '127.0.0.1')],
                                  consumers=[('ingest', 'ingest-pw')],
                                  extra=['user %s' % _user(), 'log_dest file %s/log' % tmp_path])
    with open(tmp_path / 'credentials.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['site'], r['rig']) for r in rows] == rigs == [('site0', 'r0'), ('site0', 'r1'), ('site1', 'r2')]
    proc = subprocess.Popen([MOSQUITTO, '-c', str(tmp_path / 'mosquitto.conf')])
    try:
        time.sleep(0.5)
        assert proc.poll() is None, open(tmp_path / 'log').read()
        got = []
        sub, rc = _client('ing', 'ingest', 'ingest-pw', port)
        assert rc is not None and not rc.is_failure
        sub.on_message = lambda c, u, m: got.append(m.topic)
        sub.subscribe('$share/g/hashpilot/v1/+/+/telemetry', options=SubscribeOptions(qos=1))
        time.sleep(0.3)
        r0, rc = _client('r0', 'site0/r0', creds['site0/r0'], port)
        assert not rc.is_failure
        own = r0.publish('hashpilot/v1/site0/r0/telemetry', b'a', qos=1)
        other = r0.publish('hashpilot/v1/site0/r1/telemetry', b'b', qos=1)
        own.wait_for_publish(5)
        other.wait_for_publish(5)
        r2, rc = _client('r2', 'site1/r2', creds['site1/r2'], port)
        r2.publish('hashpilot/v1/site1/r2/telemetry', b'c', qos=1).wait_for_publish(5)
        bad, rc = _client('r1', 'site0/r1', 'wrong', port)
        assert rc is not None and rc.is_failure
        time.sleep(0.5)
        assert sorted(got) == ['hashpilot/v1/site0/r0/telemetry', 'hashpilot/v1/site1/r2/telemetry']
        for c in (sub, r0, r2, bad):
            c.loop_stop()
            c.disconnect()
    finally:
        proc.terminate()
        proc.wait(10)
    conf = open(tmp_path / 'mosquitto.conf').read()
    assert 'max_queued_messages 2000000' in conf and 'persistence true' in conf
    assert os.stat(tmp_path / 'passwd').st_mode & 0o077 == 0


def test_rig_patterns_are_the_deploy_template():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'deploy', 'mosquitto', 'hashpilot.acl')) as f:
        template = [ln.strip() for ln in f if ln.startswith('pattern ')]
    assert template == list(brokerconf.RIG_PATTERNS)
