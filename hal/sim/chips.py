"""Simulated BM13xx chips: per-chip register models as strict as silicon, and the chain that
routes commands.

A Chain is what sits behind one UART: it takes whole command frames (already paced by
hal/sim/uart.py), answers with response frames, counts hashes and errors and emits nonce frames.
A chip models the registers, not our driver: it hashes only once its cores are set up the way
real chips need (0xA8 core reset bits, 0x3C clock words then core enable), it reports and
counts only through the report enables of 0x18, it needs a hash-counting number (0x10) and
sweeps the nonce window that number gives, splits the space by address or 0x0C offset, filters
by the ticket mask, answers in 9 bytes until 0xA4 enables rolling and reads its die temperature
only when the sensor was enabled the family's way. Everything chip-type specific comes from
hal/families.py; the physics (frequency limit, error fraction) is pushed in by hal/sim/rig.py.
See docs/simulator.md and docs/protocol-notes.md.

Job frames go to the chain's work model (hal/sim/work.py: real solutions once a job frame came);
before any job frame, chips hash synthetic work (random nonce bits in the family's fields).
"""


from hal import codec, families, pll
from hal.crc import crc5
from hal.sim.physics import chip_err, poisson
from hal.sim.work import SimWork

F = families
TWO32 = 4294967296.0
RESET_FREQ_MHZ = 50.0      # ASSUMED PLL0 after reset (factory ramps start at 56.25 MHz)
CORE_NUM_BYTE = {'BM1362': 0x03, 'BM1397': 0x18}   # 0x00 byte 2 (mujina, skot/BM1397); else 0
DUPLICATE_MEMORY = 64


def _crc_after_zero_type_bits():
    # CRC5 register after shifting in the three (zero) type bits of a register answer
    out = []
    for crc in range(32):
        for _ in range(3):
            top = (crc >> 4) & 1
            crc = (crc << 1) & 0x1F
            if top:
                crc ^= 0x05
        out.append(crc)
    return out


_CRC_TYPE0 = _crc_after_zero_type_bits()


def reg_frame(value, addr, reg, long_form):
    """Register answer, as codec.reg_response (9 or 11 bytes) but cheaper: the simulator
    builds one per read and must keep up with 3.125 Mbaud."""
    body = (value & 0xFFFFFFFF).to_bytes(4, 'big') + bytes((addr & 0xFF, reg & 0xFF))
    if long_form:
        body += b'\x00\x00'
    return b'\xaa\x55' + body + bytes((_CRC_TYPE0[crc5(body)],))


def reset_pll_word(family):
    return pll.solve(family, RESET_FREQ_MHZ)['reg']


def pll_freq_mhz(family, word):
    """Frequency of a PLL0 word, or 0.0 when the word is not one the PLL can lock on."""
    fb = (word >> 16) & 0xFF
    if fb < family['pll_fb_min'] or fb > family['pll_fb_max']:
        return 0.0
    f = pll.decode(family, word)
    if f is None or f < 1.0:
        return 0.0
    return f


def _core_words(family):
    """{core register: value} the family's clock words set (0x3C: bits 12..8 reg, 7..0 value)."""
    return dict(((w >> 8) & 0x1F, w & 0xFF) for w in family['core_clock'])


