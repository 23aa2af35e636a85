"""Stratum V1 pools: one connection at a time in priority order, failover, fail-back, back-off
with jitter, tcp and tls, keep-alive. One thread per PoolManager reads the socket; submits are
sent from the caller's thread under a lock (no queue hop: nonce -> share latency).

Events go to `on_event(dict)` from the pool thread; they carry the connection's generation
`gen`, so work built for a pool that has since gone is recognised as stale. Passwords never
appear in status(), events or log lines.
"""

import logging
import random
import socket
import ssl
import threading
import time

from agent.stratum import protocol

log = logging.getLogger(__name__)

MAX_BAD_LINES = 1000

SCHEMES = {'stratum+tcp': False, 'tcp': False, 'stratum+ssl': True, 'stratum+tls': True,
           'ssl': True, 'tls': True}


class PoolError(RuntimeError):
    pass


def parse_url(url):
    """'stratum+tcp://host:port' -> (host, port, tls). PoolError with the reason otherwise."""
    if '://' not in url:
        raise PoolError('pool url %r needs a scheme (%s)' % (url, ', '.join(sorted(SCHEMES))))
    scheme, rest = url.split('://', 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise PoolError('pool url %r: unknown scheme %r (known: %s)'
                        % (url, scheme, ', '.join(sorted(SCHEMES))))
    rest = rest.rstrip('/')
    if '@' in rest:
        # user:password@host would end up in logs and telemetry (the url is published)
        raise PoolError('pool url with credentials (user@ or user:password@): give them as '
                        'user and password instead')
    if rest.startswith('['):                       # [ipv6]:port
        host, _, port = rest[1:].partition(']:')
    else:
        host, _, port = rest.rpartition(':')
    try:
        port = int(port)
    except ValueError:
        raise PoolError('pool url %r: no port' % url)
    if not host or not 0 < port < 65536:
        raise PoolError('pool url %r: bad host or port' % url)
    return host, port, SCHEMES[scheme]


class Connection:
    """One socket and its protocol session."""

    def __init__(self, pool, worker, timeout_s, version_mask, suggest):
        self.pool = pool
        self.host, self.port, self.tls = parse_url(pool['url'])
        self.session = protocol.Session(worker, pool.get('password', ''), version_mask, suggest)
        self.timeout_s = timeout_s
        self.sock = None
        self.buf = b''
        # Guards the session and its outbox: the Stratum thread answers the pool while the control
        # thread submits; an outbox flushed by both would send a message twice.
        self.lock = threading.RLock()
        self.last_rx = time.monotonic()

    def open(self):
        s = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.pool.get('tls_ca') or None)
            if self.pool.get('tls_verify', True) is False:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=self.host)
        self.sock = s
        with self.lock:
            self.session.opening()
            self.send_outbox()

    def send_outbox(self):
        with self.lock:
            data = b''.join(protocol.encode(m) for m in self.session.outbox)
            del self.session.outbox[:]
            if data:
                self.sock.sendall(data)

    def handle(self, msg):
        with self.lock:
            return self.session.handle(msg)

    def read_messages(self, wait_s):
        """Messages that arrived within wait_s; PoolError when the pool closed the socket."""
        self.sock.settimeout(wait_s)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            chunk = None
        if chunk == b'':
            raise PoolError('pool closed the connection')
        out = []
        if chunk:
            self.last_rx = time.monotonic()
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise PoolError('line longer than 1 MiB')
            *lines, self.buf = self.buf.split(b'\n')
            for line in lines:
                if line.strip():
                    out.append(line)
        return out

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


def _pool_stats(pool, index):
    return {'index': index, 'url': pool['url'], 'user': pool['user'], 'state': 'idle',
            'connected': False, 'difficulty': None, 'accepted': 0, 'rejected': 0, 'stale': 0,
            'duplicate': 0, 'submitted': 0, 'last_share_t': None, 'failures': 0,
            'next_try_t': 0.0, 'version_mask': 0, 'extranonce2_size': None, 'last_error': None,
            'connected_since_t': None, 'down_since_t': None, 'bad_lines': 0}


