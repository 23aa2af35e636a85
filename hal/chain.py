"""ChainDriver: one BM13xx chain on one UART: enumerate, address, init, baud, PLL, pipelined
reads, per-chip telemetry (die temperature, hashrate and error % from counters) and dead chips.

Family facts come from hal/families.py (no per-chip branches); every frequency passes
HardwareLimits; rates are computed in physics seconds of the injected Clock.
"""

import logging
import time

from hal import codec, families, pll
from hal.clock import Clock
from hal.framer import ResponseFramer
from hal.pipeline import ReadPipeline
from hal.errors import TransportError

log = logging.getLogger(__name__)

RAMP_STEP_MHZ = 6.25
RAMP_STEP_S = 0.1          # physics seconds between PLL steps
BAUD_DRAIN_S = 0.06        # let TX drain after the baud write before moving the host UART
DEFAULT_TICKET_BITS = 8
COUNTER_WINDOW_S = 1.0     # difference counters over at least this (physics) time
DEAD_AFTER = 3             # polls without any answer before a chip is marked dead
MAX_CORES_PER_CHIP = 8192  # plausibility bound for counter jumps (largest chip here: 2040 cores)


class ChainError(RuntimeError):
    pass


class Chip:
    """Per-chip state the driver keeps (plain object; get_status() turns it into a dict)."""

    def __init__(self, index, chip_id):
        self.index = index
        self.chip_id = chip_id
        self.addr = None
        self.freq_mhz = None
        self.temp_c = None
        self.temp_at_s = None      # physics time of the last die temperature read (staleness)
        self.hashrate_ghs = None
        self.err_pct = None
        self.alive = True
        self.misses = 0
        self.nonces = 0
        self.ref = None            # (t_s, hash_count, err_count) of the start of the window

    def get_status(self):
        return {'index': self.index, 'addr': self.addr, 'chip_id': self.chip_id,
                'freq_mhz': self.freq_mhz, 'temp_c': self.temp_c,
                'hashrate_ghs': self.hashrate_ghs, 'err_pct': self.err_pct,
                'alive': self.alive, 'nonces': self.nonces}


def _wrap32(a, b):
    """b - a for 32-bit counters that may wrap."""
    return (b - a) & 0xFFFFFFFF


