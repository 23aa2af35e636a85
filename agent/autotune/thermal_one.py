"""Thermal mode on a one-chip rig (a Bitaxe Gamma): the voltage as a 1-D root find on a thermal
model the tuner learns from its own readings. Pure (MicroPython-safe).

With one chip the held share ThermalLoop brackets on is 0 or 1, and the chip is the whole hot/cool
judgement. The optimum is where the chip's error-limited frequency f_err(V) (rising with V, the
family V-F prior) meets its ceiling-limited frequency f_therm(V) (falling with V: more volts, fewer
hertz per watt), so the loop looks for the root of s(V) = ln(f_therm / f_err):

- thermal model: the die heads to T_ss = T + K (P - P_lag), where K (C per wall W) is the slope of
  the settled die temperature against power (secant of two settled points; prior: rise over the
  air guess per watt) and P_lag the wall power passed through the die's time constant and the
  reading's smoothing. No air temperature is needed once K is known; the prediction is
  t.warming_c, so the chip's hot limit and climb room look where the die is going;
- f_therm at the present voltage from the room to the ceiling: 1 + (ceiling - T_ss) / (K P_chip
  / PSU_EFF), the chip's DC power taken back to the wall, where K is counted;
- f_err from the last error decision with errors behind it and a rate near the target (ref),
  moved to the present voltage by the V-F prior; one counted while the ceiling held the chip
  (ref_held) stands in while there is no free one (after an ambient step there may never be);
- one Newton step to the root of a least-squares line through the last PTS_KEPT judged points
  (its slope kept within a band around the prior; the prior alone with one point), snapped to
  the rail's step; within HOLD_STEPS rail steps of it the loop holds.

The chip's own hot steps are sized by the same model (K P_chip degrees per unit of frequency,
not SELF_HEAT_C: one chip heats its whole board, ~3.7 times the share of an S21 chip).
"""

import math

from agent.autotune import maths
from agent.autotune.search import TEMP_SMOOTH_S, SETTLED_STEP
from agent.autotune.thermal import ThermalLoop, TAU_DIE_S, AIR_GUESS_C, URGENT_HOT_C
from agent.autotune.voltage import VoltageLoop

F_THERM_MIN = 0.3          # f_therm at least this share of f: far over the ceiling the line
                           # would go negative (log of it), and the move is capped anyway
ONE_CHIP_MAX = 1           # rigs with this many chips or fewer run OneChipLoop
PSU_EFF = 0.94             # wall to DC (the model's figures; docs/autotune.md)
RISE_MIN_C = 20.0          # prior die rise at least this (cold start: the air guess is off)
K_SPAN = 2.0               # learned K within [1/K_SPAN, K_SPAN] x the prior
K_MIN_DP = 0.04            # settled points this far apart in power make a secant for K
THERM_SLOPE = 4.5          # prior -d ln f_therm / d ln V (V^2 at fixed power, leakage
                           # rising e-fold per 10 % of V, 0.15 %/C of fmax lost to heat)
S_SLOPE_SPAN = 2.0         # secant slope of s within [1/S_SLOPE_SPAN, S_SLOPE_SPAN] x prior
MOVE_MAX = 0.03            # largest voltage move (ln) per judgement
HOLD_STEPS = 2             # the root this many rail steps close: hold (the GAMMA's step is 1 mV;
                           # its peak loses ~0.3 % per mV)
HOLD_VERIFY_EXTRA = 1      # ... and one more while verifying (no flapping on noise)
P_SMOOTH_S = 10.0           # wall readings are +-1 %: this much smoothing for the prediction
REF_ERR_MIN = 2            # errors behind an error-limited point (fewer: a bound)
REF_ERR_BAND = 3.0         # the chip counts as error-limited with err_est within x/ this band
URGENT_OVER_C = 1.5        # holding and the die heads this far over the ceiling: search again
MARGIN_C = 0.0             # the chip's hot limit this far under the ceiling (the prediction
                           # keeps it; ThermalLoop's small rigs keep 0.3 C)
