"""Stratum V1 pools without threads: priority order, failover, fail-back, back-off with jitter,
share counts. Pure logic (MicroPython-safe): the sockets are behind a connection factory
(agent/stratum/netio.py's non-blocking TCP on both interpreters; client.py adds TLS on CPython).

    core = PoolCore(pools, on_event, connect=netio.open_connection)
    core.service(wait_s)       # one turn: connect / handshake / read / answer; never blocks longer
    core.submit(params, gen)   # 'sent', 'stale' or 'down'

The MicroPython agent calls `service(0)` from its one loop; client.PoolManager calls it from its
Stratum thread with `lock` set (submits come from the control thread). Events go to
`on_event(dict)`; they carry the connection's generation `gen`, so work built for a pool that has
since gone is recognised as stale. Passwords never appear in status(), events or log lines.
"""

import logging
import random

from agent.stratum import protocol
from hal import parallel

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
    if rest.startswith('[') and ']:' in rest:       # [ipv6]:port
        host, port = rest[1:].split(']:', 1)
    elif ':' in rest:
        host, port = rest.rsplit(':', 1)
    else:
        host, port = rest, ''
    try:
        port = int(port)
    except ValueError:
        raise PoolError('pool url %r: no port' % url)
    if not host or not 0 < port < 65536:
        raise PoolError('pool url %r: bad host or port' % url)
    return host, port, SCHEMES[scheme]


class Channel:
    """One pool connection (the factory's socket object) and its protocol session."""

    def __init__(self, index, io, session, now_s):
        self.index = index
        self.io = io
        self.session = session
        self.last_rx = now_s
        self.opened = False          # TCP (and TLS) up, opening requests sent
        self.early = []              # job / difficulty events that came before authorize

    def send_outbox(self):
        s = self.session
        if s.outbox:
            data = b''.join([protocol.encode(m) for m in s.outbox])
            del s.outbox[:]
            self.io.send(data)
        else:
            self.io.send(b'')        # a non-blocking socket sends what is still queued

    def close(self):
        try:
            self.io.close()
        except OSError:
            pass


def _pool_stats(pool, index):
    return {'index': index, 'url': pool['url'], 'user': pool['user'], 'state': 'idle',
            'connected': False, 'difficulty': None, 'accepted': 0, 'rejected': 0, 'stale': 0,
            'duplicate': 0, 'submitted': 0, 'last_share_t': None, 'failures': 0,
            'next_try_t': 0.0, 'version_mask': 0, 'extranonce2_size': None, 'last_error': None,
            'connected_since_t': None, 'down_since_t': None, 'bad_lines': 0}


STATUS_KEYS = ('index', 'url', 'user', 'state', 'connected', 'difficulty', 'accepted', 'rejected',
               'stale', 'duplicate', 'submitted', 'failures', 'version_mask', 'extranonce2_size',
               'last_error', 'bad_lines')
NET_ERRORS = (OSError, PoolError, protocol.ProtocolError, ValueError)


