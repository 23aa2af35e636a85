"""WorkEngine: runs on the control thread. Pool jobs become one job frame per chain (a distinct
extranonce2 per chain, so no two chains hash the same work; chips on one chain split the nonce
space by their address bits and all roll the negotiated version bits); every nonce from a chip
is rebuilt into its header and SHA-256d checked: a miss is a hardware error of that chip, a hit
counts 2^(32+N) hashes for it, and one that meets the pool's difficulty is submitted.

Pool events arrive through `on_pool_event` (posted by the runner from the Stratum thread, or
by the MicroPython agent's loop). Pure (MicroPython-safe): nonces come in under a real lock only
when several chains are polled on their own threads (hal/parallel.lock_for).
`tick(now_s)` drains the UARTs for nonces and refreshes jobs before a chain can run out of
nonce x version space (from its hashrate). Alarms go out through `on_event`.
"""

import logging

from hal import families, hashsum, parallel
from hal.work import chipjobs, jobs
from agent.alarms import event
from agent.work.tally import ChipTally

log = logging.getLogger(__name__)

LATENCY_KEEP = 2048
SEEN_MAX = 50000           # shares remembered per job set for duplicate filtering


def _p99(xs):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


class WorkEngine:
    def __init__(self, chains, family, pools, clock, check_bits=None, on_event=None,
                 refresh_max_s=30.0, window_s=60.0, hw_alarm_pct=5.0, hw_alarm_min=8,
                 tick_wall_s=0.005, all_down_s=5.0, seen_max=SEEN_MAX,
                 latency_keep=LATENCY_KEEP):
        self.chains = list(chains)
        self.family = families.get(family) if isinstance(family, str) else family
        self.fmt = chipjobs.job_format(self.family['name'])
        self.pools = pools
        self.clock = clock
        self.check_bits = check_bits           # None: the ticket's 32+N (real chips)
        self.on_event = on_event or (lambda ev: None)
        self.refresh_max_s = refresh_max_s
        self.window_s = window_s
        self.hw_alarm_pct = hw_alarm_pct
        self.hw_alarm_min = hw_alarm_min
        self.tick_wall_s = tick_wall_s
        self.all_down_s = all_down_s
        self.all_down_since = None
        self.slots = [chipjobs.JobSlots(self.family['name']) for _ in self.chains]
        self.tallies = [[] for _ in self.chains]
        self.ctx = None                        # pool context of the current job
        self.job = None
        self.target = None
        self.en2_counter = 0
        self.next_refresh_s = None
        self.seen = set()
        self.rolling_written = None
        self.alarms = set()
        self.counts = {'jobs': 0, 'frames': 0, 'nonces': 0, 'hw_errors': 0, 'stale_nonces': 0,
                       'unattributed': 0, 'duplicates': 0, 'submitted': 0, 'not_sent': 0,
                       'below_pool': 0, 'stale_flushed': 0}
        self.seen_max = seen_max
        self.latency_keep = latency_keep
        self.lat_notify_s = []
        self.lat_share_s = []
        self._lock = parallel.lock_for(len(self.chains))

    def attach(self):
        for i, ch in enumerate(self.chains):
            self.tallies[i] = [ChipTally(self.window_s) for _ in ch.chips]
            ch.nonce_sink = self._sink(i)

    def _sink(self, i):
        return lambda drv, chip, d: self.on_nonce(i, chip, d)

    # -- pool side ------------------------------------------------------------------------------
    def on_pool_event(self, ev):
        kind = ev.get('event')
        if kind == 'job':
            self._new_job(ev)
        elif kind == 'difficulty' and self.ctx is not None and ev.get('gen') == self.ctx['gen']:
            self.ctx['difficulty'] = ev['difficulty']
            self.target = jobs.target_of(ev['difficulty'])
        elif kind == 'pool':
            self._pool_alarms()

    def _new_job(self, ev):
        t_rx = ev.get('t_rx_wall')
        if ev['clean'] or self.ctx is None or ev['gen'] != self.ctx['gen'] \
                or ev['extranonce1'] != self.ctx['extranonce1']:
            for s in self.slots:
                s.clear()          # old work is gone: its nonces are stale, not errors
            self.seen = set()
            self.en2_counter = 0
        self.ctx = {k: ev[k] for k in ('pool', 'gen', 'extranonce1', 'en2_size', 'mask',
                                       'difficulty')}
        self.ctx['epoch'] = ev.get('epoch')
        self.target = jobs.target_of(ev['difficulty'])
        self.job = ev['job']
        self.counts['jobs'] += 1
        self._write_rolling(ev['mask'])
        self.dispatch()
        if t_rx is not None:
            self._keep(self.lat_notify_s, self.clock.wall() - t_rx)
        self._pool_alarms()

    def _write_rolling(self, mask):
        # Chips roll only the bits the pool allows: 0xA4 = 0x9000_0000 | (mask >> 13)
        if not self.family['version_rolling'] or mask == self.rolling_written:
            return
        value = (families.VERSION_ROLLING_ON & 0xFFFF0000) | ((mask >> 13) & 0xFFFF)
        for ch in self.chains:
            try:
                ch.write(families.REG_VERSION_ROLLING, value)
            except Exception as exc:
                log.warning('version rolling mask not written: %s', exc)
        self.rolling_written = mask

    def dispatch(self):
        """One new unit of work per chain (its own extranonce2), sent as a job frame."""
        if self.job is None or self.ctx is None:
            return
        n = len(self.chains)
        for i, ch in enumerate(self.chains):
            try:
                en2 = jobs.extranonce2(self.en2_counter * n + i, self.ctx['en2_size'])
            except jobs.JobError:
                self.en2_counter = 0          # counter space ran out: wrap (new job will follow)
                en2 = jobs.extranonce2(i, self.ctx['en2_size'])
            work = jobs.build_work(self.job, self.ctx['extranonce1'], en2)
            jid = self.slots[i].put(work)
            frame = chipjobs.job_frame(self.family['name'], work, jid, self.ctx['mask'])
            try:
                ch.transport.write(frame)
                self.counts['frames'] += 1
            except Exception as exc:
                log.warning('chain %d: job frame not sent: %s', i, exc)
        self.en2_counter += 1
        self.next_refresh_s = self.clock.monotonic() + self.refresh_s()

    def refresh_s(self):
        """Before the fastest chain exhausts 2^32 nonces x the rolled versions (half of it)."""
        bits = jobs.popcount((self.ctx or {}).get('mask') or 0) if self.family['version_rolling'] else 0
        worst = self.refresh_max_s
        for i, ch in enumerate(self.chains):
            # without counter reads (nonce-only measurement) the verified nonces give the rate
            ghs = hashsum.chain_ghs(ch.chips) or sum(t.hashrate_ghs or 0.0 for t in self.tallies[i])
            if ghs > 0:
                worst = min(worst, 0.5 * jobs.job_space_s(ghs * 1e9, bits))
        return max(0.05, worst)

    # -- chip side --------------------------------------------------------------------------------
    def on_nonce(self, i, chip, d):
        # Chain polls run in parallel threads (hal/parallel) and hand nonces over from there.
        with self._lock:
            self._on_nonce(i, chip, d)

    def _on_nonce(self, i, chip, d):
        t0 = self.clock.wall()
        jid, work = self.slots[i].lookup(d)
        if work is None:
            self.counts['stale_nonces'] += 1
            return
        ch = self.chains[i]
        ticket = ch.ticket_bits or 0
        bits = 32 + ticket if self.check_bits is None else min(self.check_bits, 32 + ticket)
        ok, h, version, n4 = chipjobs.check_nonce(self.fmt, work, d, self.ctx['mask'], bits)
        self.counts['nonces'] += 1
        if chip is None:
            self.counts['unattributed'] += 1
        else:
            self.tallies[i][chip.index].add(ok, ticket)
        if not ok:
            self.counts['hw_errors'] += 1
            return
        if jobs.hash_value(h) > self.target:
            self.counts['below_pool'] += 1
            return
        if self.ctx.get('epoch') is not None and \
                getattr(self.pools, 'clean_epoch', self.ctx['epoch']) != self.ctx['epoch']:
            self.counts['stale_flushed'] += 1   # clean_jobs seen by the pool thread: not sent
            return
        key = (work['job']['job_id'], work['en2'], n4, version)
        if key in self.seen:
            self.counts['duplicates'] += 1
            return
        if len(self.seen) >= self.seen_max:
            self.seen = set()         # bounded memory; a rare repeat is only a pool duplicate
        self.seen.add(key)
        res = self.pools.submit(jobs.submit_params('', work, n4, version, self.ctx['mask'])[1:],
                                self.ctx['gen'])
        if res == 'sent':
            self.counts['submitted'] += 1
            self._keep(self.lat_share_s, self.clock.wall() - t0)
        else:
            self.counts['not_sent'] += 1

    def _keep(self, xs, v):
        xs.append(v)
        if len(xs) > self.latency_keep:
            del xs[:len(xs) - self.latency_keep]

    # -- timer --------------------------------------------------------------------------------------
    def tick(self, now):
        for ch in self.chains:
            try:
                ch.listen(0)
            except Exception as exc:
                log.warning('nonce drain failed: %s', exc)
        if self.next_refresh_s is not None and now >= self.next_refresh_s:
            self.dispatch()
        for i, row in enumerate(self.tallies):
            for k, t in enumerate(row):
                if t.update(now):
                    self._hw_alarm(i, k, t)
        # from the end of this tick: a slow drain must not make the timer due again at once
        return self.clock.monotonic() + self.tick_wall_s * self.clock.time_scale

    # -- alarms and status ---------------------------------------------------------------------------
    def _alarm(self, aid, raise_it, severity, message, board=None):
        if raise_it == (aid in self.alarms):
            return
        if raise_it:
            self.alarms.add(aid)
        else:
            self.alarms.discard(aid)
        self.on_event(event(aid, 'raise' if raise_it else 'clear', severity, message, board))

    def _hw_alarm(self, i, k, t):
        bad = t.hw_err_pct is not None and t.hw_err_pct > self.hw_alarm_pct \
            and t.window_bad >= self.hw_alarm_min
        idx = self._chip_number(i, k)
        self._alarm('chip%d.hw_errors' % idx, bad, 'warning',
                    'board %d chip %d: %.1f %% of its nonces fail SHA-256d'
                    % (i, k, t.hw_err_pct or 0.0), board=i)

    def _chip_number(self, i, k):
        return sum(len(self.tallies[j]) for j in range(i)) + k

    def _pool_alarms(self):
        st = self.pools.status()
        down = [p for p in st['pools'] if p['state'] == 'down']
        self._alarm('pool.down', bool(down), 'warning',
                    'pool(s) down: %s' % ', '.join('%d %s' % (p['index'], p['url']) for p in down))
        # all down only after ALL_DOWN_S: a failover passes through a moment with no pool
        now = self.clock.wall()
        if not st['all_down']:
            self.all_down_since = None
        elif self.all_down_since is None:
            self.all_down_since = now
        self._alarm('pool.all_down', self.all_down_since is not None
                    and now - self.all_down_since >= self.all_down_s, 'critical',
                    'no pool reachable: chips have no work')

    def check_pools(self, now):
        """Timer: pool alarms follow the pool manager's state."""
        self._pool_alarms()
        return now + 1.0 * self.clock.time_scale

    def tally(self, i, k):
        """ChipTally of chain i, chip k (None before attach or out of range)."""
        row = self.tallies[i] if i < len(self.tallies) else ()
        return row[k] if k < len(row) else None

    def chip_status(self, i):
        return [t.get_status() for t in self.tallies[i]] if i < len(self.tallies) else []

    def get_status(self):
        out = dict(self.counts)
        out['notify_to_frame_p99_ms'] = None if not self.lat_notify_s else 1000 * _p99(self.lat_notify_s)
        out['nonce_to_share_p99_ms'] = None if not self.lat_share_s else 1000 * _p99(self.lat_share_s)
        out['check_bits'] = self.check_bits
        out['pool'] = self.pools.status()
        return out
