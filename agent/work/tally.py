"""Per-chip figures from verified nonces: hashrate (2^(32+N) hashes per good nonce) and
hardware-error share over a sliding window. Pure (MicroPython-safe)."""

TWO32 = 4294967296.0


class ChipTally:
    def __init__(self, window_s=60.0):
        self.window_s = window_s
        self.good = 0
        self.bad = 0
        self.hashes = 0.0
        self.ref = None            # (t_s, hashes, good, bad) at the window start
        self.hashrate_ghs = None
        self.hw_err_pct = None
        self.window_bad = 0        # wrong nonces in the last closed window

    def add(self, ok, ticket_bits):
        if ok:
            self.good += 1
            self.hashes += TWO32 * (1 << ticket_bits)
        else:
            self.bad += 1

    def update(self, t_s):
        """Close the window once window_s has passed; returns True when figures changed."""
        if self.ref is None:
            self.ref = (t_s, self.hashes, self.good, self.bad)
            return False
        dt = t_s - self.ref[0]
        if dt < self.window_s:
            return False
        dg = self.good - self.ref[2]
        db = self.bad - self.ref[3]
        self.hashrate_ghs = (self.hashes - self.ref[1]) / dt / 1e9
        self.hw_err_pct = 100.0 * db / (dg + db) if dg + db else None
        self.window_bad = db
        self.ref = (t_s, self.hashes, self.good, self.bad)
        return True

    def get_status(self):
        return {'nonces': self.good, 'hw_errors': self.bad, 'hashrate_ghs': self.hashrate_ghs,
                'hw_err_pct': self.hw_err_pct}
