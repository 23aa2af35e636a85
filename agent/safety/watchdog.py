"""Control-loop watchdog (pure logic) and the rig's safe state.

The runner's separate watchdog thread calls expired(now_s) on its own timer; the control thread
calls kick(now_s) every tick. When it expires the thread applies safe_actions(model): every board
powered off (chains idle) and every fan at 100 %. That state is safe whatever else failed: no
heat is produced and the most air moves. The control thread, when it runs again, calls
Supervisor.note_stall() so that boards come back only through cooldown.
"""

from agent.alarms import event
from agent.options import finite


class Watchdog:
    def __init__(self, timeout_s):
        t = finite(timeout_s)
        if t is None or t <= 0.0:
            raise ValueError('timeout_s must be a positive number, got %r' % (timeout_s,))
        self.timeout_s = t
        self.last_kick_s = None   # not armed until the first kick (start-up may take long)
        self.tripped = False
        self.trips = 0

    def kick(self, now_s):
        """Control loop alive. Returns True if this ends a trip (the loop came back)."""
        t = finite(now_s)
        if t is None:
            return False
        self.last_kick_s = t
        was = self.tripped
        self.tripped = False
        return was

    def stalled_s(self, now_s):
        t = finite(now_s)
        if self.last_kick_s is None or t is None:
            return 0.0
        return max(0.0, t - self.last_kick_s)

    def expired(self, now_s):
        """True while the loop has not kicked for more than timeout_s (since it was armed).
        A bad now_s counts as expired: the watchdog cannot tell, so it fails safe."""
        if self.last_kick_s is None:
            return False
        t = finite(now_s)
        if t is None:
            return True
        return t - self.last_kick_s > self.timeout_s

    def check(self, now_s):
        """expired() plus a one-shot flag: returns 'trip' the first time, then None."""
        if self.expired(now_s) and not self.tripped:
            self.tripped = True
            self.trips += 1
            return 'trip'
        return None

    def get_status(self, now_s=None):
        return {'timeout_s': self.timeout_s, 'last_kick_s': self.last_kick_s,
                'tripped': self.tripped, 'trips': self.trips,
                'stalled_s': self.stalled_s(now_s) if now_s is not None else None}


def safe_actions(model, reason='control loop stalled'):
    """Actions dict of the safe state: all boards off, all fans 100 %."""
    boards = [{'index': i, 'enable': False, 'freq_cap_pct': 0.0} for i in range(int(model['boards']))]
    return {'fan_duty_pct': [100] * int(model['fans']), 'boards': boards,
            'events': [event('rig.watchdog', 'raise', 'critical',
                             '%s: safe state (all boards off, fans 100 %%)' % reason)]}
