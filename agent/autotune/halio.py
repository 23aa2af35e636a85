"""The tuner IO over hal/rig.py (Rig + ChainDriver + BoardController): bytes only.

Used by `hashpilot bench autotune` and `hashpilot tune`. The owner of the loop polls the rig
(rig.poll()) and then calls tuner.step(); this adapter only reads driver state and forwards
requests (every frequency and voltage passes HardwareLimits in the driver/board controller).

Raw counts for Poisson statistics: the driver counts them once (Chip.hash_units / err_units:
accepted counter windows at one frequency, cumulative); this adapter passes them on.
"""

import logging
import time

from hal import families
from hal.parallel import run_parallel
from agent.autotune.io import TunerIO
from agent.autotune.nonces import CrossCheck

log = logging.getLogger(__name__)


class RigIO(TunerIO):
    def __init__(self, rig, clock, power_limit_w=None, temp_stop_c=None, nonces=None):
        self.rig = rig
        self.clock = clock
        # nonces: the work path's WorkEngine when [work] tuner_source = "nonces": the tuner's
        # hashes and errors come from verified nonces instead of the 0x8C/0x4C counters.
        self.nonces = nonces
        self.source = 'counters' if nonces is None else 'nonces'
        # counters, when the driver still reads them, only cross-check the nonce counts
        self.xcheck = None if nonces is None else CrossCheck()
        m = rig.model
        self.power_limit_w = power_limit_w or m['power_limit_w']
        self.temp_stop_c = temp_stop_c or (m['temp_danger_c'] - 3.0)
        nb = len(rig.chains)
        self._ids = None
        self._mv = None
        self._power = None
        self._hottest = None
        self.freq_writes = 0
        self.freq_write_s = 0.0
        self.nb = nb

    # -- reads ---------------------------------------------------------------------------------
    def now_s(self):
        return self.clock.monotonic()

    def model(self):
        return self.rig.model

    def family(self):
        return self.rig.family

    def limits(self):
        return self.rig.limits.get_status()

    def board_ids(self):
        if self._ids is None:
            self._ids = [self.rig.board.board_id(b) for b in range(self.nb)]
        return list(self._ids)

    def chips(self):
        out = []
        hottest = None
        for b, ch in enumerate(self.rig.chains):
            row = []
            for i, c in enumerate(ch.chips):
                row.append({'freq_mhz': c.freq_mhz, 'temp_c': c.temp_c,
                            'hashrate_ghs': c.hashrate_ghs, 'err_pct': c.err_pct,
                            'alive': c.alive, 'hash_units': c.hash_units,
                            'err_units': c.err_units})
                if self.nonces is not None:
                    self._nonce_row(b, i, row[-1])
                if c.alive and c.temp_c is not None and (hottest is None or c.temp_c > hottest):
                    hottest = c.temp_c
            out.append(row)
        self._hottest = hottest
        return out

    def _nonce_row(self, b, i, row):
        """Hashes and errors from verified nonces, counted in nonces: the tuner's statistics
        are Poisson counts, and one wrong nonce is one error event, not 2^N of them (scaling
        both to units of 2^32 hashes would keep the ratio but make one nonce look like 2^N
        independent samples). A nonce stands for 2^(32+N) hashes (hashrate_ghs has that)."""
        t = self.nonces.tally(b, i)
        if t is None:
            return
        if row['hash_units']:           # the driver read counters: cross-check
            ch = self.rig.chains[b]
            ref = ch.chips[i].ref
            bad = self.xcheck.update((b, i), row['freq_mhz'], row['hash_units'],
                                     t.good + t.bad, ch.ticket_bits or 0,
                                     ref[0] if ref else None)
            if bad:
                log.warning('board %d chip %d: %d nonces where the counters say %.0f '
                            '(beyond the Poisson bound)', b, i, bad[1], bad[0])
        row['hash_units'] = float(t.good + t.bad)
        row['err_units'] = t.bad
        row['hashrate_ghs'] = t.hashrate_ghs
        row['err_pct'] = t.hw_err_pct

    def power_w(self):
        try:
            self._power = self.rig.board.read_power_w()
        except Exception as e:     # unreadable power is a fault for safety, not a crash
            log.warning('power read failed: %s', e)
            self._power = None
        return self._power

    def voltage_mv(self):
        if self._mv is None:
            self._mv = [self.rig.board.read_voltage(b)['setpoint_mv'] for b in range(self.nb)]
        return list(self._mv)

    def uart(self):
        return [{'baud': ch.transport.baud, 'time_scale': self.clock.time_scale}
                for ch in self.rig.chains]

    def safety_ok(self):
        """Fresh readings (the tuner reads nothing else while it is paused)."""
        self.power_w()
        temps = [c.temp_c for ch in self.rig.chains for c in ch.chips
                 if c.alive and c.temp_c is not None]
        self._hottest = max(temps) if temps else None
        if self._power is not None and self._power > self.power_limit_w:
            return False
        if self._hottest is not None and self._hottest > self.temp_stop_c:
            return False
        return True

    # -- requests ------------------------------------------------------------------------------
    def set_voltage_mv(self, board, mv):
        self.voltage_mv()
        self.rig.board.set_voltage_mv(board, mv)
        for b in (range(self.nb) if board is None else (board,)):
            self._mv[b] = int(mv)

    def set_ticket_bits(self, board, bits):
        ch = self.rig.chains[board]
        ch.write(families.REG_TICKET_MASK, families.ticket_mask_value(bits))
        ch.ticket_bits = bits

    def request_frequencies(self, plan):
        """Per chain, in parallel: chips grouped by target (one ramped write batch per group)."""
        per = {}
        for (b, i), mhz in plan.items():
            self.rig.limits.check_freq(mhz)
            per.setdefault(b, {})[i] = mhz
            if self.xcheck is not None:
                self.xcheck.restart((b, i))
        t0 = time.monotonic()

        def apply(b):
            ch = self.rig.chains[b]
            want = per[b]
            if hasattr(ch, 'set_frequencies'):
                ch.set_frequencies(dict((ch.chips[i].addr, f) for i, f in want.items()))
                return
            groups = {}
            for i, f in want.items():
                groups.setdefault(f, []).append(ch.chips[i].addr)
            for f, addrs in sorted(groups.items()):
                ch.set_frequency(f, chips=addrs, ramp=True)

        run_parallel([(lambda b=b: apply(b)) for b in per])
        self.freq_writes += len(plan)
        self.freq_write_s += time.monotonic() - t0


class ControlLoopIO(RigIO):
    """The agent's variant: frequencies go through ControlLoop.request_frequency (the loop applies
    requested x safety cap on its next tick); safety comes from the supervisor (a callable)."""

    def __init__(self, control, clock, safety_ok=None, **kw):
        RigIO.__init__(self, control.rig, clock, **kw)
        self.control = control
        self._safety = safety_ok

    def request_frequencies(self, plan):
        for (b, i), mhz in plan.items():
            self.control.request_frequency(mhz, board=b, chip=i)
            if self.xcheck is not None:
                self.xcheck.restart((b, i))
        self.freq_writes += len(plan)

    def safety_ok(self):
        if self._safety is not None and not self._safety():
            return False
        return RigIO.safety_ok(self)
