"""Test helpers: run `hashpilot run` as its own process, and a recording MQTT subscriber.

    with start_sim('S21', time_scale=5) as sim, Broker() as broker:
        sub = Recorder(broker, 'lab', 'r1')
        agent = AgentProcess(tmp_path, sim.ports_file, broker, rig='r1', telemetry_s=1)
        sub.wait_for(lambda: sub.count('telemetry') >= 3)
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_schema import codec, consumer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AgentProcess:
    def __init__(self, tmp_path, ports_file, broker, site='lab', rig='r1', telemetry_s=1.0,
                 chips_s=5.0, fmt='cbor', state_dir=None, extra_cfg='', name='agent',
                 mqtt_extra=''):
        self.state_dir = state_dir or str(tmp_path / ('state-' + rig))
        self.cfg_path = str(tmp_path / ('%s-%s.toml' % (name, rig)))
        with open(self.cfg_path, 'w') as f:
            f.write('[rig]\nsite = "%s"\nrig = "%s"\nports_file = "%s"\n\n'
                    '[mqtt]\nbroker = "127.0.0.1:%d"\nformat = "%s"\nbackoff_min_s = 0.2\n'
                    'backoff_max_s = 2.0\n%s\n'
                    '[telemetry]\npoll_s = 1.0\ntelemetry_s = %s\nchips_s = %s\n\n'
                    '[state]\nstate_dir = "%s"\noutbox_flush_s = 0.5\n%s\n'
                    % (site, rig, ports_file, broker.port, fmt, mqtt_extra, telemetry_s, chips_s,
                       self.state_dir, extra_cfg))
        self.log_path = str(tmp_path / ('%s-%s.log' % (name, rig)))
        self.proc = None
        self.start()

    def start(self):
        self._log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([sys.executable, '-m', 'agent', 'run', '--config', self.cfg_path],
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout_s=20.0):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
        finally:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)


class Recorder:
    """Subscriber with a persistent session (QoS 1, session kept while it is offline)."""

    def __init__(self, broker, site, rig, client_id=None):
        self.root = 'hashpilot/v1/%s/%s/' % (site, rig)
        self.messages = []          # (kind, decoded dict or None, retain, raw bytes)
        self.lock = threading.Lock()
        self.connected = threading.Event()
        cid = client_id or 'rec-' + uuid.uuid4().hex[:8]
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect_async('127.0.0.1', broker.port, 30, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), 'recorder could not connect'

    def _on_connect(self, client, userdata, flags, rc, props):
        client.subscribe(self.root + '#', qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic[len(self.root):]
        try:
            dec = consumer.decode(msg.topic, msg.payload) if not kind.startswith('cmd/') or kind == 'cmd/result' else None
        except ValueError:
            dec = None
        with self.lock:
            self.messages.append((kind, dec, msg.retain, bytes(msg.payload)))

    def of(self, kind):
        with self.lock:
            return [m[1] for m in self.messages if m[0] == kind]

    def count(self, kind):
        return len(self.of(kind))

    def wait_for(self, cond, timeout_s=30.0, what='condition'):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError('timed out after %.0f s waiting for %s' % (timeout_s, what))

    def command(self, op, body, raw=None):
        """Publish cmd/<op>. A dict body without 'ts' gets the current time, as operator tools
        send it (the agent refuses remote commands without ts); raw bytes go out as they are."""
        if raw is None and isinstance(body, dict) and 'ts' not in body:
            body = dict(body, ts=int(time.time() * 1000))
        data = raw if raw is not None else codec.encode(body, 'json')
        self.client.publish(self.root + 'cmd/' + op, data, qos=1).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def seqs_by_boot(messages):
    out = {}
    for m in messages:
        if m is not None:
            out.setdefault(m['boot_id'], []).append(m['seq'])
    return out


def dump(obj):
    return json.dumps(obj, default=str)[:2000]
