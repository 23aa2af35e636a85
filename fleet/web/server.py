"""`hashpilot fleet serve --broker H:P --listen 127.0.0.1:8080`: the web dashboard.

Pages: `/` fleet table with site totals, charts and the alarm log; `/rig/<site>/<rig>` per-board
per-chip heat maps in chain order, board table, charts and the rig's alarms. Both update live
over Server-Sent Events (`/events/...`). `/metrics` is the Prometheus exposition. Read-only
unless an operator logs in (`--users FILE`); commands from the page are published on the rig's
validated `cmd/<op>` topic and their `cmd/result` shows on the page.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fleet import metrics
from fleet import state as fstate
from fleet.web import auth
from fleet.web import pages

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
STATIC_TYPES = {'.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
                '.png': 'image/png'}
# Operations the page may send; the agent validates every argument again (docs/mqtt-schema.md).
PAGE_OPS = ('set_power_target', 'set_fan', 'identify', 'reset_safety', 'autotune', 'rebirth')
MAX_BODY = 8192
COOKIE = 'hp_session'


def _clean(x):
    """JSON-safe copy: NaN/inf -> None (browsers reject them)."""
    if isinstance(x, float):
        return x if x == x and x not in (float('inf'), float('-inf')) else None
    if isinstance(x, dict):
        return dict((str(k), _clean(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def dumps(obj):
    return json.dumps(_clean(obj), separators=(',', ':'))


class Dashboard:
    """What the handler needs: state, MQTT client (commands), sessions, metrics registry."""

    def __init__(self, state, client=None, sessions=None, chip_metrics=False, refresh_s=1.0):
        self.state = state
        self.client = client
        self.sessions = sessions or auth.Sessions({})
        self.registry = metrics.registry_for(state, chip_metrics)
        self.refresh_s = refresh_s
        self.stop = threading.Event()

    def fleet_view(self, q):
        site = q.get('site') or None
        text = q.get('q') or None
        sort = q.get('sort') or 'key'
        if sort not in fstate.SORT_KEYS:
            sort = 'key'
        rev = q.get('rev') in ('1', 'true')
        offset = _int(q.get('offset'), 0, 0, 10 ** 7)
        limit = _int(q.get('limit'), 200, 1, 1000)
        rows = self.state.rows(site=site, text=text, sort=sort, reverse=rev)
        totals = self.state.site_totals(rows=self.state.rows(site=site) if text else rows)
        since = time.time() - 6 * 3600
        hist = dict((s, self.state.site_history(s, since)) for s in totals)
        return {'version': self.state.version, 'now_ms': int(time.time() * 1000), 'total': len(rows),
                'offset': offset, 'rows': rows[offset:offset + limit], 'totals': totals,
                'history': hist, 'alarms': self.state.alarms(50, site)}

    def rig_view(self, key):
        d = self.state.rig_detail(key)
        if d is not None:
            d['now_ms'] = int(time.time() * 1000)
        return d

    def sampler(self):
        """Site totals into the site history (charts) every SITE_STEP_S."""
        while not self.stop.wait(min(fstate.SITE_STEP_S, 2.0)):
            self.state.sample_sites()


def _int(text, default, lo, hi):
    try:
        return max(lo, min(hi, int(text)))
    except (TypeError, ValueError):
        return default


class Handler(BaseHTTPRequestHandler):
    server_version = 'hashpilot-fleet'
    protocol_version = 'HTTP/1.1'
    dash = None   # set on the subclass made by make_server

    def log_message(self, fmt, *args):   # quiet: one line per request is noise at farm scale
        pass

    # -- helpers --------------------------------------------------------------------------------
    def _send(self, code, body, ctype='application/json', headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _json(self, code, obj):
        self._send(code, dumps(obj))

    def _session(self):
        c = cookies.SimpleCookie(self.headers.get('Cookie', ''))
        token = c[COOKIE].value if COOKIE in c else None
        return token, self.dash.sessions.get(token)

    def _query(self):
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, dict(urllib.parse.parse_qsl(parsed.query))

    def _body(self):
        n = _int(self.headers.get('Content-Length'), -1, -1, 10 ** 9)
        if n < 0 or n > MAX_BODY:
            return None
        return self.rfile.read(n)

    # -- GET ------------------------------------------------------------------------------------
    def do_GET(self):
        path, q = self._query()
        _, sess = self._session()
        user = sess['user'] if sess else None
        parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')]
        if path == '/':
            return self._send(200, pages.fleet_page(user, sess), 'text/html; charset=utf-8')
        if path == '/alarms':
            return self._send(200, pages.alarms_page(user, sess), 'text/html; charset=utf-8')
        if parts[0] == 'rig' and len(parts) == 3:
            return self._send(200, pages.rig_page(parts[1], parts[2], user, sess), 'text/html; charset=utf-8')
        if path == '/metrics':
            body, ctype = metrics.exposition(self.dash.registry)
            return self._send(200, body, ctype)
        if path == '/api/fleet':
            return self._json(200, self.dash.fleet_view(q))
        if parts[:2] == ['api', 'rig'] and len(parts) == 4:
            d = self.dash.rig_view(parts[2] + '/' + parts[3])
            return self._json(200, d) if d else self._json(404, {'error': 'unknown rig'})
        if path == '/events/fleet':
            return self._stream(lambda: self.dash.fleet_view(q))
        if parts[:2] == ['events', 'rig'] and len(parts) == 4:
            key = parts[2] + '/' + parts[3]
            return self._stream(lambda: self.dash.rig_view(key))
        if parts[0] == 'static' and len(parts) == 2 and parts[1] in os.listdir(STATIC):
            with open(os.path.join(STATIC, parts[1]), 'rb') as f:
                return self._send(200, f.read(), STATIC_TYPES.get(os.path.splitext(parts[1])[1],
                                                                   'application/octet-stream'))
        return self._json(404, {'error': 'not found'})

    do_HEAD = do_GET

    def _stream(self, snapshot):
        """Server-Sent Events: a snapshot whenever the state changed, at most every refresh_s."""
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.send_header('Cache-Control', 'no-store')
        self.send_header('Connection', 'close')
        self.end_headers()
        self.close_connection = True
        last, last_sent = None, 0.0
        try:
            while not self.dash.stop.is_set():
                v = self.dash.state.version
                now = time.monotonic()
                if v != last or now - last_sent > 15:
                    data = snapshot()
                    self.wfile.write(('event: snapshot\ndata: %s\n\n' % dumps(data)).encode())
                    self.wfile.flush()
                    last, last_sent = v, now
                self.dash.stop.wait(self.dash.refresh_s)
        except (BrokenPipeError, ConnectionResetError):
            return

    # -- POST -----------------------------------------------------------------------------------
    def do_POST(self):
        path, _ = self._query()
        if path == '/login':
            return self._login()
        if path == '/logout':
            token, _ = self._session()
            self.dash.sessions.logout(token)
            return self._send(303, '', 'text/plain', [('Location', '/'),
                                                      ('Set-Cookie', '%s=; Path=/; Max-Age=0' % COOKIE)])
        if path == '/api/cmd':
            return self._command()
        return self._json(404, {'error': 'not found'})

    def _login(self):
        body = self._body()
        form = dict(urllib.parse.parse_qsl((body or b'').decode(errors='replace')))
        token = self.dash.sessions.login(form.get('user', ''), form.get('password', ''))
        if token is None:
            return self._send(401, pages.login_failed(), 'text/html; charset=utf-8')
        return self._send(303, '', 'text/plain', [
            ('Location', form.get('next') if str(form.get('next', '')).startswith('/') else '/'),
            ('Set-Cookie', '%s=%s; Path=/; HttpOnly; SameSite=Strict' % (COOKIE, token))])

    def _command(self):
        _, sess = self._session()
        if sess is None:
            return self._json(403, {'error': 'log in to send commands (the dashboard is read-only)'})
        if self.headers.get('X-CSRF-Token') != sess['csrf']:
            return self._json(403, {'error': 'missing or wrong CSRF token'})
        body = self._body()
        try:
            req = json.loads(body or b'')
            site, rig, op = req['site'], req['rig'], req['op']
            args = req.get('args') or {}
        except (ValueError, KeyError, TypeError):
            return self._json(400, {'error': 'expected JSON {site, rig, op, args}'})
        if op not in PAGE_OPS:
            return self._json(400, {'error': 'op must be one of %s' % ', '.join(PAGE_OPS)})
        if self.dash.state.rig('%s/%s' % (site, rig)) is None:
            return self._json(404, {'error': 'unknown rig'})
        if self.dash.client is None:
            return self._json(503, {'error': 'no MQTT connection'})
        try:
            cid = self.dash.client.send(site, rig, op, args)
        except (ValueError, TypeError) as e:
            return self._json(400, {'error': str(e)})
        return self._json(200, {'id': cid, 'user': sess['user']})


def make_server(dash, host='127.0.0.1', port=8080):
    handler = type('BoundHandler', (Handler,), {'dash': dash})
    srv = ThreadingHTTPServer((host, port), handler)
    srv.daemon_threads = True
    return srv


def parse_listen(text):
    host, _, port = text.rpartition(':')
    try:
        return host or '127.0.0.1', int(port)
    except ValueError:
        raise ValueError('--listen must be HOST:PORT, got %r' % (text,))


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot fleet serve', description=__doc__.split('\n')[0])
    p.add_argument('--broker', default='127.0.0.1:1883', help='MQTT broker HOST:PORT')
    p.add_argument('--listen', default='127.0.0.1:8080', help='HTTP HOST:PORT')
    p.add_argument('--site', default=None, help='only this site')
    p.add_argument('--users', default=None, help='operators file (name:pbkdf2 hash per line)')
    p.add_argument('--chip-metrics', action='store_true', help='per-chip series on /metrics')
    p.add_argument('--username', default=None, help='MQTT user')
    p.add_argument('--password', default=None, help='MQTT password')
    p.add_argument('--hash-password', metavar='NAME', default=None,
                   help='print a users-file line for NAME (password read from stdin) and exit')
    args = p.parse_args(argv)
    if args.hash_password:
        pw = sys.stdin.readline().rstrip('\n')
        print('%s:%s' % (args.hash_password, auth.hash_password(pw)))
        return 0
    from fleet.client import FleetClient
    try:
        host, port = parse_listen(args.listen)
        users = auth.load_users(args.users) if args.users else {}
        st = fstate.FleetState(site=args.site)
        client = FleetClient(st, args.broker, site=args.site, username=args.username,
                             password=args.password).start()
    except (ValueError, OSError, ConnectionError) as e:
        print('hashpilot fleet serve: %s' % e, file=sys.stderr)
        return 1
    dash = Dashboard(st, client, auth.Sessions(users), args.chip_metrics)
    srv = make_server(dash, host, port)
    threading.Thread(target=dash.sampler, daemon=True).start()
    print('hashpilot fleet serve: http://%s:%d/ (%s)' % (host, srv.server_address[1],
          'operators can log in' if users else 'read-only: no --users'), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        dash.stop.set()
        srv.server_close()
        client.stop()
    return 0
