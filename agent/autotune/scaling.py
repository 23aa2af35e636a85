"""Dynamic scaling (pure tuner maths; MicroPython-safe: math only, plain functions).

When the safety supervisor derates a board to a frequency cap of c %, the flat answer is every
chip at c % of its request. Dynamic scaling keeps the supervisor's budget, the same total
frequency (sum f <= c/100 x sum f_requested, so the same dynamic power at one voltage), and
re-plans who gives it up: the chips whose last MHz buys the fewest good hashes per watt go first.

Per chip, at the margin (from the measured error rate and die temperature only):
- good hashes per Hz: `1 - e - e(1 - e)/ERR_EFOLD` (the error sigmoid: near its limit a chip's
  error rate grows e-fold per ERR_EFOLD of frequency, so its last MHz mostly makes errors);
- watts per Hz: `1 + LEAK_FEEDBACK x exp((T - 60)/30)`: the dynamic watt plus the leakage its
  heat brings back (spec physics: leakage share 0.08 at 60 C, e-fold per 30 C, a die about
  SELF_HEAT_C over its air at full power, so LEAK_FEEDBACK = 0.08 x 20/30).
Cutting a chip by a fraction x lowers its error rate e-fold per ERR_EFOLD and its die by about
SELF_HEAT_C x x, so its cost falls as it is cut: the cuts are taken greedily in steps of STEP of
a chip's request, most expensive first, until the budget holds. Chips near their limit shed their
errors first; after that the hottest chips give up frequency, which is also what cools the die
that made the supervisor derate. No chip goes below FLOOR of its request; when that cannot meet
the budget the answer is None (the caller keeps the flat cap).

Blind spots: with fewer than half of the board's chips at a known die temperature the answer is
None (a plan could not tell the hot dies from the cool ones, so it would cut the wrong chips);
otherwise an unknown temperature counts as the hottest known one. Equal costs are cut round
robin (every chip's first step, then every chip's second), never chip 0 first. A chip at or above
hot_c (the derate temperature) is cut at least as far as the flat cap would cut it, so the die
that made the supervisor derate never keeps more than cap_pct of its request.
"""

import math

ERR_EFOLD = 0.005
SELF_HEAT_C = 20.0
LEAK_FEEDBACK = 0.08 * 20.0 / 30.0
T_REF_C = 60.0
T_SLOPE_C = 30.0
STEP = 0.01
FLOOR = 0.3
YIELD_MIN = 0.01
HANDBACK_PCT_S = 0.2   # % of budget per second: a rising cap reaches the plan this gradually


def budget_pct(cap_pct, last_pct, dt_s, rate_pct_s=HANDBACK_PCT_S):
    """The cap a plan is made for: the supervisor's at once when it falls (never above it), at
    most rate_pct_s x dt_s (physics seconds since the last plan) more when it rises. A plan cuts
    the hottest chips deepest (up to 1 - FLOOR), so handing a rise back at once would return
    their whole cut in one go; 5 % of budget comes back over 25 s (about a die time constant)."""
    if last_pct is None or cap_pct <= last_pct:
        return cap_pct
    return min(cap_pct, last_pct + rate_pct_s * (dt_s if dt_s > 0.0 else 0.0))


def marginal_yield(err):
    """Good hashes per Hz at the margin for a chip at error fraction err (can be < 0)."""
    return 1.0 - err - err * (1.0 - err) / ERR_EFOLD


def marginal_cost(err, temp_c):
    """Watts per good hash at the margin (relative units); larger = give up frequency first."""
    t = 0.0 if temp_c is None else (temp_c - T_REF_C) / T_SLOPE_C
    w = 1.0 + LEAK_FEEDBACK * math.exp(min(t, 10.0))
    y = marginal_yield(err)
    return w / (y if y > YIELD_MIN else YIELD_MIN)


