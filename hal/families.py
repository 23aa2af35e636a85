"""Registry of BM13xx chip families: protocol facts as data, so no code branches on chip type.

Pure data and small helpers; runs on MicroPython. Each family carries its bring-up sequence
('bringup', a list of steps the driver executes in order, hal/bringup.py) and the constants the
simulator's register model needs. Every value is sourced in docs/protocol-notes.md (ESP-Miner
components/asic, mujina's bm13xx REFERENCE.md captures, skot/BM1397 register pages); values no
source gives are marked ASSUMED there and here.
"""

# Register addresses (names and field decoders: hal/registers.py).
REG_CHIP_ID = 0x00
REG_HASHRATE = 0x04            # BM1397: hash rate in 2^24 H/s units (bit 31 = not valid)
REG_PLL0 = 0x08
REG_NONCE_OFFSET = 0x0C
REG_HASH_COUNTING = 0x10
REG_TICKET_MASK = 0x14
REG_MISC_CONTROL = 0x18
REG_ORDERED_CLOCK_EN = 0x20    # BM1397
REG_UART_BAUD = 0x28
REG_UART_RELAY = 0x2C
REG_CORE_MAILBOX = 0x3C
REG_ERROR_COUNT = 0x4C
REG_ANALOG_MUX = 0x54
REG_IO_DRIVER = 0x58
REG_PLL3 = 0x68                # BM1397: PLL3 parameter; BM1368/70: ring-oscillator pad disable
REG_PLL0_DIVIDER = 0x70        # BM1397: written before every 0x08 write
REG_CLOCK_ORDER0 = 0x80        # BM1397
REG_CLOCK_ORDER1 = 0x84        # BM1397
REG_DOMAIN_HASH0 = 0x88
REG_TOTAL_HASH = 0x8C
REG_VERSION_ROLLING = 0xA4
REG_SOFT_RESET = 0xA8
REG_TEMP_ENABLE = 0xB0
REG_TEMP_READ = 0xB4
REG_ADC_CTRL1 = 0xB9

VERSION_ROLLING_ON = 0x9000FFFF
RESET_BAUD = 115200  # chips reset to 25 MHz / (8 * 27) = 115 740 baud; a host at 115 200 works
REF_CLOCK_MHZ = 25.0
NONCE_SPACE = 4294967296

# Die temperature code (BM1368 0xB4): T = code * 0.171342 - 299.5144, bit 31 = valid.
TEMP_SLOPE_C = 0.171342
TEMP_OFFSET_C = -299.5144
TEMP_VALID_BIT = 0x80000000

# Nonce layouts (see decode rules in codec.nonce_fields).
NONCE_BM1366 = 'bm1366'   # job = header & 0xF8, core = header & 7, chip addr in nonce bits 24..17
NONCE_BM1368 = 'bm1368'   # job = (header & 0xF0) >> 1, core = header & 0x0F, chip addr as BM1366
NONCE_BM1370 = 'bm1370'   # job/core as BM1368, no chip address (chips told apart by 0x0C ranges)
NONCE_BM1397 = 'bm1397'   # job = header & 0xFC, midstate = header & 3, chip addr as BM1366

# Core mailbox (0x3C) words: bit 31 all cores, bit 15 write, bits 12..8 core register, 7..0 value.
CORE_ENABLE = 0x800082AA

# Bring-up steps (executed by hal/bringup.py, in list order):
#   ('bc', reg, value)         broadcast write
#   ('scan',)                  broadcast read of 0x00, count chips
#   ('inactive',)              chain inactive (broadcast): chips forget their addresses
#   ('address',)               one set-address per chip (first unaddressed chip takes it)
#   ('one', reg, value)        write to the first chip only (address 0)
#   ('chip', [(reg, value)..]) per-chip pass, in address order
#   ('ticket',)                0x14 from the ticket difficulty
#   ('ramp',)                  0x08 ramp to the target frequency, 6.25 MHz per 100 ms
#   ('hcn',)                   0x10 from the realised PLL dividers (hash_counting_number)
#   ('offsets',)               0x0C per chip, chains of more than one chip only
#   ('baud',)                  0x28 (or the family's baud register) when a faster rate was asked
#   ('temp', [values], gap_s)  0xB0 sensor enable sequence
# Each step may carry a 'why' tag in docs/protocol-notes.md; the mutation tests drop and corrupt
# every step in turn (tests/test_bringup_mutations.py).

