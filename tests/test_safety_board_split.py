"""BoardSafety.step split into one method per state (issue 9): the split must behave exactly
like the single-method step it replaced. The old step is kept here, only for this comparison.

Random tick sequences (temperatures on and around the thresholds, unknown readings, forced hot,
rig-level blocks, trips and latch resets, random configs incl. hold_s 0) drive the old and the
new machine side by side; after every call their whole state and every alarm call must match.
"""
import random

import pytest

from agent.safety.board import BoardSafety, _t


class OldBoardSafety(BoardSafety):
    """BoardSafety with the step of main@fc6f03d (radon E 31)."""

    def step(self, now_s, temp_c, forced_hot, hot_why, block, alarms):
        """One tick. temp_c: hottest trusted temperature (None = unknown); forced_hot: treat as
        hot (why in hot_why); block: rig-level reason the board may not be re-enabled."""
        c = self.cfg
        hot_c, cool_c = c['temp_hot_c'], c['temp_hot_c'] - c['hysteresis_c']
        i = self.index
        is_hot = forced_hot or (temp_c is not None and temp_c >= hot_c)
        is_cool = (not forced_hot) and temp_c is not None and temp_c < cool_c
        st = self.state
        if st == 'off':
            self._disable(now_s)
            return
        if st == 'dangerous' or (st == 'cooldown' and not self.enable):
            # Disabled: when powered off there are no die readings; with no reading at all,
            # twice the hold-off counts as cool (the physics cools it in well under that).
            blind_cool = temp_c is None and self.disabled_at_s is not None and \
                now_s - self.disabled_at_s >= 2.0 * c['hold_s']
            if (is_cool or blind_cool) and block is None:
                if self.cool_since_s is None:
                    self.cool_since_s = now_s
                if st == 'dangerous':
                    self._go('cooldown', now_s, 'board %d: %s < %.1f °C; holding off %.0f s before '
                             're-enabling' % (i, _t(temp_c), cool_c, c['hold_s']), alarms,
                             clear_msg='board %d: cooled to %s °C' % (i, _t(temp_c)))
                    self.cool_since_s = now_s
                elif now_s - self.cool_since_s >= c['hold_s']:
                    self._enable(now_s)
                    self.cap_pct = min(self.cap_pct, c['recover_start_pct'])
                    self.last_step_s = now_s
                    self.reason = ('board %d: below %.1f °C for %.0f s; re-enabled at %.0f %%, '
                                   'stepping up %.0f %% every %.0f s'
                                   % (i, cool_c, c['hold_s'], self.cap_pct, c['derate_step_pct'],
                                      c['recover_interval_s']))
            else:
                self.cool_since_s = None
                if block is not None and st == 'cooldown':
                    self.reason = 'board %d: waiting: %s' % (i, block)
            return
        if is_hot:
            why = hot_why or ('board %d: %s °C ≥ hot %.0f °C' % (i, _t(temp_c), hot_c))
            if st != 'hot':
                self.cap_pct = max(c['cap_min_pct'], self.cap_pct - c['derate_step_pct'])
                self._go('hot', now_s, '%s; fans 100 %%, frequency capped at %.0f %%'
                         % (why, self.cap_pct), alarms)
            elif now_s - self.last_step_s >= c['derate_interval_s']:
                self.cap_pct = max(c['cap_min_pct'], self.cap_pct - c['derate_step_pct'])
                self.last_step_s = now_s
                self.reason = '%s; fans 100 %%, frequency capped at %.0f %%' % (why, self.cap_pct)
            self.cool_since_s = None
            return
        if st == 'hot':
            if is_cool:
                if self.cool_since_s is None:
                    self.cool_since_s = now_s
                if now_s - self.cool_since_s >= c['hold_s']:
                    self._go('cooldown', now_s, 'board %d: below %.1f °C for %.0f s; raising cap from '
                             '%.0f %% in %.0f %% steps' % (i, cool_c, c['hold_s'], self.cap_pct,
                                                           c['derate_step_pct']), alarms,
                             clear_msg='board %d: cooled to %s °C' % (i, _t(temp_c)))
            else:
                self.cool_since_s = None
            return
        if st == 'cooldown':
            if is_cool and now_s - self.last_step_s >= c['recover_interval_s']:
                self.cap_pct = min(100.0, self.cap_pct + c['derate_step_pct'])
                self.last_step_s = now_s
                if self.cap_pct >= 100.0:
                    self._go('normal', now_s, 'ok', alarms,
                             clear_msg='board %d: back to normal at 100 %% (%s °C)' % (i, _t(temp_c)))
            return
        # normal
        self.cap_pct = 100.0