class Chip:
    """One chip: address, register file, cores, PLL, counters. `silicon` is its physics dict."""

    def __init__(self, family, index, silicon, cores, f_nom_mhz, rng):
        self.family = family
        self.index = index
        self.silicon = silicon
        self.cores = cores
        self.f_nom_mhz = f_nom_mhz
        self.rng = rng
        self._reset_pll = reset_pll_word(family)
        self._need_core = _core_words(family)
        self._temp_seq = family.get('temp_enable', ())
        self.fmax_mhz = 0.0    # set by the physics step
        self.temp_c = 25.0     # set by the physics step
        self.powered = True
        self.useful = 1.0      # share of this chip's work nobody else does (set by the Chain)
        self._err_key = (None, None)
        self._err = 0.0
        self.reset(0.0)

    def reset(self, t_s):
        """Power-on state: address 0, not addressed, reset baud, 9-byte answers, ~50 MHz PLL,
        cores off (no core reset/enable yet), nothing reported, sensor off."""
        fam = self.family
        self.addr = 0
        self.assigned = False
        self.addressing = False         # set by chain inactive: set-address commands now land
        self.rolling = False
        self.core_regs = {}
        self.cores_on = fam['core_reset'] is None      # BM1397: no core enable step exists
        self.temp_stage = 0
        self.ticket_bits = 0
        self.freq_mhz = pll_freq_mhz(fam, self._reset_pll)
        self.regs = {
            F.REG_CHIP_ID: fam['chip_id'] << 16,
            F.REG_PLL0: self._reset_pll,
            F.REG_HASH_COUNTING: 0,
            F.REG_TICKET_MASK: 0,
            F.REG_NONCE_OFFSET: 0,
        }
        self.regs.update(fam['reset_regs'])
        self._report = F.report_fraction(fam, self.regs.get(F.REG_MISC_CONTROL, 0))
        self.units = 0.0       # counted hashes / 2^32 (fractional accumulator)
        self.err_count = 0
        self.t_acc_s = t_s
        self.good_units_total = 0.0   # true good, useful hashes / 2^32 since start (truth)

    # ------------------------------------------------------------ hashing

    def cores_ready(self):
        need = self.family['core_reset']
        return need is None or (self.regs.get(F.REG_SOFT_RESET, 0) & need) == need

    def hashing(self):
        """Cores switching: powered, clocked, set up and enabled, with a sweep length."""
        fam = self.family
        return (self.powered and not self.silicon['dead'] and self.freq_mhz > 0.0
                and self.cores_on and self.cores_ready()
                and (self.regs[F.REG_HASH_COUNTING] > 0 or not fam['hcn_required']))

    def rate_units(self):
        """True hashes per second / 2^32 (0x8C counts all hashes, good and bad)."""
        if not self.hashing():
            return 0.0
        return self.freq_mhz * 1e6 * self.cores / TWO32

    def reported(self):
        """Share of the hashing reported and counted (0x18 report enables)."""
        return self._report

    def good_rate_units(self):
        """Good hashes / 2^32 per second that are work for the pool: reported, not duplicated."""
        return self.rate_units() * (1.0 - self.err()) * self._report * self.useful

    def err(self):
        """Error fraction at the current frequency and limit (cached: reads are hot)."""
        f = self.freq_mhz if self.hashing() else 0.0
        if f != self._err_key[0] or self.fmax_mhz != self._err_key[1]:
            self._err_key = (f, self.fmax_mhz)
            self._err = chip_err(f, self.fmax_mhz)
        return self._err

    def sweep_nonces(self):
        fam = self.family
        return F.sweep_nonces(self.regs[F.REG_HASH_COUNTING], self.freq_mhz,
                              fam['hcn_overrun_ticks'])

    def accrue(self, t_s, err=None):
        """Bring counters up to time t_s at the current rate (continuous at read time)."""
        dt = t_s - self.t_acc_s
        if dt <= 0.0:
            return
        self.t_acc_s = t_s
        rate = self.rate_units()
        if rate <= 0.0:
            return
        true_units = rate * dt
        e = self.err() if err is None else err
        self.good_units_total += true_units * (1.0 - e) * self._report * self.useful
        counted = true_units * self._report
        self.units += counted
        self.err_count += poisson(self.rng, e * counted)

    # ------------------------------------------------------------ registers

    def read(self, reg, t_s):
        fam = self.family
        if reg == F.REG_CHIP_ID:
            return (fam['chip_id'] << 16) | (CORE_NUM_BYTE.get(fam['name'], 0) << 8) \
                | (self.addr & 0xFF)
        if reg == F.REG_TOTAL_HASH or F.REG_DOMAIN_HASH0 <= reg < F.REG_DOMAIN_HASH0 + 4 \
                or reg == F.REG_ERROR_COUNT:
            self.accrue(t_s)
            if reg == F.REG_TOTAL_HASH:
                return int(self.units) & 0xFFFFFFFF
            if reg == F.REG_ERROR_COUNT:
                return self.err_count & 0xFFFFFFFF
            return int(self.units / 4.0) & 0xFFFFFFFF   # four equal domains
        if reg == F.REG_HASHRATE and fam['hash_reg'] == F.REG_HASHRATE:
            rate = self.rate_units() * TWO32 * self._report / fam['hash_reg_unit']
            return int(rate) & 0x7FFFFFFF
        if reg == F.REG_TEMP_READ:
            return self._temp_word()
        return self.regs.get(reg, 0)

    def _temp_word(self):
        # Only a family with the on-die sensor, after its enable sequence (BM1370: always 0).
        if not (self.family['die_temp'] and self._temp_seq
                and self.temp_stage == len(self._temp_seq)):
            return 0
        return F.temp_code_from_c(self.temp_c + self.rng.gauss(0.0, 0.5))

    def diode_routed(self):
        """BM1370: the die diode reaches the analog mux pin (0x54 select 2) for a board sensor."""
        return self.family['die_temp_via'] == 'diode_mux' and \
            (self.regs.get(F.REG_ANALOG_MUX, 0) & 0xF) == 2 and self.powered

    def write(self, reg, value, t_s, chain):
        fam = self.family
        if reg == F.REG_CHIP_ID:
            return                      # read-only
        if reg in (F.REG_PLL0, F.REG_HASH_COUNTING, F.REG_SOFT_RESET, F.REG_TOTAL_HASH,
                   F.REG_ERROR_COUNT, F.REG_MISC_CONTROL, F.REG_CORE_MAILBOX,
                   F.REG_NONCE_OFFSET):
            self.accrue(t_s)
        old = self.regs.get(reg, 0)
        self.regs[reg] = value
        handler = _WRITE_EFFECTS.get(reg)
        if handler is not None:
            handler(self, value, old, chain)
        if reg == fam['baud_reg']:
            baud = F.baud_of_word(fam, value)
            if baud is not None:
                chain.set_baud(baud)

    def frame_len(self):
        return F.response_len(self.family, self.rolling)

    # write effects (dict dispatch below)
    def _w_pll(self, value, old, chain):
        self.freq_mhz = pll_freq_mhz(self.family, value)
        chain.invalidate_sweeps()

    def _w_rolling(self, value, old, chain):
        self.rolling = bool(value & 0x80000000) and self.family['version_rolling']
        chain.invalidate_sweeps()

    def _w_ticket(self, value, old, chain):
        bits = F.ticket_bits_from_mask(value)
        if bits is None:
            bits = bin(value & 0xFFFFFFFF).count('1')
        self.ticket_bits = bits

    def _w_misc(self, value, old, chain):
        self._report = F.report_fraction(self.family, value)

    def _w_soft_reset(self, value, old, chain):
        need = self.family['core_reset']
        if need is not None and (value & need) == need and (old & need) != need:
            # core soft reset asserted: the cores' own registers start over, counters clear and
            # the report enables drop (ASSUMED: every host rewrites 0x18 after each 0xA8 write)
            self.core_regs = {}
            self.cores_on = False
            self.units = 0.0
            self.err_count = 0
            self.regs[F.REG_MISC_CONTROL] = self.regs.get(F.REG_MISC_CONTROL, 0) & 0x0FFFFFFF
            self._report = F.report_fraction(self.family, self.regs[F.REG_MISC_CONTROL])

    def _w_mailbox(self, value, old, chain):
        if not value & 0x8000:          # bit 15 clear: a read request, nothing written
            return
        core_reg = (value >> 8) & 0x1F
        self.core_regs[core_reg] = value & 0xFF
        if core_reg == 0x02 and (value & 0xFF) == 0xAA and self.family['core_reset'] is not None:
            clocks_ok = all(self.core_regs.get(r) == v for r, v in self._need_core.items())
            self.cores_on = clocks_ok and self.cores_ready()

    def _w_sweep(self, value, old, chain):
        chain.invalidate_sweeps()

    def _w_temp(self, value, old, chain):
        seq = self._temp_seq
        if not seq or value & 0x80000000:
            self.temp_stage = 0         # bit 31: sensor powered down
        elif self.temp_stage < len(seq) and value == seq[self.temp_stage]:
            self.temp_stage += 1
        elif value == seq[0]:
            self.temp_stage = 1
        elif self.temp_stage < len(seq):
            self.temp_stage = 0         # out of order: the sensor never starts


