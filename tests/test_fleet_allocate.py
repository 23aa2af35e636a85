"""Curtailment allocation: bounds, caps, policies, and the efficiency split against a brute force."""

import itertools

import pytest

from fleet import allocate as A
from fleet import curves as C
from fleet.curtail import rig_curve


def _rig(key, model, w, ths, lo):
    return {'key': key, 'w': w, 'ths': ths, 'min_w': lo, 'max_w': w, 'curve': rig_curve(model, w, ths)}


RIGS = [_rig('a', 'S21', 3500, 219.0, 700), _rig('b', 'S21', 3500, 215.0, 700),
        _rig('c', 'S19JPRO', 3050, 108.0, 610), _rig('d', 'S19JPRO', 3000, 100.0, 610)]


@pytest.mark.parametrize('policy', A.POLICIES)
@pytest.mark.parametrize('cap_w', [12000, 9000, 6000, 3300])
def test_targets_respect_cap_and_bounds(policy, cap_w):
    t = A.allocate(RIGS, cap_w, policy)
    assert sum(t.values()) <= cap_w + 1e-6
    assert sum(t.values()) >= cap_w - 25          # the budget is used (5 W steps)
    for r in RIGS:
        assert r['min_w'] - 1e-6 <= t[r['key']] <= r['max_w'] + 1e-6


def test_cap_below_minimums_is_refused():
    with pytest.raises(ValueError, match='minimum total'):
        A.allocate(RIGS, 2000)
    with pytest.raises(ValueError):
        A.allocate(RIGS, 9000, 'random')


def test_efficiency_sheds_the_least_efficient_first():
    t = A.allocate(RIGS, 10500, 'efficiency')
    assert t['a'] == 3500 and t['b'] == 3500           # S21s keep their power
    assert t['c'] < 3050 and t['d'] < 3000             # the S19J Pros give it up
    p = A.allocate(RIGS, 10500, 'proportional')
    assert A.hashrate(RIGS, t) > A.hashrate(RIGS, p)
    assert p['a'] / 3500 == pytest.approx(p['c'] / 3050, rel=1e-6)


def test_efficiency_matches_brute_force():
    rigs = RIGS[1:]
    for cap_w in (7000, 5000, 3000):
        t = A.allocate(rigs, cap_w, 'efficiency')
        best = 0.0
        grids = [list(range(r['min_w'], int(r['max_w']) + 1, 100)) for r in rigs]
        for combo in itertools.product(*grids):
            if sum(combo) <= cap_w:
                best = max(best, sum(A.curve_of(r)(p) for r, p in zip(rigs, combo)))
        assert A.hashrate(rigs, t) >= best - 1e-6, cap_w


def test_curves_are_concave_where_used():
    for model in ('S21', 'S19JPRO'):
        pts = C.CURVES[model]
        gains = [(h1 - h0) / (p1 - p0) for (p0, h0), (p1, h1) in zip(pts, pts[1:])]
        assert all(g0 >= g1 - 1e-3 for g0, g1 in zip(gains, gains[1:])), (model, gains)