_A4 = ('bc', REG_VERSION_ROLLING, VERSION_ROLLING_ON)

FAMILIES = {
    'BM1397': {
        'chip_id': 0x1397,
        'pll_fb_min': 60, 'pll_fb_max': 200, 'pll_pd_minus_one': False,
        'pll_pd_equal': False, 'pll_vco_flag': False,
        'pll_prefix': ((REG_PLL0_DIVIDER, 0x0F0F0F00), (REG_PLL0_DIVIDER, 0x0F0F0F00)),
        'pll_repeat': 2,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'baud_reg': REG_MISC_CONTROL,
        'fast_bauds': {3125000: 0x00006031},      # 0x18 divider field (ESP-Miner bm1397.c)
        'reset_baud_word': 0x00003A01,             # 0x18 reset (skot/BM1397 registers.md)
        'version_rolling': False,    # responses stay 9 bytes
        'nonce_layout': NONCE_BM1397,
        'job_format': 'midstate', 'job_id_step': 4, 'job_id_mask': 0x7C, 'midstates_max': 4,
        'die_temp': False, 'die_temp_via': 'i2c',  # board sensors through 0x1C (not modelled)
        'cores': 168, 'sub_cores': 4,
        'hash_reg': REG_HASHRATE, 'hash_reg_unit': 1 << 24,
        'hcn_required': False,       # ESP-Miner never writes 0x10 on BM1397 (reset 0) and it hashes
        'hcn_guard_ticks': 0, 'hcn_overrun_ticks': 0,
        'report_sections': None,     # 0x18 holds the baud divider on BM1397, no report enables
        'reset_regs': {REG_MISC_CONTROL: 0x00003A01, REG_UART_BAUD: 0x0600000F,
                       REG_ORDERED_CLOCK_EN: 0x0000FFFF},
        'core_clock': (),
        'core_reset': None,
        'reg_names': {REG_PLL3: 'PLL3_PARAMETER'},   # skot/BM1397 registers.md (UART clock PLL)
        'bringup': [
            ('scan',),
            ('inactive',), ('address',),
            ('bc', REG_CLOCK_ORDER0, 0x00000000),
            ('bc', REG_CLOCK_ORDER1, 0x00000000),
            ('bc', REG_ORDERED_CLOCK_EN, 0x00000001),
            ('bc', REG_CORE_MAILBOX, 0x80008074),
            ('ticket',),
            ('bc', REG_PLL3, 0xC0700111),
            ('bc', REG_UART_BAUD, 0x0600000F),
            ('bc', REG_MISC_CONTROL, 0x00007A31),
            ('ramp',),
            ('baud',),
        ],
    },
    'BM1362': {
        'chip_id': 0x1362,
        'pll_fb_min': 144, 'pll_fb_max': 235, 'pll_pd_minus_one': True,
        'pll_pd_equal': True, 'pll_vco_flag': True, 'pll_prefix': (), 'pll_repeat': 1,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'baud_reg': REG_UART_BAUD,
        'fast_bauds': {3125000: 0x11300000},
        'reset_baud_word': 0x01301A00,
        'version_rolling': True,
        'nonce_layout': NONCE_BM1366,
        'job_format': 'full', 'job_id_step': 8, 'job_id_mask': 0xF8, 'midstates_max': 1,
        # ASSUMED stand-in: mujina says BM1362 has an ADC block at 0xD0/0xDC/0xE4 (undecoded),
        # not 0xB0/0xB4; until that is decoded the driver uses the BM1368 sensor sequence so
        # the agent's die-based safety has an input on S19j Pro (docs/protocol-notes.md).
        'die_temp': True, 'die_temp_via': 'b4',
        'temp_enable': (0x00020000, 0x01020000, 0x10020000),
        'cores': 65, 'sub_cores': 8,
        'hash_reg': REG_TOTAL_HASH, 'hash_reg_unit': 0,
        'hcn_required': True, 'hcn_guard_ticks': 0, 'hcn_overrun_ticks': 0,
        # ASSUMED: 0xB000C100 enables every core (S19j Pro core 64 reports with bit 30 clear).
        'report_sections': ((28, 32), (29, 32), (31, 1)),
        'reset_regs': {REG_MISC_CONTROL: 0x0000C100, REG_UART_BAUD: 0x01301A00,
                       REG_SOFT_RESET: 0x00000000, REG_VERSION_ROLLING: 0x0000FFFF,
                       REG_TEMP_ENABLE: 0x80000000},
        'core_clock': (0x80008540, 0x80008008),
        'core_reset': 0x00000002,     # 0xA8 CORE_SRST_FAST, per chip before core setup
        'bringup': [
            _A4, ('scan',), _A4, _A4,
            ('bc', REG_SOFT_RESET, 0x00000000),
            ('bc', REG_MISC_CONTROL, 0xB000C100),
            ('inactive',), ('address',),
            ('bc', REG_CORE_MAILBOX, 0x80008540),
            ('bc', REG_CORE_MAILBOX, 0x80008008),
            ('ticket',),
            ('bc', REG_ANALOG_MUX, 0x00000003),
            ('bc', REG_IO_DRIVER, 0x00011111),
            ('baud',),
            ('ramp',),
            ('chip', ((REG_SOFT_RESET, 0x00000002), (REG_MISC_CONTROL, 0xB000C100),
                      (REG_CORE_MAILBOX, 0x80008540), (REG_CORE_MAILBOX, 0x80008008),
                      (REG_CORE_MAILBOX, CORE_ENABLE))),
            ('hcn',),
            _A4,
            ('temp', (0x00020000, 0x01020000, 0x10020000), 0.01),   # ASSUMED (see die_temp)
        ],
    },
    'BM1366': {
        'chip_id': 0x1366,
        'pll_fb_min': 144, 'pll_fb_max': 235, 'pll_pd_minus_one': True,
        'pll_pd_equal': False, 'pll_vco_flag': True, 'pll_prefix': (), 'pll_repeat': 1,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'baud_reg': REG_UART_BAUD,
        'fast_bauds': {1041667: 0x11300200, 3125000: 0x11300000},  # 3.125M value ASSUMED as BM1362
        'reset_baud_word': 0x01301A00,
        'version_rolling': True,
        'nonce_layout': NONCE_BM1366,
        'job_format': 'full', 'job_id_step': 8, 'job_id_mask': 0xF8, 'midstates_max': 1,
        'die_temp': False, 'die_temp_via': None,
        'cores': 112, 'sub_cores': 8,
        'hash_reg': REG_TOTAL_HASH, 'hash_reg_unit': 0,
        'hcn_required': True, 'hcn_guard_ticks': 0, 'hcn_overrun_ticks': 0,
        'report_sections': ((28, 28), (29, 28), (30, 28), (31, 28)),   # ASSUMED quarters
        'reset_regs': {REG_MISC_CONTROL: 0x0000C100, REG_UART_BAUD: 0x01301A00,
                       REG_SOFT_RESET: 0x00070000, REG_VERSION_ROLLING: 0x0000FFFF},
        'core_clock': (0x80008540, 0x80008020),
        'core_reset': 0x000701F0,
        'bringup': [
            _A4, _A4, _A4, ('scan',),
            ('bc', REG_SOFT_RESET, 0x00070000),
            ('bc', REG_MISC_CONTROL, 0xFF0FC100),
            ('inactive',), ('address',),
            ('bc', REG_CORE_MAILBOX, 0x80008540),
            ('bc', REG_CORE_MAILBOX, 0x80008020),
            ('ticket',),
            ('bc', REG_ANALOG_MUX, 0x00000003),
            ('bc', REG_IO_DRIVER, 0x02111111),
            ('one', REG_UART_RELAY, 0x007C0003),
            ('chip', ((REG_SOFT_RESET, 0x000701F0), (REG_MISC_CONTROL, 0xF000C100),
                      (REG_CORE_MAILBOX, 0x80008540), (REG_CORE_MAILBOX, 0x80008020),
                      (REG_CORE_MAILBOX, CORE_ENABLE))),
            ('ramp',),
            ('hcn',),
            _A4,
            ('baud',),
        ],
    },
    'BM1368': {
        'chip_id': 0x1368,
        'pll_fb_min': 144, 'pll_fb_max': 235, 'pll_pd_minus_one': True,
        'pll_pd_equal': False, 'pll_vco_flag': True, 'pll_prefix': (), 'pll_repeat': 1,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'baud_reg': REG_UART_BAUD,
        'fast_bauds': {1041667: 0x11300200, 3125000: 0x11300000},  # 3.125M value ASSUMED as BM1362
        'reset_baud_word': 0x01301A00,
        'version_rolling': True,
        'nonce_layout': NONCE_BM1368,
        'job_format': 'full', 'job_id_step': 24, 'job_id_mask': 0x78, 'midstates_max': 1,
        'die_temp': True, 'die_temp_via': 'b4',    # 0xB0 enable sequence, 0xB4 (factory test fw)
        'temp_enable': (0x00020000, 0x01020000, 0x10020000),
        'cores': 80, 'sub_cores': 16,
        'hash_reg': REG_TOTAL_HASH, 'hash_reg_unit': 0,
        'hcn_required': True, 'hcn_guard_ticks': 0, 'hcn_overrun_ticks': 0,
        'report_sections': ((28, 20), (29, 20), (30, 20), (31, 20)),   # ASSUMED quarters
        'reset_regs': {REG_MISC_CONTROL: 0x0000C100, REG_UART_BAUD: 0x01301A00,
                       REG_SOFT_RESET: 0x00070000, REG_VERSION_ROLLING: 0x0000FFFF,
                       REG_TEMP_ENABLE: 0x80000000},
        'core_clock': (0x80008B00, 0x80008018),
        'core_reset': 0x000701F0,
        'bringup': [
            _A4, _A4, _A4, _A4, ('scan',),
            ('inactive',),
            ('bc', REG_SOFT_RESET, 0x00070000),
            ('bc', REG_MISC_CONTROL, 0xFF0FC100),
            ('bc', REG_CORE_MAILBOX, 0x80008B00),
            ('bc', REG_CORE_MAILBOX, 0x80008018),
            ('ticket',),
            ('bc', REG_ANALOG_MUX, 0x00000003),
            ('bc', REG_IO_DRIVER, 0x02111111),
            ('address',),
            ('chip', ((REG_SOFT_RESET, 0x000701F0), (REG_MISC_CONTROL, 0xF000C100),
                      (REG_CORE_MAILBOX, 0x80008B00), (REG_CORE_MAILBOX, 0x80008018),
                      (REG_CORE_MAILBOX, CORE_ENABLE))),
            ('ticket',),
            ('ramp',),
            ('hcn',),
            _A4,
            ('temp', (0x00020000, 0x01020000, 0x10020000), 0.01),
            ('baud',),
        ],
    },
    'BM1370': {
        'chip_id': 0x1370,
        'pll_fb_min': 160, 'pll_fb_max': 239, 'pll_pd_minus_one': True,
        'pll_pd_equal': False, 'pll_vco_flag': True, 'pll_prefix': (), 'pll_repeat': 1,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'baud_reg': REG_UART_BAUD,
        'fast_bauds': {1041667: 0x11300200, 3125000: 0x01300000},
        'reset_baud_word': 0x01301A00,
        'version_rolling': True,
        'nonce_layout': NONCE_BM1370,
        'job_format': 'full', 'job_id_step': 24, 'job_id_mask': 0x78, 'midstates_max': 1,
        'die_temp': False, 'die_temp_via': 'diode_mux',   # 0xB4 reads 0; 0x54 = 2 routes the diode
        'cores': 128, 'sub_cores': 16,
        'hash_reg': REG_TOTAL_HASH, 'hash_reg_unit': 0,
        'hcn_required': True, 'hcn_guard_ticks': 268, 'hcn_overrun_ticks': 134,
        'report_sections': ((28, 32), (29, 32), (30, 32), (31, 32)),   # measured (mujina)
        'reset_regs': {REG_MISC_CONTROL: 0x0000C100, REG_UART_BAUD: 0x01301A00,
                       REG_SOFT_RESET: 0x00070000, REG_VERSION_ROLLING: 0x0000FFFF},
        'core_clock': (0x80008B00, 0x8000800C),
        'core_reset': 0x000701F0,
        'bringup': [
            _A4, _A4, _A4, ('scan',), _A4,
            ('bc', REG_SOFT_RESET, 0x00070000),
            ('bc', REG_MISC_CONTROL, 0xF000C100),
            ('inactive',), ('address',),
            ('bc', REG_CORE_MAILBOX, 0x80008B00),
            ('bc', REG_CORE_MAILBOX, 0x8000800C),
            ('ticket',),
            ('bc', REG_IO_DRIVER, 0x00011111),
            ('chip', ((REG_SOFT_RESET, 0x000701F0), (REG_MISC_CONTROL, 0xF000C100),
                      (REG_CORE_MAILBOX, 0x80008B00), (REG_CORE_MAILBOX, 0x8000800C),
                      (REG_CORE_MAILBOX, CORE_ENABLE))),
            ('bc', REG_ADC_CTRL1, 0x00004480),
            ('bc', REG_ANALOG_MUX, 0x00000002),
            ('bc', REG_ADC_CTRL1, 0x00004480),
            ('bc', REG_CORE_MAILBOX, 0x80008DEE),
            ('ramp',),
            ('offsets',),
            ('hcn',),
            ('baud',),
        ],
    },
}

