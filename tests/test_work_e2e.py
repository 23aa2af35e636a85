"""End to end: simulated rigs (`hashpilot sim`, real bytes over ptys) mine against the Stratum
test pool through the agent's work path; the pool verifies every share with SHA-256d.

Simulated chips solve to the ports file's `work_check_bits` (reduced difficulty, documented in
docs/simulator.md); the pool's difficulty is set just below that, so every verified nonce is
a share. Time-warped (--time-scale) to keep each test short.
"""

import threading
import time

import pytest

from agent.scheduler import Scheduler
from agent.stratum.client import PoolManager
from agent.stratum.testpool import TestPool
from agent.work.engine import WorkEngine
from hal.rig import Rig
from tests.simproc import start_sim

POOL_DIFF = 1.0 / (1 << 23)     # target ~2^247: every 10-zero-bit solution is a share


class Miner:
    """Rig + pools + work engine on one control thread (as the agent runs them)."""

    def __init__(self, sim, urls, scale, baud=None, window_s=10.0):
        self.rig = Rig.from_ports_file(sim.ports_file)
        self.rig.start(baud=baud)
        self.events = []
        self.sched = Scheduler(self.rig.clock, on_error=lambda fn, e: self.errors.append(e))
        self.errors = []
        self.pools = PoolManager([{'url': u, 'user': 'acct.rig%d' % i, 'password': 'x'}
                                  for i, u in enumerate(urls)],
                                 on_event=lambda ev: self.sched.call_soon(self.engine.on_pool_event, ev),
                                 timeout_s=3.0, backoff_base_s=0.2, backoff_max_s=1.0,
                                 failback_s=1.0)
        self.engine = WorkEngine(self.rig.chains, self.rig.family, self.pools, self.rig.clock,
                                 check_bits=self.rig.work_check_bits, on_event=self.events.append,
                                 window_s=window_s)
        self.engine.attach()
        now = self.rig.clock.monotonic()
        self.sched.add_timer(self.engine.tick, now)
        self.sched.add_timer(self.engine.check_pools, now)
        self.sched.add_timer(self._poll, now)
        self.thread = threading.Thread(target=self.sched.run, daemon=True)
        self.pools.start()
        self.thread.start()

    def _poll(self, now):
        self.rig.poll(board=False)           # chains in parallel, as the agent does
        return self.rig.clock.monotonic() + 2.0

    def alarms(self, action='raise'):
        return [e['id'] for e in list(self.events) if e['action'] == action]

    def stop(self):
        self.pools.stop()
        self.sched.stop()
        self.thread.join(10)
        self.rig.close()


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
        m = Miner(sim, [pool.url], 10)
        try:
            assert wait_for(lambda: pool.counts['accepted'] >= 20, 40), (pool.counts, m.engine.get_status())
            pool.new_job(clean=True)                 # clean_jobs: chips move to the new job
            n = pool.counts['accepted']
            assert wait_for(lambda: pool.counts['accepted'] >= n + 10, 30)
            st = m.engine.get_status()
            assert pool.counts['invalid'] == 0 and pool.counts['duplicate'] == 0
            assert st['submitted'] >= 30 and st['hw_errors'] <= 2
            assert st['pool']['pools'][0]['accepted'] >= 30
            assert wait_for(lambda: m.engine.chip_status(0)[0]['hashrate_ghs'], 20)
            ghs = m.engine.chip_status(0)[0]['hashrate_ghs']
            counter_ghs = m.rig.chains[0].chips[0].hashrate_ghs
            assert 0.3 * counter_ghs < ghs < 3.0 * counter_ghs     # Poisson over ~10 nonces
            assert not m.errors
        finally:
            m.stop()


def test_s21_failover_and_bad_nonce_chip(pool_pair):
    main, backup = pool_pair
    with start_sim('S21', time_scale=1, faults=['bad-nonces:board=1,chip=7']) as sim:
        m = Miner(sim, [main.url, backup.url], 1, baud=3125000, window_s=10.0)
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
