"""Control loop body: poll the rig, let the safety supervisor decide, apply what it says.

This is the only code that drives the rig while the agent runs; commands and the tuner only
change what is *requested* (frequency per chip, fan mode), and every tick the supervisor's caps
and overrides are applied on top. Runs on the scheduler's control thread.
"""

import logging

from agent import commands
from agent.alarms import event
from agent.autotune import scaling
from hal import families, pll
from hal.chain import RAMP_STEP_MHZ
from hal.parallel import run_parallel

log = logging.getLogger(__name__)

FREQ_TOLERANCE_MHZ = 0.5     # smaller differences are not worth a PLL write
POWER_UP_SETTLE_S = 1.0      # after a board is powered, wait before talking to its chips
# Frequency moves are spread over ticks: at most this many 6.25 MHz PLL steps per board per
# tick (boards in parallel), so one tick blocks ~0.3 s however far a command or the tuner asks.
RAMP_STEPS_PER_TICK = 3
REINIT_FREQ_MHZ = 100.0      # a re-init ramps only this far; later ticks walk on from there
REINIT_BACKOFF_S = (5.0, 10.0, 30.0, 60.0)
REINIT_ALARM_AFTER = 3       # failed re-inits of one board before an alarm
PLL_CACHE_SIZE = 512         # distinct target frequencies remembered (a tuner run uses ~100)


def validate_set_frequency(body, ctx):
    """set_frequency {mhz, board?, chip?}: mhz inside the family limits (ctx freq_min/max_mhz)."""
    err = commands.check_keys(body, ('mhz', 'board', 'chip'))
    if err:
        return None, err
    mhz = body.get('mhz')
    if not commands.number(mhz):
        return None, 'mhz must be a number'
    lo, hi = ctx.get('freq_min_mhz', 0), ctx.get('freq_max_mhz', 0)
    if not lo <= mhz <= hi:
        return None, 'mhz %s outside the family limits %s..%s' % (mhz, lo, hi)
    board, chip, err = commands.board_chip(body, ctx)
    if err:
        return None, err
    return {'mhz': float(mhz), 'board': board, 'chip': chip}, None


class BoardControl:
    """One board as the control loop runs it: what is requested of its chips, the safety cap,
    whether it is on, and where it stands in a power-up / re-init."""

    def __init__(self, index, chips, f0_mhz):
        self.index = index
        self.requested_mhz = [f0_mhz] * chips   # commands/tuner; effective = requested x cap
        self.cap_pct = 100.0
        self.plan = None        # dynamic scaling: per-chip multipliers instead of the flat cap
        self.plan_key = None    # (cap, requests) the plan was made for
        self.plan_pct = None    # the cap the plan is for (a rising cap is handed back gradually)
        self.plan_at_s = None   # when plan_pct was last set
        self.enabled = True
        self.needs_init = False
        self.powered_at_s = None
        self.power_lost = False
        self.reinit_failures = 0
        self.reinit_retry_s = 0.0

    def hashing(self):
        """On and initialised: its chips are polled and driven."""
        return self.enabled and not self.needs_init

    def powered_up(self, now_s):
        """Power came back: the chips reset, so the chain is scanned again."""
        self.enabled = True
        self.needs_init = True
        self.powered_at_s = now_s

    def init_due(self, now_s):
        return self.needs_init and self.enabled and \
            now_s - (self.powered_at_s or now_s) >= POWER_UP_SETTLE_S and now_s >= self.reinit_retry_s

    def init_failed(self, now_s):
        """Back-off after a failed re-init -> (failures, wait_s)."""
        self.reinit_failures += 1
        k = self.reinit_failures
        wait_s = REINIT_BACKOFF_S[min(k, len(REINIT_BACKOFF_S)) - 1]
        self.reinit_retry_s = now_s + wait_s
        return k, wait_s

    def snapshot(self, chain, now_s, v, temps):
        """This board's entry of the supervisor's snapshot."""
        hashing = self.hashing()
        chips = chain.chips if hashing else []
        return {
            'index': self.index,
            # A board still being scanned and initialised is not hashing yet (chips in reset,
            # no die readings): reported as off, so safety does not take it for a blind board.
            'enabled': v.get('enabled', self.enabled) and not (self.enabled and self.needs_init),
            'sensors_c': temps if temps is not None else [None, None],
            'die_c': [c.temp_c if c.alive else None for c in chips],
            # How old each die reading is: a dead poll loop or a hung driver leaves the
            # last values in place, and safety must not take them for current.
            'die_age_s': [(now_s - c.temp_at_s) if c.temp_at_s is not None else None
                          for c in chips],
            'chips_alive': [c.alive for c in chips],
            'chips_found': len(chain.chips) if hashing else None,
            'voltage_mv': v.get('readback_mv'),
        }


