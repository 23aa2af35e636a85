"""A Stratum V1 test pool on 127.0.0.1: real jobs (coinbase with extranonces, merkle branches,
version mask), set_difficulty, clean_jobs, client.reconnect, and every submitted share verified
by SHA-256d against the connection's difficulty. For tests and `hashpilot bench work`.

Counts per pool: accepted, invalid (hash above target or malformed), stale (job gone),
duplicate; `kill()` drops every client and stops listening (a dead pool), `revive()` listens
again on the same port.
"""

import json
import os
import socket
import threading
import time

from hal.work import jobs

COINB1_HEAD = bytes.fromhex('02000000010000000000000000000000000000000000000000000000000000000000'
                            '000000ffffffff')
COINB2_TAIL = bytes.fromhex('ffffffff0100f2052a010000001976a914000000000000000000000000000000000000'
                            '000088ac00000000')


class TestPool:
    __test__ = False     # not a pytest class

    def __init__(self, port=0, difficulty=1.0, version_mask=0x1FFFE000, en2_size=4,
                 branches=4, password=None, quirks=(), keep_jobs=8, tls=None):
        self.difficulty = difficulty
        self.version_mask = version_mask
        self.en2_size = en2_size
        self.n_branches = branches
        self.password = password
        self.quirks = set(quirks)
        self.keep_jobs = keep_jobs
        self.tls_ctx = None
        if tls:                      # (certfile, keyfile)
            import ssl
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(tls[0], tls[1])
        self.lock = threading.Lock()
        self.jobs = {}
        self.job_order = []
        self.clients = []
        self.counts = {'accepted': 0, 'invalid': 0, 'stale': 0, 'duplicate': 0,
                       'unauthorized': 0, 'connections': 0}
        self.shares = []          # (worker, difficulty) of accepted shares
        self.seen = set()
        self._n_job = 0
        self._n_en1 = 0
        self._stop = threading.Event()
        self.port = port
        self.srv = None
        self._hold = None          # the port kept bound while the pool is dead
        self._listen()
        self.new_job(clean=True, broadcast=False)

    # -- life --------------------------------------------------------------------------------
    def _listen(self):
        self._release_port()
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(('127.0.0.1', self.port))
        srv.listen(16)
        self.port = srv.getsockname()[1]
        self.srv = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('stratum+ssl' if self.tls_ctx else 'stratum+tcp', self.port)

    def kill(self):
        """The pool dies: listening socket and every client connection closed. The port stays
        bound (not listening: connects are refused) until revive() or close(), so that no other
        process's outgoing connection takes it as its ephemeral port meanwhile (on a busy host
        that made revive() fail with EADDRINUSE)."""
        srv, self.srv = self.srv, None
        if srv is not None:
            try:
                srv.shutdown(socket.SHUT_RDWR)     # wakes the thread blocked in accept()
            except OSError:
                pass
            srv.close()
            if not self._stop.is_set():
                hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    hold.bind(('127.0.0.1', self.port))
                    self._hold = hold
                except OSError:
                    hold.close()
        with self.lock:
            clients, self.clients = self.clients, []
        for c in clients:
            c['alive'] = False
            try:
                c['sock'].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c['sock'].close()

    def _release_port(self):
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.close()

    def revive(self):
        if self.srv is None:
            self._listen()

    def close(self):
        self._stop.set()
        self.kill()
        self._release_port()

    # -- jobs --------------------------------------------------------------------------------
    def new_job(self, clean=False, broadcast=True):
        with self.lock:
            self._n_job += 1
            jid = '%x' % (0x5000 + self._n_job)
            height = (840000 + self._n_job).to_bytes(3, 'little')
            script = bytes([3]) + height + b'/hashpilot-test/'
            job = {'job_id': jid, 'prev': os.urandom(32),
                   'coinb1': COINB1_HEAD + bytes([len(script) + 4 + self.en2_size]) + script,
                   'coinb2': COINB2_TAIL,
                   'branches': [os.urandom(32) for _ in range(self.n_branches)],
                   'version': 0x20000000, 'nbits': 0x17023a04, 'ntime': int(time.time()),
                   'clean': clean}
            if clean:
                self.jobs = {}
                self.job_order = []
            self.jobs[jid] = job
            self.job_order.append(jid)
            while len(self.job_order) > self.keep_jobs:
                self.jobs.pop(self.job_order.pop(0), None)
            clients = list(self.clients)
        if broadcast:
            for c in clients:
                self._send(c, self._notify(job))
        return job

    def _notify(self, job):
        return {'id': None, 'method': 'mining.notify', 'params': [
            job['job_id'], jobs.tohex(jobs.swap_words(job['prev'])), jobs.tohex(job['coinb1']),
            jobs.tohex(job['coinb2']), [jobs.tohex(b) for b in job['branches']],
            '%08x' % job['version'], '%08x' % job['nbits'], '%08x' % job['ntime'], job['clean']]}

    def set_difficulty(self, d):
        self.difficulty = d
        for c in list(self.clients):
            c['difficulty'] = d
            self._send(c, {'id': None, 'method': 'mining.set_difficulty', 'params': [d]})

    def send_reconnect(self, wait_s=0):
        for c in list(self.clients):
            self._send(c, {'id': None, 'method': 'client.reconnect',
                           'params': ['127.0.0.1', self.port, wait_s]})

    # -- connections -------------------------------------------------------------------------
    def _accept(self, srv):
        while not self._stop.is_set():
            try:
                sock, _ = srv.accept()
            except OSError:
                return
            if self.tls_ctx is not None:
                try:
                    sock.settimeout(5)
                    sock = self.tls_ctx.wrap_socket(sock, server_side=True)
                    sock.settimeout(None)
                except OSError:
                    sock.close()
                    continue
            with self.lock:
                self._n_en1 += 1
                c = {'sock': sock, 'en1': (0xA0000000 + self._n_en1).to_bytes(4, 'big'),
                     'difficulty': self.difficulty, 'mask': 0, 'worker': None, 'alive': True,
                     'wlock': threading.Lock()}
                self.clients.append(c)
                self.counts['connections'] += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _send(self, c, msg):
        if not c['alive']:
            return
        try:
            with c['wlock']:
                c['sock'].sendall((json.dumps(msg) + '\n').encode())
        except OSError:
            c['alive'] = False

    def _serve(self, c):
        buf = b''
        while c['alive'] and not self._stop.is_set():
            try:
                chunk = c['sock'].recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b'\n')
            for line in lines:
                if line.strip():
                    self._request(c, json.loads(line))
        c['alive'] = False
        with self.lock:
            if c in self.clients:
                self.clients.remove(c)

    def _request(self, c, msg):
        method, params, mid = msg.get('method'), msg.get('params') or [], msg.get('id')
        if 'string_ids' in self.quirks and mid is not None:
            mid = str(mid)
        if method == 'mining.configure':
            want = int(params[1].get('version-rolling.mask', '0'), 16)
            c['mask'] = want & self.version_mask
            self._send(c, {'id': mid, 'error': None, 'result': {
                'version-rolling': True, 'version-rolling.mask': '%08x' % c['mask']}})
        elif method == 'mining.subscribe':
            if 'difficulty_before_subscribe' in self.quirks:
                self._send(c, {'id': None, 'method': 'mining.set_difficulty',
                               'params': [c['difficulty']]})
            self._send(c, {'id': mid, 'error': None, 'result': [
                [['mining.set_difficulty', '1'], ['mining.notify', '1']],
                jobs.tohex(c['en1']), self.en2_size]})
        elif method == 'mining.authorize':
            ok = self.password is None or (len(params) > 1 and params[1] == self.password)
            if not ok:
                self.counts['unauthorized'] += 1
            if ok and 'notify_before_authorize' in self.quirks:
                self._start_mining(c)
            self._send(c, {'id': mid, 'error': None if ok else [24, 'unauthorized', None],
                           'result': ok})
            if ok:
                c['worker'] = params[0]
                if 'notify_before_authorize' not in self.quirks:
                    self._start_mining(c)
        elif method == 'mining.suggest_difficulty':
            self._send(c, {'id': mid, 'error': None, 'result': True})
        elif method == 'mining.submit':
            err = self.check_share(c, params)
            self._send(c, {'id': mid, 'result': err is None, 'error': err})
        else:
            self._send(c, {'id': mid, 'result': None, 'error': [20, 'unknown method', None]})

    def _start_mining(self, c):
        if 'junk_lines' in self.quirks:       # a pool (or a proxy) sending malformed lines
            with c['wlock']:
                c['sock'].sendall(b'{"id": 5, "result": tru\n\xff\xfe garbage\n[1, 2]\n')
            self._send(c, {'id': None, 'method': 'mining.notify', 'params': ['x']})
        self._send(c, {'id': None, 'method': 'mining.set_difficulty', 'params': [c['difficulty']]})
        with self.lock:
            job = self.jobs[self.job_order[-1]]
        self._send(c, self._notify(dict(job, clean=True)))

    # -- verification ------------------------------------------------------------------------
    def check_share(self, c, params):
        """None when the share is good; a Stratum error triple otherwise (and counted)."""
        if len(params) < 5 or (c['mask'] and len(params) < 6):
            return self._count('invalid', [20, 'bad params', None])
        worker, jid, en2_hex, ntime_hex, nonce_hex = params[:5]
        with self.lock:
            job = self.jobs.get(jid)
        if job is None:
            return self._count('stale', [21, 'job not found', None])
        try:
            en2 = bytes.fromhex(en2_hex)
            ntime = int(ntime_hex, 16)
            nonce = int(nonce_hex, 16)
            vbits = int(params[5], 16) if len(params) > 5 else 0
        except ValueError:
            return self._count('invalid', [20, 'bad hex', None])
        if len(en2) != self.en2_size or ntime != job['ntime'] or vbits & ~c['mask']:
            return self._count('invalid', [20, 'bad extranonce2, ntime or version bits', None])
        key = (jid, c['en1'], en2, nonce, vbits)
        if key in self.seen:
            return self._count('duplicate', [22, 'duplicate share', None])
        work = jobs.build_work(job, c['en1'], en2)
        version = (job['version'] & ~c['mask']) | (vbits & c['mask'])
        h = jobs.sha256d(jobs.header(work, version, nonce.to_bytes(4, 'little')))
        if jobs.hash_value(h) > jobs.target_of(c['difficulty']):
            return self._count('invalid', [23, 'low difficulty share', None])
        self.seen.add(key)
        with self.lock:
            self.counts['accepted'] += 1
            self.shares.append((worker, jobs.difficulty(h)))
        return None

    def _count(self, what, err):
        with self.lock:
            self.counts[what] += 1
        return err


