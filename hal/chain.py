"""ChainDriver: one BM13xx chain on one UART: enumerate, address, init, baud, PLL, pipelined
reads, per-chip telemetry (die temperature, hashrate and error % from counters) and dead chips.

Family facts come from hal/families.py (no per-chip branches); every frequency passes
HardwareLimits; rates are computed in physics seconds of the injected Clock.
"""

import logging
import time

from hal import bringup, codec, families, hashsum, pll
from hal.clock import Clock
from hal.framer import ResponseFramer
from hal.pipeline import ReadPipeline
from hal.recent import RecentKeys
from hal.errors import TransportError

log = logging.getLogger(__name__)

RAMP_STEP_MHZ = 6.25
RAMP_STEP_S = 0.1          # physics seconds between PLL steps
RESET_FREQ_MHZ = 50.0      # ASSUMED chip PLL after reset: factory ramps start at 56.25 MHz
RECENT_NONCES = 4096       # duplicate-nonce detection window (a 256 KB MicroPython heap takes less)
DEFAULT_TICKET_BITS = 8
MAX_CHIPS = 256              # chip addresses are one byte: more would share addresses
COUNTER_WINDOW_S = 1.0     # difference counters over at least this (physics) time
DEAD_AFTER = 3             # polls without any answer before a chip is marked dead
MAX_CORES_PER_CHIP = 8192  # plausibility bound for counter jumps (largest chip here: 2040 cores)


class ChainError(RuntimeError):
    pass