class ControlLoop:
    def __init__(self, rig, supervisor, clock, on_event=None, start_freq_mhz=None,
                 scan_silence_s=0.5, chain_baud=None):
        self.scan_silence_s = scan_silence_s
        self.chain_baud = chain_baud       # the rate chains run at after init (None = reset rate)
        self.rig = rig
        self.model = rig.model
        self.family = rig.family
        self.supervisor = supervisor
        self.clock = clock
        self.on_event = on_event or (lambda ev: None)
        nboards = self.model['boards']
        f0 = start_freq_mhz or self.model['f_nom_mhz']
        self.boards = [BoardControl(i, self.model['chips_per_board'], f0) for i in range(nboards)]
        self._rr = nboards - 1             # round-robin position for re-inits
        self.fan_duty_pct = [None] * self.model['fans']
        self.last_snapshot = None
        self._pll_cache = {}               # target MHz -> achievable MHz (pll_mhz)
        self.last_board = {}
        self.io_errors = 0
        self.write_failures = []      # this tick's failed fan/enable writes (reported, not assumed)
        self.write_alarm = False
        self.ticks = 0
        self.dynamic_scaling = False       # [tuner] dynamic_scaling / set_dynamic_scaling
        self.replans = 0

    # Per-board views (telemetry, the runner): lists built from the board objects.
    @property
    def enabled(self):
        return [b.enabled for b in self.boards]

    @property
    def needs_init(self):
        return [b.needs_init for b in self.boards]

    @property
    def caps_pct(self):
        return [b.cap_pct for b in self.boards]

    @property
    def requested_mhz(self):
        return [b.requested_mhz for b in self.boards]

    def all_off(self):
        """Our watchdog switched every board off: not a power loss to report."""
        for b in self.boards:
            b.enabled = False

    # -- reading -----------------------------------------------------------------------------
    def _safe(self, fn, *args):
        """Board-controller read that turns an I/O error into None (unsafe, never 'cold')."""
        try:
            return fn(*args)
        except Exception as e:  # a failing read is a fault for safety to judge, not a crash
            self.io_errors += 1
            log.warning('board read %s failed: %s', getattr(fn, '__name__', fn), e)
            return None

    def poll_chains(self):
        for i, chain in enumerate(self.rig.chains):
            if not self.boards[i].hashing():
                continue
            try:
                chain.poll()
            except Exception as e:
                self.io_errors += 1
                log.warning('chain %d poll failed: %s', i, e)

    def snapshot(self, now_s):
        board = self.rig.board
        boards = []
        for i, chain in enumerate(self.rig.chains):
            v = self._safe(board.read_voltage, i) or {}
            if v.get('enabled') is False and self.boards[i].enabled:
                self._power_lost(i, now_s)
            temps = self._safe(board.read_temps_c, i)
            boards.append(self.boards[i].snapshot(chain, now_s, v, temps))
        fans = self._safe(board.read_fans)
        if fans is None:
            fans = [{'duty_pct': d, 'rpm': None} for d in self.fan_duty_pct]
        snap = {'now_s': now_s, 'boards': boards, 'fans': fans,
                'power_w': self._safe(board.read_power_w)}
        self.last_snapshot = snap
        return snap

    # -- acting ------------------------------------------------------------------------------
    def tick(self, now_s):
        """One control step: snapshot -> supervisor -> apply. Returns the actions. The alarm
        book is held meanwhile: the tick's alarms are reported after its actions are applied."""
        self.ticks += 1
        book = self.supervisor.alarms
        book.hold()
        try:
            snap = self.snapshot(now_s)
            actions = self.supervisor.tick(snap)
            self.apply(actions, now_s)
        finally:
            book.release()
        return actions

    def apply(self, actions, now_s):
        self.write_failures = []
        self._apply_fans(actions.get('fan_duty_pct') or [])
        for b in actions.get('boards') or []:
            self._apply_board(b, now_s)
        for ev in actions.get('events') or []:
            self.on_event(ev)
        self._report_writes(now_s)
        n = len(self.rig.chains)
        due = [i for i in range(n) if self.boards[i].init_due(now_s)]
        if due:
            # One board per tick (a re-init takes seconds), taken round robin so a board that
            # keeps failing cannot keep the others waiting.
            due.sort(key=lambda i: (i - self._rr - 1) % n)
            self._rr = due[0]
            self._reinit(due[0], now_s)
        hashing = [i for i in range(n) if self.boards[i].hashing()]
        for i in hashing:
            self._replan(i, now_s)
        self._apply_freqs(hashing)

    def _replan(self, i, now_s):
        """Dynamic scaling: a derated board's chips re-planned at the cap's frequency budget
        (agent/autotune/scaling.py: least good hashes per watt give up frequency first) instead
        of the flat cap. Flat when off, at 100 %, or when no plan meets the budget (also when fewer
than half the chips have a fresh die temperature)."""
        b = self.boards[i]
        last = b.plan_pct if b.plan is not None else None
        since = now_s if b.plan_at_s is None else b.plan_at_s
        pct = scaling.budget_pct(b.cap_pct, last, now_s - since)
        if not self.dynamic_scaling or pct >= 100.0:
            b.plan = b.plan_key = b.plan_pct = b.plan_at_s = None
            return
        b.plan_at_s = now_s
        key = (pct, tuple(b.requested_mhz))
        if key == b.plan_key:
            return
        n = len(b.requested_mhz)
        temps, errs = [None] * n, [None] * n
        cfg = self.supervisor.cfg
        for c in self.rig.chains[i].chips:
            if c.index < n and c.alive:
                # only a fresh die reading counts (as safety judges it); with fewer than half
                # fresh the plan is None and the flat cap stands
                if c.temp_at_s is not None and now_s - c.temp_at_s <= cfg['die_stale_s']:
                    temps[c.index] = c.temp_c
                if c.err_pct is not None:
                    errs[c.index] = min(0.5, max(0.0, c.err_pct / 100.0))
        b.plan = scaling.plan(b.requested_mhz, errs, temps, pct, hot_c=cfg['temp_hot_c'])
        b.plan_key, b.plan_pct = key, pct
        if b.plan is not None:
            self.replans += 1

    def _apply_fans(self, duties):
        board = self.rig.board
        read = (self.last_snapshot or {}).get('fans') or []
        for k, duty in enumerate(duties):
            if duty is None or k >= len(self.fan_duty_pct):
                continue
            back = read[k].get('duty_pct') if k < len(read) and isinstance(read[k], dict) else None
            # Written again when the hardware reports another duty (controller reset, watchdog).
            if self.fan_duty_pct[k] is None or abs(self.fan_duty_pct[k] - duty) >= 0.5 \
                    or (back is not None and abs(back - duty) >= 1.5):
                try:
                    board.set_fan_duty(k, duty)
                    self.fan_duty_pct[k] = duty
                except Exception as e:
                    self.io_errors += 1
                    self.write_failures.append('fan %d to %s %%: %s' % (k, duty, e))
                    log.warning('fan %d duty %s failed: %s', k, duty, e)

    def _apply_board(self, act, now_s):
        i = act['index']
        bc = self.boards[i]
        want_on = bool(act.get('enable', True))
        if want_on != bc.enabled:
            try:
                self.rig.board.set_enabled(i, want_on)
                if want_on:
                    bc.powered_up(now_s)
                else:
                    bc.enabled = False
            except Exception as e:
                self.io_errors += 1
                self.write_failures.append('board %d %s: %s' % (i, 'on' if want_on else 'OFF', e))
                log.warning('board %d enable=%s failed: %s', i, want_on, e)
        cap = act.get('freq_cap_pct', 100.0)
        if cap is not None:
            bc.cap_pct = max(0.0, min(100.0, float(cap)))

    def _report_writes(self, now_s=None):
        """Safety decides, the hardware may refuse: a failed fan or enable write is an alarm
        that says what did not happen (never reported as done), cleared once writes work."""
        if self.write_failures and not self.write_alarm:
            self.write_alarm = True
            self.on_event(event('rig.write_failed', 'raise', 'critical',
                                'board controller refused: %s (retried every tick)'
                                % '; '.join(self.write_failures[:4]), now_s=now_s))
        elif not self.write_failures and self.write_alarm:
            self.write_alarm = False
            self.on_event(event('rig.write_failed', 'clear', 'info',
                                'board controller writes go through again', now_s=now_s))

    def _power_lost(self, i, now_s):
        """The hardware switched a board off that we run (the board controller's heartbeat
        watchdog after a stall, a PSU trip, an external cut): its chips have reset, so the board
        is treated as off and powered up again through a full re-init if safety allows."""
        bc = self.boards[i]
        bc.enabled = False
        bc.needs_init = False
        if not bc.power_lost:
            bc.power_lost = True
            self.on_event(event('board%d.power_lost' % i, 'raise', 'warning',
                                'board %d: powered off by the hardware (board controller '
                                'watchdog, PSU or external cut); re-initialising' % i, i, now_s))

    def _reinit(self, i, now_s):
        chain = self.rig.chains[i]
        try:
            # Chips come back from power-off in their reset state: reset baud, no addresses.
            chain.transport.set_baud(families.RESET_BAUD)
            found = chain.enumerate(silence_s=self.scan_silence_s)
            if not found:
                raise RuntimeError('no chips answered')
            chain.assign_addresses()
            fast = self.chain_baud if self.chain_baud and self.chain_baud != families.RESET_BAUD else None
            chain.init(min(self._lowest_effective(i), REINIT_FREQ_MHZ), baud=fast)
        except Exception as e:
            self.io_errors += 1
            k, wait_s = self.boards[i].init_failed(now_s)
            log.warning('board %d re-init failed (%d), retry in %.0f s: %s', i, k, wait_s, e)
            if k == REINIT_ALARM_AFTER:
                self.on_event(event('board%d.reinit_failed' % i, 'raise', 'critical',
                                    'board %d: %d re-initialisations failed (%s); retrying '
                                    'every %.0f s' % (i, k, e, REINIT_BACKOFF_S[-1]), i, now_s))
            return
        bc = self.boards[i]
        bc.needs_init = False
        log.info('board %d re-initialised after power-up (%d chips)', i, len(found))
        if bc.reinit_failures >= REINIT_ALARM_AFTER:
            self.on_event(event('board%d.reinit_failed' % i, 'clear', 'info',
                                'board %d: initialised again' % i, i, now_s))
        bc.reinit_failures = 0
        if bc.power_lost:
            bc.power_lost = False
            self.on_event(event('board%d.power_lost' % i, 'clear', 'info',
                                'board %d: powered and hashing again' % i, i, now_s))

    def _lowest_effective(self, i):
        return min(self.effective_mhz(i, c) for c in range(len(self.boards[i].requested_mhz)))

    def effective_mhz(self, i, chip_index):
        lim = self.rig.limits
        b = self.boards[i]
        k = b.plan[chip_index] if b.plan is not None else b.cap_pct / 100.0
        f = b.requested_mhz[chip_index] * k
        return max(lim.freq_min_mhz, min(lim.freq_max_mhz, f))

    def pll_mhz(self, mhz):
        """The frequency the PLL really makes for mhz. Cached: every tick asks it for every chip
        (324 on an S21) and the answer only changes when a request or a cap does; solving it
        each time was half of the agent's CPU."""
        f = self._pll_cache.get(mhz)
        if f is None:
            if len(self._pll_cache) >= PLL_CACHE_SIZE:
                self._pll_cache.clear()
            f = self._pll_cache[mhz] = pll.solve(self.family, mhz)['freq_mhz']
        return f

    def _apply_freqs(self, boards):
        """Walk chips toward requested x cap, at most RAMP_STEPS_PER_TICK steps this tick."""
        max_move = RAMP_STEPS_PER_TICK * RAMP_STEP_MHZ
        jobs = []
        for i in boards:
            chain = self.rig.chains[i]
            plan = {}
            for c in chain.chips:
                if not c.alive or c.index >= len(self.boards[i].requested_mhz):
                    continue
                target = self.pll_mhz(self.effective_mhz(i, c.index))
                cur = c.freq_mhz
                if cur is not None and abs(cur - target) <= FREQ_TOLERANCE_MHZ:
                    continue
                if cur is None or abs(target - cur) <= max_move:
                    plan[c.addr] = target
                else:
                    plan[c.addr] = cur + (max_move if target > cur else -max_move)
            if plan:
                jobs.append((i, chain, plan))
        if not jobs:
            return

        def move(job):
            i, chain, plan = job
            try:
                chain.set_frequencies(plan)
            except Exception as e:   # a failed move is retried next tick from where it got
                self.io_errors += 1
                log.warning('board %d frequency change failed: %s', i, e)

        run_parallel([(lambda j=j: move(j)) for j in jobs])

    # -- requests (commands, tuner) ------------------------------------------------------------
    def register_commands(self, registry):
        lim = self.rig.limits
        ctx = {'boards': self.model['boards'], 'chips_per_board': self.model['chips_per_board'],
               'freq_min_mhz': lim.freq_min_mhz, 'freq_max_mhz': lim.freq_max_mhz}
        registry.register('set_frequency', validate_set_frequency,
                          lambda a: self.request_frequency(a['mhz'], a['board'], a['chip']), ctx)

    def request_frequency(self, mhz, board=None, chip=None):
        """Ask for a frequency (validated by the caller and again by HardwareLimits)."""
        self.rig.limits.check_freq(mhz)
        boards = self.boards if board is None else [self.boards[board]]
        for b in boards:
            chips = range(len(b.requested_mhz)) if chip is None else [chip]
            for c in chips:
                b.requested_mhz[c] = float(mhz)

    def safe_state(self):
        """Boards off, fans full: what shutdown leaves behind. True when both writes went through."""
        board = self.rig.board
        ok = True
        for fn, args in ((board.set_fan_duty, (None, 100)), (board.set_enabled, (None, False))):
            try:
                fn(*args)
            except Exception as e:
                ok = False
                log.error('safe state: %s%s failed: %s', fn.__name__, args, e)
        self.all_off()
        return ok

    def get_status(self):
        return {'caps_pct': list(self.caps_pct), 'enabled': list(self.enabled),
                'needs_init': list(self.needs_init), 'fan_duty_pct': list(self.fan_duty_pct),
                'io_errors': self.io_errors, 'ticks': self.ticks,
                'dynamic_scaling': self.dynamic_scaling, 'replans': self.replans,
                'scaling': ['replan' if b.plan is not None else None for b in self.boards]}
