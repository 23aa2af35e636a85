"""Autotune through the agent: the `autotune` command starts the tuner on the control thread,
telemetry carries its stage and progress, and the finished result is saved per board."""

import glob
import os

import pytest

from tests.agentproc import AgentProcess, Recorder, dump
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_autotune_command_runs_the_tuner_and_saves_the_result(tmp_path):
    with start_sim('GAMMA', time_scale=30, seed=3) as sim, Broker() as broker:
        rec = Recorder(broker, 'lab', 'bitaxe')
        with AgentProcess(tmp_path, sim.ports_file, broker, rig='bitaxe', telemetry_s=10,
                          chips_s=60) as agent:
            rec.wait_for(lambda: rec.count('telemetry') >= 1, 60, 'telemetry')
            assert rec.of('telemetry')[-1]['tuner']['state'] == 'idle'
            rec.command('autotune', {'id': 'bad', 'args': {'profile': 'nonexistent'}})
            rec.command('set_power_target', {'id': 'pt', 'args': {'w': 15.0}})
            rec.wait_for(lambda: rec.count('cmd/result') >= 2, 30, 'command results')
            res = dict((r['id'], r) for r in rec.of('cmd/result'))
            assert res['bad']['ok'] is False and 'unknown profile' in res['bad']['error']
            assert res['pt']['ok'] is True, dump(res['pt'])
            rec.wait_for(lambda: any(t['tuner']['state'] not in ('idle',) for t in rec.of('telemetry')),
                         30, 'tuner state in telemetry')
            rec.wait_for(lambda: any(a['id'] == 'rig.tune_done' for a in rec.of('alarm') if a),
                         240, 'the tune to finish')
            files = glob.glob(os.path.join(agent.state_dir, 'tune', '*'))
            assert files, 'no saved tune result'
            stages = [t['tuner']['state'] for t in rec.of('telemetry')]
            assert 'done' in stages or any(a['id'] == 'rig.tune_done' for a in rec.of('alarm') if a)
            assert agent.alive()
        rec.close()