_WRITE_EFFECTS = {
    F.REG_PLL0: Chip._w_pll,
    F.REG_VERSION_ROLLING: Chip._w_rolling,
    F.REG_TICKET_MASK: Chip._w_ticket,
    F.REG_MISC_CONTROL: Chip._w_misc,
    F.REG_SOFT_RESET: Chip._w_soft_reset,
    F.REG_CORE_MAILBOX: Chip._w_mailbox,
    F.REG_HASH_COUNTING: Chip._w_sweep,
    F.REG_NONCE_OFFSET: Chip._w_sweep,
    F.REG_TEMP_ENABLE: Chip._w_temp,
    F.REG_TOTAL_HASH: lambda chip, value, old, chain: setattr(chip, 'units', float(value)),
    F.REG_ERROR_COUNT: lambda chip, value, old, chain: setattr(chip, 'err_count', value),
}


def chip_starts(family, chips):
    """Where each chip's sweep starts in its counter space, and how much room it has before
    the next chip's start: {chip: (start, slice_nonces)}.

    Address layouts (BM1362/66/68/97): the chip address sits in nonce bits 24..17 above a
    17-bit counter, so a chip owns the addresses up to the next chip's. Offset layout (BM1370):
    0x0C bit 31 set -> start at offset << 9; unset -> the start floats, modelled as counter 0
    (every chip without an offset sweeps the same nonces)."""
    out = {}
    if family['nonce_layout'] == F.NONCE_BM1370:
        span = 1 << 25
        starts = []
        for c in chips:
            word = c.regs.get(F.REG_NONCE_OFFSET, 0)
            starts.append(((word & 0xFFFF) << 9) if word & 0x80000000 else 0)
    else:
        span = 1 << 25
        starts = [(c.addr & 0xFF) << 17 for c in chips]
    ordered = sorted(set(starts))
    rank = dict((s, k) for k, s in enumerate(ordered))
    for c, s in zip(chips, starts):
        k = rank[s]
        nxt = ordered[k + 1] if k + 1 < len(ordered) else ordered[0] + span
        out[c] = (s, nxt - s)
    return out


