"""Oracle: the best settings a tuner could find for a known silicon population (benchmarks only).

Mode 'power' maximises good hashes at a wall-power budget, 'hashrate' minimises wall power at a
good-hashrate target, 'efficiency' minimises J/TH above a hashrate floor; over per-chip PLL
frequencies and the allowed voltages (one rail for voltage_per == 'rig', per board otherwise),
every die at or below the hot limit, at steady state (hal/sim/physics.py).

Structure (from the physics): at a fixed voltage the dynamic energy per hash is the same at any
frequency, so each chip's best frequency is a fixed fraction u(mu) of its own fmax(v, T), where mu
is the price of a watt in hashes (Lagrangian per chip at fixed v). A bisection on the price meets
the budget/target; die temperatures are iterated to the fixed point; an outer search over the
voltage picks the best. `brute_force()` checks this on tiny cases.
"""

import bisect
import math

from hal import families, models, pll
from hal.sim import physics as P

MODES = ('power', 'hashrate', 'efficiency')


# ------------------------------------------------------------------ frequency grid

_GRIDS = {}


def freq_grid(family, f_min_mhz, f_max_mhz):
    """Every frequency the family's PLL realises in [f_min, f_max] (sorted, hal/pll.py formula)."""
    key = (family['name'], f_min_mhz, f_max_mhz)
    g = _GRIDS.get(key)
    if g is None:
        s = set()
        for ref in (2, 1):
            for pd1, pd2 in pll.post_pairs(family):
                div = ref * pd1 * pd2
                for fb in range(family['pll_fb_min'], family['pll_fb_max'] + 1):
                    f = 25.0 * fb / div
                    if f_min_mhz - 1e-9 <= f <= f_max_mhz + 1e-9:
                        s.add(round(f, 6))
        g = sorted(s)
        _GRIDS[key] = g
    return g


# ------------------------------------------------------------------ per-chip optimum u(mu)

def _err_u(u):
    return P.chip_err(u, 1.0)


def _dh_du(u, mu):
    """d/du of u*(1-err(u)) - mu*u (normalised good rate minus priced dynamic power)."""
    e = _err_u(u)
    return (1.0 - e) - u * e * (1.0 - e) / P.S_ERR - mu


def u_opt(mu):
    """Fraction of fmax where a chip's marginal good hashes per unit of frequency equal mu."""
    if mu >= 1.0:
        return 0.0
    lo, hi = 0.8, 1.2
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _dh_du(mid, mu) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class _UTable:
    """u_opt on a grid of mu (monotone); linear interpolation."""

    def __init__(self, n=400):
        self.mus = [i / float(n) for i in range(n)]
        self.us = [u_opt(m) for m in self.mus]
        self.n = n

    def __call__(self, mu):
        if mu <= 0.0:
            return self.us[0]
        x = mu * self.n
        i = int(x)
        if i >= self.n - 1:
            return u_opt(mu) if mu < 1.0 else 0.0
        w = x - i
        return self.us[i] * (1.0 - w) + self.us[i + 1] * w


U_TABLE = _UTable()


# ------------------------------------------------------------------ problem

