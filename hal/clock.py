"""Injectable clock: real time, or physics time K x faster (tests on the time-warped simulator)."""

import time


def _ticks_source():
    """MicroPython has no time.monotonic: ms ticks, unwrapped with ticks_diff (ESP32 ticks wrap)."""
    state = [time.ticks_ms(), 0.0]

    def now_s():
        t = time.ticks_ms()
        state[1] += time.ticks_diff(t, state[0]) / 1000.0
        state[0] = t
        return state[1]
    return now_s


# The clock adapter: CPython's monotonic clock, or MicroPython's wrapping ms ticks.
_monotonic = getattr(time, 'monotonic', None) or _ticks_source()


class Clock:
    """monotonic() in (possibly scaled) seconds; sleep() takes the same seconds.

    The agent and driver take a Clock instead of calling time directly, so rates computed from
    chip counters stay right when the simulator runs its physics K x faster than wall time.
    """

    def __init__(self, time_scale=1.0):
        if not time_scale > 0:
            raise ValueError('time_scale must be > 0')
        self.time_scale = float(time_scale)
        self._t0_wall = _monotonic()

    def monotonic(self):
        return (_monotonic() - self._t0_wall) * self.time_scale

    def wall(self):
        """Unscaled monotonic seconds (serial timeouts stay in real time)."""
        return _monotonic()

    def sleep(self, seconds):
        if seconds > 0:
            time.sleep(seconds / self.time_scale)

    def to_wall(self, seconds):
        return seconds / self.time_scale

