"""Power allocation for site curtailment. Pure functions (no MQTT, no clock).

A rig is {'key', 'w' (drawn now), 'ths' (now), 'min_w', 'max_w', 'curve' (optional
[[W, TH/s], ...] of its tuning curve)}. `allocate(rigs, cap_w, policy)` -> {key: target W}
with sum(targets) <= cap_w whenever sum(min_w) <= cap_w.

Policies:
  proportional  every rig gives up the same fraction of its power (clamped at its minimum; what a
                clamped rig cannot give, the others give).
  efficiency    most hashes for the cap: each rig's hashrate-vs-power curve H(P) is concave, so
                the best split gives every rig the same marginal TH/s per W (or leaves it at a
                bound). Without a measured curve a rig's curve is H0 * (P / P0) ** ALPHA through
                its present operating point; then the marginal is ALPHA / (J/TH) and the
                least efficient rigs (highest J/TH) are shed first, until the J/TH are level.
"""

import heapq

ALPHA = 0.64     # fitted to the oracle's power-mode tuning curves of the S21 and S19J Pro
                 # (hashrate x1.57 for power x2 between 1.5 and 3 kW; docs/fleet.md)
STEP_W = 5.0
POLICIES = ('efficiency', 'proportional')


def _clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def proportional(rigs, cap_w):
    targets = {}
    free = list(rigs)
    budget = cap_w
    while free:
        total = sum(r['w'] for r in free)
        scale = budget / total if total > 0 else 1.0
        clamped = [r for r in free if r['w'] * scale < r['min_w']]
        if not clamped:
            for r in free:
                targets[r['key']] = _clamp(r['w'] * scale, r['min_w'], r['max_w'])
            break
        for r in clamped:       # these stop at their minimum; the rest share what is left
            targets[r['key']] = r['min_w']
            budget -= r['min_w']
            free.remove(r)
    return targets


def curve_of(r):
    """H(P) for a rig: interpolated measured curve, or the power law through (w, ths)."""
    pts = []
    for p, h in sorted(r.get('curve') or ()):
        if not pts or p > pts[-1][0]:      # a repeated power (unreachable lower budget) adds nothing
            pts.append((p, h))
    if len(pts) >= 2:
        def h(p):
            if p <= pts[0][0]:
                return pts[0][1] * p / pts[0][0]
            for (p0, h0), (p1, h1) in zip(pts, pts[1:]):
                if p <= p1:
                    return h0 + (h1 - h0) * (p - p0) / (p1 - p0)
            return pts[-1][1]
        return h
    w0, h0 = max(r['w'], 1.0), max(r['ths'] or 0.0, 0.0)
    return lambda p: h0 * (max(p, 0.0) / w0) ** ALPHA


def _grid(r):
    """Power steps from min_w to max_w and the hashrate gained per W on each step."""
    h = curve_of(r)
    lo, hi = r['min_w'], max(r['min_w'], r['max_w'])
    if hi - lo < 1e-6:
        return [lo], []
    n = max(1, int((hi - lo) / STEP_W + 0.5))
    ps = [lo + (hi - lo) * i / n for i in range(n + 1)]
    hs = [h(p) for p in ps]
    gains = [(hs[i + 1] - hs[i]) / (ps[i + 1] - ps[i]) for i in range(n)]
    return ps, gains


def _steps_at(gains, price):
    """Steps a rig takes when a watt costs `price` TH/s: every step that gains more."""
    # Concave curve: gains fall along the steps, so the steps worth taking are a prefix.
    k = 0
    while k < len(gains) and gains[k] >= price:
        k += 1
    return k


def _power_at(ps, gains, price):
    return ps[_steps_at(gains, price)]


def efficiency(rigs, cap_w):
    grids = dict((r['key'], _grid(r)) for r in rigs)
    if sum(r['max_w'] for r in rigs) <= cap_w:
        return dict((r['key'], r['max_w']) for r in rigs)
    lo, hi = 0.0, max([max(g[1]) for g in grids.values() if g[1]] + [1.0]) * 2 + 1.0
    for _ in range(60):      # bisection on the price of a watt
        mid = 0.5 * (lo + hi)
        total = sum(_power_at(ps, gains, mid) for ps, gains in grids.values())
        if total > cap_w:
            lo = mid
        else:
            hi = mid
    # Linear pieces of a curve have equal gains: the price can only take a piece whole. Fill what
    # the cap leaves, step by step, best next step first.
    idx = dict((k, _steps_at(gains, hi)) for k, (ps, gains) in grids.items())
    left = cap_w - sum(grids[k][0][i] for k, i in idx.items())
    # Ties (equal gains on equal linear pieces) go to the rig with less power so far: the true
    # curve is strictly concave, an even split is the better one.
    heap = [(-grids[k][1][i], grids[k][0][i], k) for k, i in idx.items() if i < len(grids[k][1])]
    heapq.heapify(heap)
    while heap:
        _, _, k = heapq.heappop(heap)
        ps, gains = grids[k]
        i = idx[k]
        if ps[i + 1] - ps[i] > left:
            continue
        left -= ps[i + 1] - ps[i]
        idx[k] = i + 1
        if i + 1 < len(gains):
            heapq.heappush(heap, (-gains[i + 1], ps[i + 1], k))
    return dict((k, grids[k][0][i]) for k, i in idx.items())


def allocate(rigs, cap_w, policy='efficiency'):
    if policy not in POLICIES:
        raise ValueError('policy must be one of %s' % ', '.join(POLICIES))
    if sum(r['min_w'] for r in rigs) > cap_w:
        raise ValueError('cap %.0f W below the rigs\' minimum total %.0f W: sleep rigs or raise the cap'
                         % (cap_w, sum(r['min_w'] for r in rigs)))
    return efficiency(rigs, cap_w) if policy == 'efficiency' else proportional(rigs, cap_w)


def hashrate(rigs, targets):
    """Sum of the curves at the targets (TH/s): the allocation's expected hashrate."""
    return sum(curve_of(r)(targets[r['key']]) for r in rigs)
