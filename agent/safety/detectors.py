"""Fault detectors of the safety supervisor (fan tach, board sensors). Pure.

Each detector keeps its own small history and reports flags into the alarm book
(agent/alarms.AlarmBook), which raises each alarm once and clears it once.
"""

import math

from agent.options import finite


class Debounce:
    """Flag that goes on at once (or after on_s) and off only after being fine for off_s."""

    def __init__(self):
        self.on = False
        self.bad_since = None
        self.ok_since = None

    def update(self, bad, now_s, on_s, off_s):
        if bad:
            self.ok_since = None
            if self.bad_since is None:
                self.bad_since = now_s
            if not self.on and now_s - self.bad_since >= on_s:
                self.on = True
        else:
            self.bad_since = None
            if self.on:
                if self.ok_since is None:
                    self.ok_since = now_s
                if now_s - self.ok_since >= off_s:
                    self.on = False
        return self.on


def _fmt(v):
    if v is None:
        return 'None'
    f = finite(v)
    return '%.1f' % f if f is not None else repr(v)


class FanMonitor:
    """One fan: tach against a first-order model of what the duty should give after the lag."""

    def __init__(self, index, cfg):
        self.index = index
        self.cfg = cfg
        self.model_rpm = None
        self.last_t = None
        self.rpm = None
        self.expected_rpm = None
        self.stopped = Debounce()
        self.implausible = Debounce()
        self.unreadable = Debounce()
        self.suspect = False   # unreadable for less than fan_unreadable_s: run fans full, no derate

    def update(self, now_s, duty_pct, rpm_raw, alarms):
        c = self.cfg
        rpm_max = c['fan_rpm_max']
        d = finite(duty_pct)
        if d is None or d < 0.0 or d > 100.0:
            d = 100.0  # duty unknown: we command 100 % whenever anything is unknown
        target = d / 100.0 * rpm_max
        rpm = finite(rpm_raw)
        self.rpm = rpm
        if self.model_rpm is None:
            # First look: assume the fan may still be spinning up.
            self.model_rpm = min(target, rpm) if rpm is not None and rpm >= 0.0 else 0.0
            expected = self.model_rpm
        else:
            dt = max(0.0, now_s - self.last_t)
            new = self.model_rpm + (target - self.model_rpm) * (1.0 - math.exp(-dt / c['fan_lag_s']))
            expected = min(self.model_rpm, new)  # conservative across a duty change
            self.model_rpm = new
        self.last_t = now_s
        self.expected_rpm = expected
        fid = 'fan%d' % self.index
        is_none = rpm_raw is None
        bad_value = (not is_none) and (rpm is None or rpm < 0.0 or rpm > rpm_max * c['fan_over_ratio'])
        too_slow = (rpm is not None and not bad_value
                    and expected >= c['fan_min_expect_pct'] / 100.0 * rpm_max
                    and rpm < c['fan_min_ratio'] * expected)
        self.suspect = is_none
        if self.unreadable.update(is_none, now_s, c['fan_unreadable_s'], c['fan_clear_s']):
            alarms.raise_(fid + '.unreadable', 'warning',
                          'fan %d: tach unreadable for %.0f s; counted as lost'
                          % (self.index, now_s - (self.unreadable.bad_since or now_s)), now_s)
        else:
            alarms.clear(fid + '.unreadable', 'fan %d: tach readable again' % self.index, now_s)
        if self.implausible.update(bad_value, now_s, 0.0, c['fan_clear_s']):
            alarms.raise_(fid + '.implausible', 'warning',
                          'fan %d: tach reads %s rpm (physical max %.0f rpm); counted as lost'
                          % (self.index, _fmt(rpm_raw), rpm_max), now_s)
        else:
            alarms.clear(fid + '.implausible', 'fan %d: tach plausible again (%s rpm)'
                         % (self.index, _fmt(rpm)), now_s)
        if self.stopped.update(too_slow, now_s, 0.0, c['fan_clear_s']):
            alarms.raise_(fid + '.stopped', 'critical',
                          'fan %d: %.0f rpm at %.0f %% duty (expected ≥ %.0f rpm); counted as lost'
                          % (self.index, rpm if rpm is not None else -1, d,
                             c['fan_min_ratio'] * expected), now_s)
        else:
            alarms.clear(fid + '.stopped', 'fan %d: running again (%s rpm)'
                         % (self.index, _fmt(rpm)), now_s)

    def lost(self):
        return self.stopped.on or self.implausible.on or self.unreadable.on

    def get_status(self):
        return {'index': self.index, 'rpm': self.rpm, 'expected_rpm': self.expected_rpm,
                'lost': self.lost(), 'suspect': self.suspect}


