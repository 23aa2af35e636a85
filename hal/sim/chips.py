"""Simulated BM13xx chips: per-chip register state machines and the chain that routes commands.

A Chain is what sits behind one UART: it takes whole command frames (already paced by
hal/sim/uart.py), answers with response frames, counts hashes and errors and emits nonce frames.
Everything chip-type specific comes from hal/families.py; the physics (frequency limit, error
fraction) is pushed in by hal/sim/rig.py at every physics step. See docs/simulator.md.
"""


from hal import codec, families, pll
from hal.crc import crc5
from hal.sim.physics import chip_err, poisson
from hal.sim.work import SimWork

F = families
TWO32 = 4294967296.0
RESET_FREQ_MHZ = 50.0
RESET_BAUD_WORD = 0x0000301A   # ASSUMED reset value of 0x28 (divider 26 -> 115 740 baud)
MISC_CONTROL_RESET = 0x0000C100


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


class Chip:
    """One chip: address, register file, PLL, counters. `silicon` is its physics dict."""

    def __init__(self, family, index, silicon, cores, f_nom_mhz, rng):
        self.family = family
        self.index = index
        self.silicon = silicon
        self.cores = cores
        self.f_nom_mhz = f_nom_mhz
        self.rng = rng
        self._reset_pll = reset_pll_word(family)
        self.fmax_mhz = 0.0    # set by the physics step
        self.temp_c = 25.0     # set by the physics step
        self.powered = True
        self._err_key = (None, None)
        self._err = 0.0
        self._scale_key = (None, None)
        self._scale = 1.0
        self.reset(0.0)

    def reset(self, t_s):
        """Power-on state: address 0, not addressed, 115200 baud, 9-byte answers, ~50 MHz PLL."""
        fam = self.family
        self.addr = 0
        self.assigned = False
        self.rolling = False
        self.temp_enabled = False
        self.work_fed = False
        self.ticket_bits = 0
        self.freq_mhz = pll_freq_mhz(fam, self._reset_pll)
        self.regs = {
            F.REG_CHIP_ID: fam['chip_id'] << 16,
            F.REG_PLL0: self._reset_pll,
            F.REG_HASH_COUNTING: F.hash_counting_number(fam, self.freq_mhz, self.f_nom_mhz),
            F.REG_TICKET_MASK: 0,
            F.REG_MISC_CONTROL: MISC_CONTROL_RESET,
            F.REG_UART_BAUD: RESET_BAUD_WORD,
        }
        self.units = 0.0       # counted hashes / 2^32 (fractional accumulator)
        self.err_count = 0
        self.t_acc_s = t_s
        self.good_units_total = 0.0   # true good hashes / 2^32 since start (truth)

    # ------------------------------------------------------------ hashing

    def hashing(self):
        return self.powered and not self.silicon['dead'] and self.freq_mhz > 0.0

    def rate_units(self):
        """True hashes per second / 2^32 (0x8C counts all hashes, good and bad)."""
        if not self.hashing():
            return 0.0
        return self.freq_mhz * 1e6 * self.cores / TWO32

    def err(self):
        """Error fraction at the current frequency and limit (cached: reads are hot)."""
        f = self.freq_mhz if self.hashing() else 0.0
        if f != self._err_key[0] or self.fmax_mhz != self._err_key[1]:
            self._err_key = (f, self.fmax_mhz)
            self._err = chip_err(f, self.fmax_mhz)
        return self._err

    def count_scale(self):
        """Counters count right only when 0x10 holds the number for the current frequency."""
        hcn = self.regs.get(F.REG_HASH_COUNTING, 0)
        if hcn != self._scale_key[0] or self.freq_mhz != self._scale_key[1]:
            expected = F.hash_counting_number(self.family, self.freq_mhz, self.f_nom_mhz)
            self._scale_key = (hcn, self.freq_mhz)
            self._scale = hcn / float(expected) if expected > 0 else 1.0
        return self._scale

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
        self.good_units_total += true_units * (1.0 - e)
        counted = true_units * self.count_scale()
        self.units += counted
        self.err_count += poisson(self.rng, e * counted)

    # ------------------------------------------------------------ registers

    def read(self, reg, t_s):
        if reg == F.REG_CHIP_ID:
            return (self.family['chip_id'] << 16) | (self.addr & 0xFF)
        if reg == F.REG_TOTAL_HASH or F.REG_DOMAIN_HASH0 <= reg < F.REG_DOMAIN_HASH0 + 4 \
                or reg == F.REG_ERROR_COUNT:
            self.accrue(t_s)
            if reg == F.REG_TOTAL_HASH:
                return int(self.units) & 0xFFFFFFFF
            if reg == F.REG_ERROR_COUNT:
                return self.err_count & 0xFFFFFFFF
            return int(self.units / 4.0) & 0xFFFFFFFF   # four equal domains
        if reg == F.REG_TEMP_READ:
            if not (self.family['die_temp'] and self.temp_enabled):
                return 0
            return F.temp_code_from_c(self.temp_c + self.rng.gauss(0.0, 0.5))
        return self.regs.get(reg, 0)

    def write(self, reg, value, t_s, chain):
        fam = self.family
        if reg == F.REG_CHIP_ID:
            return                      # read-only
        if reg in (F.REG_PLL0, F.REG_HASH_COUNTING, F.REG_SOFT_RESET, F.REG_TOTAL_HASH,
                   F.REG_ERROR_COUNT):
            self.accrue(t_s)
        self.regs[reg] = value
        if reg == F.REG_PLL0:
            self.freq_mhz = pll_freq_mhz(fam, value)
        elif reg == F.REG_TICKET_MASK:
            bits = F.ticket_bits_from_mask(value)
            if bits is None:
                bits = bin(value & 0xFFFFFFFF).count('1')
            self.ticket_bits = bits
            self.work_fed = True        # init always writes the mask; from then on work flows
        elif reg == F.REG_VERSION_ROLLING:
            self.rolling = bool(value & 0x80000000) and fam['version_rolling']
        elif reg == F.REG_UART_BAUD:
            for baud in fam['fast_bauds']:
                if fam['fast_bauds'][baud] == value:
                    chain.set_baud(baud)
            if value == RESET_BAUD_WORD:
                chain.set_baud(F.RESET_BAUD)
        elif reg == F.REG_SOFT_RESET:
            self.units = 0.0
            self.err_count = 0
        elif reg == F.REG_TOTAL_HASH:
            self.units = float(value)
        elif reg == F.REG_ERROR_COUNT:
            self.err_count = value
        elif reg == F.REG_TEMP_ENABLE:
            self.temp_enabled = value != 0

    def frame_len(self):
        return F.response_len(self.family, self.rolling)


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
        self.nonces = 0
        self._route = None
        self.work = SimWork(family, rng)     # job frames -> real solutions (hal/sim/work.py)

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
        self._route = None
        if on:
            self.baud = F.RESET_BAUD

    def handle(self, frame, t_s):
        """One whole command frame -> list of response frames.

        The frame must come from hal/framer.scan_command (preamble, length and CRC checked);
        frames that are not commands (jobs) or have the wrong payload size are ignored.
        """
        if not self.powered:
            return []
        hdr = frame[2]
        length = frame[3]
        op = hdr & 0x0F
        if hdr == codec.TYPE_JOB | codec.OP_WRITE and len(frame) == length + 2:
            self.work.on_job(frame)
            return []
        if hdr & 0x60 != codec.TYPE_CMD or len(frame) != length + 2 \
                or length != (9 if op == codec.OP_WRITE else 5) or op > codec.OP_INACTIVE:
            self.ignored += 1          # jobs are accepted and ignored; malformed frames too
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
            return []
        for c in live:                  # set address: the first chip without one takes it
            if not c.assigned:
                c.addr = frame[4]
                c.assigned = True
                self._route = None
                break
        return []

    def get_status(self):
        return {'chips': len(self.chips), 'powered': self.powered, 'baud': self.baud,
                'commands': self.commands, 'ignored': self.ignored, 'nonces': self.nonces,
                'addressed': sum(1 for c in self.chips if c.assigned)}

    def _nonce_frame(self, c, layout, real, bad_frac):
        rng = self.rng
        if real:
            roll16 = (c.regs.get(F.REG_VERSION_ROLLING, 0) & 0xFFFF) if c.rolling else 0
            return self.work.nonce_frame(c.addr, roll16, c.frame_len(), rng.random() < bad_frac)
        # no job frame seen yet: random nonce bits (not solutions)
        nonce, header = codec.encode_nonce_fields(
            layout, rng.getrandbits(32), rng.randrange(16) * 8, rng.randrange(16), c.addr)
        version = rng.getrandbits(16) if c.rolling else 0
        return codec.nonce_response(nonce, rng.randrange(4), header, version, c.frame_len())

    def nonce_frames(self, dt_s, room_bytes=1 << 30):
        """Nonce frames found in the last dt_s of hashing: Poisson at each chip's ticket
        difficulty (one per 2^(32+N) good hashes), only after the host fed work (0x14 written).

        Frames are built while the chain's output FIFO has room (room_bytes); the rest are
        dropped. Returns (frames, dropped). Chips are visited from a random start so a full
        FIFO does not always favour the chips nearest the host.
        """
        out = []
        dropped = 0
        rng = self.rng
        layout = self.family['nonce_layout']
        chips = self.chips
        n = len(chips)
        first = rng.randrange(n) if n else 0
        for k in range(n):
            c = chips[(first + k) % n]
            if not c.work_fed or not c.hashing():
                continue
            real = self.work.has_job()
            # with jobs: every nonce reported is a real solution, or a wrong one at the error rate
            lam = c.rate_units() * (1.0 if real else 1.0 - c.err()) * dt_s / (1 << c.ticket_bits)
            bad_frac = max(c.err(), c.silicon.get('bad_nonce_frac', 0.0))
            for _ in range(poisson(rng, lam)):
                if room_bytes < 0:
                    dropped += 1
                    continue
                fr = self._nonce_frame(c, layout, real, bad_frac)
                if fr is not None:
                    room_bytes -= len(fr)
                    out.append(fr)
        self.nonces += len(out)
        return out, dropped
