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

Power is a second constraint (budget_w: the rig's power limit less POWER_MARGIN, or the
profile's power_max_w): where the air is cool the chips would climb past the PSU's limit long
before a die reaches the ceiling (S21 at 25 C, 70 % fans: the ceiling alone allows 4.8 kW). The
chips' climb and the urgent/predictive moves work as in power mode (voltage.py, search.py);
a settled power over the band is judged like a hot voltage (lower it, on the power prior), a
power inside the band holds, and a cool voltage never rises past the power the cap allows.
"""

import math

from agent.autotune import maths
from agent.autotune.search import HOT_WAIT_S, TEMP_SMOOTH_S
from agent.autotune.voltage import VoltageLoop, SAMPLES_KEPT_S

HOT_FRAC = 0.3             # share of chips held by the ceiling that makes a voltage "hot":
                           # the oracle's optimum caps 27-31 % of S21/S19JPRO chips (outlet end)
BRACKET_STEPS = 2          # a bracket this many voltage steps wide is resolved (cool side)
FLAT_BAND = 0.10           # held share within this below HOT_FRAC: at the (flat) optimum
URGENT_HOT_C = 3.0         # a die this far over the ceiling lowers the voltage without waiting
URGENT_GAP_S = 30.0        # ... at most once per die time constant
URGENT_MOVE_MAX = 0.08     # largest urgent drop (ln): a hot start 17 C over needs ~6 %
CREEP_UP = 0.004           # smallest voltage rise (ln) while no hot voltage is known
FAST_UP = 0.01             # ... while fewer than HOT_FRAC/2 of the chips are held
UP_MOVE_MAX = 0.02         # largest voltage rise per move (ln)
DOWN_MOVE_MAX = 0.04
AIR_GUESS_C = 25.0         # the tuner does not see the air: a low guess makes rises smaller
TAU_DIE_S = 30.0           # die time constant (spec physics): the rise still to come is tau*dT/dt
WARM_GAIN = 1.3            # the hottest die rises this much more than the mean (outlet end)
WARM_SMOOTH_S = 7.2        # time constant of the smoothed mean-temperature slope (0.5 per 5 s)
TEMP_NOISE_C = 0.5         # die reading noise (sigma): the slope guard scales with it
WARM_MIN_CHIPS = 8         # fewer dies: no prediction (one die's slope is noise; the GAMMA's
                           # reading comes through the board controller at its own pace, and a
                           # jump from the idle reading looked like 51 C still to come)
WARM_MAX_C = 40.0          # largest rise still to come that is believed (a cold S21 start at
                           # 40 C heads 56 C up)
DEFICIT_MIN = 0.02         # a held chip runs at least this far below its limit (first step)
DEFICIT_MAX = 0.04
HEAT_POINTS = 12           # settled (wall W, mean die C) points kept for the air estimate
HEAT_SPAN = 0.03           # ... whose powers must span this share of the largest for a fit
POWER_MARGIN = 0.03        # power cap = limit less this: PSU readings are +-1 %, and one reading
                           # over the limit pauses the tuner (RigIO.safety_ok)


def power_cap_w(model, prof, limit_w=None):
    """Wall-power cap of thermal mode: the rig's power limit (limit_w, else the model's) less
    POWER_MARGIN, or the profile's power_max_w when that is lower (0 = none)."""
    cap = (limit_w or model['power_limit_w']) * (1.0 - POWER_MARGIN)
    want = prof.get('power_max_w') or 0.0
    return min(cap, want) if want > 0 else cap


