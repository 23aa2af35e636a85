"""Tuner maths and state machine against the in-process plant (agent/autotune/plant.py)."""

import random

from hal.sim.physics import poisson


from agent.autotune import maths, profile as PR
from agent.autotune.plant import PlantIO
from agent.autotune.tuner import Tuner
from hal.sim import oracle as O


def test_ticket_bits_fit_the_uart():
    hs = 108 * 1276 * 600e6                     # one S21 board near its limit
    for baud in (115200, 1041667):
        for k in (1.0, 30.0):
            n = maths.ticket_bits(hs, baud, k)
            frames_s = hs * k / 2 ** (32 + n)
            assert frames_s * 11 * 10 <= 0.25 * baud
            if n > 6:                            # and not more than needed
                assert hs * k / 2 ** (32 + n - 1) * 110 > 0.25 * baud
    assert maths.ticket_bits(hs, 115200, 30.0) > maths.ticket_bits(hs, 115200, 1.0)


def test_freq_step_signs_and_bounds():
    assert maths.freq_step(0, 4000, 0.002) > 0
    assert maths.freq_step(60, 4000, 0.002) < 0
    assert maths.freq_step(2000, 4000, 0.002) == -0.03
    assert abs(maths.freq_step(8, 4000, 0.002)) < 0.001


def test_dwell_tells_0p1_from_0p5_percent():
    """With min_err_count 8 at a 0.2 % target: a chip at 0.5 % always steps down; a chip at 0.1 %
    almost never steps down by more than 0.1 % (Poisson counts), and on average steps up."""
    rng = random.Random(11)
    target, nmin = 0.002, 8.0
    exposure = nmin / target
    low = [maths.freq_step(poisson(rng, 0.001 * exposure), exposure, target) for _ in range(400)]
    high = [maths.freq_step(poisson(rng, 0.005 * exposure), exposure, target) for _ in range(400)]
    assert sum(s < 0 for s in high) >= 0.99 * 400
    assert sum(s > -0.001 for s in low) >= 0.97 * 400
    assert sum(low) / 400 > 0.001
    assert maths.clearly_above(20, exposure, 0.002) and not maths.clearly_above(8, exposure, 0.002)


def test_power_mode_below_the_voltage_floor_sheds_frequency_on_s19jpro():
    # S19J Pro at its 11.5 V floor with every chip at its error limit draws ~1 180 W; a 770 W
    # target (the fleet curtail planner goes down to 20 % of nameplate, 610 W) is reached only
    # by lowering frequencies there. Before the shed rule the tuner stopped at 1 184 W.
    io = PlantIO('S19JPRO', seed=1, sigma_f=0.05, fan_duty=0.7)
    tuner = Tuner(io, PR.validate({'mode': 'power'}), 770.0)
    done = _run(io, tuner, 1800.0)
    assert done is not None
    assert io.mv == [io.model()['board_mv_min']] * 3
    prob = O.problem_for('S19JPRO', seed=1, sigma_f=0.05, fan_duty=0.7)
    st = prob.verify(io.freqs, io.mv)
    orc = O.optimise(prob, 'power', 770.0)
    assert abs(st['wall_w'] / 770.0 - 1.0) <= 0.015
    assert st['good_ths'] >= orc['good_ths'] * 0.97


def test_next_voltage_rounds_to_step_and_clamps():
    mv = maths.next_voltage_mv(14400, 3700.0, 3500.0, 5.8, 10, 12000, 15500)
    assert mv % 10 == 0 and mv < 14400
    assert maths.next_voltage_mv(12000, 3700.0, 3500.0, 5.8, 10, 12000, 15500) == 12000


def _run(io, tuner, limit_s, dt=5.0):
    done = None
    while io.t_s < limit_s:
        tuner.step(io.t_s)
        io.advance(dt)
        if tuner.stage == 'done' and done is None:
            done = io.t_s
            break
    return done


def test_tuner_converges_near_the_oracle_on_s21():
    io = PlantIO('S21', seed=1, sigma_f=0.05, fan_duty=0.7)
    prof = PR.validate({'mode': 'power'})
    tuner = Tuner(io, prof, 3500.0)
    done = _run(io, tuner, 1800.0)
    assert done is not None and done <= 1800.0
    prob = O.problem_for('S21', seed=1, sigma_f=0.05, fan_duty=0.7)
    st = prob.verify(io.freqs, io.mv)
    orc = O.optimise(prob, 'power', 3500.0)
    assert st['j_per_th'] <= orc['j_per_th'] * 1.01
    assert abs(st['wall_w'] / 3500.0 - 1.0) <= 0.015
    assert st['hottest_c'] <= 85.0
    res = tuner.result()
    assert res['board_ids'] == io.board_ids()
    assert len(res['freqs'][0]) == 108
    s = tuner.get_status()
    assert s['stage'] == 'done' and s['progress_pct'] == 100.0


