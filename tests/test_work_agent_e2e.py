"""The agent (`hashpilot run`, own process) mines a simulated Gamma against the test pool from
its `[[pool]]` config: shares verified by the pool under the rig's worker name, pool state in
telemetry and meta, nonce-based chip figures in `chips`, the chip's hardware-error alarm when it
starts returning bad nonces, pool.down / pool.all_down when the pool dies; the password never
appears in the log or on MQTT."""

import pytest

from agent.stratum.testpool import TestPool
from tests.agentproc import AgentProcess, Recorder
from tests.broker import Broker
from tests.simproc import start_sim


SECRET = 'pool-s3cret-pw'


def test_agent_mines_gamma_against_test_pool(tmp_path):
    pool = TestPool(difficulty=1.0 / (1 << 25), password=SECRET)
    try:
        with start_sim('GAMMA', time_scale=5, faults=['bad-nonces:board=0,chip=0,at=60']) as sim, \
                Broker() as broker:
            rec = Recorder(broker, 'lab', 'w1')
            cfg = ('\n[[pool]]\nurl = "%s"\nuser = "acct"\npassword = "%s"\n\n'
                   '[work]\nwindow_s = 10.0\n' % (pool.url, SECRET))
            with AgentProcess(tmp_path, sim.ports_file, broker, rig='w1', telemetry_s=1.0,
                              chips_s=5.0, extra_cfg=cfg) as agent:
                rec.wait_for(lambda: pool.counts['accepted'] >= 5, 60, 'shares at the pool')
                assert pool.shares[0][0] == 'acct.w1'
                rec.wait_for(lambda: any((t.get('pools') or [{}])[0].get('accepted', 0) >= 3
                                         for t in rec.of('telemetry') if t), 30, 'pools in telemetry')
                tel = [t for t in rec.of('telemetry') if t and t.get('pools')][-1]
                assert tel['pools'][0]['url'] == pool.url and tel['pools'][0]['connected']
                meta = [m for m in rec.of('meta') if m][-1]
                assert meta['pools'] == [pool.url]
                rec.wait_for(lambda: any(c and (c['boards'][0].get('nonce_hashrate_ghs') or [None])[0]
                                         for c in rec.of('chips')), 40, 'nonce hashrate in chips')
                # from simulated second 60 the chip's nonces are wrong: its alarm fires
                rec.wait_for(lambda: any(a and a['id'] == 'chip0.hw_errors' and a['event'] == 'raise'
                                         for a in rec.of('alarm')), 60, 'chip0.hw_errors')
                assert pool.counts['invalid'] == 0
                pool.kill()
                rec.wait_for(lambda: {'pool.down', 'pool.all_down'} <= {
                    a['id'] for a in rec.of('alarm') if a and a['event'] == 'raise'}, 30,
                    'pool alarms')
                agent.stop()
                log = agent.log()
            assert SECRET not in log
            assert all(SECRET.encode() not in m[3] for m in rec.messages)
            rec.close()
    finally:
        pool.close()


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