def useful_fractions(family, chips):
    """Per chip, the share of its work no other chip repeats: chips starting at the same point
    split one sweep; a sweep longer than the room before the next chip repeats that chip's."""
    starts = chip_starts(family, chips)
    same = {}
    for c in chips:
        same[starts[c][0]] = same.get(starts[c][0], 0) + 1
    out = {}
    rolls = family['version_rolling']
    for c in chips:
        start, room = starts[c]
        w = c.sweep_nonces()
        spill = 1.0 if w <= 0 or w <= room else room / w
        # ASSUMED: without 0xA4 rolling the sub-cores of a core hash one version, i.e. the
        # same headers (BM1397 takes its midstates from the host instead)
        alike = family['sub_cores'] if (rolls and not c.rolling) else 1
        out[c] = spill / same[start] / alike
    return out


class Chain:
    """The chips on one board's UART, in chain order (index 0 is nearest the host)."""

    def __init__(self, family, silicons, cores, f_nom_mhz, rng):
        self.family = family
        self.rng = rng
        self.chips = [Chip(family, i, s, cores, f_nom_mhz, rng) for i, s in enumerate(silicons)]
        self.baud = F.RESET_BAUD
        self.powered = True
        self.commands = 0
        self.ignored = 0
        self.jobs = 0
        self.nonces = 0
        self.duplicates = 0
        self._recent = []          # recent nonce frames (repeated when chips duplicate work)
        self._route = None
        self.work = SimWork(family, rng)     # job frames -> real solutions (hal/sim/work.py)
        self._sweeps_ok = False

    def _routing(self):
        # (live chips, {addr: [chips]}), cached: rebuilt after address, power or dead changes
        if self._route is None:
            live = [c for c in self.chips if not c.silicon['dead']]
            by_addr = {}
            for c in live:
                by_addr.setdefault(c.addr, []).append(c)
            self._route = (live, by_addr)
        return self._route

    def invalidate(self):
        self._route = None
        self._sweeps_ok = False

    def invalidate_sweeps(self):
        self._sweeps_ok = False

    def update_sweeps(self):
        """Recompute each chip's useful share after 0x08/0x0C/0x10 or address changes (lazily:
        once per physics step at most)."""
        if self._sweeps_ok:
            return
        for c, u in useful_fractions(self.family, self.chips).items():
            c.useful = u
        self._sweeps_ok = True

    def set_baud(self, baud):
        self.baud = baud

    def set_power(self, on, t_s):
        """Power off: silent, no hashing. Power back on: every chip back to its reset state."""
        on = bool(on)
        if on == self.powered:
            return
        for chip in self.chips:
            chip.accrue(t_s)
            chip.powered = on
            if on:
                chip.reset(t_s)
        self.powered = on
        self.invalidate()
        if on:
            self.baud = F.RESET_BAUD

    def handle(self, frame, t_s):
        """One whole command frame -> list of response frames.

        The frame must come from hal/framer.scan_command (preamble, length and CRC checked).
        Job frames go to the work model (hal/sim/work.py); malformed commands are ignored.
        """
        if not self.powered:
            return []
        hdr = frame[2]
        length = frame[3]
        op = hdr & 0x0F
        if hdr & 0x60 == codec.TYPE_JOB:
            # any job frame, whatever its LEN byte (stock firmware 0x36, ESP-Miner 0x56)
            self.jobs += 1
            self.work.on_job(frame)
            return []
        if hdr & 0x60 != codec.TYPE_CMD or len(frame) != length + 2 \
                or length != (9 if op == codec.OP_WRITE else 5) or op > codec.OP_INACTIVE:
            self.ignored += 1
            return []
        self.commands += 1
        live, by_addr = self._route or self._routing()
        if hdr & codec.FLAG_BROADCAST:
            targets = live
        else:
            targets = by_addr.get(frame[4], ())
        if op == codec.OP_READ:
            reg = frame[5]
            return [reg_frame(c.read(reg, t_s), c.addr, reg, c.rolling) for c in targets]
        if op == codec.OP_WRITE:
            reg = frame[5]
            value = (frame[6] << 24) | (frame[7] << 16) | (frame[8] << 8) | frame[9]
            for c in targets:
                c.write(reg, value, t_s, self)
            return []
        if op == codec.OP_INACTIVE:
            for c in live:
                c.assigned = False
                c.addressing = True
            return []
        for c in live:                  # set address: the first chip in addressing mode takes it
            if c.addressing and not c.assigned:
                c.accrue(t_s)
                c.addr = frame[4]
                c.assigned = True
                self.invalidate()
                break
        return []

    def get_status(self):
        return {'chips': len(self.chips), 'powered': self.powered, 'baud': self.baud,
                'commands': self.commands, 'ignored': self.ignored, 'jobs': self.jobs,
                'nonces': self.nonces, 'duplicates': self.duplicates,
                'addressed': sum(1 for c in self.chips if c.assigned),
                'hashing': sum(1 for c in self.chips if c.hashing())}

    def _synthetic(self, c):
        """(nonce, midstate, header, version) of a synthetic result of chip c."""
        rng = self.rng
        layout = self.family['nonce_layout']
        job_id = rng.randrange(16) * 8
        sub = rng.randrange(16)
        if layout == F.NONCE_BM1370:
            word = c.regs.get(F.REG_NONCE_OFFSET, 0)
            base = ((word & 0xFFFF) << 9) if word & 0x80000000 else 0
            window = max(1, min(int(c.sweep_nonces()), 1 << 25))
            counter = (base + rng.randrange(window)) & 0x1FFFFFF
            nonce = (rng.randrange(128) << 25) | counter
            header = ((job_id << 1) & 0xF0) | (sub & 0x0F)
        else:
            nonce, header = codec.encode_nonce_fields(layout, rng.getrandbits(32), job_id, sub,
                                                      c.addr)
        version = rng.getrandbits(16) if c.rolling else 0
        return nonce, rng.randrange(4), header, version

    def _nonce_frame(self, c, real, bad_frac):
        rng = self.rng
        if real:
            roll16 = (c.regs.get(F.REG_VERSION_ROLLING, 0) & 0xFFFF) if c.rolling else 0
            return self.work.nonce_frame(c.addr, roll16, c.frame_len(), rng.random() < bad_frac)
        # no job frame seen yet: random nonce bits in the family's fields (not solutions)
        src = self._synthetic(c)
        return codec.nonce_response(src[0], src[1], src[2], src[3], c.frame_len())

    def nonce_frames(self, dt_s, room_bytes=1 << 30):
        """Nonce frames found in the last dt_s of hashing: Poisson at each chip's ticket
        difficulty (one per 2^(32+N) good hashes of its reporting cores); a chip whose work
        another chip repeats (useful < 1) sends that share as repeats of earlier frames.

        Frames are built while the chain's output FIFO has room (room_bytes); the rest are
        dropped. Returns (frames, dropped). Chips are visited from a random start so a full
        FIFO does not always favour the chips nearest the host.
        """
        out = []
        dropped = 0
        rng = self.rng
        chips = self.chips
        n = len(chips)
        self.update_sweeps()
        first = rng.randrange(n) if n else 0
        for k in range(n):
            c = chips[(first + k) % n]
            if not c.hashing():
                continue
            real = self.work.has_job()
            # with jobs: every nonce reported is a real solution, or a wrong one at the error
            # rate; only the cores 0x18 reports from count
            lam = c.rate_units() * (1.0 if real else 1.0 - c.err()) * c.reported() * dt_s \
                / (1 << c.ticket_bits)
            bad_frac = max(c.err(), c.silicon.get('bad_nonce_frac', 0.0))
            for _ in range(poisson(rng, lam)):
                if room_bytes < 0:
                    dropped += 1
                    continue
                if self._recent and rng.random() > c.useful:
                    # work another chip (or this one) already did: the same result again
                    fr = self._recent[rng.randrange(len(self._recent))]
                    self.duplicates += 1
                else:
                    fr = self._nonce_frame(c, real, bad_frac)
                    if fr is None:
                        continue
                    self._recent.append(fr)
                    if len(self._recent) > DUPLICATE_MEMORY:
                        self._recent.pop(0)
                room_bytes -= len(fr)
                out.append(fr)
        self.nonces += len(out)
        return out, dropped
