"""The last n keys seen, in memory fixed at construction: the chain driver's duplicate-nonce
window. Pure core (MicroPython-safe).

A ring of keys plus a dict whose table is sized once, while the heap is still whole. A dict
that keeps growing needs one contiguous block per resize, which a fragmented 256 KB MicroPython
heap stops having: the port's chain polls then failed with MemoryError a few simulated minutes
in (tests/test_mpy_agent.py on a loaded host, which lets more simulated time pass).
"""


class RecentKeys:
    def __init__(self, n):
        self.n = max(1, int(n))
        self.ring = [None] * self.n
        self.pos = 0
        self.seen = {}
        # Size the table now: n placeholder keys in, then out (removal never shrinks a table).
        for i in range(self.n):
            self.seen[-1 - i] = True
        for i in range(self.n):
            del self.seen[-1 - i]

    def __len__(self):
        return len(self.seen)

    def __contains__(self, key):
        return key in self.seen

    def add(self, key):
        """True if key is one of the last n added (a duplicate, not added again); else it is
        remembered, the oldest forgotten, and False returned. Keys: hashable, never None."""
        if key in self.seen:
            return True
        old = self.ring[self.pos]
        if old is not None:
            del self.seen[old]   # forget first: the table never holds more than n keys
        self.ring[self.pos] = key
        self.pos = (self.pos + 1) % self.n
        self.seen[key] = True
        return False