class ChainDriver:
    def __init__(self, transport, family=None, clock=None, limits=None, address_rule='pow2',
                 f_nom_mhz=None, window=None, retries=2, dead_after=DEAD_AFTER):
        self.transport = transport
        if isinstance(family, str):
            family = families.get(family)
        self.family = family
        self.clock = clock or Clock(1.0)
        self.limits = limits
        self.address_rule = address_rule
        self.f_nom_mhz = f_nom_mhz
        self.window = window
        self.retries = retries
        self.dead_after = dead_after
        self.framer = ResponseFramer(9)
        self.chips = []
        self.by_addr = {}
        self.nonces = 0
        self.nonces_unattributed = 0
        self.stray_answers = 0
        self.counter_glitches = 0
        self.link_error = None
        self.initialised = False
        self.ticket_bits = None
        self.last_read_stats = {}
        self.nonce_sink = None     # fn(driver, chip or None, decoded): the work path checks nonces
        # BM1368-class nonces carry the chip address; compare it with our addresses.
        self._layout = family['nonce_layout'] if family else None

    # -- helpers ---------------------------------------------------------------------------
    def _pipeline(self):
        return ReadPipeline(self.transport, self.framer, on_nonce=self._on_nonce,
                            on_stray=self._on_stray, layout=self._layout, window=self.window,
                            wall=self.clock.wall)

    def _on_nonce(self, d):
        self.nonces += 1
        addr = d.get('chip_addr')
        chip = self.by_addr.get(addr) if addr is not None else None
        if chip is None and addr is None and len(self.chips) == 1:
            chip = self.chips[0]        # layout without an address: only one chip it can be
        if chip is None:
            self.nonces_unattributed += 1
        else:
            chip.nonces += 1
        if self.nonce_sink is not None:
            self.nonce_sink(self, chip, d)

    def _on_stray(self, d):
        self.stray_answers += 1

    def _limits(self):
        if self.limits is None:
            raise ChainError('no HardwareLimits given; refusing to change frequency')
        return self.limits

    def write(self, reg, value, chip_addr=None):
        """Write a register of one chip (chip_addr) or of every chip (None: broadcast)."""
        if chip_addr is None:
            frame = codec.write_reg(reg, value, 0, broadcast=True)
        else:
            frame = codec.write_reg(reg, value, chip_addr)
        self.transport.write(frame)

    # -- enumeration and addressing --------------------------------------------------------
    def enumerate(self, silence_s=1.0, max_s=30.0, try_bauds=()):
        """Broadcast read of 0x00; count chip-ID answers until silence. Returns [chip_id, ...].

        If nothing answers at the current rate, try each of try_bauds (chips left at a fast
        rate by an earlier run) and stay at the first one that finds chips.
        """
        ids = self._enumerate(silence_s, max_s)
        start_baud = self.transport.baud
        for baud in try_bauds:
            if ids or baud == start_baud:
                continue
            self.transport.set_baud(baud)
            ids = self._enumerate(silence_s, max_s)
            if ids:
                log.info('chips found at %d baud', baud)
        if not ids and self.transport.baud != start_baud:
            self.transport.set_baud(start_baud)
        return ids

    def _enumerate(self, silence_s, max_s):
        """Broadcast read of 0x00; count chip-ID answers until silence. Returns [chip_id, ...].

        Answers are parsed as 9- and 11-byte frames (chips that had version rolling enabled by an
        earlier run answer in 11 bytes); the length that yields more chip IDs wins.
        """
        self.transport.discard_input()
        self.transport.write(codec.read_reg(families.REG_CHIP_ID, 0, broadcast=True))
        # Silence means no chip-ID answer: hashing chips keep sending nonces meanwhile.
        framers = {9: ResponseFramer(9), 11: ResponseFramer(11)}
        ids = {9: [], 11: []}
        wall = self.clock.wall
        start = last = wall()
        while True:
            now = wall()
            if now - last >= silence_s or now - start >= max_s:
                break
            data = self.transport.read(min(0.05, silence_s))
            if not data:
                continue
            for flen in (9, 11):
                for frame in framers[flen].feed(data):
                    d = codec.decode_response(frame)
                    if d['kind'] != 'reg' or d['reg'] != families.REG_CHIP_ID:
                        continue
                    chip_id = (d['value'] >> 16) & 0xFFFF
                    if families.by_chip_id(chip_id) is None:
                        continue
                    ids[flen].append(chip_id)
                    last = wall()
        flen = 11 if len(ids[11]) > len(ids[9]) else 9
        framer = framers[flen]
        ids = ids[flen]
        self.framer.set_frame_len(flen)
        self.framer.buf = bytearray()
        self.framer.dropped_bytes += framer.dropped_bytes
        self.framer.crc_errors += framer.crc_errors
        self.framer.frames += framer.frames
        self.chips = [Chip(i, cid) for i, cid in enumerate(ids)]
        self.by_addr = {}
        if ids:
            fam = families.by_chip_id(ids[0])
            if self.family is None:
                self.family = fam
                self._layout = fam['nonce_layout']
            elif self.family['chip_id'] != fam['chip_id']:
                log.warning('chain reports %s chips, driver configured for %s',
                            fam['name'], self.family['name'])
        return ids

    def assign_addresses(self, rule=None):
        """Chain inactive, then one set-address per chip (first unaddressed chip takes it)."""
        if not self.chips:
            raise ChainError('no chips enumerated')
        rule = rule or self.address_rule
        step = families.address_interval(len(self.chips), rule)
        self.transport.write(codec.chain_inactive())
        out = bytearray()
        addrs = []
        for chip in self.chips:
            addr = (chip.index * step) & 0xFF
            chip.addr = addr
            addrs.append(addr)
            out += codec.set_address(addr)
        self.transport.write(bytes(out))
        self.by_addr = dict((c.addr, c) for c in self.chips)
        self.address_rule = rule
        # Give the writes time to reach every chip before anything is read back.
        self._wait_wire(len(out) + 7)
        return addrs

    def _wait_wire(self, nbytes, extra_s=0.01):
        """Sleep (wall) for the wire time of nbytes we just queued."""
        time.sleep(nbytes * 10.0 / self.transport.baud + extra_s)

    def verify_addresses(self):
        """Read 0x00 from every address; returns the addresses that answered."""
        res = self.read_registers([(c.addr, families.REG_CHIP_ID) for c in self.chips])
        return [k[0] for k, v in sorted(res.items()) if v is not None]

    def recover(self, freq_mhz=None, baud=None, silence_s=1.0, ticket_bits=None):
        """Bring a chain back after its chips were reset (power cycle, brown-out): scan at the
        reset rate, re-address and re-init. If the same number of chips answers, the known
        chips (and their counts) are kept; they are marked alive as soon as they answer again.
        Returns the number of chips found."""
        old = self.chips
        if self.transport.baud != families.RESET_BAUD:
            self.transport.set_baud(families.RESET_BAUD)
        fast = sorted(self.family['fast_bauds']) if self.family else ()
        ids = self.enumerate(silence_s=silence_s, try_bauds=fast)
        if not ids:
            self.chips = old
            self.by_addr = dict((c.addr, c) for c in old if c.addr is not None)
            return 0
        if len(ids) == len(old):
            for c, cid in zip(old, ids):
                c.chip_id = cid
                c.freq_mhz = None
                c.ref = None
            self.chips = old
        self.assign_addresses()
        self.init(freq_mhz if freq_mhz is not None else self.f_nom_mhz,
                  ticket_bits=self.ticket_bits if ticket_bits is None else ticket_bits,
                  baud=baud)
        return len(ids)

    # -- init ------------------------------------------------------------------------------
    def init(self, freq_mhz=None, ticket_bits=DEFAULT_TICKET_BITS, baud=None):
        """Family init sequence (docs/protocol-notes.md), PLL ramp to freq_mhz, optional baud."""
        fam = self.family
        if fam is None or not self.chips or self.chips[0].addr is None:
            raise ChainError('enumerate and assign addresses before init')
        if freq_mhz is None:
            freq_mhz = self.f_nom_mhz
        if freq_mhz is None:
            raise ChainError('no target frequency (give freq_mhz or f_nom_mhz)')
        self._limits().check_freq(freq_mhz)
        if baud is not None and baud != self.transport.baud and baud not in fam['fast_bauds']:
            raise ChainError('%s cannot switch to %d baud (supported: %s)'
                             % (fam['name'], baud, sorted(fam['fast_bauds']) or 'none'))
        # Power-on misc control value: clean state of the core/UART control bits.
        self.write(families.REG_MISC_CONTROL, 0x0000C100)
        self.write(families.REG_TICKET_MASK, families.ticket_mask_value(ticket_bits))
        self.ticket_bits = ticket_bits
        if fam['version_rolling']:
            self.write(families.REG_VERSION_ROLLING, families.VERSION_ROLLING_ON)
            self._wait_wire(11 * 3)
            # Every answer from now on is 11 bytes; drop what the chips sent before.
            self.transport.discard_input()
            self.framer.buf = bytearray()
            self.framer.set_frame_len(families.response_len(fam, True))
        if fam['die_temp']:
            self.write(families.REG_TEMP_ENABLE, 0x80000000)
        # Learn the frequency the chips run at now, so the ramp starts there.
        res = self.read_registers([(c.addr, families.REG_PLL0) for c in self.chips])
        for c in self.chips:
            v = res.get((c.addr, families.REG_PLL0))
            c.freq_mhz = pll.decode(fam, v) if v is not None else None
        known = [c.freq_mhz for c in self.chips if c.freq_mhz is not None]
        for c in self.chips:
            if c.freq_mhz is None and known:
                c.freq_mhz = min(known)     # silent chip: ramp it like the slowest one
        self.set_frequency(freq_mhz, ramp=True)
        if baud is not None and baud != self.transport.baud:
            self.set_baud(baud)
        self.initialised = True
        return self.get_status()

    def set_baud(self, baud):
        """Switch chips (0x28, broadcast at the old rate) and then the host UART."""
        fam = self.family
        value = fam['fast_bauds'].get(baud)
        if value is None and baud != families.RESET_BAUD:
            raise ChainError('%s has no register value for %d baud' % (fam['name'], baud))
        if value is None:
            raise ChainError('switching back to the reset rate needs a chip reset')
        self.write(families.REG_UART_BAUD, value)
        self._wait_wire(11, BAUD_DRAIN_S)
        self.transport.set_baud(baud)
        self.transport.discard_input()

    # -- frequency -------------------------------------------------------------------------
    def set_frequency(self, mhz, chips=None, ramp=True):
        """Move chips (addresses, or None = all) to mhz in 6.25 MHz / 100 ms steps.

        Checked against HardwareLimits first; nothing is sent if the request is refused.
        Rewrites the hash-counting number (0x10) afterwards. Returns the realised MHz.
        """
        self._limits().check_freq(mhz)
        if chips is None:
            addrs = [c.addr for c in self.chips]
        else:
            addrs = list(chips)
        done = self.set_frequencies(dict((a, mhz) for a in addrs), ramp)
        return pll.solve(self.family, mhz)['freq_mhz'] if not done else list(done.values())[0]

    def set_frequencies(self, plan, ramp=True):
        """Move each chip in plan {addr: mhz} to its own target, all ramping together.

        Every target passes HardwareLimits before anything is sent. One write batch per 100 ms
        step carries every chip still moving (a broadcast when the whole chain moves in step),
        then 0x10 is rewritten per chip. Returns {addr: realised MHz}.
        """
        lim = self._limits()
        fam = self.family
        for mhz in plan.values():
            lim.check_freq(mhz)
        by_addr = dict((c.addr, c) for c in self.chips)
        unknown = [a for a in plan if a not in by_addr]
        if unknown:
            raise ChainError('unknown chip addresses: %s' % sorted(unknown))
        sel = [by_addr[a] for a in plan]
        if not sel:
            return {}
        plans = {}
        for c in sel:
            mhz = plan[c.addr]
            start = c.freq_mhz
            if not ramp or start is None:
                steps = [mhz]
            else:
                steps = pll.ramp(start, mhz, RAMP_STEP_MHZ)
            # Every intermediate step is itself checked (start may lie outside after a reset).
            plans[c.addr] = [s for s in steps if lim.freq_min_mhz <= s <= lim.freq_max_mhz]
            if not plans[c.addr] or plans[c.addr][-1] != mhz:
                plans[c.addr].append(mhz)
        same = len(sel) == len(self.chips) and len(set(tuple(p) for p in plans.values())) == 1
        nsteps = max(len(p) for p in plans.values())
        for k in range(nsteps):
            if same:
                step = pll.solve(fam, plans[sel[0].addr][k])
                self.write(families.REG_PLL0, step['reg'])
                for c in sel:
                    c.freq_mhz = step['freq_mhz']
                nbytes = 11
            else:
                out = bytearray()
                for c in sel:
                    p = plans[c.addr]
                    if k < len(p):
                        step = pll.solve(fam, p[k])
                        out += codec.write_reg(families.REG_PLL0, step['reg'], c.addr)
                        # Known after every step: a move that fails midway resumes from here.
                        c.freq_mhz = step['freq_mhz']
                self.transport.write(bytes(out))
                nbytes = len(out)
            if k + 1 < nsteps:
                self.clock.sleep(RAMP_STEP_S)
            else:
                self._wait_wire(nbytes)
        done = {}
        out = bytearray()
        for c in sel:
            f = pll.solve(fam, plan[c.addr])['freq_mhz']
            hcn = families.hash_counting_number(fam, f, self.f_nom_mhz or f)
            out += codec.write_reg(families.REG_HASH_COUNTING, hcn, c.addr)
            c.freq_mhz = f
            c.ref = None       # counter window restarts at the new frequency
            done[c.addr] = f
        if same:
            self.write(families.REG_HASH_COUNTING, hcn)   # one broadcast does for the chain
        else:
            self.transport.write(bytes(out))
        return done

    # -- reads -----------------------------------------------------------------------------
    def read_registers(self, requests, retries=None, no_retry=None):
        """Pipelined reads: {(addr, reg): value or None}. Never raises on missing answers."""
        values, _ = self._read(requests, retries, no_retry)
        return values

    def _read(self, requests, retries=None, no_retry=None):
        pipe = self._pipeline()
        values, times = pipe.run(requests, self.retries if retries is None else retries,
                                 no_retry)
        self.last_read_stats = pipe.last_stats
        return values, times

    def listen(self, seconds):
        """Count nonces (and drop stray answers) for `seconds` of wall time."""
        self._pipeline().drain_for(seconds)

    def poll(self):
        """Read temperature, 0x8C and 0x4C of every chip in one batch; update rates and liveness."""
        fam = self.family
        if not self.chips or fam is None:
            return self.get_status()
        regs = [families.REG_TOTAL_HASH, families.REG_ERROR_COUNT]
        if fam['die_temp']:
            regs.insert(0, families.REG_TEMP_READ)
        reqs = []
        dead = set()
        for c in self.chips:
            for r in regs:
                reqs.append((c.addr, r))
                if not c.alive:
                    dead.add((c.addr, r))
        try:
            values, times = self._read(reqs, None, dead)
            self.link_error = None
        except TransportError as exc:
            # The UART itself failed (adapter unplugged...): every chip missed this poll.
            self.link_error = str(exc)
            log.warning('chain poll: %s', exc)
            values, times = {}, {}
        wall0 = self.clock.wall()
        phys0 = self.clock.monotonic()
        for c in self.chips:
            got = [values.get((c.addr, r)) for r in regs]
            if all(v is None for v in got):
                c.misses += 1
                if c.misses >= self.dead_after and c.alive:
                    c.alive = False
                    log.warning('chip %d (addr 0x%02X) stopped answering', c.index, c.addr)
                continue
            c.misses = 0
            if not c.alive:
                log.info('chip %d (addr 0x%02X) answers again', c.index, c.addr)
                c.alive = True
                c.ref = None
            if fam['die_temp']:
                t = values.get((c.addr, families.REG_TEMP_READ))
                if t is not None:
                    c.temp_c = families.temp_c_from_code(t)
                    c.temp_at_s = phys0
            h = values.get((c.addr, families.REG_TOTAL_HASH))
            e = values.get((c.addr, families.REG_ERROR_COUNT))
            if h is None or e is None:
                continue
            # When the chip sampled the counter, in physics seconds (not the batch end).
            tw = times.get((c.addr, families.REG_TOTAL_HASH), wall0)
            t_s = phys0 - self.clock.time_scale * (wall0 - tw)
            self.account(c, t_s, h, e)
        return self.get_status()

    def account(self, c, t_s, h, e):
        """Fold one counter reading (physics time t_s, 0x8C h, 0x4C e) into chip c's rates."""
        if c.ref is None:
            c.ref = (t_s, h, e)
            return
        dt = t_s - c.ref[0]
        if dt < COUNTER_WINDOW_S:
            return
        dh = _wrap32(c.ref[1], h)
        de = _wrap32(c.ref[2], e)
        if dh > self._max_units(c, dt) or de > 2 * dh + 16:
            # Impossible jump: a corrupted answer that still passed the 5-bit CRC (1 in 32
            # corrupted frames do). Restart the window from this reading instead.
            self.counter_glitches += 1
            c.ref = (t_s, h, e)
            return
        c.hashrate_ghs = dh * 4294967296.0 / dt / 1e9
        c.err_pct = (100.0 * de / dh) if dh else (0.0 if not de else 100.0)
        c.ref = (t_s, h, e)

    def _max_units(self, chip, dt_s):
        """Most 0x8C units a chip can count in dt_s: MAX_CORES_PER_CHIP cores at its clock."""
        f = chip.freq_mhz or (self.limits.freq_max_mhz if self.limits else 1000.0)
        return f * 1e6 * MAX_CORES_PER_CHIP * dt_s / 4294967296.0

    # -- status ----------------------------------------------------------------------------
    def get_status(self):
        fam = self.family
        return {'family': fam['name'] if fam else None,
                'baud': self.transport.baud,
                'initialised': self.initialised,
                'ticket_bits': self.ticket_bits,
                'address_rule': self.address_rule,
                'chips': [c.get_status() for c in self.chips],
                'alive': sum(1 for c in self.chips if c.alive),
                'hashrate_ghs': sum(c.hashrate_ghs or 0.0 for c in self.chips if c.alive),
                'framer': self.framer.stats(),
                'nonces': self.nonces,
                'nonces_unattributed': self.nonces_unattributed,
                'stray_answers': self.stray_answers,
                'counter_glitches': self.counter_glitches,
                'link_error': self.link_error,
                'last_read': dict(self.last_read_stats),
                'transport': self.transport.get_status()}
