"""The RPC's TCP server: one thread, one selector, bounded everything.

cgminer semantics: one request per connection, one reply, then close. Limits: at most
`max_connections` open (more get a short 'busy' status and are closed), a request is at most
`max_request_bytes`, a client has `timeout_s` to send it and to take the reply. Write commands
are handed to the agent (`submit`) and answered when the control thread reports back through a
queue and a wake-up socket: the control thread never waits on a client, and the server never
waits on the control thread.
"""

import collections
import errno
import ipaddress
import logging
import selectors
import socket
import threading
import time

from agent.api import handler, web, wire

log = logging.getLogger('hashpilot.api')

RECV_BYTES = 4096
ACCEPTS_PER_WAKE = 256         # accept in bursts so a flood cannot starve the open connections
BACKLOG = 1024                 # connections the kernel queues for us (capped by net.core.somaxconn)
WRITE_WAIT_S = 10.0            # a write command's answer from the control thread (a board
                               # re-init after a power loss holds it ~1 s per board)


def parse_listen(text):
    """'0.0.0.0:4028' / '[::]:4028' -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(':')
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError('expected host:port, got %r' % text)
    host = host.strip('[]')
    ipaddress.ip_address(host)   # numeric addresses only: no resolver at start-up
    return host, int(port)


def _pad_v4(addr):
    # cgminer pads '10.0.0' to '10.0.0.0' and treats '0' as '0.0.0.0'
    if ':' in addr:
        return addr
    parts = addr.split('.')
    return '.'.join(parts + ['0'] * (4 - len(parts)))


def parse_allow(entries):
    """cgminer api-allow entries -> [(access, network)]. 'W:net' may write, 'R:net' or 'net'
    may read. First match wins, like cgminer."""
    out = []
    for e in entries:
        access = 'read'
        body = e.strip()
        if len(body) > 2 and body[1] == ':' and body[0].upper() in 'RW' and not body[2:3] == ':':
            access = 'write' if body[0].upper() == 'W' else 'read'
            body = body[2:]
        addr, _, prefix = body.partition('/')
        addr = _pad_v4(addr)
        if not prefix:
            prefix = '128' if ':' in addr else '32'
        try:
            net = ipaddress.ip_network('%s/%s' % (addr, prefix), strict=False)
        except ValueError as e2:
            raise ValueError('api allow entry %r: %s' % (e, e2))
        out.append((access, net))
    return out


def access_for(allow, peer_ip):
    try:
        ip = ipaddress.ip_address(peer_ip)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for access, net in allow:
        if ip.version == net.version and ip in net:
            return access
    return None


class _Conn:
    __slots__ = ('kind', 'sock', 'peer', 'access', 'buf', 'out', 'deadline', 'phase', 'job')

    def __init__(self, kind, sock, peer, access, deadline):
        self.kind = kind        # 'rpc' or 'web'
        self.sock = sock
        self.peer = peer
        self.access = access
        self.buf = bytearray()
        self.out = b''
        self.deadline = deadline
        self.phase = 'read'     # read -> (wait) -> write
        self.job = None


def json_complete(buf):
    """True when buf holds a balanced {...} (braces outside strings): a JSON request has
    arrived whole, valid or not, so the client is not kept waiting for a timeout."""
    depth = 0
    in_str = esc = False
    for b in buf:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b == 0x7B:
            depth += 1
        elif b == 0x7D:
            depth -= 1
            if depth <= 0:
                return True
    return False


class ApiServer:
    def __init__(self, listen, get_state, submit, allow=('0/0',), writes=False,
                 max_connections=32, max_request_bytes=4096, timeout_s=2.0, web_listen='',
                 host_info=None):
        self.host, self.port = parse_listen(listen) if isinstance(listen, str) else listen
        self.host_info = host_info or {}
        self.get_state = get_state
        self.submit = submit
        self.allow = parse_allow(allow)
        self.writes = writes
        self.max_connections = max_connections
        self.max_request_bytes = max_request_bytes
        self.timeout_s = timeout_s
        self.conns = {}
        self._done = collections.deque()   # (fileno, job, ok, error) from the control thread
        self._stop = threading.Event()
        self._thread = None
        self.counters = {'accepted': 0, 'busy': 0, 'ignored': 0, 'replies': 0, 'errors': 0,
                         'timeouts': 0, 'writes': 0}
        self.sel = selectors.DefaultSelector()
        self.listeners = []
        self.sock = self._listen('rpc', self.host, self.port)
        self.port = self.sock.getsockname()[1]
        self.web_port = None
        if web_listen:
            host, port = parse_listen(web_listen)
            self.web_port = self._listen('web', host, port).getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, 'wake')

    def _listen(self, kind, host, port):
        fam = socket.AF_INET6 if ':' in host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            for other in self.listeners:
                other.close()
            raise
        self.listeners.append(sock)
        self.sel.register(sock, selectors.EVENT_READ, ('listen', kind))
        return sock

    # -- life cycle ---------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name='api', daemon=True)
        self._thread.start()
        return self

    def close(self, grace_s=1.0):
        """Stop accepting; give replies in flight up to grace_s to go out; close everything."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(grace_s + 2.0)

    # -- called from the control thread ---------------------------------------------------------
    def _wake(self):
        try:
            self._wake_w.send(b'\x01')
        except (BlockingIOError, OSError):
            pass   # a wake-up is already pending, or we are closing

    def _job_done(self, fd, job, ok, error):
        self._done.append((fd, job, ok, error))
        self._wake()

    # -- the loop (api thread) --------------------------------------------------------------------
    def _run(self):
        stop_at = None
        try:
            while True:
                if self._stop.is_set():
                    if stop_at is None:
                        stop_at = time.monotonic() + 1.0
                        self._stop_listening()
                    if not any(c.phase != 'read' for c in self.conns.values()) \
                            or time.monotonic() > stop_at:
                        break
                now = time.monotonic()
                wait = 0.5
                for c in self.conns.values():
                    wait = min(wait, max(0.0, c.deadline - now))
                for key, ev in self.sel.select(wait):
                    try:
                        self._event(key, ev)
                    except Exception:   # one bad connection must not end the service
                        log.exception('api: event on %r failed', key.data)
                        if isinstance(key.data, _Conn):
                            self._drop(key.data)
                self._expire(time.monotonic())
        except Exception:
            log.exception('api server loop failed')
        finally:
            self._close_all()

    def _stop_listening(self):
        for sock in self.listeners:
            try:
                self.sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        for c in list(self.conns.values()):
            if c.phase == 'read':
                self._drop(c)

    def _event(self, key, ev):
        tag = key.data
        if isinstance(tag, tuple):
            self._accept(key.fileobj, tag[1])
        elif tag == 'wake':
            try:
                while self._wake_r.recv(512):
                    pass
            except (BlockingIOError, OSError):
                pass
            self._finish_jobs()
        else:
            c = tag
            if ev & selectors.EVENT_READ and c.phase == 'read':
                self._read(c)
            elif ev & selectors.EVENT_WRITE and c.phase == 'write':
                self._write(c)

    def _accept(self, lsock, kind):
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning('api: cannot accept: %s', e)
                    return
                raise
            sock.setblocking(False)
            access = access_for(self.allow, addr[0])
            if access is None:   # not in the allow list: closed without a word, like cgminer
                self.counters['ignored'] += 1
                sock.close()
                continue
            if len(self.conns) >= self.max_connections:
                self.counters['busy'] += 1
                self._send_and_close(sock, self._error_bytes(kind, 'busy', True, self.max_connections))
                continue
            self.counters['accepted'] += 1
            c = _Conn(kind, sock, addr[0], access, time.monotonic() + self.timeout_s)
            self.conns[sock.fileno()] = c
            self.sel.register(sock, selectors.EVENT_READ, c)

    HTTP_ERRORS = {'busy': 503, 'toolarge': 413, 'timeout': 408}

    def _error_bytes(self, kind, key, is_json, *args):
        if kind == 'web':
            code, sev, msg = wire.CODES[key]
            return web.http_error(self.HTTP_ERRORS.get(key, 400), msg % args if args else msg)
        return self._status_bytes(key, is_json, *args)

    def _status_bytes(self, key, is_json, *args):
        state = self.get_state()
        return wire.error_reply(key, is_json, state['when_s'], state['identity']['description'],
                                *args)

    @staticmethod
    def _send_and_close(sock, data):
        try:
            sock.send(data)   # small: fits the socket buffer; if not, the client loses it
        except OSError:
            pass
        sock.close()

    def _read(self, c):
        try:
            data = c.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._drop(c)
        if not data:   # the client closed its side: answer what it sent, if anything
            if not c.buf:
                return self._drop(c)
            return self._process(c)
        c.buf += data
        if len(c.buf) > self.max_request_bytes:
            self.counters['errors'] += 1
            return self._reply(c, self._error_bytes(c.kind, 'toolarge', c.buf[:1] == b'{',
                                                    self.max_request_bytes))
        if c.kind == 'web':
            if web.request_complete(c.buf):
                self._process(c)
            return   # wait for the end of the headers
        head = c.buf.lstrip()
        if head[:1] == b'{' and not json_complete(head):
            return   # wait for the rest of the JSON object (bounded by size and timeout)
        self._process(c)

    def _process(self, c):
        is_json = c.buf.lstrip()[:1] == b'{'
        state = self.get_state()
        if c.kind == 'web':
            try:
                out = web.respond(c.buf, state, self.host_info)
            except Exception:
                log.exception('api: web reply failed')
                out = web.http_error(400, 'bad request')
            return self._reply(c, out)
        try:
            req = wire.parse_request(bytes(c.buf))
            c.buf = bytearray()
            kind, val = handler.respond(req, state, c.access, self.writes)
        except Exception:   # a bug in a view must not take the server down
            log.exception('api: reply to %r failed', bytes(c.buf[:80]))
            self.counters['errors'] += 1
            return self._reply(c, self._status_bytes('invcmd', is_json))
        if 'error' in req:
            self.counters['errors'] += 1
        if kind == 'reply':
            return self._reply(c, val)
        c.phase = 'wait'
        c.job = val
        c.deadline = time.monotonic() + WRITE_WAIT_S
        self.sel.unregister(c.sock)   # nothing to read while the control thread decides
        self.counters['writes'] += 1
        fd = c.sock.fileno()
        log.info('api: %s from %s', val['cmd'], c.peer)
        try:
            self.submit(val['op'], val['args'], 'api:%s' % c.peer,
                        lambda ok, error, fd=fd, job=val: self._job_done(fd, job, ok, error))
        except Exception as e:   # e.g. the inbox is full
            self._reply(c, handler.write_reply(val, False, str(e), state))

    def _finish_jobs(self):
        while self._done:
            fd, job, ok, error = self._done.popleft()
            c = self.conns.get(fd)
            if c is None or c.job is not job:
                continue   # the client gave up (timed out) before the answer came
            self._reply(c, handler.write_reply(job, ok, error, self.get_state()))

    def _reply(self, c, data):
        c.phase = 'write'
        c.out = memoryview(data)
        c.deadline = time.monotonic() + self.timeout_s
        self.counters['replies'] += 1
        try:
            try:
                self.sel.modify(c.sock, selectors.EVENT_WRITE, c)
            except KeyError:   # unregistered while waiting for a write job
                self.sel.register(c.sock, selectors.EVENT_WRITE, c)
        except (ValueError, OSError):
            return self._drop(c)
        self._write(c)

    def _write(self, c):
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._drop(c)
        c.out = c.out[n:]
        if not len(c.out):
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._drop(c)

    def _expire(self, now):
        for c in [c for c in self.conns.values() if c.deadline <= now]:
            self.counters['timeouts'] += 1
            if c.phase == 'read':
                self._reply(c, self._error_bytes(c.kind, 'timeout', c.buf.lstrip()[:1] == b'{',
                                                 self.timeout_s))
            elif c.phase == 'wait':
                self._reply(c, self._status_bytes('pending', c.job['json'], c.job['cmd'],
                                                  WRITE_WAIT_S))
            else:
                self._drop(c)   # a client that does not read its reply

    def _drop(self, c):
        fd = c.sock.fileno()
        if fd >= 0:
            self.conns.pop(fd, None)
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        else:
            for k, v in list(self.conns.items()):
                if v is c:
                    del self.conns[k]
        c.sock.close()

    def _close_all(self):
        for c in list(self.conns.values()):
            self._drop(c)
        for s in self.listeners + [self._wake_r, self._wake_w]:
            try:
                s.close()
            except OSError:
                pass
        self.sel.close()

    def get_status(self):
        return dict(self.counters, open=len(self.conns))
