"""Broker link: paho-mqtt 2.x client with birth/Will, retained meta, durable outbox and jittered backoff.

Threads: paho's loop thread runs the callbacks, which only flip flags, append PUBACK mids to a
deque, publish the small birth/meta messages and put (op, payload bytes) on the agent's command
queue. A small service thread (or the agent's scheduler calling `service()`) applies acks to the
outbox, flushes it in batches and replays the backlog. Every QoS 1 message goes through the
outbox first; it leaves the outbox only when paho reports the PUBACK for its mid.

Usage:
    link = MqttLink({'site': 's1', 'rig': 'r7', 'host': 'broker', 'state_dir': '/data/outbox'},
                    cmd_queue)
    link.set_meta(payloads.build_meta(model, link.session, ...))
    link.start()
    link.publish('telemetry', payloads.build_telemetry(status, link.session))
    link.get_status(); link.stop()
"""

import collections
import logging
import queue
import random
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent import options
from agent.outbox import Outbox
from mqtt_schema import codec, payloads, topics
from mqtt_schema.reconnect import backoff_delay_s  # noqa: F401 (re-exported)

_o = options.opt


def _check_section(sec):
    if sec['backoff_min_s'] > sec['backoff_max_s']:
        raise sec.error('backoff_min_s', '%s must not exceed %s'
                        % (sec.label('backoff_min_s'), sec.label('backoff_max_s')))
    if bool(sec['tls_cert']) != bool(sec['tls_key']):
        raise sec.error('tls_cert', '%s and %s go together' % (sec.label('tls_cert'), sec.label('tls_key')))
    if sec['password_file'] and not sec['username']:
        raise sec.error('password_file', '%s needs %s' % (sec.label('password_file'), sec.label('username')))
    host, _, port = sec['broker'].rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise sec.error('broker', '%s = %r: expected host:port' % (sec.label('broker'), sec['broker']))
    for b in sec['failover']:
        try:
            parse_host_port(b)
        except ValueError:
            raise sec.error('failover', '%s entry %r: expected host:port' % (sec.label('failover'), b))


# The [mqtt] config section. The link's own settings (below) reuse its options, so one key has
# one type, one default and one range.
SECTION = options.section('mqtt', [
    _o('broker', 'str', '127.0.0.1:1883', 'broker host:port'),
    _o('failover', 'list', [], 'more brokers (host:port), tried in turn when the current one '
       'is lost: the other nodes of a broker cluster'),
    _o('client_id', 'str', '', 'MQTT client id; empty = hashpilot-<site>-<rig>'),
    _o('username', 'str', '', 'username (no default credentials)'),
    _o('password_file', 'str', '', 'file holding the password (0600)'),
    _o('tls_ca', 'str', '', 'CA certificate file; set to enable TLS'),
    _o('tls_cert', 'str', '', 'client certificate file'),
    _o('tls_key', 'str', '', 'client key file'),
    _o('format', 'str', 'cbor', 'payload encoding', choices=codec.FORMATS),
    _o('keepalive_s', 'int', 30, 'MQTT keepalive', 5, 3600),
    _o('backoff_min_s', 'float', 1.0, 'reconnect back-off floor', 0.1, 600.0),
    _o('backoff_max_s', 'float', 60.0, 'reconnect back-off ceiling', 1.0, 3600.0),
], check=_check_section)
OUTBOX_MAX_BYTES = _o('outbox_max_bytes', 'int', 4 * 1024 * 1024,
                      'outbox bound; oldest dropped first', 64 * 1024, 1024 * 1024 * 1024)
OUTBOX_FLUSH_S = _o('outbox_flush_s', 'float', 5.0, 'outbox batch write period (flash wear)',
                    0.1, 300.0)