_BY_ID = {}
for _name in FAMILIES:
    FAMILIES[_name]['name'] = _name
    _BY_ID[FAMILIES[_name]['chip_id']] = FAMILIES[_name]


def get(name):
    """Family dict by name ('BM1368'); KeyError with the known names otherwise."""
    fam = FAMILIES.get(name.upper()) if isinstance(name, str) else None
    if fam is None:
        raise KeyError('unknown chip family %r (known: %s)' % (name, ', '.join(sorted(FAMILIES))))
    return fam


def by_chip_id(chip_id):
    """Family dict for the 16-bit ID in the top half of register 0x00, or None."""
    return _BY_ID.get(chip_id)


def response_len(family, version_rolling_on):
    """Response frame length: 9 bytes, 11 once version rolling (0xA4) is enabled."""
    return 11 if (version_rolling_on and family['version_rolling']) else 9


def baud_from_divider(div):
    return int(REF_CLOCK_MHZ * 1e6 / (8 * (div + 1)) + 0.5)


def baud_of_word(family, value):
    """Baud rate a write of `value` to the family's baud register selects, or None.

    0x28 (BM1366 and later): divider in bits 15..8. BM1397 0x18: 9-bit divider BT8D, bits 12..8
    low part and bits 27..24... only the known values are decoded (fast_bauds, reset word)."""
    if family['baud_reg'] == REG_UART_BAUD:
        return baud_from_divider((value >> 8) & 0xFF)
    for baud in family['fast_bauds']:
        if family['fast_bauds'][baud] == value:
            return baud
    if value in (family['reset_baud_word'], 0x00007A31):
        return baud_from_divider(26)
    return None