class ThermalLoop(VoltageLoop):
    """VoltageLoop whose judgement brackets the voltage against the die ceiling."""

    def __init__(self, tuner):
        VoltageLoop.__init__(self, tuner)
        self.lo_mv = None        # highest voltage seen cool
        self.hi_mv = None        # lowest voltage seen hot
        self.seen_retunes = 0
        self.walk = 0            # consecutive hot judgements at or below the cool side
        self.heat_pts = []       # (mV, wall W, mean die C) at settled judgements, same air
        self.replan = False      # re-planning after an ambient step (until done again)

    def run(self, now_s):
        t = self.t
        t.dropped = True         # no approach from below: start where we are
        self._track_warming(now_s)
        if t.stage == 'done':
            self.replan = False
        if t.retunes != self.seen_retunes:
            self.seen_retunes = t.retunes     # ambient moved: the old bracket is stale
            self.lo_mv = self.hi_mv = None
            self.heat_pts = []
        if t.stage in ('search', 'verify', 'done') and self._urgent_hot(now_s):
            return
        VoltageLoop.run(self, now_s)

    def _track_warming(self, now_s):
        """t.warming_c: how much further the hottest die will still rise at the present
        settings (tau x the slope of the mean die reading, smoothed, less a noise guard), so a
        warming rig (a cold start, a voltage rise, an ambient step) is judged by where it is
        going, not where it is: the ceiling is kept during warm-up, not after it."""
        t = self.t
        temps = [st.temp_c for row in t.chips for st in row
                 if st.alive and st.temp_c is not None]
        if len(temps) < WARM_MIN_CHIPS:
            return
        mean_c = sum(temps) / len(temps)
        last = getattr(self, '_warm_last', None)
        self._warm_last = (now_s, mean_c)
        if last is None or now_s - last[0] <= 0.0:
            return
        dt = now_s - last[0]
        slope = (mean_c - last[1]) / dt
        self._slope_c_s = slope if getattr(self, '_slope_c_s', None) is None else \
            self._slope_c_s + maths.ema_weight(dt, WARM_SMOOTH_S) * (slope - self._slope_c_s)
        guard = 3.0 * 0.6 * 1.42 * TEMP_NOISE_C / math.sqrt(len(temps)) / dt
        excess = self._slope_c_s - guard if self._slope_c_s > guard else \
            min(0.0, self._slope_c_s + guard)
        # the smoothed readings lag a ramp by about their time constant: that rise is to come too
        ahead_s = TAU_DIE_S + TEMP_SMOOTH_S
        t.warming_c = max(-WARM_MAX_C, min(WARM_MAX_C, WARM_GAIN * ahead_s * excess))

    def _urgent_hot(self, now_s):
        """Far over the ceiling (a hot start, an ambient step): lower the voltage now by what
        the excess needs (power prior), frequencies pre-scaled with it."""
        t = self.t
        recent = getattr(self, 'urgent_at', None) is not None and \
            now_s - self.urgent_at < 2.0 * TAU_DIE_S
        # right after an urgent drop the prediction still sees the rise the drop has not yet
        # turned (through the simulator a second predicted drop 30 s after the first took S21
        # from 14.4 V to 13.39 V, 5 % under the optimum), and the readings are still over
        # while they fall (four drops in a row after an ambient step): act only on dies over
        # the ceiling and not falling
        hottest = self._hottest(predict=not recent)
        if recent and hottest is not None and self.t.warming_c < 0.0:
            hottest += self.t.warming_c
        last_move_s = t.events[-1][0] if t.events else None
        if hottest is None or hottest <= t.target + URGENT_HOT_C or \
                (last_move_s is not None and now_s - last_move_s < URGENT_GAP_S):
            return False
        mv = t.mv[0]
        v, v_nom = self._chip_v(mv)
        excess = hottest - t.target
        rise_c = hottest - AIR_GUESS_C
        # holding (an ambient step): re-plan from what the search learned, on rigs of
        # WARM_MIN_CHIPS dies or more (one die's mean is no air estimate, and its hot/cool
        # judgement is the whole share)
        replan = t.stage == 'done' and self._alive() >= WARM_MIN_CHIPS
        if replan:
            rise_c = self._rise_held_c(rise_c)
        dlnv = min(URGENT_MOVE_MAX, excess / (max(5.0, rise_c) * maths.dlnp_dlnv(v, v_nom)))
        new_mv = min(self._snap_mv(mv * math.exp(-dlnv)), mv - t.mv_step)
        if new_mv < t.mv_lo:
            return False
        if t.stage == 'done':
            self.replan = replan
            # holding and the dies head over the ceiling (an ambient step): act now rather
            # than after the mean has drifted retune_temp_c (the dies would pass the stop
            # temperature first: 82 C ceiling + 10 C step = 92 C on an S21)
            t.retunes += 1
            t.retune_reasons.append('die %.1f C over the ceiling (ambient?)' % excess)
            t.t_start = now_s
            t._stage('search', now_s)
            self.seen_retunes = t.retunes
            self.heat_pts = []
        # unsettled: no bracket from here (the old voltage was hot in a transient, an ambient
        # step; its steady state may well be under the ceiling)
        self.lo_mv = self.hi_mv = None
        if t.stage == 'verify':
            t.stage = 'search'
        self._drop(mv, new_mv, now_s, 'die %.1f C over the ceiling' % excess)
        self.urgent_at = t.t_v
        return True

    def _drop(self, mv, new_mv, now_s, why):
        """Lower the voltage; the drop takes the excess: no hot step on top of it for
        HOT_WAIT_S, while re-planning until the dies had two time constants to answer it."""
        t = self.t
        t._move_voltage(mv, new_mv, now_s, why)
        wait_s = 2.0 * TAU_DIE_S if self.replan else HOT_WAIT_S
        for row in t.chips:
            for st in row:
                st.hot_step_at = now_s + wait_s - HOT_WAIT_S

    def _alive(self):
        return sum(1 for row in self.t.chips for st in row if st.alive)

    def _note_heat(self, pw):
        """A settled judgement: (mV, wall W, mean die C), the latest one per voltage."""
        temps = [st.temp_f for row in self.t.chips for st in row
                 if st.alive and st.temp_f is not None]
        if not temps or pw is None:
            return
        pt = (self.t.mv[0], pw, sum(temps) / len(temps))
        pts = self.heat_pts
        if pts and pts[-1][0] == pt[0]:
            pts[-1] = pt
        else:
            pts.append(pt)
            del pts[:-HEAT_POINTS]

    def _rise_held_c(self, rise_c):
        """Holding when the air warms (an ambient step): the hottest die's rise over its air at
        the held power, from what the search saw. The mean die against wall power over the
        settled points (same air) is a line whose intercept is the air (fan power included);
        the air has since moved as far as the mean die has at the same settings. The rise is
        (hottest - mean now) + (mean at the last point - air then). Without a fit (the powers
        spanned less than HEAT_SPAN): rise_c as given (over AIR_GUESS_C)."""
        pts = self.heat_pts
        if len(pts) < 2:
            return rise_c
        ps = [p[1] for p in pts]
        fit = maths.line_fit(ps, [p[2] for p in pts])
        if fit is None or fit[0] <= 0.0 or max(ps) - min(ps) < HEAT_SPAN * max(ps):
            return rise_c
        mean_last = pts[-1][2]
        air = max(AIR_GUESS_C, min(mean_last - 5.0, fit[1]))
        temps = [st.temp_f for row in self.t.chips for st in row
                 if st.alive and st.temp_f is not None]
        return max(temps) - sum(temps) / len(temps) + mean_last - air

    def _held(self, now_s):
        """Alive chips held back by the ceiling since the last voltage move (after it settled)."""
        t = self.t
        since = t.t_v
        if getattr(self, 'urgent_at', None) == t.t_v or \
                (self.replan and t.events and t.events[-1][3] < t.events[-1][2]):
            since += TAU_DIE_S   # after an urgent drop the dies are still over for a while
        return [st for row in t.chips for st in row
                if st.alive and st.hot_at is not None and st.hot_at >= since]

    def _hottest(self, predict=True):
        temps = [st.temp_f for row in self.t.chips for st in row
                 if st.alive and st.temp_f is not None]
        if not temps:
            return None
        return max(temps) + (self.t.warming_c if predict else 0.0)

    def _judge(self, now_s, pw, g, y, tol):
        t = self.t
        mv = t.mv[0]
        t.curve.append((pw, pw / g if g > 0 else None, mv))
        t._keep_best(pw, g)
        self._note_heat(pw)
        held = self._held(now_s)
        alive = sum(1 for row in t.chips for st in row if st.alive) or 1
        power = self._power_state(pw, tol)
        if power == 'over' and len(held) <= HOT_FRAC * alive:
            new_mv = self._power_down(mv, pw)
            why = 'over the power cap (%.0f W)' % pw
        elif power == 'full' and len(held) <= HOT_FRAC * alive:
            new_mv = mv          # the power cap binds before the ceiling: hold here
            why = 'power cap'
        elif len(held) > HOT_FRAC * alive:
            new_mv = self._hot_move(mv, held, alive)
            why = 'held by the ceiling (%d chips)' % len(held)
        else:
            hottest = self._hottest()
            new_mv = min(self._cool_move(mv, held, alive, hottest), self._power_room(mv, pw))
            why = 'cool: %d chips held, hottest %.1f C' % (
                len(held), hottest if hottest is not None else 0.0)
        self._hold_or_move(now_s, pw, g, new_mv, why)

    def _hold_or_move(self, now_s, pw, g, new_mv, why):
        """The judgement's outcome: hold at this voltage (converged) or move to new_mv."""
        t = self.t
        mv = t.mv[0]
        if new_mv == mv:
            self._hold(now_s, pw, g)
            return
        if t.stage == 'verify':
            t.stage = 'search'
        if self.replan and new_mv < mv:
            self._drop(mv, new_mv, now_s, why)
        else:
            t._move_voltage(mv, new_mv, now_s, why)

    def _power_state(self, pw, tol):
        """'over' the cap's band, 'full' (inside it), or 'room' (below; also: no cap)."""
        cap = self.t.budget_w
        if not cap:
            return 'room'
        if pw > cap * (1.0 + 0.5 * tol):
            return 'over'
        return 'full' if pw >= cap * (1.0 - 0.8 * tol) else 'room'

    def _power_down(self, mv, pw):
        """Over the power cap: this voltage is too high (bracket), move to the cap on the power
        prior (rounded down), at least one step."""
        t = self.t
        self.hi_mv = mv if self.hi_mv is None else min(self.hi_mv, mv)
        if self.lo_mv is not None and self.lo_mv >= mv:
            self.lo_mv = None
        new_mv = maths.next_voltage_mv(mv, pw, t.budget_w, t._slope(mv / 1000.0, True),
                                       t.mv_step, t.mv_lo, t.mv_hi)
        if self.lo_mv is not None:
            new_mv = max(new_mv, self.lo_mv)
        return min(new_mv, mv - t.mv_step) if mv - t.mv_step >= t.mv_lo else mv

    def _power_room(self, mv, pw):
        """Highest voltage the power cap allows from here (power prior; no cap: the top)."""
        t = self.t
        if not t.budget_w:
            return t.mv_hi
        return max(mv, maths.next_voltage_mv(mv, pw, t.budget_w, t._slope(mv / 1000.0, True),
                                             t.mv_step, t.mv_lo, t.mv_hi))

    def _hot_move(self, mv, held, alive):
        t = self.t
        self.hi_mv = mv if self.hi_mv is None else min(self.hi_mv, mv)
        if self.lo_mv is not None and self.lo_mv >= mv:
            # judged cool here before, hot now: the boundary is just below; walk down,
            # doubling the step while it stays hot
            self.walk += 1
            self.lo_mv = max(t.mv_lo, mv - t.mv_step * (1 << min(self.walk - 1, 4)))
            return self.lo_mv
        if (self.hi_mv == mv or self.replan) and len(held) <= (HOT_FRAC + FLAT_BAND) * alive:
            return mv            # just over the flat optimum: hold (converged)
        if self.lo_mv is not None:
            return self._between(mv)
        return self._down(mv, held)

    def _cool_move(self, mv, held, alive, hottest):
        self.walk = 0
        self.lo_mv = mv if self.lo_mv is None else max(self.lo_mv, mv)
        if (self.hi_mv is not None or self.replan) and \
                len(held) >= (HOT_FRAC - FLAT_BAND) * alive > 0:
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
        dlnv = max(CREEP_UP if held_frac >= HOT_FRAC / 2.0 else FAST_UP,
                   0.5 * margin / (rise_c * maths.dlnp_dlnv(v, v_nom)))
        new_mv = self._snap_mv(mv * math.exp(min(UP_MOVE_MAX, dlnv)))
        return max(new_mv, mv + t.mv_step) if mv + t.mv_step <= t.mv_hi else mv
