"""The work path inside `hashpilot run`: built from the `[[pool]]` entries and `[work]`
(agent/work/poolcfg.py), runs on the control thread (WorkEngine timers) plus the Stratum thread
(PoolManager), which only posts events to the control thread. The MicroPython agent composes the
same parts on its one loop (port/work.py).
"""

import logging

from agent.options import ConfigError
from agent.stratum.client import PoolError, PoolManager
from agent.work.engine import WorkEngine
from agent.work.poolcfg import (POOL_SECTION, WORK_SECTION, WORK_DEFAULTS,  # noqa: F401
                                pool_list, ports_check_bits, register_switch_pool,
                                validate_switch_pool, worker_name)

log = logging.getLogger(__name__)


class AgentWork:
    def __init__(self, cfg, rig, scheduler, clock, on_event):
        w = dict(WORK_DEFAULTS)
        w.update(cfg.get('work') or {})
        self.scheduler = scheduler
        self.clock = clock
        self.pools = PoolManager(pool_list(cfg['pool'], cfg['rig']['rig']),
                                 on_event=self._pool_event, timeout_s=w['timeout_s'],
                                 backoff_max_s=w['backoff_max_s'], failback_s=w['failback_s'],
                                 suggest_difficulty=w['suggest_difficulty'] or None)
        check_bits = rig.work_check_bits
        if check_bits is None:
            check_bits = ports_check_bits(cfg['rig'].get('ports_file'))
        self.engine = WorkEngine(rig.chains, rig.family, self.pools, clock, check_bits=check_bits,
                                 on_event=on_event, refresh_max_s=w['refresh_max_s'],
                                 window_s=w['window_s'], hw_alarm_pct=w['hw_alarm_pct'])

    def _pool_event(self, ev):
        # Stratum thread: hand over only; the control thread owns the UARTs.
        self.scheduler.call_soon(self.engine.on_pool_event, ev)

    def start(self, now):
        self.engine.attach()
        self.scheduler.add_timer(self.engine.tick, now)
        self.scheduler.add_timer(self.engine.check_pools, now)
        self.pools.start()

    def register_commands(self, registry):
        register_switch_pool(registry, self.pools)

    def get_status(self):
        return self.engine.get_status()

    def urls(self):
        return [p['url'] for p in self.pools.pools]

    def stop(self):
        self.pools.stop()


def build(cfg, rig, scheduler, clock, on_event):
    """AgentWork when pools are configured, else None (the chips get no work)."""
    if not cfg.get('pool'):
        return None
    try:
        return AgentWork(cfg, rig, scheduler, clock, on_event)
    except (ValueError, OSError, PoolError) as exc:   # bad pool URL, password file, ports value
        raise ConfigError('pool: %s' % exc)