class Alarms:
    def __init__(self):
        self.calls = []

    def raise_(self, aid, severity, message, now_s, board):
        self.calls.append(('raise', aid, severity, message, now_s, board))

    def clear(self, aid, message, now_s):
        self.calls.append(('clear', aid, message, now_s))


def _cfg(rng):
    hot_c = rng.choice([75.0, 90.0, 95.5])
    return {'temp_hot_c': hot_c, 'hysteresis_c': rng.choice([0.5, 5.0, 7.5]),
            'hold_s': rng.choice([0.0, 1.0, 3.0, 10.0, 60.0]),
            'derate_step_pct': rng.choice([1.0, 5.0, 12.5, 50.0]),
            'derate_interval_s': rng.choice([1.0, 3.0, 10.0]),
            'recover_interval_s': rng.choice([1.0, 4.0, 10.0]),
            'cap_min_pct': rng.choice([10.0, 30.0, 60.0]),
            'recover_start_pct': rng.choice([60.0, 70.0, 100.0]),
            'max_trips': rng.choice([1, 2, 3, 5]), 'trip_window_s': rng.choice([5.0, 30.0, 3600.0]),
            'trend_span_s': 2.0, 'enable_grace_s': 60.0}


def _temp(rng, c):
    hot_c, cool_c = c['temp_hot_c'], c['temp_hot_c'] - c['hysteresis_c']
    r = rng.random()
    if r < 0.15:
        return None
    if r < 0.35:   # exactly on a threshold: the >= / < edges
        return rng.choice([hot_c, cool_c])
    return rng.uniform(cool_c - 15.0, hot_c + 10.0)


def _state(b):
    return dict(b.__dict__, cfg=None)


@pytest.mark.parametrize('seed', range(300))
def test_split_step_matches_old_step(seed):
    rng = random.Random(seed)
    c = _cfg(rng)
    t = rng.choice([0.0, 100.0])
    new, old = BoardSafety(1, c, t), OldBoardSafety(1, c, t)
    an, ao = Alarms(), Alarms()
    for _ in range(rng.choice([50, 200, 600])):
        t += rng.choice([0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 5.0, rng.uniform(0.0, 30.0)])
        r = rng.random()
        if r < 0.04:
            reason = rng.choice(['die 3 at 110.0 °C', 'fans lost'])
            new.trip(t, reason, an)
            old.trip(t, reason, ao)
        elif r < 0.06:
            assert new.reset(t, an) == old.reset(t, ao)
        else:
            temp_c = _temp(rng, c)
            forced = rng.random() < 0.1
            why = rng.choice([None, None, 'board 1: sensor absent']) if forced else None
            block = rng.choice(['fans lost', 'power over limit']) if rng.random() < 0.1 else None
            new.step(t, temp_c, forced, why, block, an)
            old.step(t, temp_c, forced, why, block, ao)
        assert _state(new) == _state(old)
        assert an.calls == ao.calls
    assert new.get_status(t) == old.get_status(t)


def test_comparison_reaches_every_state():
    """The random drive above is not vacuous: it visits every state of the machine."""
    seen = set()
    for seed in range(300):
        rng = random.Random(seed)
        c = _cfg(rng)
        b, a, t = BoardSafety(0, c), Alarms(), 0.0
        for _ in range(200):
            t += rng.choice([0.5, 1.0, 5.0])
            if rng.random() < 0.04:
                b.trip(t, 'x', a)
            else:
                b.step(t, _temp(rng, c), rng.random() < 0.1, None, None, a)
            seen.add((b.state, b.enable))
    assert seen >= {('normal', True), ('hot', True), ('dangerous', False), ('cooldown', False),
                    ('cooldown', True), ('off', False)}
