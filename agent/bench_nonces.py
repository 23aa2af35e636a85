"""Verified nonces for `hashpilot bench autotune --source nonces` and its end-to-end test: the
agent's work path (Stratum client PoolManager + WorkEngine, agent/work/) on a rig, fed by an
in-process test pool (agent/stratum/testpool.py, real Stratum over TCP, real jobs).

The simulator's chips then solve real job frames and every nonce is SHA-256d checked by the
WorkEngine before the tuner counts it (RigIO(nonces=engine)). The pool's difficulty is far above
what simulated solutions meet, so nothing is submitted: the nonces serve the tuner only.
With counters off, the chain drivers read no 0x8C/0x4C at all (ChainDriver.read_counters).
"""

import collections

DRAIN_S = 0.01

from agent.stratum.client import PoolManager
from agent.stratum.testpool import TestPool
from agent.work.engine import WorkEngine


class NonceSource:
    def __init__(self, rig, clock, counters=False, window_s=30.0):
        self.rig = rig
        self.pool = TestPool(difficulty=1.0)
        self.events = collections.deque()       # pool thread -> this (control) thread
        self.pools = PoolManager([{'url': self.pool.url, 'user': 'bench.tune', 'password': 'x'}],
                                 on_event=self.events.append, timeout_s=3.0,
                                 backoff_base_s=0.2, backoff_max_s=1.0)
        self.engine = WorkEngine(rig.chains, rig.family, self.pools, clock,
                                 check_bits=rig.work_check_bits, window_s=window_s)
        self.engine.attach()
        for ch in rig.chains:
            ch.read_counters = counters
        self.pools.start()

    def tick(self, now_s, drain_s=DRAIN_S):
        """Pool events, then drain the UARTs for drain_s each (wall) and verify (the agent's
        work tick). The drain also paces the benchmark loop as the counter reads do (a loop
        without them would spin and step the tuner every few physics milliseconds)."""
        while self.events:
            self.engine.on_pool_event(self.events.popleft())
        for ch in self.rig.chains:
            ch.listen(drain_s)
        self.engine.tick(now_s)

    def has_job(self):
        return self.engine.job is not None

    def get_status(self):
        st = self.engine.get_status()
        return {k: st[k] for k in ('nonces', 'hw_errors', 'stale_nonces', 'unattributed',
                                   'jobs', 'frames')}

    def stop(self):
        self.pools.stop()
        self.pool.close()


# -- `hashpilot bench autotune --source nonces` -----------------------------------------------------
CHECK_BITS = 4      # simulated solutions' zero bits: ~16 SHA-256d per nonce in the simulator
HOST_NONCES_S = 1500.0   # what the simulator + this process keep up with on a loaded 2-core host


def add_arguments(p):
    p.add_argument('--source', default='counters', choices=('counters', 'nonces'),
                   help='what the tuner measures: counter registers (default) or verified nonces '
                        'only (the work path against an in-process test pool; no counter reads)')
    p.add_argument('--uart-pct', type=float, default=25.0,
                   help='nonces: ticket difficulty so nonce traffic fits this share of the UART')
    p.add_argument('--host-nonces-s', type=float, default=HOST_NONCES_S,
                   help='nonces: most nonces per wall second this host verifies (whole rig; '
                        'default %(default)s: Python simulator and agent sharing a small machine)')
    p.add_argument('--xcheck', action='store_true',
                   help='nonces: read the counters too, only to cross-check the nonce counts')


def sim_args(args):
    return ['--work-check-bits', str(CHECK_BITS)] if args.source == 'nonces' else []


class NoSource:
    """--source counters: nothing to tick or stop; the tuner reads the counters."""
    engine = None

    def tick(self, now_s):
        pass

    def stop(self):
        pass


def start(args, rig, clock, wait_s=20.0):
    """NonceSource on the rig once a job reached the chips (NoSource for --source counters)."""
    if args.source != 'nonces':
        return NoSource()
    import time
    src = NonceSource(rig, clock, counters=args.xcheck)
    t_end = time.monotonic() + wait_s
    while not src.has_job() and time.monotonic() < t_end:
        src.tick(clock.monotonic())
        time.sleep(0.01)
    if not src.has_job():
        src.stop()
        raise RuntimeError('no job from the test pool within %.0f s' % wait_s)
    return src


def report(src, io, tuner, rig, wall_s):
    """Figures of the nonce source: the plan, decisions, measured UART load, cross-check."""
    chips = [c for ch in rig.chains for c in ch.chips]
    # counter_units / counter_reads_seen: 0 when no 0x8C/0x4C was ever read (Chip.ref stays None)
    counted = {'counter_units': sum(c.hash_units for c in chips),
               'counter_reads_seen': sum(1 for c in chips if c.ref is not None),
               # counter windows the driver left out (glitch, implausible): counters short
               'counter_windows_lost': sum(ch.counter_glitches + ch.counter_windows_dropped
                                           for ch in rig.chains)}
    if src.engine is None:
        return dict(counted, source='counters')
    st = src.get_status()
    baud = rig.chains[0].transport.baud
    frames_s = st['nonces'] / float(wall_s * len(rig.chains)) if wall_s > 0 else 0.0
    return {'source': 'nonces', 'counter_units': counted['counter_units'],
            'counter_reads_seen': counted['counter_reads_seen'],
            'counter_windows_lost': counted['counter_windows_lost'], 'nonce': tuner.nonce_status(),
            'work': st, 'uart_load_measured': frames_s * 110.0 / baud,
            'xcheck': io.xcheck.get_status() if io.xcheck else None}