def _check_link(cfg):
    for key in ('site', 'rig', 'state_dir'):
        if not cfg[key]:
            raise cfg.error(key, 'mqtt: setting %r is required' % key)
    topics.root(cfg['site'], cfg['rig'])   # raises ValueError naming site/rig
    if cfg['backoff_min_s'] > cfg['backoff_max_s']:
        raise cfg.error('backoff_min_s', "mqtt: need 'backoff_min_s' <= 'backoff_max_s'")
    if cfg['password'] is not None and cfg['username'] is None:
        raise cfg.error('password', "mqtt: setting 'password' needs 'username'")
    if (cfg['cert_file'] is None) != (cfg['key_file'] is None):
        raise cfg.error('cert_file', "mqtt: settings 'cert_file' and 'key_file' go together")
    if cfg['tls_insecure'] and not (cfg['tls'] or cfg['ca_file'] or cfg['cert_file']):
        raise cfg.error('tls_insecure', "mqtt: 'tls_insecure' without TLS")
    cfg['brokers'] = [(cfg['host'], cfg['port'])] + [parse_host_port(b) for b in cfg['failover']]


_MQ = SECTION['by_key']
# MqttLink(settings): what the agent derives from [mqtt] and [state], plus test and tuning knobs.
LINK = options.section('mqtt', [
    _o('site', 'str', None, 'site name'), _o('rig', 'str', None, 'rig name'),
    _o('host', 'str', '127.0.0.1', 'broker host'), _o('port', 'int', 1883, 'broker port', 1, 65535),
    _o('client_id', 'str', None, 'client id'), _o('username', 'str', None, 'username'),
    _o('password', 'str', None, 'password'), _o('ca_file', 'str', None, 'CA file'),
    _o('cert_file', 'str', None, 'client certificate'), _o('key_file', 'str', None, 'client key'),
    _o('tls', 'bool', False, 'TLS without a CA file'),
    _o('tls_insecure', 'bool', False, 'skip the host name check'),
    _MQ['keepalive_s'], _o('protocol', 'int', 5, 'MQTT version', choices=(5, 311)),
    _MQ['format'], _o('state_dir', 'str', None, 'outbox directory'),
    OUTBOX_MAX_BYTES, OUTBOX_FLUSH_S,
    _o('outbox_flush_bytes', 'int', 32 << 10, 'outbox flush size', 1, 1 << 30),
    _MQ['backoff_min_s'], _MQ['backoff_max_s'],
    _o('inflight_window', 'int', 100, 'replay window', 1, 65535),
    _o('firmware', 'str', None, 'firmware string in the birth message'),
    _o('model', 'str', None, 'model name in the birth message'),
    _o('service_period_s', 'float', 0.05, 'service thread period', 0.001, 10.0),
    _o('replay_wait_s', 'float', 2.0, 'replay wait after connect', 0.0, 600.0),
    _MQ['failover'],
], check=_check_link)
QOS1_KINDS = ('telemetry', 'chips', 'alarm', 'cmd/result')
SESSION_TAKEN_OVER = 142     # MQTT 5 DISCONNECT reason: another client connected with our id
SHORT_SESSION_S = 5.0        # sessions this short, repeatedly, look like an id takeover (3.1.1)
TAKEOVER_AFTER = 3           # short sessions in a row before a takeover is declared
TAKEOVER_BACKOFF_ATTEMPT = 6 # back-off step held while taken over (min_s * 2**6, capped)

log = logging.getLogger(__name__)


def parse_host_port(text):
    """'host:port' -> (host, port); ValueError naming the entry."""
    host, _, port = str(text).rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('mqtt: failover broker %r: expected host:port' % (text,))
    return host, int(port)


def check_settings(settings):
    """Strict settings: unknown keys, wrong types or bad values raise ValueError naming the key."""
    raw = {}
    for key, value in settings.items():
        if value is not None:
            raw[key] = value
    return options.build(LINK, raw)


