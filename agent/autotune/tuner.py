"""Tuner state machine: every chip of the rig searched in parallel, plus the voltage loop.

Pure (MicroPython-safe: plain classes, math, hal/pll). One step(now_s) per control tick; it reads
the IO once, decides, asks, and returns the next wake time; it never blocks and yields at once
when io.safety_ok() is False (counts of that period are discarded).

Per chip: counters since the chip last changed frequency; once the errors expected at the target
rate reach min_err_count (or errors are clearly many) the chip steps its frequency so its error
rate goes to the target (maths.freq_step). Hot dies step down.
Voltage: once most chips have settled and temperatures had settle_s, the averaged power (or good
hashrate) is compared with the goal and the voltage moves on a secant in log space; frequencies
are pre-scaled by the family V-F prior so chips stay near their limit across the move (lowered
before a voltage drop, raised after a rise).
Stages: start -> search -> verify -> done (holding, watching for drift); paused while unsafe.
"""

import math

from hal import pll
from agent.autotune import maths, nonces
from agent.autotune.search import ChipSearch, ChipState, SETTLED_STEP
from agent.autotune.thermal import ThermalLoop, power_cap_w
from agent.autotune.thermal_one import OneChipLoop, wants_one_chip
from agent.autotune.voltage import VoltageLoop

STAGES = ('idle', 'start', 'search', 'verify', 'done', 'paused', 'failed')
RECENT_AFTER_MOVE_S = 10.0  # recent power counts from this long after a voltage move
STOCK_MARGIN = 1.25        # assumed fmax / stock frequency for the first voltage move
MEASURE_WINDOW_S = 30.0    # the goal is judged on the last this many seconds
SECANT_MIN_STEPS = 4       # closer settled points are noise: use the prior slope
ERR_DRIFT_FRAC = 0.1       # this share of chips clearly above err_max while holding: re-tune
EVENTS_KEPT = 20
HOT_MEMORY_S = 300.0       # a chip held back by the hot limit blocks voltage rises this long
POWER_MIN_SAMPLES = 3
HELD_RECENT_S = 60.0       # thermal mode: a chip hot this recently counts as held by the ceiling
AIR_GUESS_C = 25.0         # thermal mode: the tuner does not see the air (low guess: small rises)
ROOM_GAIN = 0.7
THERMAL_MARGIN_C = 0.3     # thermal mode, rigs under SMALL_RIG_CHIPS: chips step down this far
                           # under the die ceiling (one chip is the whole hot/cool judgement:
                           # at its error target it must not read as held). Larger rigs: none
                           # (1 C under the ceiling costs a held chip ~5 % of its frequency)
SMALL_RIG_CHIPS = 8


