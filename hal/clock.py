"""Injectable clock: real time, or physics time K x faster (tests on the time-warped simulator)."""

import time


class Clock:
    """monotonic() in (possibly scaled) seconds; sleep() takes the same seconds.

    The agent and driver take a Clock instead of calling time directly, so rates computed from
    chip counters stay right when the simulator runs its physics K x faster than wall time.
    """

    def __init__(self, time_scale=1.0):
        if not time_scale > 0:
            raise ValueError('time_scale must be > 0')
        self.time_scale = float(time_scale)
        self._t0_wall = time.monotonic()

    def monotonic(self):
        return (time.monotonic() - self._t0_wall) * self.time_scale

    def wall(self):
        """Unscaled monotonic seconds (serial timeouts stay in real time)."""
        return time.monotonic()

    def sleep(self, seconds):
        if seconds > 0:
            time.sleep(seconds / self.time_scale)

    def to_wall(self, seconds):
        return seconds / self.time_scale


REAL = Clock(1.0)
