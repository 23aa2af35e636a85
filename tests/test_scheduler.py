"""Scheduler: timers fire in order, failures do not stop the loop, call_soon crosses threads."""

import threading
import time

from agent.scheduler import NEVER, Scheduler
from hal.clock import Clock


def test_timers_and_cross_thread_calls():
    clock = Clock(10.0)  # physics time 10x wall: a 1 s timer fires every 0.1 s of wall time
    errors = []
    s = Scheduler(clock, on_error=lambda fn, e: errors.append(e))
    fired = []

    def periodic(now):
        fired.append(now)
        if len(fired) >= 5:
            s.stop()
            return NEVER
        return now + 1.0

    def broken(now):
        raise RuntimeError('boom')

    s.add_timer(periodic)
    s.add_timer(broken)
    got = []
    threading.Timer(0.05, lambda: s.call_soon(got.append, 'cmd')).start()
    t0 = time.monotonic()
    s.run()
    wall = time.monotonic() - t0
    assert len(fired) == 5
    assert all(b - a >= 0.99 for a, b in zip(fired, fired[1:]))
    assert 0.3 < wall < 2.0
    assert got == ['cmd']
    assert errors and isinstance(errors[0], RuntimeError)
