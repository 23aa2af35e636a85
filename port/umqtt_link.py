"""Broker link on MicroPython: micropython-lib umqtt.robust (MQTT 3.1.1) with the same topics,
birth/Will, retained meta, QoS 1 and payload bytes as the CPython agent's agent/mqtt_link.py.

What umqtt cannot do, and how this link copes (docs/micropython.md):
- No background thread, no automatic keepalive: `service()` is called from the agent's loop; it
  reads commands with check_msg() and sends PINGREQ every keepalive/2.
- umqtt.robust's reconnect() retries forever (it would stall the control loop while the broker
  is away): here it gets one attempt per call (`_OneTry.delay` gives up) and the link backs off.
- QoS 1 publish waits for its PUBACK (no in-flight window, no DUP resend): a message leaves
  the flash outbox only after its PUBACK; unacknowledged ones go out again (at least once).
- MQTT 3.1.1 only: no noLocal, so the cmd/+ subscription also delivers the agent's own
  cmd/result, which the link drops. No QoS 2 (not used by the schema). No TLS in the Unix build here (ESP32 images have ssl).
- A reconnect made inside robust's publish() does not re-announce: the link notices the new
  socket and publishes birth and meta again before anything else.
"""

from umqtt import robust

from mqtt_schema import codec, payloads, topics

QOS1_KINDS = ('telemetry', 'chips', 'alarm', 'cmd/result')
INBOX_MAX = 16


class _GiveUp(OSError):
    pass


class _OneTry(robust.MQTTClient):
    """robust.MQTTClient whose reconnect() tries once: the link owns the back-off."""

    DELAY = 0
    connects = 0

    def delay(self, i):
        raise _GiveUp('broker unreachable')

    def connect(self, clean_session=True, timeout=None):
        r = robust.MQTTClient.connect(self, clean_session, self.io_timeout_s)
        self.connects += 1
        return r


