"""Immersion: no fans (fan faults not alarmed, fan outputs held at 0 %), the coolant is the
ambient, and the safety supervisor still derates and trips on the dies. The simulator's
immersion model (spec "Noise and immersion": g = 4 x g_max, no fan power) and the oracle agree."""

import pytest

from agent.safety import Supervisor
from agent.safety.supervisor import validate_set_coolant
from hal import models
from hal.sim import oracle
from hal.sim import physics as P
from hal.sim.rig import SimRig
from tests.test_safety_unit import RigPlant, run, ids

S21 = models.get('S21')


class TankPlant(RigPlant):
    """RigPlant in coolant: conductance 4 x g_max whatever the fans do, no fan turning."""

    def __init__(self, coolant_c=30.0, flow=1.0):
        self.flow = flow                 # coolant circulation (1 = nominal, pump failing < 1)
        self.AMB_C = coolant_c
        RigPlant.__init__(self, duty=0.0)
        self.fan_dead = [True] * self.nf
        self.rpm = [0.0] * self.nf

    def d(self):
        # g = G_MAX * d^0.8 in the base class: 4 x G_MAX x flow^0.8
        return 4.0 ** 1.25 * self.flow


def immersion_sup(**extra):
    cfg = {'cooling': 'immersion', 'coolant_c': 30.0}
    cfg.update(extra)
    return Supervisor(S21, cfg)


def test_immersion_no_fan_alarms_fans_off_and_normal():
    sup, plant = immersion_sup(), TankPlant(30.0)
    hist, events = run(sup, plant, 0.0, 600)
    assert events == [], events
    assert all(a['fan_duty_pct'] == [0] * 4 for _, _, a in hist)
    st = sup.get_status()
    assert st['state'] == 'normal' and st['cooling'] == 'immersion' and st['coolant_c'] == 30.0
    assert all(b['freq_cap_pct'] == 100.0 and b['enable'] for b in hist[-1][2]['boards'])


def test_immersion_set_on_a_rig_with_turning_fans_warns_and_stays_warned():
    # An air rig set to immersion by mistake: its fans turn at start, then stop at the 0 %
    # written; the warning stays (the stopped fans do not make the setting right).
    sup, plant = immersion_sup(), RigPlant(duty=60.0)
    hist, events = run(sup, plant, 0.0, 60)
    assert hist[0][2]['events'][0]['id'] == 'rig.fans_in_immersion'      # on the first tick
    assert events[0]['severity'] == 'warning' and 'fan 0' in events[0]['message']
    assert ids(events).count('rig.fans_in_immersion') == 1
    assert 'rig.fans_in_immersion' not in ids(events, 'clear')
    # without the fans the air rig then overheats: only the dies protect it
    assert max(plant.rpm) < 50.0 and 'rig.fans_in_immersion' in sup.alarms
    assert all(a['fan_duty_pct'] == [0] * 4 for _, _, a in hist)        # behaviour unchanged


def test_immersion_tach_noise_below_the_threshold_is_no_warning():
    sup, plant = immersion_sup(), TankPlant(30.0)
    plant.rpm_override[2] = 480.0
    _, events = run(sup, plant, 0.0, 30)
    assert events == [], events
    plant.rpm_override[2] = 520.0
    _, events = run(sup, plant, 30.0, 5)
    assert ids(events) == ['rig.fans_in_immersion'] and 'fan 2' in events[0]['message']


def test_air_config_in_the_same_tank_alarms_the_fans():
    # The same rig without cooling = immersion: fans that never turn are lost, boards off.
    sup, plant = Supervisor(S21), TankPlant(30.0)
    hist, events = run(sup, plant, 0.0, 120)
    assert 'rig.fans_lost' in ids(events)
    assert not any(b['enable'] for b in hist[-1][2]['boards'])