def test_gamma_hashrate_mode_meets_the_target():
    io = PlantIO('GAMMA', seed=2)
    tuner = Tuner(io, PR.validate({'mode': 'hashrate'}), 1.1)
    assert _run(io, tuner, 1800.0) is not None
    io.advance(120.0)
    assert io.good_ths() >= 1.1 * 0.995
    prob = O.problem_for('GAMMA', seed=2)
    orc = O.optimise(prob, 'hashrate', 1.1)
    assert io.wall_w() <= orc['wall_w'] * 1.015


def test_tuner_yields_when_safety_is_not_ok_and_resumes():
    io = PlantIO('GAMMA', seed=1)
    tuner = Tuner(io, PR.validate({'mode': 'power'}), 18.0)
    for _ in range(10):
        tuner.step(io.t_s)
        io.advance(5.0)
    io.safe = False
    before = (io.requests, list(io.mv), [list(f) for f in io.freqs])
    for _ in range(20):
        assert tuner.step(io.t_s) > io.t_s
        io.advance(5.0)
    assert tuner.stage == 'paused'
    assert before == (io.requests, list(io.mv), [list(f) for f in io.freqs])
    io.safe = True
    assert _run(io, tuner, 1800.0) is not None


def test_saved_result_gives_a_fast_verified_start():
    io = PlantIO('GAMMA', seed=4)
    prof = PR.validate({'mode': 'power'})
    t1 = Tuner(io, prof, 17.0)
    first = _run(io, t1, 1800.0)
    res = t1.result()
    saved = {'board_ids': res['board_ids'], 'mode': 'power', 'target': 17.0,
             'board_mv': res['board_mv'], 'freqs': res['freqs']}
    io2 = PlantIO('GAMMA', seed=4)
    t2 = Tuner(io2, prof, 17.0, saved=saved)
    t2.step(0.0)
    assert t2.stage == 'verify' and io2.mv == res['board_mv']
    second = _run(io2, t2, 1800.0)
    assert second is not None and second < first
    # A different board (identity) is not reused.
    io3 = PlantIO('GAMMA', seed=5)
    t3 = Tuner(io3, prof, 17.0, saved=saved)
    t3.step(0.0)
    assert t3.stage == 'search'


def test_retune_on_temperature_drift():
    io = PlantIO('GAMMA', seed=1)
    tuner = Tuner(io, PR.validate({'mode': 'power', 'retune_temp_c': 4.0}), 18.0)
    assert _run(io, tuner, 1800.0) is not None
    io.ambient_c += 12.0
    for _ in range(60):
        tuner.step(io.t_s)
        io.advance(5.0)
    assert tuner.retunes >= 1


def test_retune_on_error_drift_and_dead_chips_do_not_block():
    io = PlantIO('S21', seed=6)
    io.pop[0][5]['dead'] = True                  # a dead chip: never settles, must not block
    tuner = Tuner(io, PR.validate({'mode': 'power'}), 3300.0)
    assert _run(io, tuner, 1800.0) is not None
    # Silicon degrades on one board (slower chips): errors rise, the tuner re-tunes.
    for chip in io.pop[1]:
        chip['speed'] *= 0.97
    for _ in range(120):
        tuner.step(io.t_s)
        io.advance(5.0)
    assert tuner.retunes >= 1
    assert any('error drift' in r for r in tuner.retune_reasons), tuner.retune_reasons


def test_saved_result_of_another_shape_is_not_reused():
    io = PlantIO('GAMMA', seed=4)
    saved = {'board_ids': io.board_ids(), 'mode': 'power', 'target': 17.0,
             'board_mv': [1100], 'freqs': [[500.0, 510.0]]}          # two chips: not this rig
    t = Tuner(io, PR.validate({'mode': 'power'}), 17.0, saved=saved)
    t.step(0.0)
    assert t.stage == 'search'


def test_unreachable_target_ends_at_the_limit_within_the_time_budget():
    io = PlantIO('GAMMA', seed=1)
    prof = PR.validate({'mode': 'power', 'time_budget_s': 900.0})
    tuner = Tuner(io, prof, 60.0)                   # far above what 1300 mV can draw
    done = _run(io, tuner, 3000.0)
    assert done is not None and done <= 900.0 + prof['verify_s'] + 60.0
    # Held back by the hot limit (75 - 3 C margin) before the voltage limit: stays below it.
    assert max(io.temps[0]) <= 72.0 + 1.0 and io.wall_w() < 60.0
    io2 = PlantIO('S21', seed=1)
    t2 = Tuner(io2, PR.validate({'mode': 'power', 'time_budget_s': 900.0}), 500.0)
    assert _run(io2, t2, 3000.0) is not None        # far below: lowest voltage, chips slowed
    assert io2.mv[0] == 12000
