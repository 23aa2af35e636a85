"""Logging hostile input safely: escape what a sender controls, rate-limit what a sender can flood.

    printable('id\\nforged')            -> "'id\\\\nforged'" (one line, quoted, bounded)
    limiter = RateLimit(burst=20, per_s=1.0)
    ok, suppressed = limiter.allow(now_s)   # ok: log this one; suppressed: how many were
                                          # dropped since the last logged line (say so)
"""

MAX_LOGGED = 80


def printable(value, limit=MAX_LOGGED):
    """A sender-controlled value as one quoted, escaped, bounded token for a log line."""
    if not isinstance(value, str):
        value = '%s' % (type(value).__name__,) if value is not None else ''
    text = value[:limit]
    out = []
    for ch in text:
        o = ord(ch)
        if ch == '\\':
            out.append('\\\\')
        elif ch == "'":
            out.append("\\'")
        elif o < 0x20 or o == 0x7f or 0x80 <= o < 0xa0 or o in (0x2028, 0x2029) or \
                0x202a <= o <= 0x202e or 0x2066 <= o <= 0x2069:
            out.append('\\x%02x' % o if o < 0x100 else '\\u%04x' % o)
        else:
            out.append(ch)
    more = '...(%d chars)' % len(value) if len(value) > limit else ''
    return "'%s'%s" % (''.join(out), more)


class RateLimit:
    """Token bucket: `burst` lines at once, then `per_s` lines per second."""

    def __init__(self, burst=20, per_s=1.0):
        self.burst = float(burst)
        self.per_s = float(per_s)
        self.tokens = self.burst
        self.last_s = None
        self.suppressed = 0
        self.total_suppressed = 0

    def allow(self, now_s):
        """(True, n suppressed before this one) when this line may be logged, else (False, 0)."""
        if self.last_s is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now_s - self.last_s) * self.per_s)
        self.last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            n, self.suppressed = self.suppressed, 0
            return True, n
        self.suppressed += 1
        self.total_suppressed += 1
        return False, 0