class Problem:
    """Population + scenario. cal = physics.calibrate(model); pop = physics.population(...)."""

    def __init__(self, model, cal, pop, fan_duty=0.7, ambient_c=P.AMBIENT_C, hot_c=None,
                 family=None, freq_min_mhz=None, freq_max_mhz=None, mv_min=None, mv_max=None):
        self.model = model
        self.cal = cal
        self.pop = pop
        self.fan_duty = fan_duty
        self.ambient_c = ambient_c
        self.hot_c = model['temp_hot_c'] if hot_c is None else hot_c
        self.family = family or families.get(model['chip'])
        fmin = self.family['freq_min_mhz'] if freq_min_mhz is None else freq_min_mhz
        fmax = min(self.family['freq_max_mhz'], model['freq_max_mhz']) \
            if freq_max_mhz is None else freq_max_mhz
        self.grid = freq_grid(self.family, fmin, fmax)
        self.mv_min = model['board_mv_min'] if mv_min is None else mv_min
        self.mv_max = model['board_mv_max'] if mv_max is None else mv_max
        self.mv_step = model['voltage_step_mv']
        self.d = fan_duty
        self.g = P.airflow_g(cal, fan_duty)
        self.fixed_w = self._fixed_w(cal['boards'])

    def _fixed_w(self, boards_on):
        cal = self.cal
        return boards_on * cal['board_w'] + cal['fans'] * cal['fan_w'] * self.fan_duty ** 3 \
            + cal['ctrl_w']

    def wall_w(self, sum_chip_w):
        return (sum_chip_w + self.fixed_w) / P.ETA

    def mv_values(self):
        out = []
        mv = self.mv_min
        while mv <= self.mv_max:
            out.append(mv)
            mv += self.mv_step
        return out

    def verify(self, freqs, board_mv):
        """Authoritative steady state (physics.rig_steady_state) of a solution."""
        return P.rig_steady_state(self.cal, self.pop, freqs, board_mv, self.fan_duty,
                                  self.ambient_c)


def _snap(grid, f, score):
    """Best of the grid points around f by score(f) (score: larger is better)."""
    i = bisect.bisect_left(grid, f)
    best = None
    best_s = None
    for j in (i - 2, i - 1, i, i + 1):
        if 0 <= j < len(grid):
            s = score(grid[j])
            if best_s is None or s > best_s:
                best, best_s = grid[j], s
    return best


def solve_board(prob, b, v, lam, temps, iters=3):
    """Per-chip frequencies of board b at chip voltage v and price lam (W -> good hashes).

    temps: list of die temperatures (updated in place, fixed-point iteration).
    Returns (freqs, sum_chip_w, good_hs, hottest_c).
    """
    cal = prob.cal
    chips = prob.pop[b]
    n = len(chips)
    cores = cal['cores_per_chip']
    c0v2 = cal['c0'] * v * v
    grid = prob.grid
    gmin = grid[0]
    hot = prob.hot_c - 1e-3
    r_ja = cal['r_ja']
    freqs = [0.0] * n
    powers = [0.0] * n
    for _ in range(iters):
        total = sum(powers) + cal['board_w'] if any(powers) else None
        for i in range(n):
            chip = chips[i]
            t = temps[i]
            fm = P.chip_fmax_mhz(cal, chip, v, t)
            if chip['dead'] or fm <= 0.0:
                freqs[i] = gmin
                powers[i] = P.chip_power_w(cal, chip, v, gmin, t)
                continue
            dyn = chip['cap'] * c0v2                      # W per MHz
            mu = lam * dyn / (cores * 1e6)                # per unit of normalised good rate
            u = U_TABLE(mu)
            leak = P.chip_power_w(cal, chip, v, 0.0, t)
            # Hot limit: die = air + r_ja * p <= hot (air from the last iteration's powers).
            fcap = grid[-1]
            if total is not None:
                air = prob.ambient_c + total / prob.g * P.chip_pos(i, n)
                pmax = (hot - air) / r_ja
                fcap = min(fcap, max(gmin, (pmax - leak) / dyn))

            def score(f, fm=fm, dyn=dyn):
                if f > fcap + 1e-9:
                    return -1e30
                return f * (1.0 - P.chip_err(f, fm)) * cores * 1e6 - lam * dyn * f

            f = _snap(grid, min(u * fm, fcap), score)
            if f is None or f > fcap + 1e-9:
                j = bisect.bisect_right(grid, fcap) - 1
                f = grid[max(0, j)]
            freqs[i] = f
            powers[i] = dyn * f + leak
        _air, die, _rise = P.board_heat(cal, powers, prob.g, prob.ambient_c, True)
        for i in range(n):
            temps[i] = die[i]
    good = 0.0
    for i in range(n):
        fm = P.chip_fmax_mhz(cal, chips[i], v, temps[i])
        if not chips[i]['dead']:
            good += P.chip_good_hs(cal, freqs[i], P.chip_err(freqs[i], fm))
    return freqs, sum(powers), good, max(temps)


