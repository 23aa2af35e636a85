"""Fan control: a reverse-acting PID strategy and FanControl (auto/manual modes, safety override).

Pure core (MicroPython-safe): plain classes, `math` only, time comes in as `now_s`.
Reverse-acting means a hotter measurement asks for more duty. The safety supervisor feeds the
hottest *trusted* temperature (sensors it flagged bad are never passed in) and may override the
result to 100 %; the PID then tracks the applied duty so that leaving the override is bumpless.
"""

from agent import options
from agent.options import finite

MODES = ('auto', 'manual')
SOURCES = ('die', 'board')

# Defaults tuned for the simulator physics (die time constant 30 s, fan lag 2 s, plant gain
# about 0.25..0.55 degC per % duty around 50..80 % duty): SIMC-style PI with a 10 s closed loop.
DEFAULT_KP = 4.0          # % duty per degC
DEFAULT_KI = 0.12         # % duty per degC per second
DEFAULT_KD = 0.0          # % duty per (degC/s); derivative on measurement, off by default (noise)
DEFAULT_RATE_PCT_S = 10.0
DEFAULT_START_PCT = 60.0
BOARD_TARGET_OFFSET_C = 15.0  # hottest board sensor reads ~15 degC below the hottest die




def _need(name, v, lo=None, hi=None):
    f = finite(v)
    if f is None:
        raise ValueError('%s must be a finite number, got %r' % (name, v))
    if (lo is not None and f < lo) or (hi is not None and f > hi):
        raise ValueError('%s = %r outside %s..%s' % (name, v, lo, hi))
    return f


