"""A rig's work path on its own control thread: Rig + PoolManager + WorkEngine + timers, the way
the agent wires them, without MQTT and safety. Used by `hashpilot bench work` and the e2e tests.
"""

import threading
import time

from agent.scheduler import Scheduler
from agent.stratum.client import PoolManager
from agent.work.engine import WorkEngine
from hal.rig import Rig


class WorkRig:
    def __init__(self, ports_file, pools, baud=None, window_s=10.0, poll_s=2.0, pool_kw=None,
                 start_pools=True, engine_kw=None):
        self.rig = Rig.from_ports_file(ports_file)
        self.rig.start(baud=baud)
        self.events = []
        self.shares = []             # (wall time, pool index, accepted)
        self.errors = []
        self.poll_s = poll_s
        self.sched = Scheduler(self.rig.clock, on_error=lambda fn, e: self.errors.append(e))
        kw = {'timeout_s': 3.0, 'backoff_base_s': 0.2, 'backoff_max_s': 1.0, 'failback_s': 1.0}
        kw.update(pool_kw or {})
        self.pools = PoolManager(pools, on_event=self._pool_event, **kw)
        self.engine = WorkEngine(self.rig.chains, self.rig.family, self.pools, self.rig.clock,
                                 check_bits=self.rig.work_check_bits, on_event=self.events.append,
                                 window_s=window_s, **(engine_kw or {}))
        self.engine.attach()
        now = self.rig.clock.monotonic()
        self.sched.add_timer(self.engine.tick, now)
        self.sched.add_timer(self.engine.check_pools, now)
        self.sched.add_timer(self._poll, now)
        self.thread = threading.Thread(target=self.sched.run, name='control', daemon=True)
        self.thread.start()
        self.pools_started = False
        if start_pools:
            self.start_pools()

    def start_pools(self):
        self.pools.start()
        self.pools_started = True

    def _pool_event(self, ev):
        if ev.get('event') == 'share':
            self.shares.append((time.monotonic(), ev['pool'], ev['accepted']))
        self.sched.call_soon(self.engine.on_pool_event, ev)

    def _poll(self, now):
        self.rig.poll(board=False)           # chains in parallel, as the agent does
        return self.rig.clock.monotonic() + self.poll_s

    def alarms(self, action='raise'):
        return [e['id'] for e in list(self.events) if e['action'] == action]

    def first_accepted(self, pool, after):
        for t, p, ok in list(self.shares):
            if t >= after and p == pool and ok:
                return t
        return None

    def stop(self):
        if self.pools_started:
            self.pools.stop()
        self.sched.stop()
        self.thread.join(10)
        self.rig.close()