def eval_at(prob, mv_list, lam, temps, iters=3):
    """All boards at price lam: (freqs per board, wall_w, good_ths, hottest_c).

    A diverging (runaway) evaluation resets temps and reports an infinite hottest die.
    """
    cal = prob.cal
    freqs = []
    chip_w = 0.0
    good = 0.0
    hottest = -1e9
    for b in range(cal['boards']):
        v = P.chip_v(cal, mv_list[b])
        f, w, g, h = solve_board(prob, b, v, lam, temps[b], iters)
        if not h < P.T_RUNAWAY_C:        # also catches nan/inf
            temps[b][:] = [prob.ambient_c + 30.0] * len(temps[b])
            h = 1e9
        freqs.append(f)
        chip_w += w
        good += g
        hottest = max(hottest, h)
    return freqs, prob.wall_w(chip_w), good / 1e12, hottest


def _new_temps(prob):
    return [[prob.ambient_c + 30.0] * len(chips) for chips in prob.pop]


def solve_voltage(prob, mv_list, mode, target, temps=None):
    """Best price for fixed voltages. Returns dict or None when the target cannot be met.

    power: largest good hashes with wall <= target; hashrate: lowest wall with good >= target;
    efficiency: lowest J/TH with good >= target (target may be 0).
    """
    if temps is None:
        temps = _new_temps(prob)
    # lam in hashes/s per W; the scale is ~ good/power of the rig (~6e10 for an S21).
    lo, hi = 1e8, 1e13

    def at(lam, iters=3):
        f, w, g, h = eval_at(prob, mv_list, lam, temps, iters)
        return {'freqs': f, 'wall_w': w, 'good_ths': g, 'hottest_c': h, 'lam': lam}

    hot = prob.hot_c + 0.05
    if at(hi, 4)['hottest_c'] > hot:
        return None                     # too hot even at the lowest useful frequencies

    if mode in ('power', 'hashrate'):
        # Free running (lam tiny) = most hashes this voltage gives.
        top = at(lo, 6)
        if mode == 'power' and top['wall_w'] <= target:
            return top
        if mode == 'hashrate' and top['good_ths'] < target:
            return None
        best = None
        a, z = math.log(lo), math.log(hi)
        for _ in range(24):
            m = 0.5 * (a + z)
            r = at(math.exp(m))
            ok = r['wall_w'] <= target if mode == 'power' else r['good_ths'] >= target
            if ok:
                best = r
                if mode == 'power':
                    z = m
                else:
                    a = m
            else:
                if mode == 'power':
                    a = m
                else:
                    z = m
        if best is None:
            return None
        # Settle temperatures at the chosen price, then keep the constraint.
        r = at(best['lam'], 6)
        return r if r['hottest_c'] <= hot else None
    # efficiency: golden search on log(lam) for J/TH; floor handled by a hashrate solve.
    gr = 0.6180339887
    a, z = math.log(1e9), math.log(1e12)

    def jth(m):
        r = at(math.exp(m), 4)
        if r['good_ths'] <= 0:
            return 1e30, r
        return r['wall_w'] / r['good_ths'], r

    x1 = z - gr * (z - a)
    x2 = a + gr * (z - a)
    j1, r1 = jth(x1)
    j2, r2 = jth(x2)
    for _ in range(28):
        if j1 < j2:
            z, x2, j2, r2 = x2, x1, j1, r1
            x1 = z - gr * (z - a)
            j1, r1 = jth(x1)
        else:
            a, x1, j1, r1 = x1, x2, j2, r2
            x2 = a + gr * (z - a)
            j2, r2 = jth(x2)
    best = r1 if j1 < j2 else r2
    if best['hottest_c'] > hot:
        return None
    if best['good_ths'] < target:
        return solve_voltage(prob, mv_list, 'hashrate', target, temps)
    return best


