"""Heat budget through the agent and the simulator (own process): the set_heat_budget command
starts the heat profile; telemetry carries the budget and the heat estimate; the simulator's
truth (its wall power) shows the heat held."""

import json

import pytest

from tests.agentproc import AgentProcess, Recorder, dump
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_set_heat_budget_holds_the_heat_into_the_room(tmp_path):
    budget_w = 14.0
    truth = tmp_path / 'truth.jsonl'
    with start_sim('GAMMA', time_scale=30, seed=3, truth=str(truth)) as sim, Broker() as broker:
        rec = Recorder(broker, 'lab', 'heater')
        with AgentProcess(tmp_path, sim.ports_file, broker, rig='heater', telemetry_s=10,
                          chips_s=60) as agent:
            rec.wait_for(lambda: rec.count('telemetry') >= 1, 60, 'telemetry')
            rec.command('set_heat_budget', {'id': 'hb', 'args': {'w': budget_w}})
            rec.command('set_heat_budget', {'id': 'bad', 'args': {'w': 1.0}})
            rec.wait_for(lambda: rec.count('cmd/result') >= 2, 30, 'command results')
            res = dict((r['id'], r) for r in rec.of('cmd/result'))
            assert res['hb']['ok'] is True, dump(res['hb'])
            assert res['bad']['ok'] is False
            rec.wait_for(lambda: any(a['id'] == 'rig.tune_done' for a in rec.of('alarm') if a),
                         300, 'the tune to finish')
            n = rec.count('telemetry')
            rec.wait_for(lambda: rec.count('telemetry') >= n + 3, 60, 'telemetry after done')
            tun = rec.of('telemetry')[-1]['tuner']
            assert tun['target'] == 'heat %.1f W' % budget_w, tun
            assert tun['heat_budget_w'] == budget_w
            assert abs(tun['heat_w'] / budget_w - 1.0) < 0.03, tun
            assert agent.alive()
        rec.close()
    lines = [json.loads(l) for l in truth.read_text().splitlines() if l.endswith('}')]
    states = [l for l in lines if l.get('type') == 'state']
    last = [s for s in states if s['t_s'] >= states[-1]['t_s'] - 60.0]
    held = sum(s['wall_w'] for s in last) / len(last)
    print('HEAT held %.2f W for a %.1f W budget (%.2f %%)'
          % (held, budget_w, 100.0 * (held / budget_w - 1.0)))
    assert -2.0 <= 100.0 * (held / budget_w - 1.0) <= 1.0, held