class PoolManager:
    def __init__(self, pools, on_event=None, rng=None, timeout_s=10.0, idle_timeout_s=180.0,
                 backoff_base_s=1.0, backoff_max_s=60.0, failback_s=60.0, version_mask=None,
                 suggest_difficulty=None, monotonic=time.monotonic):
        if not pools:
            raise PoolError('no pools configured')
        for p in pools:
            parse_url(p['url'])
        self.pools = [dict(p) for p in pools]
        self.on_event = on_event or (lambda ev: None)
        self.rng = rng or random.Random()
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.failback_s = failback_s
        self.version_mask = protocol.DEFAULT_MASK if version_mask is None else version_mask
        self.suggest = suggest_difficulty
        self.now = monotonic
        self.stats = [_pool_stats(p, i) for i, p in enumerate(self.pools)]
        self.active = None          # index of the pool we mine on
        self.conn = None
        self.gen = 0
        self.clean_epoch = 0        # +1 on every clean_jobs notify (and new pool session)
        self._pending = {}          # submit id -> pool index
        self._stop = threading.Event()
        self._thread = None
        self._last_probe_t = 0.0
        self.preferred = None       # switch_to(n): this pool first, then priority order
        self._lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name='stratum', daemon=True)
        self._thread.start()

    def stop(self, timeout_s=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.conn is not None:
            self.conn.close()

    def submit(self, params, gen):
        """Send mining.submit (params after the worker name) if `gen` is still the live pool.
        Returns 'sent', 'stale' (pool changed) or 'down'."""
        with self._lock:
            conn = self.conn
            if conn is None or self.active is None:
                return 'down'
            st = self.stats[self.active]
            if gen != self.gen:
                st['stale'] += 1
                return 'stale'
            try:
                with conn.lock:
                    msg = conn.session.request('mining.submit',
                                               [conn.session.worker] + list(params))
                    self._pending.pop(str(msg['id'] - protocol.PENDING_MAX), None)
                    self._pending[str(msg['id'])] = self.active
                    st['submitted'] += 1
                    conn.send_outbox()
            except OSError as exc:
                log.warning('pool %d: submit failed: %s', self.active, exc)
                return 'down'
            return 'sent'

    def switch_to(self, index):
        """Mine on pool `index` first (cgminer's switchpool): the pool thread moves over at its
        next turn if that pool answers; the others stay as backups in priority order."""
        if not 0 <= index < len(self.pools):
            raise ValueError('pool %d does not exist (0..%d)' % (index, len(self.pools) - 1))
        self.preferred = index
        self.stats[index]['next_try_t'] = 0.0
        self._last_probe_t = -1e9

    def _order(self):
        idx = list(range(len(self.pools)))
        if self.preferred is not None:
            idx.remove(self.preferred)
            idx.insert(0, self.preferred)
        return idx

    def status(self):
        """Plain dict of every pool (for telemetry, meta and the cgminer API); no secrets."""
        now = self.now()
        pools = []
        for st in self.stats:
            d = {k: st[k] for k in ('index', 'url', 'user', 'state', 'connected', 'difficulty',
                                    'accepted', 'rejected', 'stale', 'duplicate', 'submitted',
                                    'failures', 'version_mask', 'extranonce2_size', 'last_error',
                                    'bad_lines')}
            d['last_share_age_s'] = None if st['last_share_t'] is None else now - st['last_share_t']
            d['down_for_s'] = None if st['down_since_t'] is None else now - st['down_since_t']
            pools.append(d)
        return {'active': self.active, 'gen': self.gen, 'pools': pools, 'preferred': self.preferred,
                'all_down': self.active is None and all(not p['connected'] for p in pools)}

    # -- thread --------------------------------------------------------------------------------
    def _run(self):
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:       # the pool thread must never die: drop and retry
                log.exception('stratum: unexpected error: %s', exc)
                self._drop('internal error: %s' % exc)
                self._stop.wait(1.0)

    def _turn(self):
        if self.conn is None:
            self._connect_best(self._order())
            if self.conn is None:
                self._stop.wait(self._wait_next_try())
            return
        try:
            self._serve_once()
        except (OSError, PoolError, protocol.ProtocolError, ValueError) as exc:
            self._drop(str(exc))
            return
        order = self._order()
        if self.active is not None and self.active != order[0] \
                and self.now() - self._last_probe_t >= self.failback_s:
            self._last_probe_t = self.now()
            self._connect_best(order[:order.index(self.active)])   # fail back to a better pool

    def _wait_next_try(self):
        soonest = min(st['next_try_t'] for st in self.stats)
        return min(1.0, max(0.05, soonest - self.now()))

    def _connect_best(self, candidates):
        for i in candidates:
            st = self.stats[i]
            if st['next_try_t'] > self.now() or self._stop.is_set():
                continue
            conn = Connection(self.pools[i], self.pools[i]['user'], self.timeout_s,
                              self.version_mask, self.suggest)
            early = []
            try:
                st['state'] = 'connecting'
                conn.open()
                early = self._handshake(conn, i)
            except (OSError, PoolError, protocol.ProtocolError, ValueError) as exc:
                conn.close()
                self._failed(i, str(exc))
                continue
            self._switch_to(i, conn, early)
            return True
        return False

    def _handshake(self, conn, i):
        """Read until subscribed and authorized; keep what came early (notify, difficulty)."""
        deadline = self.now() + self.timeout_s
        early = []
        s = conn.session
        while not (s.ready() and s.authorized):
            if self.now() > deadline:
                raise PoolError('no subscribe/authorize answer within %.0f s' % self.timeout_s)
            for line in conn.read_messages(0.2):
                try:
                    msg = protocol.decode(line)
                except protocol.ProtocolError:
                    self.stats[i]['bad_lines'] += 1
                    continue                # a junk line: skipped
                try:
                    ev = conn.handle(msg)
                except protocol.ProtocolError:
                    raise                   # subscribe refused, bad extranonce: next pool
                except ValueError:
                    continue                # a malformed early notify: skipped
                if ev['event'] == 'authorized' and not ev['ok']:
                    raise PoolError('authorize refused: %s' % (ev.get('error') or 'false'))
                if ev['event'] in ('job', 'difficulty'):
                    early.append(ev)
            conn.send_outbox()
        return early

    def _switch_to(self, i, conn, early):
        old = self.active
        with self._lock:
            if self.conn is not None:
                self.conn.close()
                if old is not None:
                    self._mark_down(old, 'left for a better pool', failed=False)
            self.conn = conn
            self.active = i
            self.gen += 1
            self._pending = {}
            st = self.stats[i]
            st.update(state='up', connected=True, failures=0, last_error=None,
                      connected_since_t=self.now(), down_since_t=None,
                      version_mask=conn.session.version_mask,
                      extranonce2_size=conn.session.en2_size,
                      difficulty=conn.session.difficulty)
        log.info('pool %d up: %s as %s (version mask %08x)', i, self.pools[i]['url'],
                 self.pools[i]['user'], conn.session.version_mask)
        self.on_event({'event': 'pool', 'pool': i, 'gen': self.gen, 'from': old})
        job = conn.session.job
        if job is not None:
            self._emit_job(conn, job, True)

    def _ctx(self, conn):
        s = conn.session
        return {'pool': self.active, 'gen': self.gen, 'extranonce1': s.extranonce1,
                'en2_size': s.en2_size, 'mask': s.version_mask, 'difficulty': s.difficulty}

    def _emit_job(self, conn, job, clean):
        if clean:
            # Read by the control thread without waiting for this event: shares for the old
            # jobs stop at once even while the control thread is still busy (a long poll).
            self.clean_epoch += 1
        ev = {'event': 'job', 'job': job, 'clean': clean, 't_rx_wall': conn.last_rx,
              'epoch': self.clean_epoch}
        ev.update(self._ctx(conn))
        self.on_event(ev)

    def _serve_once(self):
        conn = self.conn
        if time.monotonic() - conn.last_rx > self.idle_timeout_s:
            raise PoolError('nothing from the pool for %.0f s' % self.idle_timeout_s)
        for line in conn.read_messages(0.2):
            try:
                msg = protocol.decode(line)
            except protocol.ProtocolError as exc:
                # junk from the pool: counted and skipped; only a flood of it drops the pool
                st = self.stats[self.active]
                st['bad_lines'] += 1
                if st['bad_lines'] % 100 == 1:
                    log.warning('pool %d: %s (%d bad lines)', self.active, exc, st['bad_lines'])
                if st['bad_lines'] > MAX_BAD_LINES and st['bad_lines'] > st['accepted']:
                    raise PoolError('too many malformed lines from the pool')
                continue
            self._handle(conn, msg)
        conn.send_outbox()

    def _handle(self, conn, msg):
        try:
            ev = conn.handle(msg)
        except (protocol.ProtocolError, ValueError) as exc:
            log.warning('pool %d: bad message: %s', self.active, exc)
            return
        kind = ev['event']
        st = self.stats[self.active]
        if kind == 'job':
            self._emit_job(conn, ev['job'], ev['clean'])
        elif kind == 'difficulty':
            st['difficulty'] = ev['difficulty']
            self.on_event(dict(self._ctx(conn), event='difficulty'))
        elif kind in ('extranonce', 'version_mask'):
            st['version_mask'] = conn.session.version_mask
            st['extranonce2_size'] = conn.session.en2_size
            if conn.session.job is not None:        # new extranonce: old work is invalid
                self._emit_job(conn, conn.session.job, True)
        elif kind == 'share':
            self._share(ev)
        elif kind == 'reconnect':
            self._reconnect(ev)

    def _share(self, ev):
        i = self._pending.pop(ev['id'], self.active)
        st = self.stats[i]
        if ev['accepted']:
            st['accepted'] += 1
            st['last_share_t'] = self.now()
        elif ev.get('stale'):
            st['stale'] += 1
        elif ev.get('duplicate'):
            st['duplicate'] += 1
        else:
            st['rejected'] += 1
            log.info('pool %d rejected a share: %s', i, ev.get('reason'))
        self.on_event(dict(ev, pool=i))

    def _reconnect(self, ev):
        # Only the same host may be named (a pool cannot send us elsewhere); the port may change.
        i = self.active
        host = ev.get('host')
        pool = self.pools[i]
        cur_host, cur_port, tls = parse_url(pool['url'])
        if host and host != cur_host:
            log.warning('pool %d: client.reconnect to another host %r refused', i, host)
            return
        port = ev.get('port') or cur_port
        scheme = pool['url'].split('://', 1)[0]
        pool['url'] = '%s://%s:%s' % (scheme, cur_host, int(port))
        self._drop('client.reconnect', failed=False, wait_s=float(ev.get('wait_s') or 0))

    def _drop(self, why, failed=True, wait_s=0.0):
        i = self.active
        with self._lock:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.active = None
            self.gen += 1
        if i is not None:
            self._mark_down(i, why, failed)
            if wait_s:
                self.stats[i]['next_try_t'] = self.now() + wait_s
        self.on_event({'event': 'pool', 'pool': None, 'gen': self.gen, 'from': i})

    def _mark_down(self, i, why, failed=True):
        st = self.stats[i]
        st.update(state='down' if failed else 'idle', connected=False, last_error=why)
        if failed and st['down_since_t'] is None:
            st['down_since_t'] = self.now()
        log.warning('pool %d (%s) down: %s', i, self.pools[i]['url'], why)

    def _failed(self, i, why):
        st = self.stats[i]
        st['failures'] += 1
        delay = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(st['failures'] - 1, 16)))
        st['next_try_t'] = self.now() + delay * self.rng.uniform(0.5, 1.5)
        self._mark_down(i, why)