ROOM_GAIN = 0.9            # share of the model's room to the ceiling a chip may climb into
SETTLE_S = 15.0            # judge this long after a move (the profile's settle_s, 45 s, lets
                           # the die settle; the model predicts where it goes)
PTS_KEPT = 4               # judged points the root's line is fitted through
DEFICIT_HELD = 0.02        # deficit assumed for a held chip with no error-limited point yet


def wants_one_chip(model):
    """Data rule for the tuner: the rig's chip count."""
    return model['boards'] * model['chips_per_board'] <= ONE_CHIP_MAX


class OneChipLoop(ThermalLoop):
    """ThermalLoop for one chip: model-based prediction, root find in voltage (the judgement
    only: the per-chip search is search.py's, its hot steps sized by heat_c)."""

    margin_c = MARGIN_C
    settle_s = SETTLE_S
    room_gain = ROOM_GAIN

    def __init__(self, tuner):
        ThermalLoop.__init__(self, tuner)
        self.k_c_w = None        # learned die degrees per wall watt
        self.p_s = None          # smoothed wall power
        self.p_lag1 = None       # ... through the die's time constant
        self.p_lag2 = None       # ... and the reading's smoothing
        self.p_t = None
        self.settled = []        # (wall W, smoothed die C) at judgements (K secant)
        self.ref = None          # (mv, f at the error target) where the chip was error-limited
        self.pts = []            # (ln mv, s) judged since the last re-tune
        self.k_prior = None
        self.err_seen = None     # (err_est, err_f) of the chip's last error decision seen
        self.ref_held = None     # as ref, counted while the ceiling held the chip

    # ---------------------------------------------------------------- model
    def _chip(self):
        return self.t.chips[0][0]

    def _fixed_w(self):
        m = self.t.io.model()
        return m.get('board_w', 0.0) * m['boards'] + m.get('ctrl_w', 0.0) + \
            0.5 * m.get('fan_w', 0.0) * m.get('fans', 0)   # fans: a rough half (their duty
                                                           # is not the tuner's to know)

    def chip_w(self, pw):
        """Chip power (DC) from a wall reading: less the board, controller and half the fans."""
        return max(1.0, pw * PSU_EFF - self._fixed_w())

    def k(self):
        """Die degrees per wall watt: learned, else the prior (rise over the air guess)."""
        st = self._chip()
        pw = self.p_s
        if st.temp_f is not None and pw:
            self.k_prior = max(RISE_MIN_C, st.temp_f - AIR_GUESS_C) / pw
        prior = self.k_prior if self.k_prior is not None else 1.0
        if self.k_c_w is None:
            return prior
        return max(prior / K_SPAN, min(prior * K_SPAN, self.k_c_w))

    def heat_c(self, st):
        """Degrees of die rise per unit of relative frequency at fixed voltage (search.py's
        hot steps and climb room)."""
        pw = self.p_s or (self.t.samples[-1][1] if self.t.samples else None)
        if not pw:
            return None
        return self.k() * self.chip_w(pw) / PSU_EFF

    def _track_warming(self, now_s):
        """t.warming_c = K (P - P_lag): the rise the present power still brings."""
        t = self.t
        if not t.samples:
            return
        ts, pw = t.samples[-1][0], t.samples[-1][1]
        if self.p_t is None:
            st = self._chip()
            if st.temp_f is None:
                return           # no die reading yet: seeding now would take it for a cold die
                                 # (P_lag 0: ~30 C of phantom rise, an urgent drop)
            # a cold die (first reading near the air guess) has not seen the power yet
            cold = st.temp_f < AIR_GUESS_C + 0.5 * RISE_MIN_C
            p0 = 0.0 if cold else pw
            self.p_s, self.p_lag1, self.p_lag2, self.p_t = pw, p0, p0, ts
            return
        dt = ts - self.p_t
        if dt <= 0.0:
            return
        self.p_t = ts
        self.p_s += maths.ema_weight(dt, P_SMOOTH_S) * (pw - self.p_s)
        self.p_lag1 += maths.ema_weight(dt, TAU_DIE_S) * (self.p_s - self.p_lag1)
        self.p_lag2 += maths.ema_weight(dt, TEMP_SMOOTH_S) * (self.p_lag1 - self.p_lag2)
        t.warming_c = self.k() * (self.p_s - self.p_lag2)

    def t_ss(self):
        st = self._chip()
        return None if st.temp_f is None else st.temp_f + self.t.warming_c

    # ---------------------------------------------------------------- loop
    def run(self, now_s):
        t = self.t
        if not self._chip().alive:
            return               # the only chip is dead: nothing to judge, hold the rail
        self._track_warming(now_s)
        t.dropped = True
        if t.retunes != self.seen_retunes:
            self.seen_retunes = t.retunes
            self.pts = []
            self.settled = []
        self._note_ref()
        if t.stage == 'done' and self._drifted(now_s):
            return
        if t.stage in ('search', 'verify', 'done') and self._urgent_hot(now_s):
            return
        # skip ThermalLoop.run (its warming and bracket): VoltageLoop.run judges through _judge
        VoltageLoop.run(self, now_s)

    def _note_ref(self):
        """Remember where the chip's error rate puts its limit: from a decision counted this
        tick (at this voltage) with errors behind it and a rate near the target. ref: the chip
        was not held by the ceiling; ref_held: it was (at the optimum it is both, and after an
        ambient step it may never be free again), used only while there is no ref."""
        t = self.t
        st = self._chip()
        key = (st.err_est, st.err_f)
        if key == self.err_seen:
            return
        self.err_seen = key
        if not st.alive or st.err_est is None or st.err_f is None or st.err_n < REF_ERR_MIN:
            return               # too few errors: err_est is a bound, not a limit
        if not t.err_t / REF_ERR_BAND <= st.err_est <= t.err_t * REF_ERR_BAND:
            return
        ref = (t.mv[0], st.err_f * math.exp(maths.ERR_EFOLD * math.log(t.err_t / st.err_est)))
        if st.hot_at is not None and st.hot_at >= t.t_v:
            self.ref_held = ref
        elif st.last_step < SETTLED_STEP:   # the chip's search has settled there
            self.ref = ref

    def _drifted(self, now_s):
        """Holding and the die heads over the ceiling (an ambient step): search again now; the
        chip's hot steps shed the excess, the next judgement moves the voltage."""
        t = self.t
        tss = self.t_ss()
        if tss is None or tss <= t.target + URGENT_OVER_C:
            return False
        t.retunes += 1
        t.retune_reasons.append('die heads %.1f C over the ceiling (ambient?)' % (tss - t.target))
        t.t_start = now_s
        t._stage('search', now_s)
        self.seen_retunes = t.retunes
        self.pts = []
        self.settled = []
        return True

    def _urgent_hot(self, now_s):
        """Far over the ceiling: the voltage drops to the model's root at once."""
        t = self.t
        tss = self.t_ss()
        last_move_s = t.events[-1][0] if t.events else None
        if tss is None or tss <= t.target + URGENT_HOT_C or \
                (last_move_s is not None and now_s - last_move_s < 2.0 * TAU_DIE_S):
            return False         # after a move: the judgement, not a stack of drops
        if t.stage == 'verify':
            t.stage = 'search'
        mv = t.mv[0]
        s = self._s(mv)
        if s is None:
            return False         # no power reading yet: the chip's hot steps shed the heat
        new_mv = self._root_mv(mv, s)
        if new_mv >= mv:
            return False
        t._move_voltage(mv, new_mv, now_s, 'die heads %.1f C over the ceiling' % (tss - t.target))
        return True

    def _s(self, mv):
        """ln(f_therm / f_err) at this voltage, from the model; None without a die or power
        reading (the model has nothing to stand on)."""
        t = self.t
        st = self._chip()
        tss, heat_c = self.t_ss(), self.heat_c(st)
        if tss is None or not heat_c:
            return None
        room = (t.hot_c - tss) / heat_c
        f_therm = st.f * max(F_THERM_MIN, 1.0 + room)
        ref = self.ref or self.ref_held
        if ref is not None:
            f_err = ref[1] * maths.vf_ratio(mv / 1000.0, ref[0] / 1000.0, self._chip_v(mv)[1])
        elif st.hot_at is not None and st.hot_at >= t.t_v:
            f_err = st.f * math.exp(DEFICIT_HELD)
        else:
            f_err = st.f
        return math.log(f_therm / f_err)

    def _fit(self, mv):
        """Line through the judged points of this re-tune (least squares: each point's s is
        noisy by ~0.015): (x, s) it passes through and its slope, the magnitude kept within
        [1/S_SLOPE_SPAN, S_SLOPE_SPAN] x the prior; the prior alone with one point."""
        v, v_nom = self._chip_v(mv)
        prior = dlns_prior = -(maths.dlng_dlnv(v, v_nom) + THERM_SLOPE)
        xs = [p[0] for p in self.pts]
        ss = [p[1] for p in self.pts]
        xm, sm = sum(xs) / len(xs), sum(ss) / len(ss)
        fit = maths.line_fit(xs, ss)
        if fit is not None:
            lo, hi = dlns_prior * S_SLOPE_SPAN, dlns_prior / S_SLOPE_SPAN
            prior = max(lo, min(hi, fit[0]))
        return xm, sm, prior

    def _root_mv(self, mv, s=None):
        """Voltage at the root of s: through this point (s given: no fit yet, or urgent) or
        through the fitted line of the judged points."""
        t = self.t
        if s is not None or not self.pts:
            x0, s0 = math.log(mv), s if s is not None else 0.0
            slope = self._fit(mv)[2] if self.pts else \
                -(maths.dlng_dlnv(*self._chip_v(mv)) + THERM_SLOPE)
        else:
            x0, s0, slope = self._fit(mv)
        x = math.log(mv)
        x_new = max(x - MOVE_MAX, min(x + MOVE_MAX, x0 - s0 / slope))
        new_mv = int(round(math.exp(x_new) / t.mv_step)) * t.mv_step
        return max(t.mv_lo, min(t.mv_hi, new_mv))

    def _learn_k(self, pw):
        """Secant of the settled die temperature against wall power between the last two
        judgements far enough apart in power (same re-tune: the air did not move between them),
        averaged with what was learned before."""
        tss = self.t_ss()
        if tss is None or self.t.retunes:
            return               # after a re-tune the air may still be moving: keep K
        self.settled.append((pw, tss))
        del self.settled[:-2]
        if len(self.settled) < 2:
            return
        (p0, t0), (p1, t1) = self.settled
        if abs(p1 - p0) >= K_MIN_DP * p1 and self.k_prior:
            k = max(self.k_prior / K_SPAN, min(self.k_prior * K_SPAN, (t1 - t0) / (p1 - p0)))
            self.k_c_w = k if self.k_c_w is None else 0.5 * (self.k_c_w + k)

    def _judge(self, now_s, pw, g, y, tol):
        t = self.t
        mv = t.mv[0]
        t.curve.append((pw, pw / g if g > 0 else None, mv))
        t._keep_best(pw, g)
        power = self._power_state(pw, tol)
        if power == 'over':
            new_mv = self._power_down(mv, pw)
            why = 'over the power cap (%.0f W)' % pw
        else:
            self._learn_k(pw)
            s = self._s(mv)
            if s is None:        # no die reading: no judgement (not a hold: never done blind)
                return
            self.pts.append((math.log(mv), s))
            del self.pts[:-PTS_KEPT]
            new_mv = self._root_mv(mv)
            if power == 'full':
                new_mv = min(new_mv, mv)
            why = 'root: s %+.3f, die %.1f C, K %.2f C/W' % (s, self.t_ss(), self.k())
            hold = HOLD_STEPS + (HOLD_VERIFY_EXTRA if t.stage == 'verify' else 0)
            if abs(new_mv - mv) <= hold * t.mv_step:
                new_mv = mv
        self._hold_or_move(now_s, pw, g, new_mv, why)