def _ticket_bits_ok(bits):
    # 0x14 holds a 32-bit mask: difficulty 2^0 .. 2^32
    if not isinstance(bits, int) or not 0 <= bits <= 32:
        raise ChainError('ticket difficulty bits must be 0..32, not %r' % (bits,))
    return bits


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
        # Counted once, here: accepted windows at one frequency, cumulative, in units of 2^32
        # hashes (0x8C) and error units (0x4C). The tuner's Poisson statistics read these.
        self.hash_units = 0.0
        self.err_units = 0

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
                 f_nom_mhz=None, window=None, retries=2, dead_after=DEAD_AFTER,
                 recent_nonces=RECENT_NONCES):
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
        self.counter_windows_dropped = 0   # windows left out of hash_units (implausible)
        self.link_error = None
        self.initialised = False
        self.ticket_bits = None
        self.read_counters = True  # False: poll reads no 0x8C/0x4C (nonce-only measurement)
        self.last_read_stats = {}
        self.nonce_sink = None     # fn(driver, chip or None, decoded): the work path checks nonces
        self.nonces_duplicate = 0
        self._recent = RecentKeys(recent_nonces)   # nonces remembered to spot duplicates
        self.offsets = []          # sorted (0x0C offset, chip) when the family splits by offset
        self.die_temp_fn = None    # () -> die temperature from the board (families reading the
                                   # die diode through an external sensor, e.g. BM1370 + 0x54)
        self.trace = None          # list: (tag, frame) of every frame sent (dry runs)
        # BM1368-class nonces carry the chip address; compare it with our addresses.
        self._layout = family['nonce_layout'] if family else None

    # -- helpers ---------------------------------------------------------------------------
    def _pipeline(self):
        return ReadPipeline(self.transport, self.framer, on_nonce=self._on_nonce,
                            on_stray=self._on_stray, layout=self._layout, window=self.window,
                            wall=self.clock.wall)

    def _on_nonce(self, d):
        self.nonces += 1
        if self._recent.add((d.get('nonce'), d.get('header'), d.get('version'))):
            self.nonces_duplicate += 1      # the same work done twice (overlapping slices)
        addr = d.get('chip_addr')
        chip = self.by_addr.get(addr) if addr is not None else None
        if chip is None and addr is None:
            chip = self._chip_by_offset(d.get('nonce'))
        if chip is None:
            self.nonces_unattributed += 1
        else:
            chip.nonces += 1
        if self.nonce_sink is not None:
            self.nonce_sink(self, chip, d)

    def _chip_by_offset(self, nonce):
        """Chip whose 0x0C range holds the nonce (counter bits 24..9), for layouts without a
        chip address; the only chip when there is one."""
        if len(self.chips) == 1:
            return self.chips[0]
        if not self.offsets or nonce is None:
            return None
        start = (nonce >> 9) & 0xFFFF
        found = None
        for offset, chip in self.offsets:       # sorted by offset
            if offset > start:
                break
            found = chip
        return found

    def _on_stray(self, d):
        self.stray_answers += 1

    def _limits(self):
        if self.limits is None:
            raise ChainError('no HardwareLimits given; refusing to change frequency')
        return self.limits

    def send(self, frame, tag=None):
        if self.trace is not None:
            self.trace.append((tag, frame))
        self.transport.write(frame)

    def write(self, reg, value, chip_addr=None, tag=None):
        """Write a register of one chip (chip_addr) or of every chip (None: broadcast)."""
        if chip_addr is None:
            frame = codec.write_reg(reg, value, 0, broadcast=True)
        else:
            frame = codec.write_reg(reg, value, chip_addr)
        self.send(frame, tag)

    def pause(self, seconds):
        time.sleep(seconds)

    def rolling_written(self, value):
        """After a 0xA4 write: answers are 11 bytes from now on when it enables rolling."""
        flen = families.response_len(self.family, bool(value & 0x80000000))
        if flen != self.framer.frame_len:
            self._wait_wire(11 * 3)
            self.transport.discard_input()
            self.framer.buf = bytearray()
            self.framer.set_frame_len(flen)

    def _steps(self, part, ctx=None):
        bringup.run(self, bringup.split(self.family)[part], ctx or {})

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
        if self.family is not None:
            self._steps(0)           # the family's writes before the scan (version rolling)
        self.send(codec.read_reg(families.REG_CHIP_ID, 0, broadcast=True), 'scan')
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
                self._steps(0)       # the family's pre-scan writes, now that it is known
            elif self.family['chip_id'] != fam['chip_id']:
                log.warning('chain reports %s chips, driver configured for %s',
                            fam['name'], self.family['name'])
        return ids

    def assume_chips(self, count):
        """Dry runs: take `count` chips of the driver's family as found, without a scan."""
        self.chips = [Chip(i, self.family['chip_id']) for i in range(count)]
        self.by_addr = {}

    def assign_addresses(self, rule=None):
        """The family's steps from the scan to the set-address loop: chain inactive, then one
        set-address per chip (the first unaddressed chip takes it), with the family's broadcast
        writes where its real driver sends them."""
        if not self.chips:
            raise ChainError('no chips enumerated')
        if len(self.chips) > MAX_CHIPS:
            raise ChainError('%d chips answered; a chain addresses at most %d (line noise?)'
                             % (len(self.chips), MAX_CHIPS))
        self.address_rule = rule or self.address_rule
        self._steps(1, {'ticket_bits': _ticket_bits_ok(self.ticket_bits if self.ticket_bits
                                                       is not None else DEFAULT_TICKET_BITS)})
        return [c.addr for c in self.chips]

    def send_addresses(self):
        rule = self.address_rule
        step = families.address_interval(len(self.chips), rule)
        out = bytearray()
        addrs = []
        for chip in self.chips:
            addr = (chip.index * step) & 0xFF
            chip.addr = addr
            addrs.append(addr)
            out += codec.set_address(addr)
        self.send(bytes(out), 'address')
        self.by_addr = dict((c.addr, c) for c in self.chips)
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
        """The rest of the family's bring-up after addressing (hal/families.py 'bringup'):
        per-chip core setup, ticket mask, PLL ramp to freq_mhz, hash-counting number, nonce
        offsets, temperature sensor, optional baud switch. The chips are taken to start from
        their reset clock, as real drivers do after the chain's reset."""
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
        for c in self.chips:
            if c.freq_mhz is None:
                c.freq_mhz = RESET_FREQ_MHZ
        self.offsets = []
        self._steps(2, {'freq_mhz': freq_mhz, 'ticket_bits': _ticket_bits_ok(ticket_bits),
                        'baud': baud})
        self.offsets = sorted(self.offsets, key=lambda oc: oc[0])
        self.initialised = True
        return self.get_status()

    def set_baud(self, baud):
        """Switch chips (the family's baud register, broadcast at the old rate), then the host."""
        fam = self.family
        value = fam['fast_bauds'].get(baud)
        if value is None and baud != families.RESET_BAUD:
            raise ChainError('%s has no register value for %d baud' % (fam['name'], baud))
        if value is None:
            raise ChainError('switching back to the reset rate needs a chip reset')
        self.write(fam['baud_reg'], value, None, tag='baud')
        self._wait_wire(11, bringup.BAUD_DRAIN_S)
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
        """Move each chip in plan {addr: mhz} to its own target, all ramping together, then
        rewrite 0x10 for the new clocks. Returns {addr: realised MHz}."""
        done = self._ramp(plan, ramp)
        self.write_hcn(list(done))
        return done

    def ramp_all(self, mhz):
        self._ramp(dict((c.addr, mhz) for c in self.chips), True)

    def _ramp(self, plan, ramp=True):
        """PLL writes only: every target passes HardwareLimits before anything is sent. One
        write batch per 100 ms step carries every chip still moving (a broadcast when the whole
        chain moves in step)."""
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
            out = bytearray()
            for c in (sel[:1] if same else sel):
                p = plans[c.addr]
                if k < len(p):
                    step = pll.solve(fam, p[k])
                    out += bringup.pll_frames(fam, step['reg'], None if same else c.addr)
                    # Known after every step: a move that fails midway resumes from here.
                    for chip in (sel if same else (c,)):
                        chip.freq_mhz = step['freq_mhz']
            self.send(bytes(out), 'ramp')
            if k + 1 < nsteps:
                self.clock.sleep(RAMP_STEP_S)
            else:
                self._wait_wire(len(out))
        done = {}
        for c in sel:
            c.freq_mhz = pll.solve(fam, plan[c.addr])['freq_mhz']
            c.ref = None       # counter window restarts at the new frequency
            done[c.addr] = c.freq_mhz
        return done

    def write_hcn(self, addrs):
        """0x10 for each chip's realised clock (one broadcast when the whole chain shares it)."""
        fam = self.family
        by_addr = dict((c.addr, c) for c in self.chips)
        n = len(self.chips)
        words = dict((a, bringup.hcn_for(fam, n, by_addr[a].freq_mhz)) for a in addrs)
        if len(addrs) == n and len(set(words.values())) == 1:
            self.write(families.REG_HASH_COUNTING, words[addrs[0]], None, tag='hcn')
            return
        out = bytearray()
        for a in addrs:
            out += codec.write_reg(families.REG_HASH_COUNTING, words[a], a)
        self.send(bytes(out), 'hcn')

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
        hash_reg = fam['hash_reg']
        regs = [hash_reg, families.REG_ERROR_COUNT] if self.read_counters else []
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
            if got and all(v is None for v in got):
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
            h = values.get((c.addr, hash_reg))
            e = values.get((c.addr, families.REG_ERROR_COUNT))
            if h is None or e is None:
                continue
            if fam['hash_reg_unit']:
                # a rate register (BM1397 0x04): bit 31 set = no valid measurement yet
                c.hashrate_ghs = None if h & 0x80000000 else \
                    (h & 0x7FFFFFFF) * fam['hash_reg_unit'] / 1e9
                continue
            # When the chip sampled the counter, in physics seconds (not the batch end).
            tw = times.get((c.addr, hash_reg), wall0)
            t_s = phys0 - self.clock.time_scale * (wall0 - tw)
            self.account(c, t_s, h, e)
        if self.die_temp_fn is not None and len(self.chips) == 1:
            # the die diode read by the board's sensor (valid only when the chip routes it)
            t = self.die_temp_fn()
            self.chips[0].temp_c = t
            if t is not None:
                self.chips[0].temp_at_s = phys0
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
        if de <= dh and dh <= self._plausible_units(c, dt):
            c.hash_units += dh
            c.err_units += de
        else:
            self.counter_windows_dropped += 1
        c.ref = (t_s, h, e)

    def _plausible_units(self, chip, dt_s):
        """Counts a window may add to the statistics: the family's cores at the chip's clock,
        20 % headroom (a window the glitch bound lets through can still be implausible)."""
        fam = self.family or {}
        if not fam.get('cores'):
            return self._max_units(chip, dt_s)
        f = chip.freq_mhz or (self.limits.freq_max_mhz if self.limits else 1000.0)
        cores = fam['cores'] * fam.get('sub_cores', 1)
        return 1.2 * f * 1e6 * cores * dt_s / 4294967296.0 + 2

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
                'alive': hashsum.alive_count(self.chips),
                'hashrate_ghs': hashsum.chain_ghs(self.chips),
                'framer': self.framer.stats(),
                'nonces': self.nonces,
                'nonces_unattributed': self.nonces_unattributed,
                'nonces_duplicate': self.nonces_duplicate,
                'stray_answers': self.stray_answers,
                'counter_glitches': self.counter_glitches,
                'counter_windows_dropped': self.counter_windows_dropped,
                'link_error': self.link_error,
                'last_read': dict(self.last_read_stats),
                'transport': self.transport.get_status()}