def settings_from_config(cfg, state_dir, firmware, model_name):
    """MqttLink settings from the loaded config ([rig] names, [mqtt], [state])."""
    m = cfg['mqtt']
    host, _, port = m['broker'].rpartition(':')
    out = {'site': cfg['rig']['site'], 'rig': cfg['rig']['rig'], 'host': host, 'port': int(port),
           'format': m['format'], 'keepalive_s': m['keepalive_s'],
           'backoff_min_s': m['backoff_min_s'], 'backoff_max_s': m['backoff_max_s'],
           'state_dir': state_dir, 'outbox_max_bytes': cfg['state']['outbox_max_bytes'],
           'outbox_flush_s': cfg['state']['outbox_flush_s'], 'firmware': firmware,
           'model': model_name}
    if m['failover']:
        out['failover'] = list(m['failover'])
    if m['client_id']:
        out['client_id'] = m['client_id']
    if m['username']:
        out['username'] = m['username']
        if m['password_file']:
            try:
                with open(m['password_file']) as fh:
                    out['password'] = fh.read().strip()
            except OSError as e:
                raise options.ConfigError('mqtt.password_file: %s' % e)
    if m['tls_ca'] or m['tls_cert']:
        # A client certificate alone means TLS verified by the system CA store, never plaintext.
        out['tls'] = True
        if m['tls_ca']:
            out['ca_file'] = m['tls_ca']
        if m['tls_cert']:
            out['cert_file'] = m['tls_cert']
            out['key_file'] = m['tls_key']
    return out


