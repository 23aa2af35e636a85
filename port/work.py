"""The work path on the port's one loop: agent/stratum/pools.PoolCore over agent/stratum/netio's
non-blocking TCP (no thread, no ssl) and the same WorkEngine as `hashpilot run`: pool jobs become
BM1370 job frames on the chain's UART, every nonce is SHA-256d checked, shares that meet the
pool's target are submitted. Pool events reach the engine through the loop's call_soon, as the
CPython agent's Stratum thread posts them to its control thread.

cfg: "pool": [{"url", "user", "password" | "password_file"}] (agent/work/poolcfg.py's
[[pool]] keys; tcp only here), "work": {...} ([work] keys). Small bounds for a 256 KB heap:
duplicate filter and latency samples.
"""

from agent import options
from agent.stratum import netio
from agent.stratum.pools import PoolCore, PoolError, parse_url
from agent.work import poolcfg
from agent.work.engine import WorkEngine

SEEN_MAX = 32               # submitted shares remembered for the duplicate filter (a set
                            # that grows in blocks: bigger ones do not fit a fragmented heap)
LATENCY_KEEP = 64           # notify->frame and nonce->share samples for the p99 figures
TICK_WALL_S = 0.02          # UART drain / job refresh timer (wall seconds)
SERVICE_WALL_S = 0.02       # pool socket turn (wall seconds)


def settings(cfg):
    """([pool] sections, [work] section) from the port's JSON config; ConfigError if wrong."""
    pools = options.build_array(poolcfg.POOL_SECTION, cfg.get('pool') or [])
    work = options.build(poolcfg.WORK_SECTION, cfg.get('work') or {})
    return pools, work


class PortWork:
    def __init__(self, cfg, chains, family, loop, clock, on_event, check_bits=None):
        pools, w = settings(cfg)
        self.tuner_source = w['tuner_source']
        self.loop = loop
        self.clock = clock
        for i, p in enumerate(pools):
            if parse_url(p['url'])[2]:
                raise options.ConfigError('pool[%d].url: TLS pools are not supported on the '
                                          'MicroPython agent (stratum+tcp:// only)' % i)
        try:
            plist = poolcfg.pool_list(pools, cfg['rig'])
            self.pools = PoolCore(plist, on_event=self._pool_event, timeout_s=w['timeout_s'],
                                  backoff_max_s=w['backoff_max_s'], failback_s=w['failback_s'],
                                  suggest_difficulty=w['suggest_difficulty'] or None,
                                  monotonic=clock.wall, connect=netio.open_connection)
        except (OSError, PoolError) as exc:
            raise options.ConfigError('pool: %s' % exc)
        self.engine = WorkEngine(chains, family, self.pools, clock, check_bits=check_bits,
                                 on_event=on_event, refresh_max_s=w['refresh_max_s'],
                                 window_s=w['window_s'], hw_alarm_pct=w['hw_alarm_pct'],
                                 tick_wall_s=TICK_WALL_S, seen_max=SEEN_MAX,
                                 latency_keep=LATENCY_KEEP)

    def _pool_event(self, ev):
        self.loop.call_soon(self.engine.on_pool_event, ev)

    def _service(self, now):
        self.pools.service(0.0)
        return self.clock.monotonic() + SERVICE_WALL_S * self.clock.time_scale

    def start(self, now):
        self.engine.attach()
        self.loop.add_timer(self._service, now)
        self.loop.add_timer(self.engine.tick, now)
        self.loop.add_timer(self.engine.check_pools, now)

    def register_commands(self, registry):
        poolcfg.register_switch_pool(registry, self.pools)

    def urls(self):
        return [p['url'] for p in self.pools.pools]

    def stop(self):
        self.pools.close()

