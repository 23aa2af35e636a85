"""Safety supervisor: one tick per control step, snapshot in, actions out. Pure (MicroPython-safe).

It sits in front of everything: the fan PID, the autotuner and remote commands only ask, the
supervisor decides fan duty, board enable and the frequency cap. Unknown or malformed readings
are unsafe, never cold. See docs/safety.md.
"""

from agent.alarms import AlarmBook
from agent.fan import FanControl, validate_set_fan
from agent.options import finite
from agent.safety import config as _config
from agent.safety.board import BoardSafety, worst
from agent.safety.detectors import Debounce, FanMonitor
from agent.safety.watch import BoardWatch

IMMERSION_FAN_RPM = 500.0    # a tach above this with cooling = immersion: fans are fitted


def _list(v):
    return v if isinstance(v, list) or isinstance(v, tuple) else None


def validate_reset_safety(body, ctx):
    """reset_safety {board?}: unlatch one board or all."""
    extra = [k for k in body if k != 'board']
    if extra:
        return None, 'unknown field(s): %s' % ', '.join(sorted(str(k) for k in extra))
    board = body.get('board')
    boards = ctx.get('boards', 0)
    if board is not None and (isinstance(board, bool) or not isinstance(board, int)
                              or not 0 <= board < boards):
        return None, 'board must be an integer 0..%d' % (boards - 1)
    return {'board': board}, None


def validate_set_coolant(body, ctx):
    """set_coolant {c}: coolant temperature -20..90 C (immersion)."""
    extra = [k for k in body if k != 'c']
    if extra:
        return None, 'unknown field(s): %s' % ', '.join(sorted(str(k) for k in extra))
    c = finite(body.get('c'))
    if c is None or isinstance(body.get('c'), bool) or not -20.0 <= c <= 90.0:
        return None, 'c must be a number -20..90 (coolant C)'
    return {'c': c}, None


