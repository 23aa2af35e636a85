"""A lean asyncio MQTT client (3.1.1 / 5) for the load generator and the ingest consumer.

One `Client` is one TCP connection. QoS 1 publishes stay in `unacked` until their PUBACK (the
owner replays them after a reconnect, like the agent's outbox); received QoS 1 messages are
acknowledged after `on_message` returns, so a consumer that dies mid-message gets it again.
Callbacks run on the event loop: they must not block.
"""

import asyncio
import collections
import time

from fleet import mqttwire as W


class MqttError(Exception):
    pass


class Client(asyncio.Protocol):
    def __init__(self, client_id, version=5, keepalive_s=60, clean=True, will=None,
                 username=None, password=None, session_expiry_s=None, receive_max=None,
                 on_message=None, on_ack=None, on_lost=None):
        self.client_id = client_id
        self.version = version
        self.keepalive_s = keepalive_s
        self.clean = clean
        self.will = will
        self.username = username
        self.password = password
        self.session_expiry_s = session_expiry_s
        self.receive_max = receive_max
        self.on_message = on_message
        self.on_ack = on_ack
        self.on_lost = on_lost
        self.transport = None
        self.connected = False
        self.session_present = False
        self.unacked = collections.OrderedDict()   # pid -> (topic, payload, retain)
        self._splitter = W.Splitter()
        self._next_pid = 0
        self._connack = None
        self._suback = {}
        self._ping = None
        self._last_tx = 0.0
        self._gone = None
        self.manual_ack = False      # True: PUBACKs wait in ack_pending until send_acks()
        self.ack_pending = []
        self.rx_pid = None           # packet id of the QoS 1 message on_message is handling

    # --- connection -------------------------------------------------------------------------
    async def connect(self, host, port, timeout_s=10.0, local_addr=None):
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        self._splitter = W.Splitter()
        await asyncio.wait_for(loop.create_connection(lambda: self, host, port,
                                                      local_addr=local_addr), timeout_s)
        self.transport.write(W.connect(self.client_id, self.version, self.clean, self.keepalive_s,
                                       self.username, self.password, self.will,
                                       self.session_expiry_s, self.receive_max))
        try:
            present, code = await asyncio.wait_for(self._connack, timeout_s)
        except (asyncio.TimeoutError, MqttError):
            self.close()
            raise
        if code != 0:
            self.close()
            raise MqttError('connection refused, reason code %d' % code)
        self.session_present = present
        self.connected = True
        self._last_tx = time.monotonic()
        if self.keepalive_s:
            self._ping = loop.call_later(self.keepalive_s / 2.0, self._keepalive)
        return present

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        was = self.connected
        self.connected = False
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(exc)
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(MqttError('connection closed before CONNACK'))
        for fut in self._suback.values():
            if not fut.done():
                fut.set_exception(MqttError('connection closed'))
        self._suback.clear()
        if was and self.on_lost is not None:
            self.on_lost(self, exc)

    def close(self):
        if self.transport is not None:
            self.transport.close()

    def disconnect(self):
        """Clean DISCONNECT (no Will), then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(W.DISCONNECT_BYTES)
        self.close()

    def abort(self):
        """Drop the TCP connection without DISCONNECT: the broker publishes the Will."""
        if self.transport is not None:
            self.transport.abort()

    def _keepalive(self):
        if not self.connected:
            return
        now = time.monotonic()
        if now - self._last_tx >= self.keepalive_s / 2.0:
            self.transport.write(W.PINGREQ_BYTES)
            self._last_tx = now
        self._ping = asyncio.get_running_loop().call_later(self.keepalive_s / 2.0, self._keepalive)

    # --- sending ----------------------------------------------------------------------------
    def _pid(self):
        for _ in range(65535):
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self.unacked:
                return self._next_pid
        raise MqttError('no free packet id')

    def publish(self, topic, payload, qos=1, retain=False):
        """Send now; QoS 1 is kept in `unacked` until its PUBACK. Returns the packet id (0 for QoS 0)."""
        pid = self._pid() if qos else 0
        if qos:
            self.unacked[pid] = (topic, payload, retain)
        if self.connected:
            self.transport.write(W.publish(topic, payload, qos, pid, retain, False, self.version))
            self._last_tx = time.monotonic()
        return pid

    def resend_unacked(self, transform=None):
        """After a reconnect: everything without PUBACK again, DUP set, oldest first;
        transform(payload) -> payload re-marks it (the agent flags its replays historical)."""
        write = self.transport.write
        for pid, (topic, payload, retain) in self.unacked.items():
            if transform is not None and not retain:
                payload = transform(payload)
                self.unacked[pid] = (topic, payload, retain)
            write(W.publish(topic, payload, 1, pid, retain, True, self.version))
        return len(self.unacked)

    async def subscribe(self, filters, timeout_s=10.0):
        """filters [(filter, qos)] -> granted codes (>= 0x80 = refused)."""
        pid = self._pid()
        fut = asyncio.get_running_loop().create_future()
        self._suback[pid] = fut
        self.transport.write(W.subscribe(pid, filters, self.version))
        return await asyncio.wait_for(fut, timeout_s)

    async def hold(self, filters, ready_file=None):
        """Subscribe (a refused filter raises MqttError), create ready_file, then return only
        when the connection is lost."""
        self._gone = asyncio.get_running_loop().create_future()
        codes = await self.subscribe(filters)
        if any(code >= 0x80 for code in codes):
            raise MqttError('subscription refused: %s' % codes)
        if ready_file:
            open(ready_file, 'w').close()
        if self.connected:
            await self._gone

    # --- receiving --------------------------------------------------------------------------
    def data_received(self, data):
        packets = self._splitter.feed(data)
        for ptype, flags, body in packets:
            if ptype == W.PUBLISH:
                self._on_publish(flags, body)
            elif ptype == W.PUBACK:
                pid = W.parse_pid(body)
                if self.unacked.pop(pid, None) is not None and self.on_ack is not None:
                    self.on_ack(self, pid)
            elif ptype == W.CONNACK:
                if self._connack is not None and not self._connack.done():
                    try:
                        self._connack.set_result(W.parse_connack(body))
                    except ValueError as e:
                        self._connack.set_exception(MqttError(str(e)))
            elif ptype == W.SUBACK:
                self._on_suback(body)
            elif ptype == W.DISCONNECT:
                self.close()
        if self._splitter.error:
            self.close()

    def _on_suback(self, body):
        pid = W.parse_pid(body)
        fut = self._suback.pop(pid, None)
        if fut is None or fut.done():
            return
        pos = 2
        if self.version == 5:   # skip properties
            plen, mult = 0, 1
            while True:
                b = body[pos]
                pos += 1
                plen += (b & 0x7f) * mult
                mult <<= 7
                if not b & 0x80:
                    break
            pos += plen
        fut.set_result(list(body[pos:]))

    def _on_publish(self, flags, body):
        try:
            topic, payload, qos, pid, retain, dup = W.parse_publish(flags, body, self.version)
        except (ValueError, IndexError, UnicodeDecodeError):
            self.close()
            return
        self.rx_pid = pid if qos == 1 else None      # for on_message, with manual_ack
        if self.on_message is not None:
            self.on_message(topic, payload, retain, dup)
        if qos == 1:
            if self.manual_ack:
                if self.ack_pending is not None:    # None: on_message keeps rx_pid itself
                    self.ack_pending.append(pid)
            else:
                self.transport.write(W.puback(pid))

    def send_acks(self, pids):
        """PUBACKs for messages the owner has made durable (in receive order)."""
        if self.connected and pids:
            self.transport.write(b''.join([W.puback(p) for p in pids]))
