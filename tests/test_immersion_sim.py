"""Immersion end to end: the simulator in coolant (`--immersion`, own process) with the agent
configured `cooling = "immersion"` (no fan alarms, fans held at 0 %, mining on, coolant in
telemetry), and `hashpilot bench autotune --mode immersion` against the immersed oracle."""

import json
import subprocess
import sys

import pytest

from tests.agentproc import AgentProcess, Recorder
from tests.broker import Broker
from tests.simproc import REPO, start_sim

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_agent_in_a_tank_mines_without_fan_alarms(tmp_path):
    truth = tmp_path / 'truth.jsonl'
    cfg = '[safety]\ncooling = "immersion"\ncoolant_c = 40.0\n'
    with start_sim('S21', time_scale=10, seed=2, truth=str(truth),
                   extra=['--immersion', '--ambient-c', '40']) as sim, Broker() as broker:
        rec = Recorder(broker, 'lab', 'tank')
        with AgentProcess(tmp_path, sim.ports_file, broker, rig='tank', telemetry_s=5,
                          chips_s=60, extra_cfg=cfg) as agent:
            rec.wait_for(lambda: any(t['hashrate_ghs'] > 150000 for t in rec.of('telemetry')),
                         120, 'hashing at stock')
            n = rec.count('telemetry')
            rec.wait_for(lambda: rec.count('telemetry') >= n + 6, 90, 'more telemetry')
            assert agent.alive()
        rec.close()
    tele = rec.of('telemetry')
    assert all(t.get('cooling') == 'immersion' and t.get('coolant_c') == 40.0 for t in tele)
    assert all(d == 0 for t in tele for d in (t.get('fan_duty_pct') or [0]))
    alarms = [a['id'] for a in rec.of('alarm') if a and a.get('event') == 'raise']
    assert not [a for a in alarms if 'fan' in a or 'airflow' in a], alarms
    lines = [json.loads(l) for l in truth.read_text().splitlines() if l.endswith('}')]
    states = [l for l in lines if l.get('type') == 'state']
    assert states[-1]['good_ths'] > 150 and all(b['enabled'] for b in states[-1]['boards'])
    assert all(f['rpm'] == 0.0 for f in states[-1]['fans'])
    assert all(f['duty_pct'] == 0.0 for f in states[-1]['fans'])   # the agent drove them off
    assert max(s['hottest_c'] for s in states) < 85.0


def test_bench_autotune_immersion_gamma_reaches_the_oracle():
    out = subprocess.run([sys.executable, '-m', 'agent', 'bench', 'autotune', '--model', 'GAMMA',
                          '--seed', '2', '--mode', 'immersion', '--coolant-c', '40',
                          '--target-w', '17', '--time-scale', '30', '--json', '--quiet',
                          '--hold-s', '90'], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r['mode'] == 'immersion' and r['fan_duty_pct'] == 0.0 and r['ambient_c'] == 40.0
    assert r['converged'] and r['converge_sim_min'] <= 15
    assert abs(r['gap_pct']) <= 1.0 and abs(r['power_vs_target_pct']) <= 1.5
    print('IMMERSION GAMMA 40 C 17 W: tuned %.4f oracle %.4f TH/s, gap %.2f %%, held %.2f %%'
          % (r['held_good_ths'], r['oracle_good_ths'], r['gap_pct'], r['power_vs_target_pct']))
