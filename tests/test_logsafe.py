"""Escaping and rate-limiting of logged hostile input (agent/logsafe.py, issue 17)."""

from agent.logsafe import RateLimit, printable


def test_printable_escapes_and_bounds():
    assert printable('plain-id_1') == "'plain-id_1'"
    s = printable('id\n2026-12-02 WARNING hashpilot: forged')
    assert '\n' not in s and '\\x0a' in s
    assert '\r' not in printable('a\rb') and '\x1b' not in printable('\x1b[31m')
    assert '\u202e' not in printable('abc\u202edef')        # right-to-left override
    assert printable("a'b") == "'a\\'b'"
    long = printable('x' * 10000)
    assert len(long) < 120 and long.endswith('...(10000 chars)')
    assert printable(None) == "''" and printable(7) == "'int'"


def test_rate_limit_burst_then_rate_and_counts_suppressed():
    r = RateLimit(burst=20, per_s=1.0)
    logged = [r.allow(0.0)[0] for _ in range(31000)]
    assert sum(logged) == 20                       # 31 000 refusals at once: 20 lines
    ok, n = r.allow(1.0)
    assert ok and n == 31000 - 20                  # the next line says how many were dropped
    assert r.total_suppressed == 31000 - 20
    t, count = 1.0, 0
    for i in range(100000):                        # a steady flood of 1000/s for 100 s
        t += 0.001
        ok, _ = r.allow(t)
        count += ok
    assert 95 <= count <= 121
