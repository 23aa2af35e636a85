"""One control thread with timers (a small Klipper-style reactor).

Timers are callbacks that return their next wake time (clock seconds) or NEVER. Other threads
(MQTT callbacks, signal handlers) never touch hardware: they post work with `call_soon`, which
wakes the loop, and the control thread runs it between timers.
"""

import heapq
import queue
import threading

NEVER = float('inf')


class Timer:
    """Handle returned by add_timer: `cancel()` ends the timer before its next run."""

    def __init__(self, callback):
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Scheduler:
    def __init__(self, clock, on_error=None):
        self.clock = clock
        self._timers = []          # heap of (when_s, seq, callback)
        self._seq = 0
        self._inbox = queue.Queue()
        self._stop = threading.Event()
        self._on_error = on_error
        self.ticks = 0
        self.last_tick_wall = clock.wall()

    def add_timer(self, callback, first_s=None):
        """callback(now_s) -> next wake time (clock seconds) or NEVER. Returns a Timer handle."""
        when = self.clock.monotonic() if first_s is None else first_s
        timer = Timer(callback)
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, timer))
        return timer

    def call_soon(self, fn, *args):
        """Thread-safe: run fn(*args) on the control thread."""
        self._inbox.put((fn, args))

    def stop(self):
        self._stop.set()
        self._inbox.put(None)

    def request_stop(self):
        """Safe from a signal handler: only sets a flag (the loop looks at least every 0.5 s;
        a Queue.put here could deadlock on the queue's lock held by the interrupted thread)."""
        self._stop.set()

    @property
    def stopped(self):
        return self._stop.is_set()

    def _run_inbox(self, timeout_wall_s):
        try:
            item = self._inbox.get(timeout=max(0.0, timeout_wall_s))
        except queue.Empty:
            return
        while item is not None:
            fn, args = item
            self._guard(fn, *args)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # a failing task must not kill the control loop
            if self._on_error:
                self._on_error(fn, e)
            return None

    def run(self):
        while not self._stop.is_set():
            now = self.clock.monotonic()
            self.last_tick_wall = self.clock.wall()
            self.ticks += 1
            # Only the timers due when this round began: a timer that is due again by the time
            # the others have run (a busy poll, a fast work tick) waits for the next round, so
            # call_soon work (commands from MQTT or the cgminer API) runs in between.
            due_s = now
            while self._timers and self._timers[0][0] <= due_s and not self._stop.is_set():
                _, _, timer = heapq.heappop(self._timers)
                if timer.cancelled:
                    continue
                nxt = self._guard(timer.callback, now)
                if nxt is None:
                    nxt = now + 1.0  # a timer that failed retries in a second
                if nxt != NEVER and not timer.cancelled:
                    self._seq += 1
                    heapq.heappush(self._timers, (max(nxt, now), self._seq, timer))
                now = self.clock.monotonic()
            wait_s = 0.5
            if self._timers:
                wait_s = min(wait_s, self.clock.to_wall(self._timers[0][0] - now))
            self._run_inbox(wait_s)
