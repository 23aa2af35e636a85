"""One-thread timer loop for MicroPython (no threads, no queue): the same timer contract as
agent/scheduler.py (a callback takes now_s and returns its next wake time or NEVER), plus an
idle hook that moves MQTT bytes between timers.
"""

import heapq
import time

NEVER = float('inf')


class Timer:
    """Handle returned by add_timer (as agent/scheduler.Timer): cancel() ends it before its next run."""

    def __init__(self, callback):
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Loop:
    def __init__(self, clock, idle=None, on_error=None, idle_wall_s=0.05):
        self.clock = clock
        self.idle = idle                    # idle(now_s): MQTT service etc.
        self.on_error = on_error
        self.idle_wall_s = idle_wall_s
        self._timers = []
        self._seq = 0
        self._soon = []
        self.stopped = False
        self.ticks = 0
        self.errors = 0

    def add_timer(self, callback, first_s=None):
        """callback(now_s) -> next wake time or NEVER. Returns a Timer handle."""
        timer = Timer(callback)
        self._seq += 1
        heapq.heappush(self._timers, (self.clock.monotonic() if first_s is None else first_s,
                                      self._seq, timer))
        return timer

    def call_soon(self, fn, *args):
        self._soon.append((fn, args))

    def stop(self):
        self.stopped = True

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:              # a failing task must not kill the loop
            self.errors += 1
            if self.on_error is not None:
                self.on_error(fn, e)
            return None

    def run_once(self):
        now = self.clock.monotonic()
        self.ticks += 1
        while self._timers and self._timers[0][0] <= now and not self.stopped:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            nxt = self._guard(timer.callback, now)
            if nxt is None:
                nxt = now + 1.0             # a timer that failed retries in a second
            if nxt != NEVER:
                self._seq += 1
                heapq.heappush(self._timers, (max(nxt, now), self._seq, timer))
            now = self.clock.monotonic()
        while self._soon:
            fn, args = self._soon.pop(0)
            self._guard(fn, *args)
        if self.idle is not None:
            self._guard(self.idle, now)
        wait_s = self.idle_wall_s
        if self._timers:
            wait_s = min(wait_s, self.clock.to_wall(self._timers[0][0] - self.clock.monotonic()))
        if wait_s > 0:
            time.sleep(wait_s)

    def run(self):
        while not self.stopped:
            self.run_once()
