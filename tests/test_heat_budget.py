"""Heat budget (profile mode 'heat'): a cap on the heat into the room, run as a power target at
wall = heat / heat_share. Unit checks, the tuner on the plant against the oracle, telemetry and
the command; tests/test_heat_budget_sim.py drives it through the agent and the simulator."""

import pytest

from agent import telemetry
from agent.autotune import maths, profile as PR
from agent.autotune.plant import PlantIO
from agent.autotune.tuner import Tuner
from agent.autotune.validate import validate_autotune, validate_set_heat_budget
from hal import models
from hal.sim import oracle as O
from hal.sim import physics as P
from mqtt_schema import fields as F
from mqtt_schema import payloads


def test_wall_for_heat_and_the_shipped_profile():
    assert maths.wall_for_heat_w(3000.0, 1.0) == 3000.0
    assert maths.wall_for_heat_w(3000.0, P.ETA) == pytest.approx(3191.49, abs=0.01)
    prof = PR.load('heat')
    assert prof['mode'] == 'heat' and prof['heat_share'] == 1.0
    assert PR.resolve_target(prof, models.get('S21')) == 1750.0
    with pytest.raises(PR.ConfigError):
        PR.validate({'mode': 'heat', 'heat_share': 0.3})


def test_commands_validate():
    ctx = {'heat_min_w': 350, 'heat_max_w': 4000}
    assert validate_set_heat_budget({'w': 2000}, ctx) == ({'w': 2000.0}, None)
    for bad in ({'w': 100}, {'w': 'x'}, {'w': 5000}, {}, {'w': 2000, 'x': 1}):
        assert validate_set_heat_budget(bad, ctx)[0] is None
    assert validate_autotune({'action': 'start', 'mode': 'heat', 'target': 12}, {})[0]['mode'] \
        == 'heat'


def _tune(io, prof, target, hold_s=180.0, limit_s=3600.0):
    tuner = Tuner(io, prof, target)
    done, walls, heats = None, [], []
    while io.t_s < limit_s:
        tuner.step(io.t_s)
        io.advance(5.0)
        if tuner.stage == 'done' and done is None:
            done = io.t_s
        if done is not None:
            walls.append(io.wall_w())
            heats.append(tuner.get_status()['heat_w'])
            if io.t_s >= done + hold_s:
                break
    return tuner, done, sum(walls) / len(walls), sum(heats) / len(heats), io.good_ths()


@pytest.mark.parametrize('share', [1.0, P.ETA])
def test_gamma_holds_the_heat_budget_near_the_oracle(share):
    heat_w = 12.0
    io = PlantIO('GAMMA', seed=1, fan_duty=0.7)
    prof = PR.validate({'mode': 'heat', 'target': heat_w, 'heat_share': share})
    tuner, done, wall, heat, good = _tune(io, prof, heat_w)
    assert done is not None and done <= 15 * 60.0, done
    st = tuner.get_status()
    assert st['mode'] == 'heat' and st['heat_budget_w'] == heat_w
    assert st['target'] == pytest.approx(heat_w / share)
    # heat into the room held: true wall power x share within -1.5 % .. +0.5 % of the budget
    assert -1.5 <= 100.0 * (wall * share / heat_w - 1.0) <= 0.5, wall
    assert heat == pytest.approx(wall * share, rel=0.02)       # the tuner's own estimate
    orc = O.optimise(O.problem_for('GAMMA', seed=1, fan_duty=0.7), 'power', heat_w / share)
    assert good >= 0.985 * orc['good_ths'], (good, orc['good_ths'])


def test_telemetry_carries_the_heat_fields_and_old_payloads_stay_the_same():
    class T:
        def get_status(self):
            return {'stage': 'search', 'mode': 'heat', 'target': 3191.5, 'heat_budget_w': 3000.0,
                    'heat_w': 2990.0, 'progress_pct': 40.0}
    view = telemetry.tuner_view(T())
    assert view['target'] == 'heat 3000.0 W' and view['heat_w'] == 2990.0
    wire = payloads.pack(F.TUNER, view)
    assert wire['hb'] == 3000 and wire['ht'] == 2990 and wire['tgt'] == 'heat 3000.0 W'

    class P2:
        def get_status(self):
            return {'stage': 'done', 'mode': 'power', 'target': 3500.0, 'progress_pct': 100.0}
    assert set(payloads.pack(F.TUNER, telemetry.tuner_view(P2()))) == {'st', 'pr', 'tgt'}


def test_telemetry_target_unit_follows_the_mode():
    def view(mode, target):
        class T:
            def get_status(self):
                return {'stage': 'hold', 'mode': mode, 'target': target}
        return telemetry.tuner_view(T())['target']
    assert view('thermal', 72.0) == 'thermal 72.0 C'          # a die ceiling (was 'TH/s')
    assert view('hashrate', 180.0) == 'hashrate 180.0 TH/s'
    assert view('efficiency', 150.0) == 'efficiency 150.0 TH/s'
    assert view('power', 3500.0) == 'power 3500.0 W'