def _cost_after(err, temp_c, x):
    """Cost of a chip once cut by the fraction x of its request."""
    e = err * math.exp(-x / ERR_EFOLD) if err else 0.0
    t = None if temp_c is None else temp_c - SELF_HEAT_C * x
    return marginal_cost(e, t)


def _candidates(requested_mhz, err, temps_c, steps, step):
    """Every (cost, chip, step) a cut could take, most expensive first; a chip's costs fall
    with its cut, so its own steps come in order."""
    known = [t for t in temps_c if t is not None]
    hot = max(known) if known else None
    cand = []
    for i in range(len(requested_mhz)):
        if requested_mhz[i] <= 0.0:
            continue
        e = err[i] if i < len(err) and err[i] is not None else 0.0
        t = temps_c[i] if i < len(temps_c) and temps_c[i] is not None else hot
        for k in range(steps):
            cand.append((_cost_after(e, t, k * step), i, k))
    cand.sort(key=lambda c: (-c[0], c[2], c[1]))    # equal costs: round robin over the chips
    return cand


def _known_enough(requested_mhz, temps_c):
    """At least half of the chips with a request have a known die temperature."""
    asked = known = 0
    for i in range(len(requested_mhz)):
        if requested_mhz[i] > 0.0:
            asked += 1
            if i < len(temps_c) and temps_c[i] is not None:
                known += 1
    return 2 * known >= asked


def _hot_cuts(requested_mhz, temps_c, cap_pct, hot_c, step):
    """Steps each chip must give up at least: the flat cap's cut for a die at or above hot_c
    (an unknown die counts as the hottest known one), none for the others."""
    n = len(requested_mhz)
    cut = [0] * n
    known = [t for t in temps_c if t is not None]
    if hot_c is None or not known:
        return cut
    top = max(known)
    k_flat = int(math.ceil((1.0 - cap_pct / 100.0) / step - 1e-9))
    for i in range(n):
        t = temps_c[i] if i < len(temps_c) and temps_c[i] is not None else top
        if requested_mhz[i] > 0.0 and t >= hot_c:
            cut[i] = k_flat
    return cut


def plan(requested_mhz, err, temps_c, cap_pct, floor=FLOOR, step=STEP, hot_c=None):
    """Per-chip multipliers (0..1) of the requests that keep sum(f) <= cap_pct/100 x sum(req).

    requested_mhz, err (fractions, None = unknown: 0), temps_c (None = unknown: hottest) are
    per-chip lists of one board; a chip with no request (0) is left alone; a chip at or above
    hot_c keeps at most cap_pct/100. Returns None when the cap is 100 % or more, fewer than half
    of the chips have a temperature, or the floor cannot meet the budget (the flat cap stands).
    """
    n = len(requested_mhz)
    if cap_pct >= 100.0 or n == 0:
        return None
    total = 0.0
    for f in requested_mhz:
        total += f
    need = total * (1.0 - cap_pct / 100.0)
    if need <= 0.0 or total <= 0.0:
        return None
    if total * (1.0 - floor) < need or not _known_enough(requested_mhz, temps_c):
        return None
    cand = _candidates(requested_mhz, err, temps_c, int((1.0 - floor) / step + 1e-9), step)
    cut = _hot_cuts(requested_mhz, temps_c, cap_pct, hot_c, step)
    got = 0.0
    for i in range(n):
        got += requested_mhz[i] * step * cut[i]
    for _c, i, k in cand:
        if got >= need - 1e-9:
            break
        if k != cut[i]:
            continue      # equal costs out of order: take a chip's steps one after another
        cut[i] = k + 1
        got += requested_mhz[i] * step
    if got < need - 1e-9:
        return None
    return [1.0 - cut[i] * step for i in range(n)]


def frequency_share(requested_mhz, mult):
    """sum(req x mult) / sum(req): the share of the requested frequency a plan keeps."""
    total = 0.0
    kept = 0.0
    for i in range(len(requested_mhz)):
        total += requested_mhz[i]
        kept += requested_mhz[i] * mult[i]
    return kept / total if total > 0.0 else 1.0
