"""Reconnect rule shared by everything that connects to a hashpilot broker as a rig.

It lives beside the topics and payloads because it is part of the contract with the broker: a
site's rigs must spread their returns after an outage, whatever program plays the rig (the agent,
or the fleet load generator standing in for thousands of them). Pure, MicroPython-safe.
"""


def backoff_delay_s(attempt, min_s, max_s, rnd):
    """Full jitter: uniform in [0, min(max_s, min_s * 2**attempt)], floored at min(0.1, min_s)
    so a fleet that lost the same broker spreads its returns instead of reconnecting in lockstep."""
    cap = min(max_s, min_s * (2 ** min(attempt, 32)))
    return max(min(0.1, min_s), rnd.uniform(0.0, cap))
