"""Per-chip frequency search of the tuner: counters since a chip last changed frequency decide
its next step so its error rate goes to the target (maths.freq_step); hot dies step down; the
power budget limits how fast chips climb together; over budget with the voltage already at its
floor, every chip sheds frequency in proportion (the only way left to lower the power). Pure
(MicroPython-safe).
"""

from agent.autotune import maths, nonces

SETTLED_STEP = 0.006       # a chip whose last step was smaller than this counts as settled

CLIMB_STOP_OVER = 0.01     # over budget by more than this: no chip steps up
MIN_UP_STEP = 0.003        # chips near a full budget still creep up this much per decision
ZERO_ERR_COUNT = 3.0       # expected errors at the target when a silent chip may step up
MAX_STEP = 0.04            # largest relative step of a chip bracketing upward
MIN_BRACKET_STEP = 0.01
HOT_STEP = -0.01           # a chip above the hot limit steps down this much
HOLD_NOISE_STEP = 0.004    # holding: smaller steps are noise, not a reason to move
SELF_HEAT_C = 20.0         # die rise over its air at full frequency (family prior: r_ja*p)
HOT_GAIN = 1.0
FINE_HOT_STEP = 0.003      # smallest hot step where the heat per hertz is learned (one chip)
HOT_STEP_MAX = 0.06
HOT_WAIT_S = 25.0          # thermal mode: one sized hot step per this long (die tau 30 s)
TEMP_SMOOTH_S = 14.0       # time constant of the smoothed die temperature (weight 0.3 per 5 s
                           # tick; by time, not per tick: a slow poll must not slow it further)


class ChipState:
    def __init__(self, f):
        self.f = f
        self.pending = True          # baseline not taken yet (frequency not yet seen applied)
        self.h0 = 0.0
        self.e0 = 0
        self.last_step = 1.0
        self.decisions = 0
        self.zero_runs = 0
        self.err_est = None
        self.err_n = 0               # errors behind err_est (0: it is only a bound)
        self.err_f = None            # frequency err_est was counted at
        self.temp_c = None
        self.temp_f = None           # smoothed die temperature (thermal mode judges on it)
        self.temp_t = None           # when temp_f was last updated
        self.alive = True
        self.hot_at = None           # last time the chip was held back by the hot limit
        self.hot_step_at = None      # last sized hot step (thermal mode)
        self.bad = False             # last window clearly above err_max (error drift)
        self.t0 = None               # when the baseline was taken (nonce source: window cap)