class Tuner:
    def __init__(self, io, profile, target, saved=None, tick_s=5.0):
        self.io = io
        self.prof = profile
        self.mode = profile['mode']
        self.target = float(target)
        self.goal = self.mode            # as asked ('heat' runs as power mode, below)
        self.heat_budget_w = None
        self.heat_share = profile.get('heat_share', 1.0)
        if self.mode == 'heat':          # heat into the room = wall x heat_share: a wall budget
            self.heat_budget_w = self.target
            self.mode = 'power'
            self.target = maths.wall_for_heat_w(self.target, self.heat_share)
        self.saved = saved
        self.tick_s = tick_s
        self.stage = 'idle'
        self.resume_stage = None
        self.t_start = None
        self.t_stage = None
        self.t_v = None
        self.samples = []            # (t_s, power_w, good_ths) since the last voltage move
        self.vhist = []              # settled (mv, measured) points for the secant
        self.converged = 0
        self.chips = None
        self.best = None
        self.curve = []              # (wall_w, j_per_th) at each settled voltage
        self.message = ''
        self.progress = 0.0
        self.done_temp_c = None
        self.retunes = 0
        self.retune_reasons = []
        self.last = {'power_w': None, 'good_ths': None, 'j_per_th': None}
        self.p_recent = None
        self.dropped = False         # initial voltage drop done (or not needed)
        self.events = []             # (t_s, why, mv_old, mv_new) of recent voltage moves
        self.capped = None           # (fraction of chips held back by the budget, median wish)
        self.warming_c = 0.0         # thermal: rise of the hottest die still to come (thermal.py)
        self.search = ChipSearch(self)
        # 'nonces': hashes and errors are verified nonces (agent/autotune/nonces.py decides)
        self.source = getattr(io, 'source', 'counters')
        self.nonce_plan = None
        self.nonce_stats = {'decisions': 0, 'nonces': 0.0, 'capped': 0}
        self.now_s = None
        # thermal: target is the die ceiling (C); the goal is the most good hashes under it
        self.voltage = VoltageLoop(self)
        if self.mode == 'thermal':     # one chip: a root find on a learned thermal model
            self.voltage = OneChipLoop(self) if wants_one_chip(io.model()) else ThermalLoop(self)

    # ------------------------------------------------------------------ setup
    def _bounds(self):
        lim = self.io.limits()
        m = self.io.model()
        p = self.prof
        f_lo = max(lim['freq_min_mhz'], p['freq_min_mhz'] or 0.0)
        f_hi = min(lim['freq_max_mhz'], p['freq_max_mhz'] or lim['freq_max_mhz'])
        mv_lo = max(lim['board_mv_min'], p['board_mv_min'] or 0)
        mv_hi = min(lim['board_mv_max'], p['board_mv_max'] or lim['board_mv_max'])
        self.f_lo, self.f_hi = f_lo, f_hi
        self.mv_lo, self.mv_hi = mv_lo, mv_hi
        self.mv_step = m['voltage_step_mv']
        self.per_rig = m['voltage_per'] == 'rig'
        self.v_nom_board_mv = m['stock_board_mv']
        self.hot_c = m['temp_hot_c'] - p['temp_margin_c']
        if self.mode == 'thermal':
            small = m['boards'] * m['chips_per_board'] < SMALL_RIG_CHIPS
            margin = self.voltage.margin_c
            if margin is None:
                margin = THERMAL_MARGIN_C if small else 0.0
            self.hot_c = min(self.hot_c, self.target - margin)
        # Wall-power budget the chips must stay under: the goal in power mode; in thermal mode
        # the rig's power limit less a margin (or the profile's power_max_w), a second constraint
        # beside the die ceiling (without it S21 climbs past the limit and safety pauses it).
        self.budget_w = self.target if self.mode == 'power' else (
            power_cap_w(m, p, getattr(self.io, 'power_limit_w', None))
            if self.mode == 'thermal' else None)
        self.err_t = p['err_target_pct'] / 100.0
        self.err_max = p['err_max_pct'] / 100.0

    def _snap(self, mhz):
        mhz = max(self.f_lo, min(self.f_hi, mhz))
        f = pll.solve(self.io.family(), mhz)['freq_mhz']
        if f > self.f_hi + 1e-9:
            f = pll.solve(self.io.family(), mhz - 1.0)['freq_mhz']
        if f < self.f_lo - 1e-9:
            f = pll.solve(self.io.family(), mhz + 1.0)['freq_mhz']
        return f

    def _start(self, now_s):
        io = self.io
        self._bounds()
        self.t_start = now_s
        obs = io.chips()
        self.ids = io.board_ids()
        mv_now = io.voltage_mv()
        self.mv = list(mv_now)
        start_f = None
        saved = self.saved
        if saved and saved.get('board_ids') == self.ids and saved.get('mode') == self.mode \
                and abs(saved.get('target', -1) - self.target) <= 1e-6 * max(1.0, self.target) \
                and [len(r) for r in saved.get('freqs') or []] == [len(r) for r in obs] \
                and len(saved.get('board_mv') or []) == len(obs):
            start_f = saved['freqs']
            self.mv = list(saved['board_mv'])
            self.message = 'reusing saved result; verifying'
        self.chips = []
        plan = {}
        for b, row in enumerate(obs):
            states = []
            for i, c in enumerate(row):
                f = start_f[b][i] if start_f else (c.get('freq_mhz') or io.model()['f_nom_mhz'])
                f = self._snap(f)
                states.append(ChipState(f))
                plan[(b, i)] = f
            self.chips.append(states)
        # Nonce traffic must fit the UART: ticket difficulty from the rig's likely hashrate.
        m = io.model()
        for b, u in enumerate(io.uart()):
            hs = m['chips_per_board'] * m['cores_per_chip'] * self.f_hi * 1e6
            if self.source == 'nonces':
                self.nonce_plan = nonces.plan(
                    hs, m['chips_per_board'], u['baud'], u.get('time_scale', 1.0),
                    self.prof.get('nonce_uart_pct', 100.0 * nonces.UART_SHARE) / 100.0,
                    self.err_t, window_max_s=self.prof.get('nonce_window_max_s',
                                                           nonces.WINDOW_MAX_S),
                    host_rate_s=self.prof.get('nonce_host_rate_s', 0.0) / len(self.mv))
                io.set_ticket_bits(b, self.nonce_plan['ticket_bits'])
            else:
                io.set_ticket_bits(b, maths.ticket_bits(hs, u['baud'], u.get('time_scale', 1.0)))
        io.request_frequencies(plan)
        self._set_voltage(self.mv[0] if self.per_rig else self.mv)
        self.t_v = now_s
        self.samples = []
        self.dropped = bool(start_f)
        self._stage('verify' if start_f else 'search', now_s)

    def _stage(self, stage, now_s):
        self.stage = stage
        self.t_stage = now_s
        self.converged = 0

    def _set_voltage(self, mv):
        io = self.io
        if self.per_rig:
            mv = max(self.mv_lo, min(self.mv_hi, mv))
            if io.voltage_mv() != [mv] * len(self.mv):
                io.set_voltage_mv(None, mv)
            self.mv = [mv] * len(self.mv)
        else:
            # Per-board rails move together (one loop on the rig's total; see docs/autotune.md).
            if not isinstance(mv, (list, tuple)):
                mv = [mv] * len(self.mv)
            for b, v in enumerate(mv):
                v = max(self.mv_lo, min(self.mv_hi, v))
                if io.voltage_mv()[b] != v:
                    io.set_voltage_mv(b, v)
                self.mv[b] = v

    # ------------------------------------------------------------------ step
    def step(self, now_s):
        """One control tick. Returns the physics time of the next wanted call."""
        io = self.io
        self.now_s = now_s
        if self.stage in ('failed',):
            return now_s + self.tick_s
        if not io.safety_ok():
            if self.stage != 'paused':
                self.resume_stage = self.stage
                self.stage = 'paused'
                self.message = 'safety supervisor not ok: tuner yields'
            return now_s + self.tick_s
        if self.stage == 'paused':
            self.stage = self.resume_stage or 'search'
            self._rebase_all()
            self.samples = []
            self.t_v = now_s
        if self.stage == 'idle':
            self._start(now_s)
            return now_s + self.tick_s
        obs = io.chips()
        pw = io.power_w()
        good = 0.0
        for row in obs:
            for c in row:
                if c.get('alive') and c.get('hashrate_ghs') is not None:
                    good += c['hashrate_ghs'] * (1.0 - (c.get('err_pct') or 0.0) / 100.0)
        good_ths = good / 1000.0
        if pw is not None:
            self.samples.append((now_s, pw, good_ths))
        recent = [s[1] for s in self.samples[-3:] if s[0] >= self.t_v + RECENT_AFTER_MOVE_S]
        self.p_recent = maths.mean(recent) if len(recent) == 3 else None
        plan = self._chip_decisions(obs, now_s)
        if plan:
            io.request_frequencies(plan)
        self._voltage_loop(now_s)
        self._progress(now_s)
        return now_s + self.tick_s

    def _rebase_all(self):
        for row in self.chips:
            for st in row:
                st.pending = True

    def _chip_decisions(self, obs, now_s):
        return self.search.decide(obs, now_s)

    # ------------------------------------------------------------------ voltage
    def _measure(self):
        """Averages over the samples since the voltage move (after settle_s)."""
        # Recent samples only: chips may have climbed during the settle time.
        window = MEASURE_WINDOW_S
        if self.stage == 'verify' and self.samples:
            window = max(window, self.samples[-1][0] - self.t_stage)   # longer: less noise
        # the one-chip loop predicts where the die is going: it waits for less (thermal_one.py)
        settle_s = self.prof['settle_s'] if self.voltage.settle_s is None else \
            min(self.prof['settle_s'], self.voltage.settle_s)
        t0 = max(self.t_v + settle_s, self.samples[-1][0] - window) \
            if self.samples else 0.0
        pts = [s for s in self.samples if s[0] >= t0]
        if len(pts) < POWER_MIN_SAMPLES:
            return None
        return (maths.mean([p[1] for p in pts]), maths.mean([p[2] for p in pts]),
                pts[-1][0] - pts[0][0])

    def _settled_frac(self):
        n = 0
        ok = 0
        for row in self.chips:
            for st in row:
                if not st.alive:
                    continue
                n += 1
                if st.decisions > 0 and st.last_step < SETTLED_STEP and not st.pending:
                    ok += 1
        return ok / float(n) if n else 1.0

    def _goal_value(self, m):
        pw, g, _span = m
        if self.mode == 'power':
            return pw
        return g

    def _voltage_loop(self, now_s):
        self.voltage.run(now_s)

    def _initial_drop(self, now_s):
        """Approach the goal from below: stock settings leave chips well under their limits, so
        first lower the voltage to where the chips, once at their limits, would still be under
        the goal (assumed margin STOCK_MARGIN); then they climb freely and the loop raises the
        voltage. Returns True when the voltage moved."""
        mv = self.mv[0]
        if self.mode == 'power':
            y, slope = self.p_recent, self._slope(mv / 1000.0)
        else:
            g = [s[2] for s in self.samples[-3:]]
            y, slope = maths.mean(g), self._slope(mv / 1000.0)
        if not y or y <= 0:
            return False
        # Predicted goal value with every chip at its limit: y * margin (frequency ~ hashes ~ power).
        new_mv = maths.next_voltage_mv(mv, y * STOCK_MARGIN, self.target, slope, self.mv_step,
                                       self.mv_lo, self.mv_hi, max_frac=0.12)
        if new_mv < mv:
            self._move_voltage(mv, new_mv, now_s, 'start below the goal (%.0f)' % y)
            return True
        return False

    def _slope(self, v, power=None):
        """d ln y / d ln v at board volts v; y is power (power mode, or power=True) or good
        hashrate."""
        chip_v = v / self.io.model()['domains_per_board']
        v_nom = self.v_nom_board_mv / 1000.0 / self.io.model()['domains_per_board']
        if power is None:
            power = self.mode == 'power'
        prior = maths.dlnp_dlnv(chip_v, v_nom) if power else maths.dlng_dlnv(chip_v, v_nom)
        if power != (self.mode == 'power'):
            return prior         # vhist holds the goal value of the mode
        if len(self.vhist) >= 2:
            (m0, y0), (m1, y1) = self.vhist[-2], self.vhist[-1]
            # Points a step or two apart are mostly noise: keep the prior then.
            if abs(m1 - m0) >= SECANT_MIN_STEPS * self.mv_step and y0 > 0 and y1 > 0:
                return maths.secant_slope(math.log(m0), math.log(y0), math.log(m1),
                                          math.log(y1), prior, 0.6, 2.0)
        return prior

    def _move_voltage(self, mv_old, mv_new, now_s, why=''):
        self.events.append((round(now_s, 1), why, mv_old, mv_new))
        del self.events[:-EVENTS_KEPT]
        d = self.io.model()['domains_per_board']
        v_nom = self.v_nom_board_mv / 1000.0 / d
        ratio = maths.vf_ratio(mv_new / 1000.0 / d, mv_old / 1000.0 / d, v_nom)
        # Thermal mode, rising: a chip the ceiling holds keeps its power (f down by v^2), and
        # no chip rises past what its temperature margin allows.
        v2 = (float(mv_new) / mv_old) ** 2
        plan = {}
        for b, row in enumerate(self.chips):
            for i, st in enumerate(row):
                r = ratio
                if self.mode == 'thermal' and mv_new > mv_old:
                    held = st.hot_at is not None and now_s - st.hot_at < HELD_RECENT_S
                    r = 1.0 / v2 if held else min(ratio, (1.0 + self.thermal_room(st)) / v2)
                st.f = self._snap(st.f * r)
                st.pending = True
                st.last_step = 1.0
                st.decisions = 0
                plan[(b, i)] = st.f
        if mv_new < mv_old:
            self.io.request_frequencies(plan)      # slow the chips before the voltage drops
            self._set_voltage(mv_new)
        else:
            self._set_voltage(mv_new)
            self.io.request_frequencies(plan)
        self.t_v = now_s
        self.samples = []
        self.converged = 0

    def thermal_room(self, st):
        """Thermal mode: the relative power rise a chip may take before its die reaches the
        ceiling, if every chip rose alike (die rise over the air guess scales with power)."""
        t = st.temp_f
        if t is None:
            return 0.0
        t += self.warming_c
        heat_c = self.voltage.heat_c(st)
        if heat_c:                   # one chip: its learned model (thermal_one.py)
            return self.voltage.room_gain * (self.hot_c - t) / heat_c
        return ROOM_GAIN * (self.hot_c - t) / max(5.0, t - AIR_GUESS_C)

    def _keep_best(self, pw, g):
        if g <= 0:
            return
        ok = pw <= self.target * (1.0 + self.prof['power_tol_pct'] / 100.0) \
            if self.mode == 'power' else (self.mode == 'thermal' or g >= self.target)
        if not ok:
            return
        score = g if self.mode in ('power', 'thermal') else -pw
        if self.best is None or score > self.best['score']:
            self.best = {'score': score, 'power_w': pw, 'good_ths': g, 'j_per_th': pw / g,
                         'board_mv': list(self.mv),
                         'freqs': [[st.f for st in row] for row in self.chips]}

    def _finish(self, now_s, pw, g):
        self._stage('done', now_s)
        self.done_at_s = now_s
        self.message = 'tuned in %.0f s' % (now_s - self.t_start)
        temps = [st.temp_c for row in self.chips for st in row if st.temp_c is not None]
        self.done_temp_c = maths.mean(temps)
        self.final = {'power_w': pw, 'good_ths': g, 'j_per_th': pw / g if g > 0 else None}

    def _watch_drift(self, now_s, y, tol):
        """Re-tune triggers while holding: goal drift, or mean die temperature drift (ambient)."""
        temps = [st.temp_c for row in self.chips for st in row if st.temp_c is not None]
        t = maths.mean(temps)
        reason = None
        if self.mode == 'power' and (y > self.target * (1.0 + 2 * tol) or
                                     y < self.target * (1.0 - 3 * tol)):
            reason = 'power drifted to %.0f W' % y
        elif self.mode in ('hashrate', 'efficiency') and y < self.target * (1.0 - tol):
            reason = 'hashrate drifted to %.2f TH/s' % y
        elif self._bad_frac() >= ERR_DRIFT_FRAC:
            reason = 'error drift: %.0f %% of chips above %.2f %%' % (
                100.0 * self._bad_frac(), 100.0 * self.err_max)
        elif t is not None and self.done_temp_c is not None and \
                abs(t - self.done_temp_c) > self.prof['retune_temp_c']:
            reason = 'die temperatures moved %.1f C (ambient?)' % (t - self.done_temp_c)
        if reason:
            self.retunes += 1
            self.message = 're-tune: ' + reason
            self.retune_reasons.append(reason)
            del self.retune_reasons[:-EVENTS_KEPT]
            self._stage('search', now_s)
            self.t_start = now_s

    def _hot_chips(self, now_s):
        """Chips near the tuner's hot limit now, or held back by it within HOT_MEMORY_S."""
        return sum(1 for row in self.chips for st in row
                   if st.alive and ((st.temp_c is not None and st.temp_c > self.hot_c - 1.0) or
                                    (st.hot_at is not None and now_s - st.hot_at < HOT_MEMORY_S)))

    def _bad_frac(self):
        live = [st for row in self.chips for st in row if st.alive]
        return sum(1 for st in live if st.bad) / float(len(live)) if live else 0.0

    # ------------------------------------------------------------------ status
    def _progress(self, now_s):
        if self.stage == 'done':
            self.progress = 1.0
            return
        if self.stage == 'verify':
            frac = min(1.0, (now_s - self.t_stage) / self.prof['verify_s'])
            self.progress = max(self.progress, 0.85 + 0.15 * frac)
            return
        if self.stage != 'search' or self.chips is None:
            return
        chips = self._settled_frac()
        y = self.last['power_w'] if self.mode == 'power' else self.last['good_ths']
        close = 0.0
        if self.mode == 'thermal':
            y = None     # no goal value to be close to: settled chips only
            close = 0.5 * self.converged
        if y:
            close = max(0.0, 1.0 - abs(math.log(y / self.target)) / 0.15)
        self.progress = max(self.progress * 0.98, min(0.85, 0.35 * chips + 0.5 * close))

    def result(self):
        """Per-board result for store.py (None until done)."""
        if self.stage != 'done' or self.chips is None:
            return None
        return {'mode': self.mode, 'target': self.target, 'profile': self.prof.get('name', ''),
                'board_ids': list(self.ids), 'board_mv': list(self.mv),
                'freqs': [[st.f for st in row] for row in self.chips],
                'temps_c': [[st.temp_c for st in row] for row in self.chips],
                'err_est': [[st.err_est for st in row] for row in self.chips],
                'power_w': self.final['power_w'], 'good_ths': self.final['good_ths'],
                'j_per_th': self.final['j_per_th'], 'mean_die_c': self.done_temp_c,
                'curve': [list(c) for c in self.curve], 'tune_s': self.done_at_s - self.t_start}

    def get_status(self):
        elapsed = (self.t_stage or 0) - (self.t_start or 0)
        now = self.samples[-1][0] if self.samples else None
        if now is not None and self.t_start is not None:
            elapsed = now - self.t_start
        eta = None if self.stage == 'done' else maths.eta_s(self.progress, elapsed)
        heat = self.last['power_w'] * self.heat_share \
            if self.heat_budget_w is not None and self.last['power_w'] is not None else None
        return {'stage': self.stage, 'mode': self.goal, 'target': self.target,
                'heat_budget_w': self.heat_budget_w, 'heat_w': heat,
                'progress_pct': round(100.0 * self.progress, 1), 'eta_s': eta,
                'elapsed_s': elapsed, 'board_mv': list(getattr(self, 'mv', []) or []),
                'power_w': self.last['power_w'], 'good_ths': self.last['good_ths'],
                'j_per_th': self.last['j_per_th'],
                'best_j_per_th': self.best['j_per_th'] if self.best else None,
                'best_power_w': self.best['power_w'] if self.best else None,
                'settled_pct': round(100.0 * self._settled_frac(), 1) if self.chips else 0.0,
                'retunes': self.retunes, 'message': self.message, 'source': self.source,
                'nonce': self.nonce_status()}

    def nonce_status(self):
        """Nonce source: the plan (difficulty, UART load, window) and what decisions saw."""
        if self.nonce_plan is None:
            return None
        out = dict(self.nonce_plan)
        d = self.nonce_stats['decisions']
        out['decisions'] = d
        out['nonces_per_decision_seen'] = self.nonce_stats['nonces'] / d if d else None
        out['capped_decisions'] = self.nonce_stats['capped']
        return out
