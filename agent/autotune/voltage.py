"""Voltage loop of the tuner: once most chips have settled and temperatures had settle_s, the
averaged power (or good hashrate) is compared with the goal and the voltage moves on a secant in
log space; over budget it moves at once. Pure (MicroPython-safe).
"""

import math

from agent.autotune import maths

SETTLED_FRAC = 0.75        # share of settled chips before the goal is judged
URGENT_OVER = 0.02         # over budget by more than this: move the voltage without waiting
CAPPED_FRAC = 0.5          # share of chips held back by the budget for a predictive move
UP_MOVE_MAX = 0.02         # largest voltage rise per move (ln): power grows ~6x as fast
SETTLED_SPAN_S = 20.0      # a judgement needs samples over at least this long
SAMPLES_KEPT_S = 600.0


class VoltageLoop:
    """One run() per tuner step. Reads and moves the tuner's voltage through `t`."""

    margin_c = None              # thermal hot-limit margin under the ceiling (None: the tuner's)
    settle_s = None              # wait after a move before judging (None: the profile's)

    def __init__(self, tuner):
        self.t = tuner

    def heat_c(self, st):
        """Die degrees per unit of relative frequency for a chip, when the loop has a learned
        thermal model (thermal_one.py); None: the search's family prior."""
        return None

    def run(self, now_s):
        t = self.t
        if t.stage not in ('search', 'verify', 'done'):
            return
        if t.stage == 'search' and not t.dropped and t.p_recent is not None:
            t.dropped = True
            if t._initial_drop(now_s):
                return
        if self._urgent(now_s) or self._predictive(now_s):
            return
        m = t._measure()
        if m is None:
            return
        pw, g, span = m
        t.last = {'power_w': pw, 'good_ths': g, 'j_per_th': pw / g if g > 0 else None}
        y = t._goal_value(m)
        tol = t.prof['power_tol_pct'] / 100.0
        if t.stage == 'done':
            t._watch_drift(now_s, y, tol)
            return
        if self._overtime(now_s, pw, g):
            return
        if t._settled_frac() >= SETTLED_FRAC and span >= SETTLED_SPAN_S:
            self._judge(now_s, pw, g, y, tol)

    def _urgent(self, now_s):
        """Over budget: do not wait for settling (chips may still be climbing)."""
        t = self.t
        budget = t.budget_w
        if not budget or t.stage == 'done' or t.p_recent is None \
                or t.p_recent <= budget * (1.0 + URGENT_OVER):
            return False
        mv = t.mv[0]
        new_mv = maths.next_voltage_mv(mv, t.p_recent, budget, t._slope(mv / 1000.0, True),
                                       t.mv_step, t.mv_lo, t.mv_hi)
        if new_mv >= mv:
            return False
        if t.stage == 'verify':
            t.stage = 'search'
        t._move_voltage(mv, new_mv, now_s, 'over budget %.0f W' % t.p_recent)
        return True

    def _predictive(self, now_s):
        """The budget is full while most chips still want to climb: predict the power they
        would draw and lower the voltage now (they then climb to the new, lower limits)."""
        t = self.t
        budget = t.budget_w
        if not budget or t.stage != 'search' or t.p_recent is None or t.capped is None \
                or t.capped[0] < CAPPED_FRAC or now_s - t.t_v < 0.5 * t.prof['settle_s']:
            return False
        mv = t.mv[0]
        y_pred = t.p_recent * (1.0 + 0.8 * t.capped[1])
        t.capped = None
        new_mv = maths.next_voltage_mv(mv, y_pred, budget, t._slope(mv / 1000.0, True),
                                       t.mv_step, t.mv_lo, t.mv_hi)
        if new_mv >= mv:
            return False
        t._move_voltage(mv, new_mv, now_s, 'budget full, chips climbing %.0f W' % y_pred)
        return True

    def _overtime(self, now_s, pw, g):
        """Time budget spent: hold what we have (the urgent rule still acts), verify it for
        verify_s and finish. True when the budget is spent."""
        t = self.t
        if now_s - t.t_start <= t.prof['time_budget_s']:
            return False
        if t.stage == 'search':
            t._stage('verify', now_s)
            t.message = 'time budget reached: holding the current settings'
        elif now_s - t.t_stage >= t.prof['verify_s']:
            t._finish(now_s, pw, g)
            t.message = 'time budget reached after %.0f s' % (now_s - t.t_start)
        return True

    def _next_mv(self, mv, y):
        t = self.t
        slope = t._slope(mv / 1000.0)
        new_mv = maths.next_voltage_mv(mv, y, t.target, slope, t.mv_step, t.mv_lo, t.mv_hi)
        if t.mode == 'power':
            return min(new_mv, int(mv * math.exp(UP_MOVE_MAX) / t.mv_step) * t.mv_step)
        # Meet the hashrate: round up (a floor must hold), least voltage that reaches it.
        if y < t.target and new_mv <= mv:
            return min(t.mv_hi, mv + t.mv_step)
        return new_mv

    def _within(self, y, tol):
        """Inside the goal band; bands with hysteresis (measured power is noisy, PSU +-1 %),
        wider in verify so it does not flap."""
        t = self.t
        wide = 1.5 if t.stage == 'verify' else 1.0
        if t.mode == 'power':
            return t.target * (1.0 - 0.8 * tol * wide) <= y <= t.target * (1.0 + 0.5 * tol * wide)
        return t.target * (1.0 - 0.2 * tol * wide) <= y <= t.target * (1.0 + tol * wide)

    def _judge(self, now_s, pw, g, y, tol):
        """Settled: record the point, then hold (converged) or move the voltage."""
        t = self.t
        mv = t.mv[0]
        t.vhist.append((mv, y))
        t.curve.append((pw, pw / g if g > 0 else None, mv))
        t._keep_best(pw, g)
        new_mv = self._next_mv(mv, y)
        if new_mv > mv and t._hot_chips(now_s) > 0:
            new_mv = mv          # at the thermal limit: more voltage would only heat (runaway)
        if new_mv == mv or self._within(y, tol):
            t.converged += 1
            t.samples = [s for s in t.samples if s[0] >= now_s - SAMPLES_KEPT_S]
            t.t_v = min(t.t_v, now_s - t.prof['settle_s'])
            if t.stage == 'search' and t.converged >= 2:
                t._stage('verify', now_s)
            elif t.stage == 'verify' and now_s - t.t_stage >= t.prof['verify_s']:
                t._finish(now_s, pw, g)
            return
        if t.stage == 'verify':
            t.stage = 'search'
        t._move_voltage(mv, new_mv, now_s, 'settled at %.2f' % y)
