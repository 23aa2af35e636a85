"""End to end: simulated rigs (`hashpilot sim`, real bytes over ptys) mine against the Stratum
test pool through the agent's work path; the pool verifies every share with SHA-256d.

Simulated chips solve to the ports file's `work_check_bits` (reduced difficulty, documented in
docs/simulator.md); the pool's difficulty is set just below that, so every verified nonce is
a share. Time-warped (--time-scale) to keep each test short.
"""

import time

import pytest

from agent.stratum.testpool import TestPool
from agent.work.rigwork import WorkRig
from tests.simproc import start_sim

POOL_DIFF = 1.0 / (1 << 25)     # target ~2^249: every 8-zero-bit solution is a share


def _pools(urls):
    return [{'url': u, 'user': 'acct.rig%d' % i, 'password': 'x'} for i, u in enumerate(urls)]


def wait_for(pred, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pool_pair():
    made = [TestPool(difficulty=POOL_DIFF), TestPool(difficulty=POOL_DIFF)]
    yield made
    for p in made:
        p.close()


def test_gamma_mines_against_test_pool(pool_pair):
    pool = pool_pair[0]
    with start_sim('GAMMA', time_scale=10) as sim:
        m = WorkRig(sim.ports_file, _pools([pool.url]))
        try:
            assert wait_for(lambda: pool.counts['accepted'] >= 20, 40), (pool.counts, m.engine.get_status())
            pool.new_job(clean=True)                 # clean_jobs: chips move to the new job
            n = pool.counts['accepted']
            assert wait_for(lambda: pool.counts['accepted'] >= n + 10, 30)
            # the client counts an accept when the pool's answer arrives: wait for it
            assert wait_for(lambda: m.pools.status()['pools'][0]['accepted'] >= 30, 10)
            st = m.engine.get_status()
            assert pool.counts['invalid'] == 0 and pool.counts['duplicate'] == 0
            assert st['submitted'] >= 30 and st['hw_errors'] <= 2
            assert wait_for(lambda: m.engine.chip_status(0)[0]['hashrate_ghs'], 20)
            ghs = m.engine.chip_status(0)[0]['hashrate_ghs']
            counter_ghs = m.rig.chains[0].chips[0].hashrate_ghs
            assert 0.3 * counter_ghs < ghs < 3.0 * counter_ghs     # Poisson over ~10 nonces
            assert not m.errors
        finally:
            m.stop()


@pytest.mark.slow
def test_s21_failover_and_bad_nonce_chip(pool_pair):
    main, backup = pool_pair
    with start_sim('S21', time_scale=1, faults=['bad-nonces:board=1,chip=7']) as sim:
        # ~0.6 nonces/s per chip: 3 wrong ones in a 10 s window are enough for the test
        m = WorkRig(sim.ports_file, _pools([main.url, backup.url]), baud=3125000,
                    engine_kw={'hw_alarm_min': 3})
        try:
            assert wait_for(lambda: main.counts['accepted'] >= 50, 60), main.counts
            main.kill()
            t0 = time.monotonic()
            assert wait_for(lambda: backup.counts['accepted'] >= 5, 10), backup.counts
            failover_s = time.monotonic() - t0
            assert wait_for(lambda: 'pool.down' in m.alarms(), 5)
            main.revive()
            n = main.counts['accepted']
            assert wait_for(lambda: main.counts['accepted'] >= n + 5, 15)
            assert wait_for(lambda: 'pool.down' in m.alarms('clear'), 5)
            assert wait_for(lambda: 'chip115.hw_errors' in m.alarms(), 30), m.engine.chip_status(1)[7]
            bad = m.engine.chip_status(1)[7]
            assert bad['nonces'] == 0 and bad['hw_errors'] > 0
            assert [a for a in m.alarms() if a.endswith('.hw_errors')] == ['chip115.hw_errors']
            assert main.counts['invalid'] == 0 and backup.counts['invalid'] == 0
            st = m.engine.get_status()
            assert st['hw_errors'] >= bad['hw_errors'] and not m.errors
            print('failover %.2f s, engine %s' % (failover_s, {k: st[k] for k in st if k != 'pool'}))
        finally:
            m.stop()


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
