"""Control-board health from psutil: CPU, memory, load, the agent's own RSS and CPU, uptime."""

import os
import time

import psutil


class BoardHealth:
    def __init__(self):
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)   # first call primes the counters
        psutil.cpu_percent(None)
        self._start_s = time.monotonic()

    def get_status(self):
        try:
            mem = psutil.virtual_memory()
            load1 = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
            return {
                'cpu_pct': round(psutil.cpu_percent(None), 1),
                'mem_pct': round(mem.percent, 1),
                'load1': round(load1, 2) if load1 is not None else None,
                'agent_rss_mb': round(self._proc.memory_info().rss / 1048576.0, 1),
                'agent_cpu_pct': round(self._proc.cpu_percent(None), 1),
                'uptime_s': int(time.time() - psutil.boot_time()),
                'agent_uptime_s': int(time.monotonic() - self._start_s),
            }
        except (psutil.Error, OSError):
            return {}