class PoolCore:
    def __init__(self, pools, on_event=None, rng=None, timeout_s=10.0, idle_timeout_s=180.0,
                 backoff_base_s=1.0, backoff_max_s=60.0, failback_s=60.0, version_mask=None,
                 suggest_difficulty=None, monotonic=None, connect=None, lock=None):
        if not pools:
            raise PoolError('no pools configured')
        for p in pools:
            parse_url(p['url'])
        if monotonic is None:
            from hal.clock import Clock
            monotonic = Clock().wall
        self.pools = [dict(p) for p in pools]
        self.on_event = on_event or (lambda ev: None)
        self.rng = rng or random
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.failback_s = failback_s
        self.version_mask = protocol.DEFAULT_MASK if version_mask is None else version_mask
        self.suggest = suggest_difficulty
        self.now = monotonic
        self.connect = connect          # connect(pool dict, timeout_s) -> socket object
        self.lock = lock or parallel.NoLock()
        self.stats = [_pool_stats(p, i) for i, p in enumerate(self.pools)]
        self.active = None          # index of the pool we mine on
        self.conn = None            # its Channel
        self.trying = None          # Channel being opened (first pool, failover or fail-back)
        self.try_deadline = 0.0
        self.candidates = []        # the rest of this round, in order
        self.gen = 0
        self.clean_epoch = 0        # +1 on every clean_jobs notify (and new pool session)
        self._pending = {}          # submit id -> pool index
        self._last_probe_t = 0.0
        self.preferred = None       # switch_to(n): this pool first, then priority order

    # -- public ------------------------------------------------------------------------------
    def submit(self, params, gen):
        """Send mining.submit (params after the worker name) if `gen` is still the live pool.
        Returns 'sent', 'stale' (pool changed) or 'down'."""
        with self.lock:
            conn = self.conn
            if conn is None or self.active is None:
                return 'down'
            st = self.stats[self.active]
            if gen != self.gen:
                st['stale'] += 1
                return 'stale'
            try:
                msg = conn.session.request('mining.submit', [conn.session.worker] + list(params))
                self._pending.pop(str(msg['id'] - protocol.PENDING_MAX), None)
                self._pending[str(msg['id'])] = self.active
                st['submitted'] += 1
                conn.send_outbox()
            except NET_ERRORS as exc:
                log.warning('pool %d: submit failed: %s', self.active, exc)
                return 'down'
            return 'sent'

    def switch_to(self, index):
        """Mine on pool `index` first (cgminer's switchpool): the pool side moves over at its
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
            d = {}
            for k in STATUS_KEYS:
                d[k] = st[k]
            d['last_share_age_s'] = None if st['last_share_t'] is None else now - st['last_share_t']
            d['down_for_s'] = None if st['down_since_t'] is None else now - st['down_since_t']
            pools.append(d)
        return {'active': self.active, 'gen': self.gen, 'pools': pools, 'preferred': self.preferred,
                'all_down': self.active is None and all(not p['connected'] for p in pools)}

    def close(self):
        with self.lock:
            for ch in (self.trying, self.conn):
                if ch is not None:
                    ch.close()
            self.trying = self.conn = None

    # -- one turn -----------------------------------------------------------------------------
    def service(self, wait_s=0.0):
        """One turn. Waits on the sockets at most wait_s. Returns how long the caller may sleep
        before the next turn when there is no socket to wait on (0.0 otherwise)."""
        if self.trying is None:
            self._next_candidate()
        if self.trying is not None:
            self._step_trying(wait_s if self.conn is None else 0.0)
        if self.conn is not None:
            try:
                self._serve_once(wait_s)
            except NET_ERRORS as exc:
                self._drop(str(exc))
            return 0.0
        return 0.0 if self.trying is not None else self._wait_next_try()

    def _wait_next_try(self):
        soonest = min([st['next_try_t'] for st in self.stats])
        return min(1.0, max(0.05, soonest - self.now()))

    def _next_candidate(self):
        """Start the next connection of this round: the best pools when none is up, the
        better ones every failback_s while on a backup."""
        order = self._order()
        if not self.candidates:
            if self.conn is None:
                self.candidates = order
            elif self.active != order[0] and self.now() - self._last_probe_t >= self.failback_s:
                self._last_probe_t = self.now()
                self.candidates = order[:order.index(self.active)]   # fail back to a better pool
        while self.candidates:
            i = self.candidates.pop(0)
            if self.stats[i]['next_try_t'] > self.now() or i == self.active:
                continue
            self._open(i)
            if self.trying is not None:
                return

    def _open(self, i):
        st = self.stats[i]
        pool = self.pools[i]
        st['state'] = 'connecting'
        try:
            session = protocol.Session(pool['user'], pool.get('password', ''), self.version_mask,
                                       self.suggest)
            io = self.connect(pool, self.timeout_s)
        except NET_ERRORS as exc:
            self._failed(i, str(exc))
            return
        self.trying = Channel(i, io, session, self.now())
        self.try_deadline = self.now() + self.timeout_s

    def _step_trying(self, wait_s):
        ch = self.trying
        try:
            if self.now() > self.try_deadline:
                raise PoolError('no connection or subscribe/authorize answer within %.0f s'
                                % self.timeout_s)
            if not ch.opened:
                if not ch.io.connected(wait_s):
                    return
                ch.opened = True
                with self.lock:
                    ch.session.opening()
                    ch.send_outbox()
                wait_s = 0.0
            if self._handshake(ch, ch.io.read_lines(wait_s)):
                self.trying = None
                self._switch_to(ch)
        except NET_ERRORS as exc:
            self.trying = None
            ch.close()
            self._failed(ch.index, str(exc))

    def _handshake(self, ch, lines):
        """Until subscribed and authorized; keeps what came early (notify, difficulty)."""
        s = ch.session
        for line in lines:
            ch.last_rx = self.now()
            try:
                msg = protocol.decode(line)
            except protocol.ProtocolError:
                self.stats[ch.index]['bad_lines'] += 1
                continue                # a junk line: skipped
            with self.lock:
                try:
                    ev = s.handle(msg)
                except protocol.ProtocolError:
                    raise               # subscribe refused, bad extranonce: next pool
                except ValueError:
                    continue            # a malformed early notify: skipped
            if ev['event'] == 'authorized' and not ev['ok']:
                raise PoolError('authorize refused: %s' % (ev.get('error') or 'false'))
            if ev['event'] in ('job', 'difficulty'):
                ch.early.append(ev)
        with self.lock:
            ch.send_outbox()
        return s.ready() and s.authorized

    def _switch_to(self, ch):
        old = self.active
        i = ch.index
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                if old is not None:
                    self._mark_down(old, 'left for a better pool', failed=False)
            self.conn = ch
            self.active = i
            self.gen += 1
            self._pending = {}
            self.candidates = []
            st = self.stats[i]
            s = ch.session
            st['state'] = 'up'
            st['connected'] = True
            st['failures'] = 0
            st['last_error'] = None
            st['connected_since_t'] = self.now()
            st['down_since_t'] = None
            st['version_mask'] = s.version_mask
            st['extranonce2_size'] = s.en2_size
            st['difficulty'] = s.difficulty
        log.info('pool %d up: %s as %s (version mask %08x)', i, self.pools[i]['url'],
                 self.pools[i]['user'], ch.session.version_mask)
        self.on_event({'event': 'pool', 'pool': i, 'gen': self.gen, 'from': old})
        if ch.session.job is not None:
            self._emit_job(ch, ch.session.job, True)

    def _ctx(self, ch):
        s = ch.session
        return {'pool': self.active, 'gen': self.gen, 'extranonce1': s.extranonce1,
                'en2_size': s.en2_size, 'mask': s.version_mask, 'difficulty': s.difficulty}

    def _emit_job(self, ch, job, clean):
        if clean:
            # Read by the control side without waiting for this event: shares for the old
            # jobs stop at once even while the control thread is still busy (a long poll).
            self.clean_epoch += 1
        ev = self._ctx(ch)
        ev['event'] = 'job'
        ev['job'] = job
        ev['clean'] = clean
        ev['t_rx_wall'] = ch.last_rx
        ev['epoch'] = self.clean_epoch
        self.on_event(ev)

    def _serve_once(self, wait_s):
        ch = self.conn
        if self.now() - ch.last_rx > self.idle_timeout_s:
            raise PoolError('nothing from the pool for %.0f s' % self.idle_timeout_s)
        for line in ch.io.read_lines(wait_s):
            ch.last_rx = self.now()
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
            self._handle(ch, msg)
            if self.conn is not ch:
                return                  # client.reconnect dropped it
        with self.lock:
            ch.send_outbox()

    def _handle(self, ch, msg):
        try:
            with self.lock:
                ev = ch.session.handle(msg)
        except (protocol.ProtocolError, ValueError) as exc:
            log.warning('pool %d: bad message: %s', self.active, exc)
            return
        kind = ev['event']
        st = self.stats[self.active]
        if kind == 'job':
            self._emit_job(ch, ev['job'], ev['clean'])
        elif kind == 'difficulty':
            st['difficulty'] = ev['difficulty']
            out = self._ctx(ch)
            out['event'] = 'difficulty'
            self.on_event(out)
        elif kind in ('extranonce', 'version_mask'):
            st['version_mask'] = ch.session.version_mask
            st['extranonce2_size'] = ch.session.en2_size
            if ch.session.job is not None:        # new extranonce: old work is invalid
                self._emit_job(ch, ch.session.job, True)
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
        out = dict(ev)
        out['pool'] = i
        self.on_event(out)

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
        with self.lock:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.active = None
            self.gen += 1
            self.candidates = []
        if i is not None:
            self._mark_down(i, why, failed)
            if wait_s:
                self.stats[i]['next_try_t'] = self.now() + wait_s
        self.on_event({'event': 'pool', 'pool': None, 'gen': self.gen, 'from': i})

    def _mark_down(self, i, why, failed=True):
        st = self.stats[i]
        st['state'] = 'down' if failed else 'idle'
        st['connected'] = False
        st['last_error'] = why
        if failed and st['down_since_t'] is None:
            st['down_since_t'] = self.now()
        log.warning('pool %d (%s) down: %s', i, self.pools[i]['url'], why)

    def _failed(self, i, why):
        st = self.stats[i]
        st['failures'] += 1
        delay = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(st['failures'] - 1, 16)))
        st['next_try_t'] = self.now() + delay * self.rng.uniform(0.5, 1.5)
        self._mark_down(i, why)