class UmqttLink:
    def __init__(self, cfg, outbox, clock, session=None):
        self.cfg = cfg
        self.outbox = outbox
        self.clock = clock                  # wall seconds for keepalive and back-off
        self.root = topics.root(cfg['site'], cfg['rig'])
        self.status_topic = self.root + 'status'
        self.session = session or payloads.new_session()
        self.fmt = cfg.get('format', 'cbor')
        self.inbox = []                     # [(op, payload bytes)] for the control loop
        self.meta = None
        self._session_seq = 1
        self._connected = False
        self._seen_connects = 0
        self._next_try = 0.0
        self._backoff_s = cfg.get('backoff_min_s', 1.0)
        self._last_ping = 0.0
        self.connects = 0
        self.published = 0
        self.replayed = 0
        self.cmd_dropped = 0
        self.last_error = None
        c = _OneTry(cfg.get('client_id') or 'hashpilot-%s-%s' % (cfg['site'], cfg['rig']),
                    cfg['host'], cfg.get('port', 1883), user=cfg.get('username'),
                    password=cfg.get('password'), keepalive=int(cfg.get('keepalive_s', 30)))
        c.io_timeout_s = cfg.get('io_timeout_s', 5.0)
        c.set_callback(self._on_message)
        self.client = c
        self._set_will()

    # --- connection -------------------------------------------------------------------------
    def _set_will(self):
        will = payloads.build_will(self.session, self._session_seq)
        self.client.set_last_will(self.status_topic, codec.encode(will, self.fmt), retain=True, qos=1)

    def _announce(self):
        """Birth and meta (retained), then the command subscription: after every (re)connect."""
        c = self.client
        birth = payloads.build_birth(self.session, self._session_seq, self.cfg.get('firmware'),
                                     self.cfg.get('model'))
        c.publish(self.status_topic, codec.encode(birth, self.fmt), True, 1)
        if self.meta is not None:
            c.publish(self.root + 'meta', self.meta, True, 1)
        c.subscribe(topics.cmd_filter(self.cfg['site'], self.cfg['rig']), 1)
        self._seen_connects = c.connects

    def _lost(self, e):
        if self._connected:
            self._session_seq += 1
            self._set_will()                # the next session's Will carries its session_seq
        self._connected = False
        self.last_error = str(e) or repr(e)
        now = self.clock()
        self._next_try = now + self._backoff_s
        self._backoff_s = min(self.cfg.get('backoff_max_s', 30.0), self._backoff_s * 2)
        try:
            self.client.sock.close()
        except Exception:
            pass

    def _try_connect(self):
        try:
            self.client.connect(False)      # persistent session: commands queued while away
            self._announce()
        except (OSError, IndexError, AssertionError) as e:   # umqtt asserts on odd replies
            self._lost(e)
            return False
        self._connected = True
        self.connects += 1
        self._backoff_s = self.cfg.get('backoff_min_s', 1.0)
        self._last_ping = self.clock()
        return True

    def is_connected(self):
        return self._connected

    # --- publishing -------------------------------------------------------------------------
    def set_meta(self, meta_payload):
        self.meta = codec.encode(meta_payload, self.fmt)
        if self._connected:
            self._send(self.root + 'meta', self.meta, retain=True)

    def rebirth(self):
        if not self._connected:
            return False
        return self._guard(self._announce)

    def publish(self, kind, payload):
        """QoS 1 on <root>/<kind>: sent now when connected with no backlog, else to the outbox."""
        if kind not in QOS1_KINDS:
            raise ValueError('mqtt: cannot publish kind %r (one of %s)' % (kind, QOS1_KINDS))
        data = payload if isinstance(payload, (bytes, bytearray)) else codec.encode(payload, self.fmt)
        topic = self.root + kind
        if self._connected and not len(self.outbox) and self._send(topic, data):
            self.published += 1
            return True
        self.outbox.append(topic, data)     # in order behind the backlog
        return False

    def _send(self, topic, data, retain=False):
        return self._guard(self.client.publish, topic, data, retain, 1)

    def _guard(self, fn, *args):
        try:
            fn(*args)
        except (OSError, IndexError, AssertionError) as e:
            self._lost(e)
            return False
        if self.client.connects != self._seen_connects:   # robust reconnected inside fn
            return self._guard(self._announce)
        return True

    # --- the loop's turn ----------------------------------------------------------------------
    def service(self, max_replay=4):
        """Connect when due, read commands, keep alive, replay a few backlog messages."""
        now = self.clock()
        if not self._connected:
            if now < self._next_try or not self._try_connect():
                self.outbox.maybe_flush()
                return
        try:
            for _ in range(8):
                if self.client.check_msg(1) is None:
                    break
            self.client.sock.settimeout(self.client.io_timeout_s)   # check_msg left it blocking
            if now - self._last_ping >= self.cfg.get('keepalive_s', 30) / 2.0:
                self.client.ping()
                self._last_ping = now
        except (OSError, IndexError, AssertionError) as e:
            self._lost(e)
            return
        for _ in range(max_replay):
            rec = self.outbox.peek()
            if rec is None:
                break
            try:
                data = codec.mark_historical(rec[1])
            except ValueError:
                data = rec[1]               # not ours to judge: deliver as stored
            if not self._send(rec[0], data):
                break
            self.outbox.pop()
            self.replayed += 1
        self.outbox.maybe_flush()

    def _on_message(self, topic, msg):
        # Called inside umqtt's read: only queue, never act here.
        parts = topics.split(topic.decode() if isinstance(topic, bytes) else topic)
        # MQTT 3.1.1 has no noLocal: cmd/+ also brings back our own cmd/result. Drop it.
        if parts is None or not parts[2].startswith('cmd/') or parts[2] == 'cmd/result':
            return
        if len(self.inbox) >= INBOX_MAX:
            self.cmd_dropped += 1
            return
        self.inbox.append((parts[2][4:], bytes(msg)))

    def stop(self):
        if self._connected:
            bye = payloads.build_will(self.session, self._session_seq)
            self._send(self.status_topic, codec.encode(bye, self.fmt), retain=True)
            try:
                self.client.disconnect()
            except OSError:
                pass
        self._connected = False
        self.outbox.close()

    def get_status(self):
        st = self.outbox.get_status()
        return {'connected': self._connected, 'connects': self.connects,
                'published': self.published, 'replayed': self.replayed,
                'queued': st['queued'], 'dropped': st['dropped'], 'cmd_dropped': self.cmd_dropped,
                'last_error': self.last_error}
