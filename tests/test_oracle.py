"""Oracle (hal/sim/oracle.py): sanity on real models and optimality against brute force on tiny
cases (GAMMA's one chip, a three-chip board)."""

import random

import pytest

from hal import families, models, pll
from hal.sim import oracle as O
from hal.sim import physics as P


def test_u_opt_is_near_the_limit_and_falls_with_the_price():
    us = [O.u_opt(m) for m in (0.0, 0.1, 0.3, 0.6, 0.9)]
    assert all(a > b for a, b in zip(us, us[1:]))
    assert 0.97 < us[0] < 1.02          # free running: just past where errors start
    assert O.U_TABLE(0.3) == pytest.approx(O.u_opt(0.3), abs=1e-3)


def test_grid_frequencies_are_what_the_pll_realises():
    fam = families.get('BM1368')
    grid = O.freq_grid(fam, 50.0, 700.0)
    rng = random.Random(5)
    for f in rng.sample(grid, 50):
        assert pll.solve(fam, f)['freq_mhz'] == pytest.approx(f, abs=1e-6)


def _neighbourhood(prob, r, mhz=25.0):
    def cands(mv):
        return [[g for g in prob.grid if abs(g - f) <= mhz] for f in
                [f for board in r['freqs'] for f in board]]
    return cands


@pytest.mark.parametrize('mode,target', [('power', 17.0), ('hashrate', 1.1),
                                         ('efficiency', 0.9)])
def test_gamma_matches_brute_force(mode, target):
    prob = O.problem_for('GAMMA', seed=3)
    r = O.optimise(prob, mode, target)
    mv = r['board_mv'][0]
    b = O.brute_force(prob, mode, target, range(mv - 20, mv + 21), _neighbourhood(prob, r))
    assert b is not None
    if mode == 'power':
        assert r['wall_w'] <= target + 1e-9
        assert r['good_ths'] >= b['good_ths'] - 1e-9
    elif mode == 'hashrate':
        assert r['good_ths'] >= target - 1e-12
        assert r['wall_w'] <= b['wall_w'] + 1e-9
    else:
        assert r['good_ths'] >= target - 1e-12
        assert r['j_per_th'] <= b['j_per_th'] + 1e-9


def _tiny(seed, chips=3):
    model = dict(models.get('S21'))
    model['boards'] = 1
    model['chips_per_board'] = chips
    cal = P.calibrate(model)
    pop = P.population(cal, random.Random(seed))
    return O.Problem(model, cal, pop, fan_duty=0.7)


@pytest.mark.parametrize('seed', [1, 2])
def test_price_method_alone_is_close_to_brute_force_on_three_chips(seed, monkeypatch):
    monkeypatch.setattr(O, 'POLISH_MAX_CHIPS', 0)     # no local polish: the structure itself
    prob = _tiny(seed)
    budget = P.rig_steady_state(prob.cal, prob.pop, prob.model['f_nom_mhz'],
                                prob.model['stock_board_mv'], 0.7)['wall_w']
    r = O.optimise(prob, 'power', budget)
    assert r['wall_w'] <= budget + 1e-6
    mv = r['board_mv'][0]
    b = O.brute_force(prob, 'power', budget, range(mv - 30, mv + 31, 10),
                      _neighbourhood(prob, r, 6.0))
    assert r['good_ths'] >= b['good_ths'] * (1 - 0.003)
    stock = O.stock(prob)
    assert r['j_per_th'] < stock['j_per_th'] * 0.97


def test_polished_tiny_case_is_at_least_the_brute_force():
    prob = _tiny(3)
    budget = O.stock(prob)['wall_w'] * 1.05
    r = O.optimise(prob, 'power', budget)
    mv = r['board_mv'][0]
    b = O.brute_force(prob, 'power', budget, range(mv - 20, mv + 21, 10),
                      _neighbourhood(prob, r, 4.0))
    assert r['good_ths'] >= b['good_ths'] - 1e-12


def test_hot_limit_holds():
    prob = O.problem_for('GAMMA', seed=1)
    prob.hot_c = 50.0
    r = O.optimise(prob, 'power', 25.0)
    assert r['hottest_c'] <= 50.0 + 1e-6
    free = O.optimise(O.problem_for('GAMMA', seed=1), 'power', 25.0)
    assert free['hottest_c'] > 50.0      # the limit was binding


def test_s21_power_mode_beats_stock_and_keeps_the_budget():
    prob = O.problem_for('S21', seed=1)
    r = O.optimise(prob, 'power', 3500.0)
    st = O.stock(prob)
    assert r['wall_w'] <= 3500.0
    assert r['wall_w'] >= 3500.0 * 0.995
    assert r['j_per_th'] < st['j_per_th'] * 0.95
    assert r['hottest_c'] <= models.get('S21')['temp_hot_c']
    assert models.get('S21')['board_mv_min'] <= r['board_mv'][0] <= models.get('S21')['board_mv_max']
    # Lower voltage with chips near their limit is the better use of the watts.
    assert r['board_mv'][0] < models.get('S21')['stock_board_mv']