def _clamp(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


class PID:
    """Reverse-acting PID: output rises with measurement - setpoint.

    Integral is clamped so that P + I + D stays inside [out_min, out_max] (no windup: after a long
    saturation the output leaves the limit as soon as the error changes sign). Derivative acts on
    the measurement (no kick on setpoint changes), low-pass filtered. The output moves at most
    rate_pct_s per second in either direction.
    """

    def __init__(self, kp=DEFAULT_KP, ki=DEFAULT_KI, kd=DEFAULT_KD, out_min=0.0, out_max=100.0,
                 rate_pct_s=DEFAULT_RATE_PCT_S, d_filter_s=5.0, start=None):
        self.kp = _need('kp', kp, 0.0)
        self.ki = _need('ki', ki, 0.0)
        self.kd = _need('kd', kd, 0.0)
        self.out_min = _need('min_pct', out_min, 0.0, 100.0)
        self.out_max = _need('max_pct', out_max, 0.0, 100.0)
        if self.out_min > self.out_max:
            raise ValueError('min_pct must not exceed max_pct')
        self.rate_pct_s = _need('rate_pct_s', rate_pct_s, 0.1)
        self.d_filter_s = _need('d_filter_s', d_filter_s, 0.0)
        self.reset(start)

    def reset(self, output=None):
        o = finite(output)
        o = self.out_max if o is None else _clamp(o, self.out_min, self.out_max)
        self.output = o
        self.i_term = o
        self.p_term = 0.0
        self.d_term = 0.0
        self._d_meas = 0.0
        self._last_meas = None
        self._last_t = None

    def track(self, applied, now_s=None):
        """Something else set the output (override, manual): follow it, bumplessly."""
        a = finite(applied)
        if a is None:
            return
        self.output = _clamp(a, self.out_min, self.out_max)
        self.i_term = _clamp(self.output - self.p_term - self.d_term, self.out_min, self.out_max)
        t = finite(now_s)
        if t is not None:
            self._last_t = t

    def update(self, measurement, setpoint, now_s):
        m, sp, t = finite(measurement), finite(setpoint), finite(now_s)
        if m is None or sp is None or t is None:
            return self.output  # no trusted input: hold (the caller decides what unsafe means)
        dt = 0.0 if self._last_t is None else t - self._last_t
        if dt < 0.0:
            dt = 0.0
        e = m - sp
        self.p_term = self.kp * e
        if self._last_meas is not None and dt > 0.0:
            slope = (m - self._last_meas) / dt
            a = dt / (self.d_filter_s + dt) if self.d_filter_s > 0.0 else 1.0
            self._d_meas += a * (slope - self._d_meas)
        self.d_term = self.kd * self._d_meas
        i_old = self.i_term
        i = i_old + self.ki * e * dt
        # Anti-windup: while the sum is past a limit, the integral may not grow further that way
        # (it stays where it was, or where it just keeps the sum at the limit).
        hi = self.out_max - self.p_term - self.d_term
        lo = self.out_min - self.p_term - self.d_term
        if i > hi and i > i_old:
            i = max(hi, i_old)
        elif i < lo and i < i_old:
            i = min(lo, i_old)
        self.i_term = _clamp(i, self.out_min, self.out_max)
        raw = _clamp(self.p_term + self.i_term + self.d_term, self.out_min, self.out_max)
        step = self.rate_pct_s * dt
        if raw > self.output + step:
            raw = self.output + step
        elif raw < self.output - step:
            raw = self.output - step
        self.output = raw
        self._last_meas = m
        self._last_t = t
        return self.output

    def get_status(self):
        return {'kp': self.kp, 'ki': self.ki, 'kd': self.kd, 'output_pct': self.output,
                'p': self.p_term, 'i': self.i_term, 'd': self.d_term}


class FanControl:
    """Per-rig fan duty: 'auto' (PID on the hottest die or board sensor) or 'manual'.

    update() returns one duty for all fans; `override_pct` (from safety) wins when higher.
    """

    def __init__(self, target_c, mode='auto', source='die', min_pct=20.0, max_pct=100.0,
                 manual_duty_pct=70.0, kp=DEFAULT_KP, ki=DEFAULT_KI, kd=DEFAULT_KD,
                 rate_pct_s=DEFAULT_RATE_PCT_S, start_pct=DEFAULT_START_PCT):
        if source not in SOURCES:
            raise ValueError("fan source must be 'die' or 'board', got %r" % (source,))
        self.source = source
        self.target_c = _need('target_c', target_c, 0.0, 150.0)
        self.pid = PID(kp, ki, kd, min_pct, max_pct, rate_pct_s,
                       start=_need('start_pct', start_pct, 0.0, 100.0))
        self.min_pct = self.pid.out_min
        self.max_pct = self.pid.out_max
        self.mode = 'auto'
        self.manual_duty_pct = _need('manual_duty_pct', manual_duty_pct, 0.0, 100.0)
        self.set_mode(mode, manual_duty_pct if mode == 'manual' else None)
        self.duty_pct = self.pid.output
        self.measurement_c = None
        self.overridden = False

    @classmethod
    def from_config(cls, cfg, target_c, source='die'):
        """Build from a dict (keys: mode, source, target_c, min_pct, max_pct, manual_duty_pct,
        kp, ki, kd, rate_pct_s, start_pct); ValueError names the bad key."""
        known = ('mode', 'source', 'target_c', 'min_pct', 'max_pct', 'manual_duty_pct', 'kp',
                 'ki', 'kd', 'rate_pct_s', 'start_pct')
        cfg = cfg or {}
        if not isinstance(cfg, dict):
            raise ValueError('fan: expected a dict')
        for k in cfg:
            if k not in known:
                raise ValueError('fan.%s: unknown key' % (k,))
        kw = {}
        for k in known:
            if k in cfg and cfg[k] is not None:
                kw[k] = cfg[k]
        src = kw.pop('source', source)
        if src not in SOURCES:
            raise ValueError("fan.source must be 'die' or 'board', got %r" % (src,))
        tgt = kw.pop('target_c', None)
        if tgt is None or tgt == 0:
            tgt = target_c - (BOARD_TARGET_OFFSET_C if src == 'board' else 0.0)
        try:
            return cls(tgt, source=src, **kw)
        except ValueError as e:
            raise ValueError('fan.%s' % (e,))

    def set_mode(self, mode, duty_pct=None):
        """'auto' (duty_pct must be None) or 'manual' with duty_pct 0..100; ValueError otherwise."""
        if mode not in MODES:
            raise ValueError("fan mode must be 'auto' or 'manual', got %r" % (mode,))
        if mode == 'auto':
            if duty_pct is not None:
                raise ValueError('duty_pct is only for manual mode')
            if self.mode == 'manual':
                self.pid.track(self.manual_duty_pct)  # bumpless manual -> auto
        else:
            self.manual_duty_pct = _need('duty_pct', duty_pct, 0.0, 100.0)
        self.mode = mode

    def set_target(self, target_c):
        self.target_c = _need('target_c', target_c, 0.0, 150.0)

    def update(self, now_s, die_c=None, board_c=None, override_pct=None):
        """Hottest trusted die / board sensor temperature (None = none trusted) -> duty %."""
        meas = finite(die_c if self.source == 'die' else board_c)
        self.measurement_c = meas
        if self.mode == 'manual':
            duty = self.manual_duty_pct
        elif meas is None:
            duty = self.max_pct  # nothing trustworthy to follow: cool hard
            self.pid.track(duty, now_s)
        else:
            duty = self.pid.update(meas, self.target_c, now_s)
        ov = finite(override_pct)
        self.overridden = ov is not None and ov > duty
        if self.overridden:
            duty = _clamp(ov, 0.0, 100.0)
            if self.mode == 'auto':
                self.pid.track(duty, now_s)
        self.duty_pct = duty
        return duty

    def get_status(self):
        return {'mode': self.mode, 'source': self.source, 'target_c': self.target_c,
                'measurement_c': self.measurement_c, 'duty_pct': self.duty_pct,
                'manual_duty_pct': self.manual_duty_pct, 'overridden': self.overridden,
                'min_pct': self.min_pct, 'max_pct': self.max_pct, 'pid': self.pid.get_status()}


def _check_section(sec):
    if sec['min_pct'] > sec['max_pct']:
        raise sec.error('min_pct', '%s must not exceed %s' % (sec.label('min_pct'), sec.label('max_pct')))
    if sec['max_pct'] < 50:
        raise sec.error('max_pct', '%s = %s: the fan PID must be able to reach at least 50 %%'
                        % (sec.label('max_pct'), sec['max_pct']))
    if sec['mode'] == 'manual' and sec['manual_duty_pct'] < sec['min_pct']:
        raise sec.error('manual_duty_pct', '%s must not be below %s'
                        % (sec.label('manual_duty_pct'), sec.label('min_pct')))


SECTION = options.section('fan', [
    options.opt('mode', 'str', 'auto', 'auto (PID) or manual', choices=MODES),
    options.opt('manual_duty_pct', 'float', 70.0, 'duty in manual mode', 0.0, 100.0),
    options.opt('min_pct', 'float', 20.0, 'lowest duty in auto mode', 0.0, 100.0),
    options.opt('max_pct', 'float', 100.0, 'highest duty in auto mode', 0.0, 100.0),
], check=_check_section)


def validate_set_fan(body, ctx):
    """set_fan {mode: auto} | {mode: manual, duty_pct: fan_min_pct..100}."""
    extra = [k for k in body if k not in ('mode', 'duty_pct')]
    if extra:
        return None, 'unknown field(s): %s' % ', '.join(sorted(str(k) for k in extra))
    mode = body.get('mode')
    if mode not in MODES:
        return None, "mode must be 'auto' or 'manual'"
    if mode == 'auto':
        if 'duty_pct' in body:
            return None, 'duty_pct is only for manual mode'
        return {'mode': 'auto'}, None
    duty = finite(body.get('duty_pct'))
    if duty is None:
        return None, 'manual mode needs duty_pct (number)'
    lo = ctx.get('fan_min_pct', 0)
    if duty < lo or duty > 100:
        return None, 'duty_pct %s outside %s..100' % (body.get('duty_pct'), lo)
    return {'mode': 'manual', 'duty_pct': duty}, None
