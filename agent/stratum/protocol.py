"""Stratum V1 session state from JSON-RPC lines: pure, no sockets, MicroPython-safe.

`Session.handle(msg)` turns one decoded message into an event dict; the caller sends whatever
`Session.outbox` collects (requests and replies). Real pools' quirks handled here (facts in
docs/protocol-notes.md): ids that are strings or null, notify before the authorize answer,
set_difficulty before the subscribe result, extranonce2 sizes up to 32 bytes, BIP 310 version
rolling whose mask the pool may narrow or refuse, client.reconnect, mining.ping.
"""

import json

from hal.work import jobs

DEFAULT_MASK = 0x1FFFE000      # BIP 320 general-purpose version bits
MAX_EN2_SIZE = 32
USER_AGENT = 'hashpilot/0.1'
# Pool error codes that name the reason (the de-facto table most pools use).
ERR_STALE = 21
# Requests still waiting for an answer, at most: a pool that keeps sending work but never
# answers submits must not grow memory (an answer later than this is ignored).
PENDING_MAX = 1024
ERR_DUPLICATE = 22
ERR_LOW_DIFF = 23


class ProtocolError(ValueError):
    pass


def decode(line):
    """One line -> dict; ProtocolError on junk (the caller counts it and goes on)."""
    try:
        msg = json.loads(line)
    except ValueError:
        raise ProtocolError('not JSON: %r' % (line[:120],))
    if not isinstance(msg, dict):
        raise ProtocolError('not a JSON object: %r' % (line[:120],))
    return msg


def encode(msg):
    return (json.dumps(msg) + '\n').encode()


def _key(msg_id):
    return None if msg_id is None else str(msg_id)


