"""Simulator physics (hal/sim/physics.py) against shared/spec/sim-physics.md reference figures."""

import math
import random

import pytest

from hal import models
from hal.sim import physics as P


def stock(model_name, seed=1, duty=0.6, ambient_c=25.0):
    cal = P.calibrate(models.get(model_name))
    pop = P.population(cal, random.Random(seed))
    return cal, pop, P.rig_steady_state(cal, pop, cal['f_nom_mhz'], cal['stock_board_mv'],
                                        duty, ambient_c)


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_s21_stock_matches_spec_reference(seed):
    _cal, _pop, r = stock('S21', seed)
    print('S21 seed %d: %.2f TH/s %.0f W %.2f J/TH hottest %.1f C'
          % (seed, r['good_ths'], r['wall_w'], r['j_per_th'], r['hottest_c']))
    assert r['good_ths'] == pytest.approx(202.6, rel=0.02)
    assert r['wall_w'] == pytest.approx(3517, rel=0.02)
    assert r['j_per_th'] == pytest.approx(17.4, rel=0.02)
    assert r['hottest_c'] == pytest.approx(78, rel=0.02)
    assert not r['runaway']


@pytest.mark.parametrize('name', ['S19JPRO', 'GAMMA'])
def test_other_models_near_nameplate(name):
    cal, _pop, r = stock(name)
    print('%s stock: %.3f TH/s %.1f W %.2f J/TH hottest %.1f C'
          % (name, r['good_ths'], r['wall_w'], r['j_per_th'], r['hottest_c']))
    nominal_ths = cal['chips'] * cal['f_nom_mhz'] * 1e6 * cal['cores_per_chip'] / 1e12
    assert r['good_ths'] == pytest.approx(nominal_ths, rel=0.02)
    # calibration targets nameplate watts at the median chip
    assert r['wall_w'] == pytest.approx(models.get(name)['nameplate_w'], rel=0.1)
    assert 40 < r['hottest_c'] < 90


def test_calibration_formulas():
    cal = P.calibrate(models.get('S21'))
    p_chip = (3500 * 0.94 - 3 * 5 - 4 * 30 * 0.216 - 8) / 324
    assert cal['p_chip_w'] == pytest.approx(p_chip)
    assert cal['v_nom'] == pytest.approx(1.2)
    assert cal['c0'] == pytest.approx(0.92 * p_chip / (1.44 * 490))
    assert cal['i0'] == pytest.approx(0.08 * p_chip / 1.2)
    assert cal['r_ja'] == pytest.approx(20 / p_chip)
    assert cal['f_ref_mhz'] == pytest.approx(490 / 0.81)
    # the median chip at v_nom, T_REF, f_nom draws exactly p_chip
    median = P.make_chip(0.0, 0.0, 0.0)
    assert P.chip_power_w(cal, median, cal['v_nom'], 490, P.T_REF_C) == pytest.approx(p_chip)


def test_population_is_seeded_and_clipped():
    cal = P.calibrate(models.get('S21'))
    a = P.population(cal, random.Random(7))
    b = P.population(cal, random.Random(7))
    c = P.population(cal, random.Random(8))
    assert a == b and a != c
    zs = [ch[k] for board in a for ch in board for k in ('zf', 'zl', 'zc')]
    assert max(abs(z) for z in zs) <= 3.0
    speeds = [ch['speed'] for board in a for ch in board]
    mean = sum(speeds) / len(speeds)
    sd = math.sqrt(sum((s - mean) ** 2 for s in speeds) / len(speeds))
    assert abs(mean - 1) < 0.01 and 0.04 < sd < 0.06
    wide = P.population(cal, random.Random(7), sigma_f=0.1)
    assert wide[0][0]['speed'] - 1 == pytest.approx(2 * (a[0][0]['speed'] - 1))


