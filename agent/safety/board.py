"""Per-board thermal state machine of the safety supervisor. Pure.

normal -> hot (fans 100 %, cap stepped down every derate_interval_s while >= hot)
       -> dangerous (board disabled) -> cooldown (disabled until below hot - hysteresis for
       hold_s, then enabled at recover_start_pct and stepped up) -> normal.
max_trips dangerous trips within trip_window_s -> off (latched until reset()).
"""

STATES = ('normal', 'cooldown', 'hot', 'dangerous', 'off')   # ordered by severity
SEVERITY = {'normal': None, 'cooldown': 'info', 'hot': 'warning', 'dangerous': 'critical',
            'off': 'critical'}


def worst(a, b):
    return a if STATES.index(a) >= STATES.index(b) else b


class BoardSafety:
    def __init__(self, index, cfg, now_s=0.0):
        self.index = index
        self.cfg = cfg
        self.state = 'normal'
        self.reason = 'ok'
        self.since_s = now_s
        self.cap_pct = 100.0
        self.enable = True
        self.enabled_at_s = now_s     # start of the grace period for missing dies
        self.disabled_at_s = None
        self.cool_since_s = None
        self.last_step_s = now_s
        self.trips = []               # times of dangerous trips within the window
        self.trips_total = 0
        self.samples = []             # (t, hottest die) for the rise rate
        self.rate_c_s = None

    # -- helpers ---------------------------------------------------------------------------
    def _go(self, state, now_s, reason, alarms, clear_msg=None):
        old = self.state
        if old == state:
            self.reason = reason
            return
        aid = 'board%d.' % self.index
        if old != 'normal':
            alarms.clear(aid + old, clear_msg or reason, now_s)
        if state != 'normal':
            alarms.raise_(aid + state, SEVERITY[state], reason, now_s, self.index)
        self.state = state
        self.reason = reason
        self.since_s = now_s
        self.cool_since_s = None
        self.last_step_s = now_s

    def _disable(self, now_s):
        if self.enable:
            self.enable = False
            self.disabled_at_s = now_s

    def _enable(self, now_s):
        if not self.enable:
            self.enable = True
            self.enabled_at_s = now_s

    def in_grace(self, now_s):
        return now_s - self.enabled_at_s < self.cfg['enable_grace_s']

    def trip_count(self, now_s):
        w = self.cfg['trip_window_s']
        self.trips = [t for t in self.trips if now_s - t <= w]
        return len(self.trips)

    def track_rate(self, now_s, die_max_c):
        """Rise rate of the hottest die over >= trend_span_s (None until known)."""
        if die_max_c is None:
            self.samples = []
            self.rate_c_s = None
            return None
        self.samples.append((now_s, die_max_c))
        span = self.cfg['trend_span_s']
        while len(self.samples) > 2 and now_s - self.samples[1][0] >= span:
            self.samples.pop(0)
        t0, v0 = self.samples[0]
        self.rate_c_s = (die_max_c - v0) / (now_s - t0) if now_s - t0 >= 0.5 else None
        return self.rate_c_s

    # -- the machine -------------------------------------------------------------------------
    def trip(self, now_s, reason, alarms):
        """Go dangerous (board off) unless already off/dangerous; latch after max_trips."""
        if self.state in ('off', 'dangerous'):
            if self.state == 'dangerous':
                self.cool_since_s = None
            return
        if self.state == 'cooldown' and not self.enable:
            self.cool_since_s = None  # still waiting disabled: restart the hold-off
            return
        self._disable(now_s)
        self.trips.append(now_s)
        self.trips_total += 1
        n = self.trip_count(now_s)
        c = self.cfg
        if n >= c['max_trips']:
            self._go('off', now_s, 'board %d: %d dangerous trips within %.0f s (last: %s); '
                     'board latched off until reset' % (self.index, n, c['trip_window_s'], reason),
                     alarms)
        else:
            self._go('dangerous', now_s, '%s, board powered off (trip %d of %d in %.0f s)'
                     % (reason, n, c['max_trips'], c['trip_window_s']), alarms)

    def reset(self, now_s, alarms):
        """Unlatch an 'off' board: it restarts through cooldown (disabled, hold-off)."""
        if self.state != 'off':
            return False
        self.trips = []
        self._go('cooldown', now_s, 'board %d: latch reset; waiting below %.1f °C for %.0f s before '
                 're-enabling' % (self.index, self.cfg['temp_hot_c'] - self.cfg['hysteresis_c'],
                                  self.cfg['hold_s']), alarms,
                 clear_msg='board %d: latch reset by command' % self.index)
        return True

    def step(self, now_s, temp_c, forced_hot, hot_why, block, alarms):
        """One tick. temp_c: hottest trusted temperature (None = unknown); forced_hot: treat as
        hot (why in hot_why); block: rig-level reason the board may not be re-enabled."""
        cool_c = self._cool_c()
        is_hot = forced_hot or (temp_c is not None and temp_c >= self.cfg['temp_hot_c'])
        is_cool = (not forced_hot) and temp_c is not None and temp_c < cool_c
        st = self.state
        if st == 'off':
            self._disable(now_s)
        elif st == 'dangerous' or (st == 'cooldown' and not self.enable):
            self._step_disabled(now_s, temp_c, is_cool, block, alarms)
        elif is_hot:
            self._step_hot(now_s, temp_c, hot_why, alarms)
        elif st == 'hot':
            self._step_hot_cooling(now_s, temp_c, is_cool, alarms)
        elif st == 'cooldown':
            self._step_recover(now_s, temp_c, is_cool, alarms)
        else:
            self.cap_pct = 100.0      # normal and not hot

    def _cool_c(self):
        return self.cfg['temp_hot_c'] - self.cfg['hysteresis_c']

    def _blind_cool(self, now_s, temp_c):
        # Disabled: when powered off there are no die readings; with no reading at all,
        # twice the hold-off counts as cool (the physics cools it in well under that).
        return temp_c is None and self.disabled_at_s is not None and \
            now_s - self.disabled_at_s >= 2.0 * self.cfg['hold_s']

    def _step_disabled(self, now_s, temp_c, is_cool, block, alarms):
        """Dangerous, or cooldown still disabled: cool (and unblocked) for hold_s -> enable."""
        if not ((is_cool or self._blind_cool(now_s, temp_c)) and block is None):
            self.cool_since_s = None
            if block is not None and self.state == 'cooldown':
                self.reason = 'board %d: waiting: %s' % (self.index, block)
            return
        if self.cool_since_s is None:
            self.cool_since_s = now_s
        if self.state == 'dangerous':
            self._go('cooldown', now_s, 'board %d: %s < %.1f °C; holding off %.0f s before '
                     're-enabling' % (self.index, _t(temp_c), self._cool_c(), self.cfg['hold_s']),
                     alarms, clear_msg='board %d: cooled to %s °C' % (self.index, _t(temp_c)))
            self.cool_since_s = now_s
        elif now_s - self.cool_since_s >= self.cfg['hold_s']:
            self._reenable(now_s)

    def _reenable(self, now_s):
        """End of the disabled hold-off: enable at recover_start_pct, to be stepped up."""
        c = self.cfg
        self._enable(now_s)
        self.cap_pct = min(self.cap_pct, c['recover_start_pct'])
        self.last_step_s = now_s
        self.reason = ('board %d: below %.1f °C for %.0f s; re-enabled at %.0f %%, '
                       'stepping up %.0f %% every %.0f s'
                       % (self.index, self._cool_c(), c['hold_s'], self.cap_pct,
                          c['derate_step_pct'], c['recover_interval_s']))

    def _step_hot(self, now_s, temp_c, hot_why, alarms):
        """Hot (from any enabled state): one cap step down now, then one per derate_interval_s."""
        c = self.cfg
        why = hot_why or ('board %d: %s °C ≥ hot %.0f °C' % (self.index, _t(temp_c), c['temp_hot_c']))
        if self.state != 'hot':
            self._derate()
            self._go('hot', now_s, _hot_reason(why, self.cap_pct), alarms)
        elif now_s - self.last_step_s >= c['derate_interval_s']:
            self._derate()
            self.last_step_s = now_s
            self.reason = _hot_reason(why, self.cap_pct)
        self.cool_since_s = None

    def _derate(self):
        self.cap_pct = max(self.cfg['cap_min_pct'], self.cap_pct - self.cfg['derate_step_pct'])

    def _step_hot_cooling(self, now_s, temp_c, is_cool, alarms):
        """Hot but no longer at/above hot: cool for hold_s -> cooldown (cap kept, stepped up)."""
        if not is_cool:
            self.cool_since_s = None
            return
        if self.cool_since_s is None:
            self.cool_since_s = now_s
        c = self.cfg
        if now_s - self.cool_since_s >= c['hold_s']:
            self._go('cooldown', now_s, 'board %d: below %.1f °C for %.0f s; raising cap from '
                     '%.0f %% in %.0f %% steps' % (self.index, self._cool_c(), c['hold_s'],
                                                   self.cap_pct, c['derate_step_pct']), alarms,
                     clear_msg='board %d: cooled to %s °C' % (self.index, _t(temp_c)))

    def _step_recover(self, now_s, temp_c, is_cool, alarms):
        """Enabled cooldown: one cap step up per recover_interval_s while cool; 100 % -> normal."""
        c = self.cfg
        if not (is_cool and now_s - self.last_step_s >= c['recover_interval_s']):
            return
        self.cap_pct = min(100.0, self.cap_pct + c['derate_step_pct'])
        self.last_step_s = now_s
        if self.cap_pct >= 100.0:
            self._go('normal', now_s, 'ok', alarms, clear_msg='board %d: back to normal at 100 %% '
                     '(%s °C)' % (self.index, _t(temp_c)))

    def get_status(self, now_s):
        return {'index': self.index, 'state': self.state, 'reason': self.reason,
                'since_s': self.since_s, 'trips': self.trip_count(now_s),
                'trips_total': self.trips_total, 'enable': self.enable,
                'thermal_cap_pct': self.cap_pct, 'rise_c_s': self.rate_c_s}


def _t(v):
    return 'unknown' if v is None else '%.1f' % v


def _hot_reason(why, cap_pct):
    return '%s; fans 100 %%, frequency capped at %.0f %%' % (why, cap_pct)