def main(argv=None):
    """`hashpilot pool`: run the test pool on 127.0.0.1 until SIGTERM/SIGINT."""
    import argparse
    import signal
    ap = argparse.ArgumentParser(prog='hashpilot pool', description='Stratum V1 test pool '
                                 '(127.0.0.1 only): real jobs, every share verified by SHA-256d')
    ap.add_argument('--port', type=int, default=0, help='TCP port (0 = any free port)')
    ap.add_argument('--difficulty', type=float, default=1.0)
    ap.add_argument('--clean-every-s', type=float, default=30.0,
                    help='new block (clean_jobs) period; 0 = never')
    ap.add_argument('--job-every-s', type=float, default=10.0,
                    help='new job without clean_jobs in between; 0 = never')
    ap.add_argument('--password', help='accept only this password')
    ap.add_argument('--status-file', help='write counts here as JSON once a second')
    args = ap.parse_args(argv)
    if args.difficulty <= 0:
        ap.error('--difficulty must be > 0')
    pool = TestPool(port=args.port, difficulty=args.difficulty, password=args.password)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print(json.dumps({'url': pool.url, 'port': pool.port}), flush=True)
    last_clean = last_job = time.monotonic()
    while not stop.wait(0.2):
        now = time.monotonic()
        if args.clean_every_s and now - last_clean >= args.clean_every_s:
            pool.new_job(clean=True)
            last_clean = last_job = now
        elif args.job_every_s and now - last_job >= args.job_every_s:
            pool.new_job(clean=False)
            last_job = now
        if args.status_file:
            _write_status(args.status_file, pool)
    if args.status_file:
        _write_status(args.status_file, pool)
    pool.close()
    return 0


def _write_status(path, pool):
    tmp = path + '.tmp'
    with pool.lock:
        counts = dict(pool.counts)
    with open(tmp, 'w') as f:
        json.dump(counts, f)
    os.replace(tmp, path)


if __name__ == '__main__':
    raise SystemExit(main())