class ChipSearch:
    """Decides every chip's next frequency from the tuner's observations (one call per step).

    Reads the tuner's goal and state (stage, mode, target, recent power, limits) through `t`;
    owns nothing but the decision rules, so the tuner stays the one place that holds state.
    """

    def __init__(self, tuner):
        self.t = tuner

    def _rules(self):
        """This step's decision parameters: holding, gain, errors needed, budget headroom."""
        t = self.t
        hold = t.stage == 'done'
        p_now = t.p_recent if t.p_recent is not None else (t.samples[-1][1] if t.samples else None)
        up_cap = 1.0
        budget = t.budget_w       # power mode: the target; thermal: the power cap
        if budget and p_now:
            up_cap = max(MIN_UP_STEP, budget / p_now - 1.0 + CLIMB_STOP_OVER)
        # Voltage at its floor and still over budget: chips at their error limit there draw more
        # than the budget (S19J Pro at 11.5 V: ~1 180 W), so each chip's next step is at most
        # budget/power - 1. Power is not all dynamic (fans, leakage), so this cuts too little,
        # never too much: it approaches the budget from above over a few decisions.
        shed = None
        if budget and t.p_recent is not None and t.p_recent > budget * (1.0 + CLIMB_STOP_OVER) \
                and max(t.mv) <= t.mv_lo:
            shed = budget / t.p_recent - 1.0
        return {'hold': hold, 'now_s': t.now_s, 'shed': shed,
                'gain': 0.5 if t.stage in ('verify', 'done') else 0.8,
                'nmin': t.prof['min_err_count'] * (2.0 if hold else 1.0),
                'over_budget': bool(budget) and t.p_recent is not None and
                t.p_recent > budget * (1.0 + CLIMB_STOP_OVER),
                'up_cap': up_cap}

    def decide(self, obs, now_s):
        """obs (io.chips()) -> {(board, chip): new MHz}; sets tuner.capped."""
        rules = self._rules()
        plan = {}
        wants = []
        self.t.capped = None
        for b, row in enumerate(obs):
            for i, c in enumerate(row):
                f_new = self._chip(self.t.chips[b][i], c, now_s, rules, wants)
                if f_new is not None:
                    plan[(b, i)] = f_new
        n = sum(len(r) for r in obs)
        if wants and n:
            wants.sort()
            self.t.capped = (len(wants) / float(n), wants[len(wants) // 2])
        return plan

    def _chip(self, st, c, now_s, rules, wants):
        """One chip: new frequency or None."""
        counts = self._observe(st, c, now_s)
        if counts is None:
            return None
        h, e, hot = counts
        step = self._hot_step(st, now_s) if hot else self._step(st, h, e, rules)
        if step is None:
            return None
        if rules['shed'] is not None:
            step = min(step, rules['shed'])
        if step > 0 and rules['over_budget']:
            return None            # spending more power now only deepens the overshoot
        if step > 0 and self.t.mode == 'thermal':
            step = min(step, self.t.thermal_room(st))    # never climb over the ceiling
            if step <= 0:
                return None
        if step > rules['up_cap']:
            wants.append(step)
            step = rules['up_cap']   # chips step together: keep the rise within the headroom
        st.decisions += 1
        st.last_step = 0.0 if hot else abs(step)   # hot-limited: at its limit
        f_new = self.t._snap(st.f * (1.0 + step))
        if abs(f_new - st.f) < 1e-6:
            # Below PLL resolution: keep the data unless the window grew too long.
            if h * self.t.err_t > 6 * rules['nmin']:
                st.h0 += h * 0.5
                st.e0 += e // 2
            return None
        st.f = f_new
        st.pending = True
        return f_new

    def _hot_step(self, st, now_s):
        """Step of a chip over the hot limit. Thermal mode sits at the ceiling: the step is sized
        by the excess (1 % of frequency is only ~SELF_HEAT_C/100 of die temperature) and taken at
        most once per die time constant (the reading lags), so a held chip lands under the
        ceiling instead of creeping there 1 % at a time."""
        if self.t.mode != 'thermal':
            return HOT_STEP
        if st.hot_step_at is not None and now_s - st.hot_step_at < HOT_WAIT_S:
            return None
        st.hot_step_at = now_s
        excess = st.temp_f + self.t.warming_c - self.t.hot_c
        heat_c = self.t.voltage.heat_c(st)    # one chip: its learned model
        if heat_c:
            return -min(HOT_STEP_MAX, max(FINE_HOT_STEP, excess / heat_c))
        return -min(HOT_STEP_MAX, max(-HOT_STEP, HOT_GAIN * excess / SELF_HEAT_C))

    def _observe(self, st, c, now_s):
        """(hashes, errors, hot) since the chip's baseline, or None (dead, or baseline taken now)."""
        st.temp_c = c.get('temp_c')
        if st.temp_c is not None:
            st.temp_f = st.temp_c if st.temp_f is None else \
                st.temp_f + maths.ema_weight(now_s - st.temp_t, TEMP_SMOOTH_S) * \
                (st.temp_c - st.temp_f)
            st.temp_t = now_s
        st.alive = bool(c.get('alive', True))
        if not st.alive:
            return None
        if st.pending:
            if c.get('freq_mhz') is not None and abs(c['freq_mhz'] - st.f) <= 0.5:
                st.pending = False
                st.h0 = c.get('hash_units') or 0.0
                st.e0 = c.get('err_units') or 0
                st.t0 = now_s
            return None
        # Thermal mode sits at the ceiling: judge on the smoothed reading (sensor noise).
        # ... and by where it is going (warming_c: the rise still to come, thermal.py)
        temp = st.temp_f + self.t.warming_c if self.t.mode == 'thermal' and \
            st.temp_f is not None else st.temp_c
        hot = temp is not None and temp > self.t.hot_c
        if hot:
            st.hot_at = now_s
        return (c.get('hash_units') or 0.0) - st.h0, (c.get('err_units') or 0) - st.e0, hot

    def _step(self, st, h, e, rules):
        """Relative frequency step from the error statistics, or None (not enough data yet)."""
        err_t = self.t.err_t
        if self.t.source == 'nonces':
            step = nonces.chip_step(st, h, e, rules['now_s'], self.t, rules['hold'])
            if step is not None and rules['hold'] and not st.bad and abs(step) < HOLD_NOISE_STEP:
                step = 0.0
            return step
        if e == 0 and not rules['hold'] and h * err_t >= ZERO_ERR_COUNT:
            # No error where ZERO_ERR_COUNT were expected at the target: the rate is below it
            # with ~95 % confidence; bracket upward (doubling) without waiting.
            st.zero_runs += 1
            st.err_est = maths.err_estimate(0, h)
            st.err_n = 0
            st.err_f = st.f
            return min(MAX_STEP, max(maths.freq_step(0, h, err_t, rules['gain']), MIN_BRACKET_STEP)
                       * (1 << min(st.zero_runs - 1, 2)))
        if not maths.decision_ready(e, h, err_t, rules['nmin']):
            return None
        st.err_est = maths.err_estimate(e, h)
        st.err_n = e
        st.err_f = st.f
        st.bad = maths.clearly_above(e, h, self.t.err_max)
        step = maths.freq_step(e, h, err_t, rules['gain'])
        if e == 0 and not rules['hold']:
            # No errors at all: bracket upward faster (doubling) while it lasts.
            st.zero_runs += 1
            step = min(MAX_STEP, step * (1 << min(st.zero_runs - 1, 2)))
        else:
            st.zero_runs = 0
        if rules['hold'] and not st.bad and abs(step) < HOLD_NOISE_STEP:
            step = 0.0     # holding: do not chase noise
        return step
