"""Who may command a rig, end to end: command freshness, replay refusal and optional signing.

Pure (MicroPython-safe: hashlib.sha256 only, HMAC written out; no hmac module needed).

Every command must carry `ts` (Unix ms) within `window_s` of the rig's clock, and its `id` is
refused when seen again within that window (a replayed or duplicated command). With operator
key(s) configured, a command must also carry `sig`: hex HMAC-SHA256 over the canonical CBOR of
{"op", "id", "ts", "args"} (mqtt_schema.codec.encode, canonical key order, the same bytes on
CPython and MicroPython); unsigned or wrongly signed commands are refused.

    guard = CommandGuard(window_s=60, keys=[b'operator secret'])
    err = guard.check(op, cid, ts_ms, args, sig, now_ms)    # None = accept (and remember the id)
    sig = sign(key, op, cid, ts_ms, args)                    # what an operator tool sends
"""

import hashlib

from mqtt_schema import codec

MAX_SEEN = 4096          # ids remembered (a flood cannot grow memory past this)
BLOCK = 64               # SHA-256 block size


def _hmac_sha256(key, msg):
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b'\x00' * (BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5c for b in key) + inner).digest()


def _hex(b):
    return ''.join('%02x' % x for x in b)


def signed_bytes(op, cid, ts_ms, args):
    return codec.encode({'op': op, 'id': cid, 'ts': ts_ms, 'args': args or {}}, 'cbor')


def sign(key, op, cid, ts_ms, args):
    """Hex HMAC-SHA256 signature of a command (operator side)."""
    return _hex(_hmac_sha256(key, signed_bytes(op, cid, ts_ms, args)))


def _same(a, b):
    """Constant-time comparison of two strings."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= ord(a[i]) ^ ord(b[i])
    return d == 0


def parse_key(text):
    """A key file's content: 64+ hex digits, or any other text of at least 16 bytes."""
    t = text.strip()
    if len(t) >= 64 and len(t) % 2 == 0 and all(c in '0123456789abcdefABCDEF' for c in t):
        return bytes(int(t[i:i + 2], 16) for i in range(0, len(t), 2))
    b = t.encode()
    if len(b) < 16:
        raise ValueError('command key too short (need at least 16 bytes)')
    return b


class CommandGuard:
    def __init__(self, window_s=60.0, keys=None, max_seen=MAX_SEEN):
        if not (window_s == window_s) or window_s <= 0 or window_s > 3600:
            raise ValueError('command window_s must be in 0..3600 s')
        self.window_ms = int(window_s * 1000)
        self.keys = list(keys or [])
        self.max_seen = max_seen
        self._seen = {}          # id -> ts_ms it was accepted with
        self._order = []         # ids in acceptance order (eviction), live from _head on
        self._head = 0
        self.replays = 0
        self.stale = 0
        self.bad_sig = 0
        self.unsigned = 0

    def signed(self):
        return bool(self.keys)

    def _forget_old(self, now_ms):
        """Drop ids older than two windows, and the oldest beyond max_seen (bounded memory)."""
        order, i = self._order, self._head
        while i < len(order):
            cid = order[i]
            if len(order) - i <= self.max_seen and now_ms - self._seen.get(cid, 0) <= 2 * self.window_ms:
                break
            self._seen.pop(cid, None)
            i += 1
        if i > 1024 and i * 2 > len(order):   # compact now and then, not per command
            self._order = order[i:]
            i = 0
        self._head = i

    def check(self, op, cid, ts_ms, args, sig, now_ms):
        """None when the command may be applied (its id is then remembered), else the reason."""
        if ts_ms is None:
            self.stale += 1
            return "'ts' (Unix ms) is required"
        if not isinstance(ts_ms, int) or isinstance(ts_ms, bool) or ts_ms < 0 or ts_ms > 1 << 53:
            self.stale += 1
            return "'ts' must be Unix milliseconds"
        age_ms = now_ms - ts_ms
        if age_ms > self.window_ms:
            self.stale += 1
            return 'command expired: sent %d s ago (window %d s)' % (age_ms // 1000, self.window_ms // 1000)
        if -age_ms > self.window_ms:
            self.stale += 1
            return 'command %d s in the future (clock skew > %d s)' % (-age_ms // 1000, self.window_ms // 1000)
        if self.keys:
            if not isinstance(sig, str) or not sig:
                self.unsigned += 1
                return "unsigned command refused: 'sig' required (keys configured)"
            if len(sig) != 64 or not any(_same(sign(k, op, cid, ts_ms, args), sig.lower()) for k in self.keys):
                self.bad_sig += 1
                return 'bad signature'
        if cid in self._seen:
            self.replays += 1
            return 'replayed command id refused (seen %d s ago)' % ((now_ms - self._seen[cid]) // 1000)
        self._seen[cid] = now_ms
        self._order.append(cid)
        self._forget_old(now_ms)
        return None

    def get_status(self):
        return {'signed': self.signed(), 'window_s': self.window_ms // 1000, 'remembered': len(self._seen),
                'replays': self.replays, 'stale': self.stale, 'bad_sig': self.bad_sig,
                'unsigned': self.unsigned}