def test_overrides_and_bimodal_population():
    cal = P.calibrate(models.get('S21'))
    pop = P.population(cal, random.Random(1))
    P.apply_overrides(pop, [{'board': 0, 'chip': 5, 'dead': True},
                            {'board': 1, 'chip': 3, 'speed': 0.7}])
    r = P.rig_steady_state(cal, pop, 490.0, 14400)
    assert r['boards'][0]['good_hs'][5] == 0.0
    assert r['boards'][1]['err'][3] > 0.99          # a weak chip at f_nom fails almost all
    lot = P.bimodal(P.population(cal, random.Random(1)), random.Random(2), 0.5, 0.9)
    slow = sum(1 for ch in lot[0] if ch['speed'] < 0.95)
    assert 30 < slow < 90


def test_error_curve_and_frequency_limit():
    cal = P.calibrate(models.get('S21'))
    chip = P.make_chip(0.0, 0.0, 0.0)
    fmax = P.chip_fmax_mhz(cal, chip, cal['v_nom'], P.T_REF_C)
    assert fmax == pytest.approx(cal['f_ref_mhz'])
    assert P.chip_err(fmax, fmax) == pytest.approx(0.5)
    assert P.chip_err(0.95 * fmax, fmax) < 1e-4
    assert P.chip_err(1.05 * fmax, fmax) > 0.9999
    # hotter and lower voltage both lower the limit
    assert P.chip_fmax_mhz(cal, chip, cal['v_nom'], 90) < fmax
    assert P.chip_fmax_mhz(cal, chip, 0.9 * cal['v_nom'], P.T_REF_C) < fmax
    assert P.chip_fmax_mhz(cal, chip, 0.5 * cal['v_nom'], P.T_REF_C) == 0.0


def test_hashrate_follows_frequency_and_power_rises():
    cal, pop, base = stock('S21')
    _c, _p, low = (cal, pop, P.rig_steady_state(cal, pop, 400.0, 14400, 0.6, 25.0))
    assert low['good_ths'] == pytest.approx(base['good_ths'] * 400 / 490, rel=0.01)
    assert low['wall_w'] < base['wall_w']
    assert low['hottest_c'] < base['hottest_c']


def test_fans_and_ambient_move_temperatures():
    _cal, _pop, base = stock('S21')
    _cal, _pop, slow_fans = stock('S21', duty=0.3)
    _cal, _pop, hot_room = stock('S21', ambient_c=35.0)
    assert slow_fans['hottest_c'] > base['hottest_c'] + 10
    assert hot_room['hottest_c'] > base['hottest_c'] + 9
    # a hotter die leaks more: power grows with temperature
    assert hot_room['sum_chip_w'] > base['sum_chip_w']


def test_thermal_runaway_is_reported():
    cal, pop, _ = stock('S21')
    r = P.rig_steady_state(cal, pop, 700.0, 15500, 0.0, 45.0)
    assert r['runaway']


def test_disabled_board_draws_nothing():
    cal, pop, base = stock('S21')
    r = P.rig_steady_state(cal, pop, 490.0, 14400, 0.6, 25.0, enabled=[True, False, True])
    assert r['boards'][1]['sum_p_w'] == 0.0
    assert r['good_ths'] == pytest.approx(base['good_ths'] * 2 / 3, rel=0.01)


def test_relax_first_order():
    assert P.relax(0.0, 10.0, 30.0, 30.0) == pytest.approx(10 * (1 - math.exp(-1)))
    assert P.relax(5.0, 5.0, 1.0, 2.0) == 5.0


def test_per_board_voltage_gamma():
    cal = P.calibrate(models.get('GAMMA'))
    pop = P.population(cal, random.Random(1))
    lo = P.rig_steady_state(cal, pop, 525.0, [1100])
    hi = P.rig_steady_state(cal, pop, 525.0, [1200])
    assert hi['wall_w'] > lo['wall_w']
    assert hi['boards'][0]['fmax_mhz'][0] > lo['boards'][0]['fmax_mhz'][0]
