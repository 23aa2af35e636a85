"""Non-blocking TCP for the Stratum client on both interpreters (CPython and MicroPython's
`socket` + `select.poll`): connect without blocking, line framing, a bounded send queue.

    io = open_connection({'url': 'stratum+tcp://host:3333', ...}, timeout_s)
    io.connected(wait_s)   # True once the TCP connection is up (PoolError if refused)
    io.send(data)          # queued; sent as the socket takes it
    io.read_lines(wait_s)  # complete lines (bytes); PoolError when the pool closed or overflowed

Name resolution (getaddrinfo) still blocks on both interpreters; an IP address does not.
TLS pools need CPython (agent/stratum/client.py): this module refuses them.
"""

import errno
import select
import socket

from agent.stratum.pools import PoolError, parse_url

MAX_LINE = 64 << 10          # a longer line: the pool is broken (notify with 16 branches ~ 2 KB)
MAX_QUEUE = 64 << 10         # unsent bytes before the connection is given up
RECV = 512                 # small reads: a 256 KB heap fragments, 4 KB blocks get scarce
RECV_TURNS = 32            # at most 16 KB read per turn
_AGAIN = (errno.EAGAIN, getattr(errno, 'EWOULDBLOCK', errno.EAGAIN))
_PENDING = _AGAIN + (errno.EINPROGRESS, getattr(errno, 'EALREADY', errno.EINPROGRESS))
_BAD = select.POLLERR | select.POLLHUP


def _errno(exc):
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else getattr(exc, 'errno', None)


class NbConnection:
    def __init__(self, host, port):
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        self.sock = socket.socket(addr[0], socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLOUT)
        self.up = False
        self.buf = b''
        self.queue = b''
        self.closed = False
        try:
            self.sock.connect(addr[-1])
        except OSError as exc:
            if _errno(exc) not in _PENDING:
                self.close()
                raise

    def _poll(self, wait_s):
        ev = 0
        for item in self.poller.poll(max(0, int(wait_s * 1000))):
            ev |= item[1]
        return ev

    def connected(self, wait_s=0.0):
        if self.up:
            return True
        ev = self._poll(wait_s)
        if ev & _BAD:
            raise PoolError('connection refused or reset')
        if ev & select.POLLOUT:
            self.up = True
            self.poller.modify(self.sock, select.POLLIN)
        return self.up

    def send(self, data):
        self.queue += data
        if len(self.queue) > MAX_QUEUE:
            raise PoolError('pool does not take our data (%d bytes queued)' % len(self.queue))
        while self.queue and self.up:
            try:
                n = self.sock.send(self.queue)
            except OSError as exc:
                if _errno(exc) in _AGAIN:
                    return
                raise
            if not n:
                return
            self.queue = self.queue[n:]

    def read_lines(self, wait_s=0.0):
        ev = self._poll(wait_s)
        if not ev & (select.POLLIN | _BAD):
            return []
        for _ in range(RECV_TURNS):
            try:
                chunk = self.sock.recv(RECV)
            except OSError as exc:
                if _errno(exc) in _AGAIN:
                    break
                raise
            if not chunk:
                raise PoolError('pool closed the connection')
            self.buf += chunk
            if len(chunk) < RECV:
                break
        if b'\n' not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise PoolError('line longer than %d bytes' % MAX_LINE)
            return []
        parts = self.buf.split(b'\n')
        self.buf = parts.pop()
        if len(self.buf) > MAX_LINE:
            raise PoolError('line longer than %d bytes' % MAX_LINE)
        return [p for p in parts if p.strip()]

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.poller.unregister(self.sock)
            except (OSError, KeyError, ValueError):
                pass
            self.sock.close()


def open_connection(pool, timeout_s=10.0):
    """The factory PoolCore takes: plain TCP pools; TLS needs the CPython client."""
    host, port, tls = parse_url(pool['url'])
    if tls:
        raise PoolError('TLS pools are not supported by this client (%s)' % pool['url'])
    return NbConnection(host, port)
