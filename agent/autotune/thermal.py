"""Thermal-bound voltage loop (mode 'thermal'): most good hashes with every die at or below a
ceiling (target, degrees C). Pure (MicroPython-safe).

Where heat binds, a chip held back by the ceiling runs below its own limit: the voltage it gets
only heats. The best point (hal/sim/oracle.py agrees) has the hottest chips at their error target
and at the ceiling together, so the voltage is bracketed: 'hot' (more than HOT_FRAC of the chips
held back by the ceiling since the last move) lowers it, 'cool' (none near the ceiling) raises
it, and once both sides are known the next point is the midpoint. Down moves are sized from how
far the held chips run below their limits (their error rates), up moves from the temperature
margin; frequencies are pre-scaled with each move (Tuner._move_voltage), so the chips re-plan
per chip at the new voltage instead of stopping at the thermal limit.
"""

import math

from agent.autotune import maths
from agent.autotune.voltage import VoltageLoop, SAMPLES_KEPT_S

HOT_FRAC = 0.3             # share of chips held by the ceiling that makes a voltage "hot":
                           # the oracle's optimum caps 27-31 % of S21/S19JPRO chips (outlet end)
BRACKET_STEPS = 2          # a bracket this many voltage steps wide is resolved (cool side)
FLAT_BAND = 0.08           # held share within this below HOT_FRAC: at the (flat) optimum
URGENT_HOT_C = 3.0         # a die this far over the ceiling lowers the voltage without waiting
URGENT_GAP_S = 30.0        # ... at most once per die time constant
CREEP_UP = 0.004           # smallest voltage rise (ln) while no hot voltage is known
FAST_UP = 0.01             # ... while fewer than HOT_FRAC/3 of the chips are held
UP_MOVE_MAX = 0.02         # largest voltage rise per move (ln)
DOWN_MOVE_MAX = 0.04
AIR_GUESS_C = 25.0         # the tuner does not see the air: a low guess makes rises smaller
DEFICIT_MIN = 0.02         # a held chip runs at least this far below its limit (first step)
DEFICIT_MAX = 0.04