def _score(mode, r):
    """Larger is better."""
    if r is None:
        return -1e30
    if mode == 'power':
        return r['good_ths']
    if mode == 'hashrate':
        return -r['wall_w']
    return -r['wall_w'] / r['good_ths'] if r['good_ths'] > 0 else -1e30


def _rail_search(prob, mode, target, mvs, mv_of, temps):
    """Search a unimodal-ish score over a list of voltages: coarse scan, then local refine."""
    cache = {}

    def ev(k):
        if k not in cache:
            cache[k] = solve_voltage(prob, mv_of(mvs[k]), mode, target, temps)
        return cache[k]

    n = len(mvs)
    stride = max(1, n // 24)
    ks = list(range(0, n, stride))
    if ks[-1] != n - 1:
        ks.append(n - 1)
    best_k = max(ks, key=lambda k: _score(mode, ev(k)))
    lo = max(0, best_k - stride)
    hi = min(n - 1, best_k + stride)
    # Ternary search on integers within [lo, hi], then a final scan of the last few.
    while hi - lo > 6:
        m1 = lo + (hi - lo) // 3
        m2 = hi - (hi - lo) // 3
        if _score(mode, ev(m1)) < _score(mode, ev(m2)):
            lo = m1
        else:
            hi = m2
    best_k = max(range(lo, hi + 1), key=lambda k: _score(mode, ev(k)))
    return mvs[best_k], ev(best_k), len(cache)


def optimise(prob, mode, target):
    """The oracle. Returns dict: mode, target, board_mv (list per board), freqs (per board per
    chip), and the verified steady state (wall_w, good_ths, j_per_th, hottest_c), evals.
    """
    if mode not in MODES:
        raise ValueError('mode must be one of %s' % (MODES,))
    mode_in = mode
    cal = prob.cal
    mvs = prob.mv_values()
    temps = _new_temps(prob)
    boards = cal['boards']
    if prob.cal['voltage_per'] == 'rig' or boards == 1:
        mv, r, evals = _rail_search(prob, mode, target, mvs, lambda m: [m] * boards, temps)
        mv_list = [mv] * boards
    else:
        # Per-board rails: coordinate search, one board at a time (boards couple only via budget).
        mv_list = [prob.model['stock_board_mv']] * boards
        evals = 0
        r = None
        for _sweep in range(2):
            for b in range(boards):
                def mv_of(m, b=b):
                    lst = list(mv_list)
                    lst[b] = m
                    return lst
                mv, r, e = _rail_search(prob, mode, target, mvs, mv_of, temps)
                mv_list[b] = mv
                evals += e
    if r is None:
        return None
    st = prob.verify(r['freqs'], mv_list)
    # The inner fixed point is approximate: tighten the price until the verified state complies.
    goal = target
    for _ in range(4):
        if mode == 'power' and st['wall_w'] > target:
            goal -= st['wall_w'] - target + 1e-3
        elif mode != 'power' and st['good_ths'] < target:
            mode = 'hashrate'
            goal += target - st['good_ths'] + 1e-6
        else:
            break
        r2 = solve_voltage(prob, mv_list, mode, goal, _new_temps(prob))
        if r2 is None:
            break
        r = r2
        st = prob.verify(r['freqs'], mv_list)
    if sum(len(c) for c in prob.pop) <= POLISH_MAX_CHIPS:
        mv_list, freqs, st = polish(prob, mode_in, target, mv_list, r['freqs'])
        r = {'freqs': freqs}
    mode = mode_in
    return {'mode': mode, 'target': target, 'board_mv': mv_list, 'freqs': r['freqs'],
            'wall_w': st['wall_w'], 'good_ths': st['good_ths'], 'j_per_th': st['j_per_th'],
            'hottest_c': st['hottest_c'], 'runaway': st['runaway'], 'evals': evals,
            'steady': st}


POLISH_MAX_CHIPS = 8


def _feasible(prob, mode, target, st):
    if st['runaway'] or st['hottest_c'] > prob.hot_c:
        return False
    if mode == 'power':
        return st['wall_w'] <= target
    return st['good_ths'] >= target


def polish(prob, mode, target, mv_list, freqs, steps=3):
    """Small rigs: coordinate search on the verified steady state (grid steps of each chip's
    frequency and of the voltage), which removes the snapping error of the price method."""
    grid = prob.grid
    freqs = [list(f) for f in freqs]
    mv_list = list(mv_list)
    st = prob.verify(freqs, mv_list)
    best = (_feasible(prob, mode, target, st), _score(mode, st), st)
    improved = True
    rounds = 0
    while improved and rounds < 20:
        improved = False
        rounds += 1
        moves = []
        for b in range(len(freqs)):
            for i in range(len(freqs[b])):
                k = bisect.bisect_left(grid, freqs[b][i] - 1e-6)
                for d in range(-steps, steps + 1):
                    if d and 0 <= k + d < len(grid):
                        moves.append(('f', b, i, grid[k + d]))
        for d in (-2, -1, 1, 2):
            moves.append(('v', None, None, d * prob.mv_step))
        # pair moves (one chip a grid step up, another down): single moves stall where power
        # is the binding limit and the grid is coarse (PD1 > PD2 families)
        flat = [(b, i) for b in range(len(freqs)) for i in range(len(freqs[b]))]
        for x in range(len(flat)):
            for y in range(len(flat)):
                if x != y:
                    moves.append(('p', flat[x], flat[y], None))
        for kind, b, i, val in moves:
            f2 = [list(f) for f in freqs]
            mv2 = list(mv_list)
            if kind == 'f':
                f2[b][i] = val
            elif kind == 'p':
                if not _pair_move(grid, f2, b, i):
                    continue
            else:
                mv2 = [m + val for m in mv_list]
                if min(mv2) < prob.mv_min or max(mv2) > prob.mv_max:
                    continue
            s2 = prob.verify(f2, mv2)
            cand = (_feasible(prob, mode, target, s2), _score(mode, s2), s2)
            if cand[:2] > best[:2]:
                best, freqs, mv_list, improved = cand, f2, mv2, True
    return mv_list, freqs, best[2]


def _pair_move(grid, freqs, up, down):
    """One grid step up for chip `up`, one down for chip `down` (in place); False at an edge."""
    ku = bisect.bisect_left(grid, freqs[up[0]][up[1]] - 1e-6)
    kd = bisect.bisect_left(grid, freqs[down[0]][down[1]] - 1e-6)
    if ku + 1 >= len(grid) or kd < 1:
        return False
    freqs[up[0]][up[1]] = grid[ku + 1]
    freqs[down[0]][down[1]] = grid[kd - 1]
    return True


# ------------------------------------------------------------------ conveniences

def problem_for(model_name, seed=1, sigma_f=P.SIGMA_F, sigma_l=P.SIGMA_L, fan_duty=0.7,
                ambient_c=P.AMBIENT_C, chips=None, hot_c=None, immersion=False):
    """Problem for a seeded population as `hashpilot sim` draws it (or from truth-file chips);
    immersion: in coolant at ambient_c (physics.immersed: 4 x g_max, no fans, fan_duty 0)."""
    import random
    model = models.get(model_name)
    cal = P.immersed(P.calibrate(model)) if immersion else P.calibrate(model)
    if chips is None:
        pop = P.population(cal, random.Random(seed), sigma_f, sigma_l)
    else:
        pop = [[{'speed': c['speed'], 'leak': c['leak'], 'cap': c['cap'],
                 'dead': bool(c.get('dead', False))} for c in board] for board in chips]
    return Problem(model, cal, pop, 0.0 if immersion else fan_duty, ambient_c, hot_c=hot_c)


UNBOUNDED_W = 1e9


def optimise_constrained(prob, objective='hashrate', floor_ths=0.0, power_w=None):
    """Where heat or noise binds: the most good hashes ('hashrate') or the best J/TH above
    floor_ths ('efficiency') with every die at or below prob.hot_c (the die ceiling) and the
    wall power at or below power_w (the rig's power cap; None = no cap), at prob.fan_duty (a fan
    cap: for the most hashes the cap itself is best, more air only cools) and prob.ambient_c.
    The same solve as optimise(): power mode at the cap, so the limits are the ceiling (per-chip
    frequency caps inside solve_board, then the verified steady state), the budget (price
    bisection) and the voltage range; whichever binds first sets the optimum."""
    if objective not in ('hashrate', 'efficiency'):
        raise ValueError('objective must be hashrate or efficiency')
    ceiling = prob.hot_c
    budget = UNBOUNDED_W if power_w is None else power_w

    def solve(inner_c):
        prob.hot_c = inner_c
        r = optimise(prob, 'power', budget) if objective == 'hashrate' else \
            optimise(prob, 'efficiency', floor_ths)
        if r is not None and r['wall_w'] > budget:
            return r, False
        ok = r is not None and r['hottest_c'] <= ceiling + 0.05 and not r['runaway']
        return r, ok

    try:
        r, ok = solve(ceiling)
        if ok or r is None:
            return r
        # With little air the inner fixed point (air from the last iteration's powers) can
        # settle over the ceiling: bisect the highest inner ceiling whose verified state keeps
        # the real one.
        best = None
        lo, hi = ceiling - 20.0, ceiling
        for _ in range(8):
            mid = 0.5 * (lo + hi)
            r, ok = solve(mid)
            if ok:
                best, lo = r, mid
            else:
                hi = mid
        prob.hot_c = ceiling
        if best is not None and sum(len(c) for c in prob.pop) <= POLISH_MAX_CHIPS:
            # tiny rigs: polish against the real ceiling (the inner one was lower)
            mode, target = ('power', budget) if objective == 'hashrate' else \
                ('efficiency', floor_ths)
            mv_list, freqs, st = polish(prob, mode, target, best['board_mv'], best['freqs'])
            best = dict(best, board_mv=mv_list, freqs=freqs, wall_w=st['wall_w'],
                        good_ths=st['good_ths'], j_per_th=st['j_per_th'],
                        hottest_c=st['hottest_c'], runaway=st['runaway'], steady=st)
        return best
    finally:
        prob.hot_c = ceiling


def stock(prob):
    """Steady state at stock settings (nominal frequency and voltage) for comparison."""
    return prob.verify(prob.model['f_nom_mhz'], prob.model['stock_board_mv'])


def brute_force(prob, mode, target, mv_values, freq_candidates):
    """Exhaustive search (tiny cases): freq_candidates(mv) -> list per chip (flattened across
    boards) of candidate frequencies. Returns the best dict like optimise()."""
    cal = prob.cal
    best = None
    for mv in mv_values:
        cands = freq_candidates(mv)
        idx = [0] * len(cands)
        while True:
            flat = [cands[k][idx[k]] for k in range(len(cands))]
            freqs = []
            pos = 0
            for b in range(cal['boards']):
                n = len(prob.pop[b])
                freqs.append(flat[pos:pos + n])
                pos += n
            st = prob.verify(freqs, mv)
            ok = st['hottest_c'] <= prob.hot_c and not st['runaway']
            if mode == 'power':
                ok = ok and st['wall_w'] <= target
            else:
                ok = ok and st['good_ths'] >= target
            if ok:
                r = {'wall_w': st['wall_w'], 'good_ths': st['good_ths'], 'freqs': freqs,
                     'board_mv': [mv] * cal['boards'], 'j_per_th': st['j_per_th']}
                if best is None or _score(mode, r) > _score(mode, best):
                    best = r
            k = 0
            while k < len(cands):
                idx[k] += 1
                if idx[k] < len(cands[k]):
                    break
                idx[k] = 0
                k += 1
            if k == len(cands):
                break
    return best
