"""The work path on the MicroPython agent (Unix port, agent frozen in, 256 KB heap): a simulated
Gamma whose chip returns 30 % wrong nonces, a real Mosquitto and the Stratum test pool. Shares
reach the pool and are accepted under the rig's worker name; the wrong nonces are caught by the
agent's SHA-256d check and never submitted (the pool sees no invalid share); pool rows in
telemetry decode with mqtt_schema.consumer as the CPython agent's do; a pool outage raises
pool.down / pool.all_down while telemetry goes on, and mining resumes when the pool is back.
"""

import pytest

from agent import telemetry
from agent.stratum.testpool import TestPool
from tests import mpyagent
from tests.agentproc import Recorder
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The simulator's nonces have 8 zero bits (work_check_bits); a share needs 9: about half of the
# good nonces are shares, the rest are checked and counted only.
DIFFICULTY = 1.0 / (1 << 23)


def _pool_row(rec):
    rows = [t['pools'][0] for t in rec.of('telemetry') if t and t.get('pools')]
    return rows[-1] if rows else None


def _raised(rec, aid):
    return any(a and a['id'] == aid and a['event'] == 'raise' for a in rec.of('alarm'))


def test_mpy_agent_mines_against_the_test_pool(tmp_path):
    pool = TestPool(difficulty=DIFFICULTY, password='pw-9f2')
    try:
        with start_sim('GAMMA', time_scale=10.0, faults=['bad-nonces:board=0,chip=0,frac=0.3']) \
                as sim, Broker() as broker:
            rec = Recorder(broker, 'lab', 'bx')
            cfg = {'pool': [{'url': pool.url, 'user': 'acct', 'password': 'pw-9f2'}],
                   'work': {'window_s': 60.0}, 'telemetry_s': 5.0, 'chips_s': 10.0}
            with mpyagent.MpyAgentProcess(tmp_path, sim.ports_file, broker, rig='bx',
                                          **cfg) as agent:
                rec.wait_for(lambda: pool.counts['accepted'] >= 10, 90, 'shares at the pool')
                assert agent.alive(), agent.log()[-3000:]
                assert pool.shares[0][0] == 'acct.bx'
                # nonce-checked chip figures over 60 s (~60 nonces): the wrong 30 % are hardware errors
                rec.wait_for(lambda: any(c and (c['boards'][0].get('hw_err_pct') or [0])[0]
                                         for c in rec.of('chips')), 60, 'hw_err_pct in chips')
                hw = [c['boards'][0]['hw_err_pct'][0] for c in rec.of('chips')
                      if c and c['boards'][0].get('hw_err_pct')
                      and c['boards'][0]['hw_err_pct'][0] is not None]
                assert 10.0 < hw[-1] < 60.0, hw
                rec.wait_for(lambda: _raised(rec, 'chip0.hw_errors'), 60, 'chip0.hw_errors')
                # ... and none of them reached the pool
                assert pool.counts['invalid'] == 0, pool.counts
                rec.wait_for(lambda: (_pool_row(rec) or {}).get('accepted', 0) >= 10, 30,
                             'accepted shares in telemetry')
                row = _pool_row(rec)
                assert set(row) == set(telemetry.POOL_KEYS), row
                assert row['url'] == pool.url and row['connected'] and row['state'] == 'up'
                assert row['rejected'] == 0 and row['stale'] == 0
                meta = [m for m in rec.of('meta') if m][-1]
                assert meta['pools'] == [pool.url]

                # the pool goes away: alarms, telemetry goes on; back: mining resumes
                pool.kill()
                at_kill = pool.counts['accepted']
                n_tel = rec.count('telemetry')
                rec.wait_for(lambda: _raised(rec, 'pool.down') and _raised(rec, 'pool.all_down'),
                             60, 'pool alarms')
                rec.wait_for(lambda: rec.count('telemetry') >= n_tel + 3, 60,
                             'telemetry during the pool outage')
                down = _pool_row(rec)
                assert not down['connected'] and down['state'] == 'down'
                # every share the agent counts was accepted by the pool (in-flight ones lost)
                assert down['accepted'] <= at_kill
                pool.revive()
                rec.wait_for(lambda: pool.counts['accepted'] >= at_kill + 5, 90,
                             'shares after the pool came back')
                rec.wait_for(lambda: (_pool_row(rec) or {}).get('connected'), 30,
                             'pool up again in telemetry')
                assert pool.counts['invalid'] == 0 and pool.counts['connections'] >= 2
                assert agent.alive(), agent.log()[-3000:]
                agent.stop()
                log = agent.log()
            assert 'pw-9f2' not in log
            assert all(b'pw-9f2' not in m[3] for m in rec.messages)
            rec.close()
    finally:
        pool.close()


@pytest.mark.parametrize('pool, work, says', [
    ({'url': 'stratum+ssl://127.0.0.1:3334', 'user': 'acct'}, {},
     'pool[0].url: TLS pools are not supported'),
    ({'url': 'stratum+tcp://127.0.0.1', 'user': 'acct'}, {}, 'no port'),
    ({'url': 'stratum+tcp://127.0.0.1:3333', 'user': ''}, {}, 'pool[0].user'),
    ({'url': 'stratum+tcp://127.0.0.1:3333', 'user': 'acct'}, {'window_s': 1.0}, 'work.window_s'),
])
def test_bad_pool_config_stops_start_up(tmp_path, pool, work, says):
    with start_sim('GAMMA', time_scale=10.0) as sim, Broker() as broker:
        agent = mpyagent.MpyAgentProcess(tmp_path, sim.ports_file, broker, rig='bx',
                                         pool=[pool], work=work)
        try:
            agent.proc.wait(30)
        finally:
            agent.stop()
    assert agent.proc.returncode == 2 and 'cannot start' in agent.log() \
        and says in agent.log(), agent.log()[-2000:]