def test_immersion_hot_coolant_derates_without_fans():
    sup, plant = immersion_sup(), TankPlant(30.0)
    run(sup, plant, 0.0, 300)

    def heat(t, p):
        p.AMB_C = 30.0 + min(40.0, (t - 300.0) * 0.2)    # coolant 30 -> 70 C over 200 s
    hist, events = run(sup, plant, 300.0, 900, hook=heat)
    caps = [min(b['freq_cap_pct'] for b in a['boards']) for _, _, a in hist]
    assert min(caps) < 100.0, 'no derate with the coolant at 70 C'
    assert all(a['fan_duty_pct'] == [0] * 4 for _, _, a in hist)
    assert not [i for i in ids(events) if 'fan' in i or 'airflow' in i], ids(events)
    assert max(m for _, m, _ in hist) < S21['temp_danger_c']
    assert all(b['enable'] for b in hist[-1][2]['boards'])


def test_immersion_pump_failure_trips_the_boards_off():
    sup, plant = immersion_sup(), TankPlant(40.0)
    run(sup, plant, 0.0, 300)

    def pump(t, p):
        p.flow = 0.02                                   # circulation stops
    hist, events = run(sup, plant, 300.0, 600, hook=pump)
    assert any(not b['enable'] for _, _, a in hist for b in a['boards']), 'no trip'
    assert any(i.startswith('board') for i in ids(events))
    assert all(a['fan_duty_pct'] == [0] * 4 for _, _, a in hist)


def test_set_coolant_command_and_set_fan_refused():
    sup = immersion_sup()
    assert validate_set_coolant({'c': 35}, {}) == ({'c': 35.0}, None)
    for bad in ({'c': 'x'}, {'c': 200}, {'c': True}, {'c': 30, 'x': 1}, {}):
        assert validate_set_coolant(bad, {})[0] is None
    assert sup.set_coolant({'c': 35.0}) == {'coolant_c': 35.0}
    assert sup.get_status()['coolant_c'] == 35.0
    with pytest.raises(ValueError):
        sup.set_fan_mode('manual', 80)
    with pytest.raises(ValueError):
        Supervisor(S21).set_coolant({'c': 30.0})


def test_physics_immersion_conductance_and_no_fan_power():
    cal = P.calibrate(S21)
    imm = P.immersed(cal)
    assert P.airflow_g(imm, 0.0) == pytest.approx(4.0 * cal['g_max'])
    assert P.airflow_g(imm, 1.0) == P.airflow_g(imm, 0.0)
    assert P.wall_power_w(imm, 3000.0, 3, [1.0] * 4) < P.wall_power_w(cal, 3000.0, 3, [1.0] * 4)
    assert P.wall_power_w(imm, 3000.0, 3, [1.0] * 4) == P.wall_power_w(cal, 3000.0, 3, [0.0] * 4)
    assert 'immersion' not in cal


def test_simrig_immersion_fans_still_and_cooler_than_air():
    gamma = models.get('GAMMA')
    air = SimRig(gamma, seed=1, ambient_c=30.0, fan_duty_pct=70.0)
    tank = SimRig(gamma, seed=1, ambient_c=30.0, fan_duty_pct=70.0, immersion=True)
    for r in (air, tank):
        r.warm_start()                       # hashing at f_nom, boards at steady state
        r.step(300.0)
    assert all(rpm == 0.0 for rpm in tank.fan_rpm)
    assert max(max(t) for t in tank.temps) < max(max(t) for t in air.temps) - 5.0
    st = P.rig_steady_state(tank.cal, tank.pop, gamma['f_nom_mhz'], gamma['stock_board_mv'],
                            0.0, 30.0)
    assert tank.wall_w() == pytest.approx(st['wall_w'], rel=0.01)
    assert tank.wall_w() < air.wall_w()


def test_oracle_immersion_hotter_coolant_fewer_hashes_at_a_ceiling():
    g30 = oracle.optimise_constrained(oracle.problem_for('GAMMA', ambient_c=30, hot_c=72,
                                                         immersion=True))
    g40 = oracle.optimise_constrained(oracle.problem_for('GAMMA', ambient_c=40, hot_c=72,
                                                         immersion=True))
    air = oracle.optimise_constrained(oracle.problem_for('GAMMA', ambient_c=30, hot_c=72,
                                                         fan_duty=0.7))
    assert g30['hottest_c'] <= 72.05 and g40['hottest_c'] <= 72.05
    assert g30['good_ths'] > g40['good_ths']
    assert g30['good_ths'] > air['good_ths']          # 4 x g_max beats 70 % fans