class SensorMonitor:
    """One board temperature sensor: absent, out of range, stuck, or implausibly cold vs dies."""

    KINDS = ('absent', 'range', 'stuck', 'implausible')

    def __init__(self, board, index, cfg):
        self.board = board
        self.index = index
        self.cfg = cfg
        self.value = None
        self.last_change_s = None
        self.ref_lo = None
        self.ref_hi = None
        self.n_changes = 0
        self.peer_ref = None
        self.flags = {}
        for k in self.KINDS:
            self.flags[k] = Debounce()

    def update(self, now_s, raw, ref_c, coldest_die_c, alarms, peers=()):
        """ref_c: what should move this sensor (board die mean, else other sensors);
        peers: the board's other SensorMonitors (their jitter shows this one is frozen)."""
        c = self.cfg
        v = finite(raw)
        absent = v is None
        out = (not absent) and (v < c['sensor_min_c'] or v > c['sensor_max_c'])
        stuck = False
        if not absent and not out:
            if self.value is None or abs(v - self.value) > c['stuck_epsilon_c']:
                self.value = v
                self.n_changes += 1
                self.last_change_s = now_s
                self.ref_lo = self.ref_hi = ref_c
                self.peer_ref = [p.n_changes for p in peers]
            else:
                r = finite(ref_c)
                if r is not None:
                    self.ref_lo = r if self.ref_lo is None else min(self.ref_lo, r)
                    self.ref_hi = r if self.ref_hi is None else max(self.ref_hi, r)
                peer_moves = 0
                if self.peer_ref is not None:
                    for k in range(min(len(peers), len(self.peer_ref))):
                        peer_moves = max(peer_moves, peers[k].n_changes - self.peer_ref[k])
                long_enough = now_s - self.last_change_s >= c['stuck_window_s']
                dies_moved = self.ref_lo is not None and self.ref_hi - self.ref_lo >= c['stuck_move_c']
                peers_jitter = c['stuck_peer_changes'] > 0 and peer_moves >= c['stuck_peer_changes']
                stuck = long_enough and (dies_moved or peers_jitter)
        else:
            self.value = None
            self.last_change_s = None
        cold = (not absent and not out and c['sensor_disagree_c'] > 0.0 and coldest_die_c is not None
                and v < coldest_die_c - c['sensor_disagree_c'])
        sid = 'board%d.sensor%d' % (self.board, self.index)
        name = 'board %d sensor %d' % (self.board, self.index)
        texts = {
            'absent': '%s: no reading (%s); treated as hot' % (name, _fmt(raw)),
            'range': '%s: %s °C outside %.0f..%.0f °C; treated as hot'
                     % (name, _fmt(raw), c['sensor_min_c'], c['sensor_max_c']),
            'stuck': '%s: stuck at %s °C for %.0f s while dies moved %.1f °C / other sensors kept '
                     'changing; treated as hot'
                     % (name, _fmt(v), (now_s - self.last_change_s) if self.last_change_s is not None else 0.0,
                        (self.ref_hi - self.ref_lo) if self.ref_lo is not None and self.ref_hi is not None else 0.0),
            'implausible': '%s: %s °C is more than %.0f °C below the coldest die (%s °C); treated as hot'
                           % (name, _fmt(v), c['sensor_disagree_c'], _fmt(coldest_die_c)),
        }
        conds = {'absent': (absent, 0.0), 'range': (out, 0.0), 'stuck': (stuck, 0.0),
                 'implausible': (cold, c['sensor_disagree_s'])}
        for k in self.KINDS:
            bad, on_s = conds[k]
            if self.flags[k].update(bad, now_s, on_s, c['sensor_clear_s']):
                alarms.raise_(sid + '.' + k, 'warning', texts[k], now_s, self.board)
            else:
                alarms.clear(sid + '.' + k, '%s: reading plausible again (%s °C)' % (name, _fmt(v)), now_s)
        return v

    def bad(self):
        for k in self.KINDS:
            if self.flags[k].on:
                return True
        return False

    def trusted(self):
        return None if self.bad() else self.value

    def reasons(self):
        return [k for k in self.KINDS if self.flags[k].on]