class Supervisor:
    def __init__(self, model, config=None, fan_control=None, alarms=None):
        """alarms: the agent's AlarmBook (its sink reports the changes); default a book of
        its own whose changes come out in tick()'s 'events'."""
        self.model = model
        self.cfg = cfg = _config.build(model, config)
        self.n_boards = int(model['boards'])
        self.n_fans = int(model['fans'])
        self.chips = int(model['chips_per_board'])
        self.watchdog_s = cfg['watchdog_s']
        if fan_control is None:
            fan_control = FanControl.from_config(cfg['fan'], cfg['temp_target_c'], cfg['control_source'])
        self.fan = fan_control
        self.alarms = alarms if alarms is not None else AlarmBook()
        self.boards = [BoardSafety(i, cfg) for i in range(self.n_boards)]
        self.watch = [BoardWatch(i, cfg, self.chips) for i in range(self.n_boards)]
        self.fan_mons = [FanMonitor(k, cfg) for k in range(self.n_fans)]
        self.now_s = None
        self.started = False
        self.power_w = None
        self.power_cap_pct = 100.0
        self.power_changed_s = None
        self.power_unread = Debounce()
        self.airflow_frac = 1.0
        self.airflow_cap_pct = 100.0
        self.fans_all_lost = False
        self.problems = []
        self.fan_duty_pct = [100] * self.n_fans
        self.rig_state = 'normal'
        self.rig_reason = 'ok'
        self.rig_since_s = 0.0
        self.stall_reason = None
        self.immersion = cfg['cooling'] == 'immersion'
        self.coolant_c = cfg['coolant_c'] if self.immersion and cfg['coolant_c'] else None

    # -- commands ----------------------------------------------------------------------------
    def register_commands(self, registry):
        """set_fan, reset_safety and set_coolant (agent.commands.Registry)."""
        ctx = {'boards': self.n_boards, 'fan_min_pct': self.fan.min_pct}
        registry.register('set_coolant', validate_set_coolant, self.set_coolant, ctx)
        registry.register('set_fan', validate_set_fan,
                          lambda a: self.set_fan_mode(a['mode'], a.get('duty_pct')), ctx)
        registry.register('reset_safety', validate_reset_safety,
                          lambda a: {'reset_boards': self.reset(a['board'])}, ctx)

    def set_fan_mode(self, mode, duty_pct=None):
        """From the set_fan command; ValueError on bad input (nothing changes)."""
        if self.immersion:
            raise ValueError('cooling = immersion: no fans (fan outputs held at 0 %)')
        self.fan.set_mode(mode, duty_pct)

    def set_coolant(self, args):
        """set_coolant {c}: the coolant temperature a tank controller measured (immersion)."""
        if not self.immersion:
            raise ValueError('set_coolant needs [safety] cooling = "immersion"')
        self.coolant_c = args['c']
        return {'coolant_c': self.coolant_c}

    def reset(self, board=None, now_s=None):
        """Unlatch 'off' boards (all, or one index); they restart through cooldown. -> [indices]"""
        t = finite(now_s)
        t = t if t is not None else (self.now_s or 0.0)
        if board is not None and (isinstance(board, bool) or not isinstance(board, int)
                                  or not 0 <= board < self.n_boards):
            raise ValueError('board must be an index 0..%d' % (self.n_boards - 1))
        idx = range(self.n_boards) if board is None else [board]
        return [i for i in idx if self.boards[i].reset(t, self.alarms)]

    def note_stall(self, now_s, stalled_s, what='control loop'):
        """The runner's watchdog put the rig in its safe state: boards count as tripped."""
        t = finite(now_s)
        t = t if t is not None else (self.now_s or 0.0)
        s = finite(stalled_s)
        self.stall_reason = '%s stalled %.1f s (watchdog %.0f s)' % (what, s or 0.0, self.watchdog_s)
        for b in self.boards:
            b.trip(t, 'board %d: %s' % (b.index, self.stall_reason), self.alarms)

    # -- parsing -----------------------------------------------------------------------------
    def _time(self, snap):
        t = finite(snap.get('now_s')) if isinstance(snap, dict) else None
        if t is None or (self.now_s is not None and t < self.now_s):
            self.problems.append('now_s invalid or going backwards (%r)'
                                 % (snap.get('now_s') if isinstance(snap, dict) else None,))
            return self.now_s if self.now_s is not None else 0.0
        return t

    def _parse(self, snap):
        boards = [None] * self.n_boards
        fans = [None] * self.n_fans
        power = None
        if not isinstance(snap, dict):
            self.problems.append('snapshot is not a dict')
            return boards, fans, power
        bl = _list(snap.get('boards'))
        if bl is None:
            self.problems.append('boards missing or not a list')
            bl = []
        for pos in range(len(bl)):
            e = bl[pos]
            if not isinstance(e, dict):
                self.problems.append('board entry %d is not a dict' % pos)
                continue
            i = e.get('index', pos)
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_boards:
                self.problems.append('board entry %d: bad index %r' % (pos, i))
                continue
            if boards[i] is None:
                boards[i] = e
        fl = _list(snap.get('fans'))
        if fl is None:
            self.problems.append('fans missing or not a list')
            fl = []
        for k in range(min(len(fl), self.n_fans)):
            fans[k] = fl[k] if isinstance(fl[k], dict) else None
            if fans[k] is None:
                self.problems.append('fan entry %d is not a dict' % k)
        p = snap.get('power_w')
        power = finite(p)
        if p is not None and (power is None or power < 0.0):
            self.problems.append('power_w invalid (%r)' % (p,))
            power = None
        return boards, fans, power

    # -- the tick ----------------------------------------------------------------------------
    def tick(self, snapshot):
        """snapshot dict -> actions dict. Never raises on bad input (it is treated as unsafe)."""
        self.problems = []
        now = self._time(snapshot)
        if not self.started:
            self.started = True
            for b in self.boards:
                b.since_s = b.enabled_at_s = b.last_step_s = now
            self.rig_since_s = now
        self.now_s = now
        boards, fans, power = self._parse(snapshot)
        self._fans(now, fans)
        for i in range(self.n_boards):
            self.watch[i].read(now, boards[i], self.boards[i], self.alarms, self.problems)
        self._power(now, power)
        self._boards(now)
        if self.problems:
            self.alarms.raise_('rig.snapshot_invalid', 'warning', 'malformed snapshot: %s; fans 100 %%'
                               % '; '.join(self.problems[:4]), now)
        else:
            self.alarms.clear('rig.snapshot_invalid', 'snapshot well-formed again', now)
        return self._actions(now)

    def _fans(self, now, fans):
        if self.immersion:      # no fans: the coolant carries the heat, nothing to watch
            self.airflow_frac, self.airflow_cap_pct, self.fans_all_lost = 1.0, 100.0, False
            self._fans_in_immersion(now, fans)
            return
        lost = 0
        for k in range(self.n_fans):
            f = fans[k] or {}
            duty = f.get('duty_pct')
            if finite(duty) is None:
                duty = self.fan_duty_pct[k]
            self.fan_mons[k].update(now, duty, f.get('rpm'), self.alarms)
            if self.fan_mons[k].lost():
                lost += 1
        c = self.cfg
        self.airflow_frac = (self.n_fans - lost) / float(self.n_fans) if self.n_fans else 0.0
        self.airflow_cap_pct = 100.0 * (self.airflow_frac ** c['airflow_exp']) if self.airflow_frac > 0 else 0.0
        self.fans_all_lost = self.airflow_frac <= 0.0 or self.airflow_cap_pct < c['cap_min_pct']
        if self.fans_all_lost:
            self.alarms.clear('rig.airflow', 'airflow degraded further: all fans lost', now)
            self.alarms.raise_('rig.fans_lost', 'critical', '%d of %d fans lost (airflow %.0f %%, cap would be '
                               '%.0f %% < %.0f %%): all boards powered off'
                               % (lost, self.n_fans, 100.0 * self.airflow_frac, self.airflow_cap_pct,
                                  c['cap_min_pct']), now)
        else:
            self.alarms.clear('rig.fans_lost', 'fans back: %d of %d running' % (self.n_fans - lost, self.n_fans), now)
            if lost:
                self.alarms.raise_('rig.airflow', 'warning', 'airflow %.0f %% (%d of %d fans lost): other fans '
                                   '100 %%, boards capped at %.0f %%'
                                   % (100.0 * self.airflow_frac, lost, self.n_fans, self.airflow_cap_pct), now)
            else:
                self.alarms.clear('rig.airflow', 'all %d fans running' % self.n_fans, now)

    def _fans_in_immersion(self, now, fans):
        """A tach above IMMERSION_FAN_RPM with cooling = immersion: probably an air rig set to
        immersion by mistake (its fans get 0 % and no fan alarm). Latched: once the 0 % is
        written the fans stop, which does not make the setting right."""
        if 'rig.fans_in_immersion' in self.alarms:
            return
        for k in range(self.n_fans):
            rpm = finite((fans[k] or {}).get('rpm'))
            if rpm is not None and rpm > IMMERSION_FAN_RPM:
                self.alarms.raise_('rig.fans_in_immersion', 'warning',
                                   'fan %d turns at %.0f rpm but cooling = immersion: fans are '
                                   'held at 0 %% and not watched; check [safety] cooling'
                                   % (k, rpm), now)
                return

    def _power(self, now, p):
        c = self.cfg
        self.power_w = p
        lim = c['power_limit_w']
        if self.power_unread.update(p is None, now, c['power_unreadable_s'], 0.0):
            self.alarms.raise_('rig.power_unreadable', 'warning', 'input power unreadable; power cap held '
                               'at %.0f %%' % self.power_cap_pct, now)
        else:
            self.alarms.clear('rig.power_unreadable', 'input power readable again', now)
        if p is None:
            return
        due = self.power_changed_s is None or now - self.power_changed_s >= c['power_interval_s']
        aim = lim * (1.0 - c['power_margin_pct'] / 100.0)
        if p > lim:
            if due:
                eff = [self._pre_power_cap(i) for i in range(self.n_boards) if self.boards[i].enable]
                base = min(self.power_cap_pct, max(eff)) if eff else self.power_cap_pct
                self.power_cap_pct = max(c['cap_min_pct'], base * aim / p)
                self.power_changed_s = now
            self.alarms.raise_('rig.power_over', 'warning', 'input power %.0f W > limit %.0f W: all boards '
                               'capped at %.0f %%' % (p, lim, self.power_cap_pct), now)
        else:
            if self.power_cap_pct < 100.0 and due:
                up = min(100.0, self.power_cap_pct + c['derate_step_pct'])
                if p * up / self.power_cap_pct < aim:
                    self.power_cap_pct = up
                    self.power_changed_s = now
            if self.power_cap_pct >= 100.0 or p <= lim * (1.0 - 0.5 * c['power_margin_pct'] / 100.0):
                self.alarms.clear('rig.power_over', 'input power %.0f W within limit %.0f W (cap %.0f %%)'
                                  % (p, lim, self.power_cap_pct), now)

    def _pre_power_cap(self, i):
        cap = min(self.boards[i].cap_pct, self.airflow_cap_pct)
        if self.watch[i].sensor_bad:
            cap = min(cap, self.cfg['sensor_fault_cap_pct'])
        return cap

    def _boards(self, now):
        c = self.cfg
        danger, hot = c['temp_danger_c'], c['temp_hot_c']
        block = 'all fans lost' if self.fans_all_lost else None
        for i in range(self.n_boards):
            b, w = self.boards[i], self.watch[i]
            trip = None
            dm, t, rate = w.die_max_c, w.temp_c, b.rate_c_s
            if dm is not None and dm >= danger:
                trip = 'board %d: die %.1f °C ≥ dangerous %.0f °C' % (i, dm, danger)
            elif dm is None and t is not None and t >= danger and b.enable:
                trip = 'board %d: sensor %.1f °C ≥ dangerous %.0f °C (no die readings)' % (i, t, danger)
            elif (dm is not None and rate is not None and rate > 0.0 and dm >= hot - c['hysteresis_c']
                  and dm + rate * c['trend_lead_s'] >= danger):
                trip = ('board %d: die %.1f °C rising %.1f °C/s, would pass dangerous %.0f °C within %.0f s'
                        % (i, dm, rate, danger, c['trend_lead_s']))
            elif w.blind.on:
                trip = 'board %d: no temperature readable for %.0f s' % (i, c['blind_max_s'])
            elif w.no_chips and b.enable:
                trip = 'board %d: powered but no chip found (no die temperature to watch)' % i
            elif w.stale.on and b.enable:
                trip = 'board %d: die readings stale for %.0f s' % (i, c['stale_off_s'])
            elif self.fans_all_lost and b.enable:
                trip = 'board %d: all fans lost' % i
            if trip is not None:
                b.trip(now, trip, self.alarms)
            forced = w.dies_unreadable.on and b.enable
            why = 'board %d: no die temperature readable' % i if forced else None
            b.step(now, t, forced, why, block, self.alarms)

    def _board_view(self, i):
        """What is published for board i, rig-level derates included:
        {'state', 'reason', 'cap_pct', 'enable'}."""
        b, w = self.boards[i], self.watch[i]
        state, reasons = b.state, [b.reason] if b.state != 'normal' else []
        if w.sensor_bad:
            reasons.append(w.bad_sensor_reason(self.cfg['sensor_fault_cap_pct']))
            state = worst(state, 'hot')
        if not b.enable:
            return {'state': state, 'reason': '; '.join(reasons) or 'disabled',
                    'cap_pct': b.cap_pct, 'enable': False}
        cap = self._pre_power_cap(i)
        if self.airflow_frac < 1.0:
            reasons.append('airflow %.0f %%: cap <= %.0f %%' % (100.0 * self.airflow_frac, self.airflow_cap_pct))
        if self.power_cap_pct < 100.0:
            reasons.append('power cap %.0f %%' % self.power_cap_pct)
        cap = min(cap, self.power_cap_pct)
        return {'state': state, 'reason': '; '.join(reasons) or 'ok', 'cap_pct': cap, 'enable': True}

    def _rig_view(self, now, views):
        """Rig state and reason from the board views and the rig-wide derates."""
        rig = 'normal'
        for v in views:
            rig = worst(rig, v['state'])
        reasons = [v['reason'] for v in views if v['state'] != 'normal']
        if self.fans_all_lost:
            rig = worst(rig, 'dangerous')
            reasons.insert(0, 'all fans lost')
        elif self.airflow_frac < 1.0 or self.power_cap_pct < 100.0 or self.problems:
            rig = worst(rig, 'hot')
        if self.airflow_frac < 1.0 and not self.fans_all_lost:
            reasons.append('airflow %.0f %%' % (100.0 * self.airflow_frac))
        if self.power_cap_pct < 100.0:
            reasons.append('power cap %.0f %% (limit %.0f W)' % (self.power_cap_pct, self.cfg['power_limit_w']))
        if self.problems:
            reasons.append('malformed snapshot')
        if rig != self.rig_state:
            self.rig_state, self.rig_since_s = rig, now
        self.rig_reason = '; '.join(reasons) or 'ok'

    def _fan_override(self, views):
        """100 % when anything is abnormal (the PID follows trusted temperatures only), else
        None. Power over limit alone does not force the fans (they would add power)."""
        if self.immersion:
            return None
        suspect = any(m.lost() or m.suspect for m in self.fan_mons)
        hot_view = any(v['state'] != 'normal' for v in views)
        missing = any(w.dies_unreadable.bad_since is not None or w.sensor_bad for w in self.watch)
        if hot_view or suspect or missing or self.airflow_frac < 1.0 or self.fans_all_lost \
                or self.problems:
            return 100.0
        return None

    def _fan_inputs(self):
        """(die_c, board_c) the fan PID follows: hottest trusted die and board sensor."""
        dies = [w.die_max_c for w in self.watch if w.die_max_c is not None]
        sens = []
        for w in self.watch:
            sens.extend(w.trusted_sensors())
        die_c = max(dies) if dies else None
        board_c = max(sens) if sens else None
        source = getattr(self.fan, 'source', 'die')
        if die_c is not None and board_c is not None and source == 'board':
            # Safety net for board mode: a sensor stuck low (not yet flagged) cannot pull the
            # measurement below what the dies say (die target - board target offset).
            board_c = max(board_c, die_c - (self.cfg['temp_target_c'] - self.fan.target_c))
        if board_c is not None and source == 'die':
            # Air heats at once when the fans slow, dies follow with a 30 s lag: a die-only PID
            # would idle the fans at start-up while the air behind cold dies passes the hot
            # limit. On multi-chip boards a trusted air sensor reads below the hottest die at
            # steady state, so taking the hotter of the two changes nothing there and covers the
            # transient (on a one-chip GAMMA the outlet sensor reads ~2 degC above the die: the
            # fans run a little more generously, never less).
            die_c = board_c if die_c is None else max(die_c, board_c)
        return die_c, board_c

    def _actions(self, now):
        views = [self._board_view(i) for i in range(self.n_boards)]
        self._rig_view(now, views)
        die_c, board_c = self._fan_inputs()
        duty = self.fan.update(now, die_c, board_c, self._fan_override(views))
        d = 0 if self.immersion else int(duty + 0.5)   # immersion: fan outputs off
        d = 0 if d < 0 else (100 if d > 100 else d)
        self.fan_duty_pct = [d] * self.n_fans
        boards = [{'index': i, 'enable': v['enable'], 'freq_cap_pct': round(v['cap_pct'], 1)}
                  for i, v in enumerate(views)]
        self._views = views
        return {'fan_duty_pct': list(self.fan_duty_pct), 'boards': boards, 'events': self.alarms.drain()}

    def drain_events(self):
        """Events queued outside tick() (reset, note_stall), if the caller wants them now."""
        return self.alarms.drain()

    def get_status(self):
        now = self.now_s if self.now_s is not None else 0.0
        views = getattr(self, '_views', None) or [self._board_view(i) for i in range(self.n_boards)]
        boards = []
        for i in range(self.n_boards):
            b, w = self.boards[i], self.watch[i]
            st = b.get_status(now)
            v = views[i]
            st['state'], st['reason'] = v['state'], v['reason']
            st['freq_cap_pct'], st['enable'] = v['cap_pct'], v['enable']
            st['state_machine'] = b.state
            st['die_max_c'] = w.die_max_c
            st['temp_c'] = w.temp_c
            st['dead_chips'] = w.dead_count
            st['sensors_bad'] = [s.index for s in w.sensors if s.bad()]
            st['alarms'] = self.alarms.ids('board%d.' % i)
            boards.append(st)
        rig = {'state': self.rig_state, 'reason': self.rig_reason, 'since_s': self.rig_since_s}
        return {'state': self.rig_state, 'reason': self.rig_reason, 'since_s': self.rig_since_s,
                'rig': rig, 'boards': boards,
                'fans': [m.get_status() for m in self.fan_mons], 'fan_duty_pct': list(self.fan_duty_pct),
                'airflow_pct': 100.0 * self.airflow_frac, 'airflow_cap_pct': self.airflow_cap_pct,
                'cooling': self.cfg['cooling'], 'coolant_c': self.coolant_c,
                'power_w': self.power_w, 'power_cap_pct': self.power_cap_pct,
                'limits': {'temp_target_c': self.cfg['temp_target_c'], 'temp_hot_c': self.cfg['temp_hot_c'],
                           'temp_danger_c': self.cfg['temp_danger_c'],
                           'power_limit_w': self.cfg['power_limit_w']},
                'alarms': self.alarms.ids(), 'alarm_details': [dict(self.alarms.active[a]) for a in self.alarms.ids()],
                'fan': self.fan.get_status()}
