"""Command fuzzer (issue 17): random and hostile commands through a real broker to a real agent.

    gen = CommandFuzzer(seed, ops)         # ops: the agent's registered command names
    op, payload = gen.next(now_ms)         # bytes, JSON or CBOR, or junk

Mix: well-formed commands of every op with mutated args (NaN, inf, huge and negative numbers,
2^1100, 400-digit integers, wrong types, nested junk), ids (missing, wrong type, 64+ chars,
newlines, control characters), ts (missing, stale, future, huge, negative), replays of earlier
ids, unknown ops, random bytes, truncated CBOR, payloads over the size limit, 5000-deep nests.
"""

import json
import random

import cbor2

NUMS = [float('nan'), float('inf'), float('-inf'), 1e308, -1e308, 10 ** 400, -(10 ** 400),
        2 ** 1100, 2 ** 63, -1, 0, 0.5, 1e-300, 37, 100, 101, 485.0, 5000, -5.5]
JUNK = ['', 'x', '12', '\n', True, False, None, [], {}, [1, 2], {'a': 1}, 'auto', 'manual',
        'power', 'hashrate', 'efficiency', 'balanced', 'stop', 'start', '\u202e', 'a' * 300]
FIELDS = ['mode', 'duty_pct', 'mhz', 'board', 'chip', 'w', 'action', 'profile', 'target',
          'duration_s', 'x']
ODD_IDS = [None, 7, 1.5, True, [], {}, '', 'a' * 64, 'b' * 65, 'x' * 5000,
           'line\nforged WARNING log line', 'tab\tand\rcr', '\x1b[31mred', '\u0000nul', 'é' * 40]


class CommandFuzzer:
    def __init__(self, seed, ops):
        self.rnd = random.Random(seed)
        self.ops = list(ops)
        self.n = 0
        self.sent_ids = []

    def _value(self):
        r = self.rnd.random()
        if r < 0.45:
            return self.rnd.choice(NUMS)
        if r < 0.8:
            return self.rnd.choice(JUNK)
        if r < 0.9:
            return self.rnd.randint(-3, 120)
        depth = self.rnd.randint(1, 60)
        v = 1
        for _ in range(depth):
            v = [v] if self.rnd.random() < 0.5 else {'k': v}
        return v

    def _args(self):
        args = {}
        for _ in range(self.rnd.randint(0, 4)):
            args[self.rnd.choice(FIELDS)] = self._value()
        r = self.rnd.random()
        if r < 0.05:
            return self.rnd.choice(JUNK)          # args not a map
        return args

    def _id(self):
        r = self.rnd.random()
        if r < 0.08:
            return self.rnd.choice(ODD_IDS)
        if r < 0.12 and self.sent_ids:
            return self.rnd.choice(self.sent_ids[-200:])   # a replay
        cid = 'f%d' % self.n
        self.sent_ids.append(cid)
        if len(self.sent_ids) > 1000:
            del self.sent_ids[:500]
        return cid

    def _ts(self, now_ms):
        r = self.rnd.random()
        if r < 0.7:
            return now_ms
        return self.rnd.choice([None, now_ms - 3600 * 1000, now_ms + 3600 * 1000, 2 ** 1100, -1,
                                0, 'now', 1.5e12, 10 ** 400, True])

    def _encode(self, body):
        if self.rnd.random() < 0.5:
            try:
                return json.dumps(body).encode()
            except (ValueError, TypeError, RecursionError):
                pass
        try:
            return cbor2.dumps(body)
        except (ValueError, TypeError, RecursionError, OverflowError):
            return b'\xa1'

    def next(self, now_ms):
        self.n += 1
        r = self.rnd.random()
        op = self.rnd.choice(self.ops)
        if r < 0.03:
            op = self.rnd.choice(['nope', 'set_fans', 'RESET_SAFETY', 'x' * 60, 'a-b', 'result2'])
        if r < 0.06:
            return op, bytes(self.rnd.getrandbits(8) for _ in range(self.rnd.randint(0, 200)))
        if r < 0.07:
            return op, b'[' * 5000 + b']' * 5000 if self.rnd.random() < 0.5 else b'\x81' * 5000 + b'\x00'
        if r < 0.08:
            return op, b'{"id": "big%d", "args": {"x": "%s"}}' % (self.n, b'y' * 20000)
        if r < 0.09:
            return op, b''
        body = {'id': self._id(), 'args': self._args(), 'ts': self._ts(now_ms)}
        if self.rnd.random() < 0.05:
            body['v'] = self.rnd.choice([2, '1', None, 1])
        if self.rnd.random() < 0.05:
            body['sig'] = self.rnd.choice(['00' * 32, 'zz', 7])
        for k in list(body):
            if body[k] is None and self.rnd.random() < 0.5:
                del body[k]
        data = self._encode(body)
        if self.rnd.random() < 0.02:
            data = data[:self.rnd.randint(0, max(0, len(data) - 1))]   # truncated
        return op, data