class Session:
    def __init__(self, worker, password, version_mask=DEFAULT_MASK, suggest_difficulty=None):
        self.worker = worker
        self._password = password          # sent in authorize only; never in status or logs
        self.want_mask = version_mask
        self.suggest = suggest_difficulty
        self.version_mask = 0
        self.extranonce1 = None
        self.en2_size = None
        self.difficulty = 1.0
        self.subscribed = False
        self.authorized = False
        self.job = None
        self.pending = {}
        self.outbox = []
        self._next_id = 1
        self.reconnect_to = None

    def request(self, method, params):
        msg = {'id': self._next_id, 'method': method, 'params': params}
        self.pending.pop(str(self._next_id - PENDING_MAX), None)   # ids are sequential
        self.pending[str(self._next_id)] = method
        self._next_id += 1
        self.outbox.append(msg)
        return msg

    def opening(self):
        """configure (version rolling), subscribe, authorize, optional suggest_difficulty."""
        if self.want_mask:
            self.request('mining.configure', [['version-rolling'],
                                              {'version-rolling.mask': '%08x' % self.want_mask,
                                               'version-rolling.min-bit-count': 2}])
        self.request('mining.subscribe', [USER_AGENT])
        self.request('mining.authorize', [self.worker, self._password])
        if self.suggest:
            self.request('mining.suggest_difficulty', [self.suggest])
        return self.outbox

    def ready(self):
        return self.subscribed and self.extranonce1 is not None

    def handle(self, msg):
        method = msg.get('method')
        if method is not None:
            return self._notification(method, msg.get('params') or [], msg.get('id'))
        k = _key(msg.get('id'))
        what = self.pending.pop(k, None) if k is not None else None
        if what is None:
            return {'event': 'ignored', 'why': 'answer to no request (id %r)' % (msg.get('id'),)}
        return self._answer(what, msg.get('result'), msg.get('error'), k)

    # -- pool -> client --------------------------------------------------------------------
    def _notification(self, method, params, msg_id):
        fn = _NOTIFY.get(method)
        if fn is None:
            if msg_id is not None:      # a request we do not know: answer so the pool goes on
                self.outbox.append({'id': msg_id, 'result': None,
                                    'error': [20, 'unsupported method', None]})
            return {'event': 'ignored', 'why': 'unknown method %s' % method}
        return fn(self, params, msg_id)

    def _on_notify(self, params, msg_id):
        job = jobs.parse_notify(params)
        self.job = job
        return {'event': 'job', 'job': job, 'clean': job['clean']}

    def _on_difficulty(self, params, msg_id):
        try:
            d = float(params[0])
        except (IndexError, TypeError, ValueError):
            raise ProtocolError('mining.set_difficulty: bad params %r' % (params,))
        if not d > 0:
            raise ProtocolError('mining.set_difficulty: difficulty must be > 0, got %r' % (d,))
        self.difficulty = d
        return {'event': 'difficulty', 'difficulty': d}

    def _on_extranonce(self, params, msg_id):
        self._set_extranonce(params[0] if params else None, params[1] if len(params) > 1 else None)
        return {'event': 'extranonce'}

    def _on_reconnect(self, params, msg_id):
        host = params[0] if params else None
        port = params[1] if len(params) > 1 else None
        wait = params[2] if len(params) > 2 else 0
        self.reconnect_to = (host, port, wait)
        return {'event': 'reconnect', 'host': host, 'port': port, 'wait_s': wait}

    def _on_version_mask(self, params, msg_id):
        self.version_mask = int(params[0], 16) & self.want_mask
        return {'event': 'version_mask', 'mask': self.version_mask}

    def _on_get_version(self, params, msg_id):
        if msg_id is not None:
            self.outbox.append({'id': msg_id, 'result': USER_AGENT, 'error': None})
        return {'event': 'ignored', 'why': 'get_version answered'}

    def _on_ping(self, params, msg_id):
        if msg_id is not None:
            self.outbox.append({'id': msg_id, 'result': 'pong', 'error': None})
        return {'event': 'ignored', 'why': 'ping answered'}

    def _on_message(self, params, msg_id):
        return {'event': 'message', 'text': str(params[0])[:200] if params else ''}

    def _set_extranonce(self, en1, size):
        if not isinstance(en1, str):
            raise ProtocolError('extranonce1 is not a hex string: %r' % (en1,))
        b = jobs.unhex(en1, 'extranonce1')
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise ProtocolError('extranonce2 size is not a number: %r' % (size,))
        if size < 1 or size > MAX_EN2_SIZE:
            raise ProtocolError('extranonce2 size %d outside 1..%d' % (size, MAX_EN2_SIZE))
        self.extranonce1 = b
        self.en2_size = size

    # -- answers to our requests ------------------------------------------------------------
    def _answer(self, what, result, error, k):
        if what == 'mining.subscribe':
            if error or not isinstance(result, list) or len(result) < 3:
                raise ProtocolError('subscribe refused: %r' % (error or result,))
            self._set_extranonce(result[1], result[2])
            self.subscribed = True
            return {'event': 'subscribed'}
        if what == 'mining.authorize':
            self.authorized = bool(result) and not error
            return {'event': 'authorized', 'ok': self.authorized, 'error': _reason(error)}
        if what == 'mining.configure':
            self.version_mask = 0
            if isinstance(result, dict) and result.get('version-rolling'):
                try:
                    self.version_mask = int(result.get('version-rolling.mask', '0'), 16) \
                        & self.want_mask
                except (TypeError, ValueError):
                    self.version_mask = 0
            return {'event': 'version_mask', 'mask': self.version_mask}
        if what == 'mining.submit':
            return _share_result(k, result, error)
        return {'event': 'ignored', 'why': '%s answered' % what}


def _reason(error):
    if not error:
        return None
    if isinstance(error, (list, tuple)) and len(error) > 1:
        return '%s %s' % (error[0], error[1])
    if isinstance(error, dict):
        return '%s %s' % (error.get('code'), error.get('message'))
    return str(error)


def _share_result(k, result, error):
    if result is True and not error:
        return {'event': 'share', 'id': k, 'accepted': True, 'stale': False}
    code = error[0] if isinstance(error, (list, tuple)) and error else None
    return {'event': 'share', 'id': k, 'accepted': False, 'stale': code == ERR_STALE,
            'duplicate': code == ERR_DUPLICATE, 'reason': _reason(error) or 'rejected'}


_NOTIFY = {
    'mining.notify': Session._on_notify,
    'mining.set_difficulty': Session._on_difficulty,
    'mining.set_extranonce': Session._on_extranonce,
    'client.reconnect': Session._on_reconnect,
    'mining.set_version_mask': Session._on_version_mask,
    'client.get_version': Session._on_get_version,
    'mining.ping': Session._on_ping,
    'client.show_message': Session._on_message,
}