class MqttLink:
    def __init__(self, settings, cmd_queue, rnd=None, session=None):
        cfg = check_settings(settings)
        self.cfg = cfg
        self.cmd_queue = cmd_queue
        self.root = topics.root(cfg['site'], cfg['rig'])
        self.status_topic = self.root + 'status'
        self.session = session or payloads.new_session()
        self.fmt = cfg['format']
        self._rnd = rnd or random.Random()
        self._outbox = Outbox(cfg['state_dir'], max_bytes=cfg['outbox_max_bytes'],
                              flush_bytes=cfg['outbox_flush_bytes'],
                              flush_interval_s=cfg['outbox_flush_s'])
        self._lock = threading.Lock()
        self._acks = collections.deque()
        self._mid_to_id = {}
        self._id_to_mid = {}
        self._replay = collections.deque()
        self._replay_needed = len(self._outbox) > 0
        self._connected = False
        self._subscribed = False
        self._connected_at = 0.0
        self._live_since_connect = False
        self._session_seq = 1
        self._attempt = 0
        self._meta = None
        self._stop = threading.Event()
        self._thread = None
        self.reconnects = 0
        self.failovers = 0
        self._broker_index = 0
        self.connects = 0
        self.cmd_dropped = 0
        self.cmd_retained = 0
        self.rejected = 0
        self.replayed = 0
        self.bad_topic = 0          # outbox records refused on replay (not one of our topics)
        self.takeovers = 0          # sessions ended by another client using our id
        self.taken_over = False
        self._short_sessions = 0
        self._logged_error = None
        self.last_error = None
        self.tls = bool(cfg['tls'] or cfg['ca_file'] or cfg['cert_file'])
        if cfg['password'] is not None and not self.tls:
            log.warning('mqtt: password sent in plaintext to %s:%d (configure TLS: mqtt.tls_ca)',
                        cfg['host'], cfg['port'])
        self.client = self._make_client()

    # --- set-up -----------------------------------------------------------------------------
    def _make_client(self):
        cfg = self.cfg
        proto = mqtt.MQTTv5 if cfg['protocol'] == 5 else mqtt.MQTTv311
        cid = self.client_id = cfg['client_id'] or 'hashpilot-%s-%s' % (cfg['site'], cfg['rig'])
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto)
        if cfg['username'] is not None:
            c.username_pw_set(cfg['username'], cfg['password'])
        if cfg['tls'] or cfg['ca_file'] or cfg['cert_file']:
            # No CA file: the system's CA store verifies the broker (never plaintext).
            c.tls_set(ca_certs=cfg['ca_file'], certfile=cfg['cert_file'], keyfile=cfg['key_file'])
            if cfg['tls_insecure']:
                c.tls_insecure_set(True)
        # replay fills at most inflight_window slots; the headroom keeps live data from queueing behind it
        c.max_inflight_messages_set(cfg['inflight_window'] + 20)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._set_will(c)
        self._set_delay(c)
        return c

    def _set_will(self, c):
        will = payloads.build_will(self.session, self._session_seq)
        c.will_set(self.status_topic, codec.encode(will, self.fmt), qos=1, retain=True)

    def _set_delay(self, c):
        lo, hi = self.cfg['backoff_min_s'], self.cfg['backoff_max_s']
        d = backoff_delay_s(self._attempt, lo, hi, self._rnd)
        if self.taken_over:   # never a quick return into a fight over the client id
            d = max(d, 0.5 * min(hi, lo * 2 ** self._attempt))
        c.reconnect_delay_set(d, d)   # paho's own doubling starts over from this jittered value

    def set_meta(self, meta_payload):
        """Retained meta (payloads.build_meta); published now if connected and on every connect."""
        data = codec.encode(meta_payload, self.fmt)
        self._meta = data
        if self._connected:
            self.client.publish(self.root + 'meta', data, qos=1, retain=True)

    def rebirth(self):
        """Publish birth and meta again (retained) now, e.g. on a `rebirth` command; False if offline."""
        if not self._connected:
            return False
        self._publish_birth(self.client)
        return True

    def _publish_birth(self, client):
        birth = payloads.build_birth(self.session, self._session_seq, self.cfg['firmware'],
                                     self.cfg['model'])
        client.publish(self.status_topic, codec.encode(birth, self.fmt), qos=1, retain=True)
        if self._meta is not None:
            client.publish(self.root + 'meta', self._meta, qos=1, retain=True)

    def start(self, service_thread=True):
        """Connect asynchronously (retrying with backoff); with service_thread=False the caller
        must call service() every ~50-200 ms from its own scheduler."""
        cfg = self.cfg
        if cfg['protocol'] == 5:
            self.client.connect_async(cfg['host'], cfg['port'], cfg['keepalive_s'], clean_start=True)
        else:
            self.client.connect_async(cfg['host'], cfg['port'], cfg['keepalive_s'])
        self.client.loop_start()
        if service_thread:
            self._thread = threading.Thread(target=self._service_loop, name='mqtt-link', daemon=True)
            self._thread.start()

    def stop(self, drain_s=2.0):
        """Graceful stop: wait up to drain_s for PUBACKs, publish offline status, flush outbox."""
        deadline = time.monotonic() + drain_s
        while self._connected and time.monotonic() < deadline:
            self.service()
            with self._lock:
                if not self._mid_to_id and not self._replay and not self._replay_needed:
                    break
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.service()
        if self._connected:
            bye = payloads.build_will(self.session, self._session_seq)
            info = self.client.publish(self.status_topic, codec.encode(bye, self.fmt), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic() + 1.0))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            try:
                self._outbox.close()
            except OSError as e:   # unflushed tail is lost, like a power cut; say so
                self.last_error = 'outbox close: %s' % e

    # --- publishing -------------------------------------------------------------------------
    def publish(self, kind, payload):
        """QoS 1 message (dict from mqtt_schema.payloads or bytes) on <root>/<kind>.

        Always stored in the outbox first; sent now when connected, else replayed (h: true)
        after the next connect. Returns the outbox id.
        """
        if kind not in QOS1_KINDS:
            raise ValueError('mqtt: cannot publish kind %r (one of %s)' % (kind, QOS1_KINDS))
        data = payload if isinstance(payload, (bytes, bytearray)) else codec.encode(payload, self.fmt)
        topic = self.root + kind
        with self._lock:
            rid = self._outbox.append(topic, data)
            if self._connected:
                self._send(rid, topic, data)
                self._live_since_connect = True
            else:
                self._replay_needed = True
            return rid

    def _send(self, rid, topic, data):
        """Hand one outbox record to paho (caller holds the lock)."""
        info = self.client.publish(topic, data, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.last_error = 'publish: %s' % mqtt.error_string(info.rc)
            self._replay_needed = True
            return False
        old = self._mid_to_id.pop(info.mid, None)
        if old is not None:           # mid reused by paho: the old one must be replayed
            self._id_to_mid.pop(old, None)
            self._replay_needed = True
        self._mid_to_id[info.mid] = rid
        self._id_to_mid[rid] = info.mid
        return True

    def service(self):
        """Apply PUBACKs, flush the outbox batch when due, replay the backlog (in order)."""
        with self._lock:
            self._log_error_change()
            while self._acks:
                mid = self._acks.popleft()
                rid = self._mid_to_id.pop(mid, None)
                if rid is not None:
                    self._id_to_mid.pop(rid, None)
                    self._outbox.ack(rid)
            self._outbox.maybe_flush()
            if not self._connected:
                return
            if not self._live_since_connect and \
                    time.monotonic() - self._connected_at < self.cfg['replay_wait_s']:
                return    # birth, meta, then live data first; the backlog follows
            if self._replay_needed:
                self._replay_needed = False
                self._replay = collections.deque(
                    [rid for rid in self._outbox.ids() if rid not in self._id_to_mid])
            window = self.cfg['inflight_window']
            while self._replay and len(self._mid_to_id) < window and self._connected:
                rid = self._replay.popleft()
                rec = self._outbox.get(rid)
                if rec is None or rid in self._id_to_mid:
                    continue
                if not self._own_topic(rec[0]):
                    # A crafted or foreign record in the state dir: never published anywhere.
                    self._outbox.ack(rid)
                    self.bad_topic += 1
                    continue
                try:
                    data = codec.mark_historical(rec[1])
                except ValueError:
                    data = rec[1]    # not ours to judge: deliver as stored
                if self._send(rid, rec[0], data):
                    self.replayed += 1

    def _own_topic(self, topic):
        return topic.startswith(self.root) and topic[len(self.root):] in QOS1_KINDS

    def _log_error_change(self):
        """Connection errors are logged here, off the paho thread, once per change."""
        err = self.last_error
        if err != self._logged_error:
            self._logged_error = err
            if err is not None and not err.startswith('disconnected: Success'):
                log.warning('mqtt %s:%d: %s', self.cfg['host'], self.cfg['port'], err)

    def _service_loop(self):
        period = self.cfg['service_period_s']
        while not self._stop.is_set():
            try:
                self.service()
            except Exception as e:   # keep the link alive; the error is visible in get_status()
                self.last_error = 'service: %s' % e
            self._stop.wait(period)

    # --- paho callbacks (paho thread: no blocking, no disk I/O) ----------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = 'connect refused: %s' % reason_code
            return
        self._publish_birth(client)
        cmd = topics.cmd_filter(self.cfg['site'], self.cfg['rig'])
        if self.cfg['protocol'] == 5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            client.subscribe(cmd, options=SubscribeOptions(qos=1, noLocal=True))
        else:
            client.subscribe(cmd, qos=1)
        if not self.taken_over:
            self._attempt = 0
        self.connects += 1
        self._connected_at = time.monotonic()
        self._live_since_connect = False
        self._connected = True
        self._replay_needed = True

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subscribed = all(not rc.is_failure for rc in reason_codes)
        if not self._subscribed:
            self.last_error = 'cmd subscription refused: %s' % (reason_codes,)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        was = self._connected
        self._connected = False
        self._subscribed = False
        if was:
            self.reconnects += 1
            self._session_seq += 1
            self._set_will(client)   # the next session's Will carries its own session_seq
            self._note_session_end(reason_code)
        else:
            self._attempt += 1
        self.last_error = 'disconnected: %s' % reason_code
        if self.taken_over:
            self.last_error += ' (client id %r taken over by another client: backing off)' % self.client_id
        else:
            self._next_broker(client)
        self._set_delay(client)

    def _note_session_end(self, reason_code):
        """MQTT 5 says so (reason 142); on 3.1.1 a run of very short sessions gives it away."""
        short = time.monotonic() - self._connected_at < SHORT_SESSION_S
        self._short_sessions = self._short_sessions + 1 if short else 0
        if getattr(reason_code, 'value', None) == SESSION_TAKEN_OVER or \
                self._short_sessions >= TAKEOVER_AFTER:
            self.takeovers += 1
            self.taken_over = True
            self._attempt = max(self._attempt, TAKEOVER_BACKOFF_ATTEMPT)
        elif not short:
            self.taken_over = False

    def _on_connect_fail(self, client, userdata):
        self._attempt += 1
        exc = sys.exc_info()[1]    # paho calls us inside its `except OSError`
        if isinstance(exc, ssl.SSLError):
            self.last_error = 'TLS handshake failed: %s' % exc
        elif exc is not None:
            self.last_error = 'connect failed: %s' % exc
        else:
            self.last_error = 'connect failed'
        self._next_broker(client)
        self._set_delay(client)

    def _next_broker(self, client):
        """With failover brokers (cluster nodes), the next attempt goes to the next one in turn."""
        brokers = self.cfg['brokers']
        if len(brokers) < 2:
            return
        self._broker_index = (self._broker_index + 1) % len(brokers)
        # paho's host/port setters refuse while its socket state is 'connection lost'; the
        # reconnect (paho's loop thread, after this callback) reads these two attributes
        client._host, client._port = brokers[self._broker_index]
        self.failovers += 1

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if reason_code.is_failure:
            self.rejected += 1   # broker refused it: retrying would not help, count and drop
        self._acks.append(mid)

    def _on_message(self, client, userdata, msg):
        prefix = self.root + 'cmd/'
        if not msg.topic.startswith(prefix):
            return
        op = msg.topic[len(prefix):]
        if op == 'result' or '/' in op:
            return
        if msg.retain:
            # A retained command would be applied again on every connect and after every
            # restart: never a command, whoever left it there.
            self.cmd_retained += 1
            return
        try:
            self.cmd_queue.put_nowait((op, bytes(msg.payload)))
        except queue.Full:
            self.cmd_dropped += 1

    # --- status -----------------------------------------------------------------------------
    def is_connected(self):
        return self._connected

    def get_status(self):
        with self._lock:
            ob = self._outbox.get_status()
            inflight = len(self._mid_to_id)
            backlog = len(self._replay)
        return {'connected': self._connected, 'subscribed': self._subscribed,
                'queued': ob['queued'], 'outbox_bytes': ob['bytes'],
                'outbox_disk_bytes': ob['disk_bytes'], 'dropped': ob['dropped'],
                'reconnects': self.reconnects, 'connects': self.connects,
                'broker': '%s:%d' % self.cfg['brokers'][self._broker_index],
                'failovers': self.failovers, 'inflight': inflight,
                'replay_backlog': backlog, 'replayed': self.replayed, 'rejected': self.rejected,
                'cmd_dropped': self.cmd_dropped, 'cmd_retained': self.cmd_retained,
                'session_seq': self._session_seq,
                'boot_id': self.session['boot_id'], 'attempt': self._attempt,
                'outbox_flushes': ob['flushes'], 'outbox_write_errors': ob['write_errors'],
                'outbox_failing': ob['failing'], 'outbox_lost': ob['lost'],
                'outbox_persistent': ob['persistent'], 'outbox_problems': ob['problems'],
                'outbox_last_error': ob['last_error'], 'bad_topic': self.bad_topic,
                'takeovers': self.takeovers, 'taken_over': self.taken_over, 'tls': self.tls,
                'last_error': self.last_error}
