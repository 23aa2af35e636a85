"""MQTT side of the operator tools: subscribe to a fleet into a FleetState, send commands.

The paho callback only decodes into the state (no blocking I/O); commands are built as the schema
says (`id`, `args`, `ts`) and checked with `mqtt_schema.consumer.parse_command` before they leave,
so a tool can never publish a payload the agent would refuse as malformed. With an operator key
(`key=`, or a file named by HASHPILOT_CMD_KEY_FILE) commands carry an HMAC-SHA256 `sig`
(mqtt_schema.cmdauth), for rigs configured to accept signed commands only.
"""

import os
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_schema import cmdauth, codec, consumer, topics


def load_cmd_key(path=None):
    """The operator's command key from `path` or $HASHPILOT_CMD_KEY_FILE; None when neither."""
    path = path or os.environ.get('HASHPILOT_CMD_KEY_FILE')
    if not path:
        return None
    with open(path) as f:
        return cmdauth.parse_key(f.read())


def parse_broker(text):
    """'host:port' or 'host' -> (host, port); ValueError with the reason."""
    host, _, port = str(text).rpartition(':')
    if not host:
        return text, 1883
    try:
        port = int(port)
    except ValueError:
        raise ValueError('broker must be HOST:PORT, got %r' % (text,))
    if not 0 < port < 65536:
        raise ValueError('broker port %d outside 1..65535' % port)
    return host, port


def build_command(op, args, cmd_id=None, ts_ms=None, key=None):
    """(payload bytes, id); ValueError when the command would be refused as malformed."""
    cmd_id = cmd_id or uuid.uuid4().hex[:16]
    body = {'id': cmd_id, 'v': 1, 'args': dict(args or {}),
            'ts': int(time.time() * 1000) if ts_ms is None else int(ts_ms)}
    if key is not None:
        body['sig'] = cmdauth.sign(key, op, cmd_id, body['ts'], body['args'])
    data = codec.encode(body, 'json')
    _, reason = consumer.parse_command(op, data)
    if reason:
        raise ValueError('command %s refused before sending: %s' % (op, reason))
    return data, cmd_id


class FleetClient:
    """One MQTT connection feeding `state`; `send()` publishes validated commands."""

    def __init__(self, state, broker, site=None, username=None, password=None, client_id=None,
                 cmd_key=None):
        self.state = state
        self.cmd_key = cmd_key if cmd_key is not None else load_cmd_key()
        self.host, self.port = parse_broker(broker)
        self.site = site
        self.connected = threading.Event()
        cid = client_id or 'hp-fleet-' + uuid.uuid4().hex[:8]
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(0.5, 5.0)
        self.extra_subscriptions = []   # (filter, fn(topic, payload)) for tools with own topics

    def filters(self):
        site = self.site or '+'
        return [topics.PREFIX + site + '/+/' + k for k in
                ('status', 'meta', 'telemetry', 'chips', 'alarm', 'cmd/result')]

    def _on_connect(self, client, userdata, flags, rc, props=None):
        for f in self.filters():
            client.subscribe(f, qos=1)
        for f, fn in self.extra_subscriptions:
            client.subscribe(f, qos=1)
            client.message_callback_add(f, lambda c, u, m, fn=fn: fn(m.topic, m.payload))
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        self.state.feed(msg.topic, msg.payload)

    def start(self, timeout_s=10.0):
        self.client.connect_async(self.host, self.port, 30)
        self.client.loop_start()
        if timeout_s and not self.connected.wait(timeout_s):
            self.stop()
            raise ConnectionError('no MQTT connection to %s:%d within %.0f s'
                                  % (self.host, self.port, timeout_s))
        return self

    def stop(self):
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:   # already gone
            pass

    def send(self, site, rig, op, args=None, cmd_id=None):
        """Publish cmd/<op> to one rig (QoS 1); returns the command id."""
        data, cmd_id = build_command(op, args, cmd_id, key=self.cmd_key)
        self.client.publish(topics.topic(site, rig, 'cmd/' + op), data, qos=1)
        return cmd_id

    def publish(self, topic, data, retain=False, qos=1):
        return self.client.publish(topic, data, qos=qos, retain=retain)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
