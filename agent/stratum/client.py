"""Stratum V1 pools on CPython: agent/stratum/pools.PoolCore (priority, failover, fail-back,
back-off, share counts) driven by one thread per PoolManager, plus TLS pools. Plain TCP pools go
through agent/stratum/netio.py's non-blocking connection, the same code the MicroPython agent
runs; `stratum+ssl://` pools through a blocking TLS socket here (MicroPython's Unix build has no
`ssl`). Submits are sent from the caller's thread under the core's lock (no queue hop: nonce ->
share latency).

Events go to `on_event(dict)` from the pool thread (see pools.py). Passwords never appear in
status(), events or log lines.
"""

import logging
import random
import socket
import ssl
import threading
import time

from agent.stratum import netio
from agent.stratum.pools import PoolCore, PoolError, parse_url, SCHEMES   # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


class TlsConnection:
    """A blocking TLS socket with the non-blocking connection's interface (the pool thread
    may block on it; connect and handshake are bounded by timeout_s)."""

    def __init__(self, pool, timeout_s):
        host, port, _ = parse_url(pool['url'])
        s = socket.create_connection((host, port), timeout=timeout_s)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx = ssl.create_default_context(cafile=pool.get('tls_ca') or None)
            if pool.get('tls_verify', True) is False:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(s, server_hostname=host)
        except (OSError, ValueError):
            s.close()
            raise
        self.buf = b''

    def connected(self, wait_s=0.0):
        return True

    def send(self, data):
        if data:
            self.sock.sendall(data)

    def read_lines(self, wait_s=0.0):
        self.sock.settimeout(max(wait_s, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return []
        if chunk == b'':
            raise PoolError('pool closed the connection')
        self.buf += chunk
        if len(self.buf) > netio.MAX_LINE and b'\n' not in self.buf:
            raise PoolError('line longer than %d bytes' % netio.MAX_LINE)
        parts = self.buf.split(b'\n')
        self.buf = parts.pop()
        return [p for p in parts if p.strip()]

    def close(self):
        self.sock.close()


def open_connection(pool, timeout_s):
    if parse_url(pool['url'])[2]:
        return TlsConnection(pool, timeout_s)
    io = netio.open_connection(pool, timeout_s)
    try:
        io.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        io.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return io


class PoolManager(PoolCore):
    """PoolCore on its own thread (CPython agent, `hashpilot bench work`)."""

    def __init__(self, pools, on_event=None, rng=None, monotonic=time.monotonic, **kw):
        PoolCore.__init__(self, pools, on_event=on_event, rng=rng or random.Random(),
                          monotonic=monotonic, connect=open_connection,
                          lock=threading.RLock(), **kw)
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name='stratum', daemon=True)
        self._thread.start()

    def stop(self, timeout_s=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                idle_s = self.service(0.2)
            except Exception as exc:       # the pool thread must never die: drop and retry
                log.exception('stratum: unexpected error: %s', exc)
                self._drop('internal error: %s' % exc)
                idle_s = 1.0
            if idle_s:
                self._stop.wait(idle_s)