def temp_c_from_code(value):
    """Die temperature from register 0xB4, or None when the valid bit is clear."""
    if not value & TEMP_VALID_BIT:
        return None
    return (value & 0xFFFF) * TEMP_SLOPE_C + TEMP_OFFSET_C


def temp_code_from_c(temp_c):
    code = int((temp_c - TEMP_OFFSET_C) / TEMP_SLOPE_C + 0.5)
    if code < 0:
        code = 0
    if code > 0xFFFF:
        code = 0xFFFF
    return TEMP_VALID_BIT | code


def next_pow2(n):
    p = 1
    while p < n:
        p <<= 1
    return p


def nonce_slice(family, chip_count):
    """Nonces per core slice of one chip. Address layouts (ESP-Miner): 2^32 / next_pow2(cores)
    / next_pow2(chips). Offset layout (BM1370): the 25-bit core counter split evenly by the
    0x0C offsets (nonce_offset_word), i.e. the smallest offset step x 2^9."""
    n = max(1, chip_count)
    if family['nonce_layout'] == NONCE_BM1370:
        return (0x10000 // n) << 9
    return NONCE_SPACE // next_pow2(family['cores']) // next_pow2(n)


def hash_counting_number(family, chip_count, fb, ref, pd1, pd2):
    """Register 0x10 (crystal ticks per sweep) for the realised PLL dividers.

    A core advances two nonces per hash clock, so a sweep of N ticks covers 2*N*f/25 nonces:
    N = slice * 25 / f / 2 = slice * ref * pd1 * pd2 / (2 * fb), floored, minus the family's
    guard for the sweep overrun (BM1370: 2 x 134 ticks, ESP-Miner)."""
    n = nonce_slice(family, chip_count) * ref * pd1 * pd2 // (2 * fb) - family['hcn_guard_ticks']
    return max(0, n) & 0xFFFFFFFF


def sweep_nonces(hcn, freq_mhz, overrun_ticks=0):
    """Nonces one core sweeps per batch for register 0x10 = hcn at freq_mhz (see above)."""
    if hcn <= 0:
        return 0.0
    return 2.0 * (hcn + overrun_ticks) * freq_mhz / REF_CLOCK_MHZ


def report_fraction(family, misc_control):
    """Share of a chip's cores whose results are reported (and counted), from 0x18 bits 31..28.

    BM1370: each bit one quarter of the cores (measured); other families ASSUMED alike."""
    sections = family['report_sections']
    if sections is None:
        return 1.0
    total = 0
    on = 0
    for bit, cores in sections:
        total += cores
        if misc_control & (1 << bit):
            on += cores
    return on / float(total) if total else 0.0


def nonce_offset_word(index, chip_count):
    """Register 0x0C for chip `index` of a chain: bit 31 enable, 16-bit offset dividing the
    space evenly (S21 Pro capture: 0x0000, 0x03F1, ... 0xFC10 for 65 chips)."""
    n = max(1, chip_count)
    return 0x80000000 | (((index * 0x10000 + n - 1) // n) & 0xFFFF)   # rounded up, as captured


def ticket_mask_value(difficulty_bits):
    """Register 0x14 for ticket difficulty 2**N: 2**N - 1 with each byte bit-reversed."""
    mask = (1 << difficulty_bits) - 1
    out = 0
    for shift in (24, 16, 8, 0):
        byte = (mask >> shift) & 0xFF
        rev = 0
        for i in range(8):
            if byte & (1 << i):
                rev |= 1 << (7 - i)
        out |= rev << shift
    return out


def ticket_bits_from_mask(value):
    """Inverse of ticket_mask_value (None if the value is not such a mask)."""
    for bits in range(33):
        if ticket_mask_value(bits) == value:
            return bits
    return None


def address_interval(chip_count, rule='pow2'):
    """Address step between chips: 'pow2' (field firmware, 256/next_pow2(n)) or 'even' (256/n)."""
    if chip_count <= 0:
        raise ValueError('chip_count must be positive')
    if rule == 'pow2':
        return max(1, 256 // next_pow2(chip_count))
    if rule == 'even':
        return max(1, 256 // chip_count)
    raise ValueError("address rule must be 'pow2' or 'even', not %r" % (rule,))
