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


def test_busy_timers_do_not_starve_cross_thread_calls():
    """Timers that are always due again when they return (each takes 20 ms, asks for 5 ms):
    call_soon work still runs at once, between two rounds of timers."""
    clock = Clock(1.0)
    s = Scheduler(clock)

    def busy(now):
        time.sleep(0.02)
        return clock.monotonic() + 0.005

    s.add_timer(busy)
    s.add_timer(busy)
    ran = []
    posted = []

    def post():
        posted.append(time.monotonic())
        s.call_soon(lambda: ran.append(time.monotonic()))
    threading.Timer(0.2, post).start()
    threading.Timer(1.0, s.stop).start()
    s.run()
    assert ran and ran[0] - posted[0] < 0.1, (ran, posted)