class ThermalLoop(VoltageLoop):
    """VoltageLoop whose judgement brackets the voltage against the die ceiling."""

    def __init__(self, tuner):
        VoltageLoop.__init__(self, tuner)
        self.lo_mv = None        # highest voltage seen cool
        self.hi_mv = None        # lowest voltage seen hot
        self.seen_retunes = 0
        self.walk = 0            # consecutive hot judgements at or below the cool side

    def run(self, now_s):
        t = self.t
        t.dropped = True         # no approach from below: start where we are
        if t.retunes != self.seen_retunes:
            self.seen_retunes = t.retunes     # ambient moved: the old bracket is stale
            self.lo_mv = self.hi_mv = None
        if t.stage in ('search', 'verify') and self._urgent_hot(now_s):
            return
        VoltageLoop.run(self, now_s)

    def _urgent_hot(self, now_s):
        """Far over the ceiling (a hot start, an ambient step): lower the voltage now by what
        the excess needs (power prior), frequencies pre-scaled with it."""
        t = self.t
        hottest = self._hottest()
        if hottest is None or hottest <= t.target + URGENT_HOT_C or now_s - t.t_v < URGENT_GAP_S:
            return False
        mv = t.mv[0]
        v, v_nom = self._chip_v(mv)
        excess = hottest - t.target
        dlnv = min(DOWN_MOVE_MAX, excess / (max(5.0, hottest - AIR_GUESS_C)
                                           * maths.dlnp_dlnv(v, v_nom)))
        new_mv = min(self._snap_mv(mv * math.exp(-dlnv)), mv - t.mv_step)
        if new_mv < t.mv_lo:
            return False
        self.lo_mv = self.hi_mv = None   # unsettled: no bracket from here
        if t.stage == 'verify':
            t.stage = 'search'
        t._move_voltage(mv, new_mv, now_s, 'die %.1f C over the ceiling' % excess)
        return True

    def _held(self, now_s):
        """Alive chips held back by the ceiling since the last voltage move (after it settled)."""
        t = self.t
        since = t.t_v
        return [st for row in t.chips for st in row
                if st.alive and st.hot_at is not None and st.hot_at >= since]

    def _hottest(self):
        temps = [st.temp_f for row in self.t.chips for st in row
                 if st.alive and st.temp_f is not None]
        return max(temps) if temps else None

    def _judge(self, now_s, pw, g, y, tol):
        t = self.t
        mv = t.mv[0]
        t.curve.append((pw, pw / g if g > 0 else None, mv))
        t._keep_best(pw, g)
        held = self._held(now_s)
        alive = sum(1 for row in t.chips for st in row if st.alive) or 1
        if len(held) > HOT_FRAC * alive:
            new_mv = self._hot_move(mv, held, alive)
            why = 'held by the ceiling (%d chips)' % len(held)
        else:
            hottest = self._hottest()
            new_mv = self._cool_move(mv, held, alive, hottest)
            why = 'cool: %d chips held, hottest %.1f C' % (
                len(held), hottest if hottest is not None else 0.0)
        if new_mv == mv:
            self._hold(now_s, pw, g)
            return
        if t.stage == 'verify':
            t.stage = 'search'
        t._move_voltage(mv, new_mv, now_s, why)

    def _hot_move(self, mv, held, alive):
        t = self.t
        self.hi_mv = mv if self.hi_mv is None else min(self.hi_mv, mv)
        if self.lo_mv is not None and self.lo_mv >= mv:
            # judged cool here before, hot now: the boundary is just below; walk down,
            # doubling the step while it stays hot
            self.walk += 1
            self.lo_mv = max(t.mv_lo, mv - t.mv_step * (1 << min(self.walk - 1, 4)))
            return self.lo_mv
        if self.hi_mv == mv and len(held) <= (HOT_FRAC + FLAT_BAND) * alive:
            return mv            # just over the flat optimum: hold (converged)
        if self.lo_mv is not None:
            return self._between(mv)
        return self._down(mv, held)

    def _cool_move(self, mv, held, alive, hottest):
        self.walk = 0
        self.lo_mv = mv if self.lo_mv is None else max(self.lo_mv, mv)
        if self.hi_mv is not None and len(held) >= (HOT_FRAC - FLAT_BAND) * alive > 0:
            return mv            # the optimum is flat here: hold (converged)
        if self.hi_mv is not None:
            return self._between(mv)
        return self._up(mv, hottest, len(held) / float(alive))

    def _hold(self, now_s, pw, g):
        """Converged at this voltage: two in a row go to verify, verify_s of it finishes."""
        t = self.t
        t.converged += 1
        t.samples = [s for s in t.samples if s[0] >= now_s - SAMPLES_KEPT_S]
        t.t_v = min(t.t_v, now_s - t.prof['settle_s'])
        if t.stage == 'search' and t.converged >= 2:
            t._stage('verify', now_s)
        elif t.stage == 'verify' and now_s - t.t_stage >= t.prof['verify_s']:
            t._finish(now_s, pw, g)

    def _snap_mv(self, mv):
        t = self.t
        mv = int(round(mv / float(t.mv_step))) * t.mv_step
        return max(t.mv_lo, min(t.mv_hi, mv))

    def _between(self, mv):
        """Midpoint of the bracket; at its resolution: the cool side (converged there)."""
        t = self.t
        lo, hi = self.lo_mv, self.hi_mv
        if hi - lo <= BRACKET_STEPS * t.mv_step:
            return lo
        mid = lo + int((hi - lo) / 2.0 / t.mv_step) * t.mv_step
        return max(lo + t.mv_step, min(hi - t.mv_step, mid))

    def _chip_v(self, mv):
        d = self.t.io.model()['domains_per_board']
        return mv / 1000.0 / d, self.t.v_nom_board_mv / 1000.0 / d

    def _down(self, mv, held):
        """Lower the voltage so the held chips' limits come down to where they run now."""
        t = self.t
        defs = []
        for st in held:
            e = st.err_est if st.err_est else t.err_t / 50.0
            defs.append(min(DEFICIT_MAX, max(DEFICIT_MIN,
                                             maths.ERR_EFOLD * math.log(t.err_t / max(e, 1e-9)))))
        defs.sort()
        v, v_nom = self._chip_v(mv)
        dlnv = min(DOWN_MOVE_MAX, defs[len(defs) // 2] / maths.dlng_dlnv(v, v_nom))
        new_mv = self._snap_mv(mv * math.exp(-dlnv))
        return min(new_mv, mv - t.mv_step) if mv - t.mv_step >= t.mv_lo else mv

    def _up(self, mv, hottest, held_frac):
        """Raise the voltage: by half of what the temperature margin allows, at least
        CREEP_UP (FAST_UP while few chips are held), so the bracket closes in a few moves."""
        t = self.t
        v, v_nom = self._chip_v(mv)
        margin = t.target - hottest if hottest is not None else 0.0
        rise_c = max(5.0, (hottest or t.target) - AIR_GUESS_C)
        dlnv = max(CREEP_UP if held_frac >= HOT_FRAC / 3.0 else FAST_UP,
                   0.5 * margin / (rise_c * maths.dlnp_dlnv(v, v_nom)))
        new_mv = self._snap_mv(mv * math.exp(min(UP_MOVE_MAX, dlnv)))
        return max(new_mv, mv + t.mv_step) if mv + t.mv_step <= t.mv_hi else mv
