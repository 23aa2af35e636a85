"""Registry of BM13xx chip families: protocol facts as data, so no code branches on chip type.

Pure data and small helpers; runs on MicroPython. Every fact here comes from
shared/spec/bm13xx-protocol.md; the few that the spec leaves open are marked ASSUMED and
documented in docs/protocol-notes.md.
"""

# Register addresses shared by the whole family line.
REG_CHIP_ID = 0x00
REG_PLL0 = 0x08
REG_NONCE_OFFSET = 0x0C
REG_HASH_COUNTING = 0x10
REG_TICKET_MASK = 0x14
REG_MISC_CONTROL = 0x18
REG_UART_BAUD = 0x28
REG_CORE_MAILBOX = 0x3C
REG_ERROR_COUNT = 0x4C
REG_ANALOG_MUX = 0x54
REG_DOMAIN_HASH0 = 0x88
REG_TOTAL_HASH = 0x8C
REG_VERSION_ROLLING = 0xA4
REG_SOFT_RESET = 0xA8
REG_TEMP_ENABLE = 0xB0
REG_TEMP_READ = 0xB4

VERSION_ROLLING_ON = 0x9000FFFF
RESET_BAUD = 115200  # chips reset to 25 MHz / (8 * 27) = 115 740 baud; a host at 115 200 works
REF_CLOCK_MHZ = 25.0

# Die temperature code (BM1368 0xB4): T = code * 0.171342 - 299.5144, bit 31 = valid.
TEMP_SLOPE_C = 0.171342
TEMP_OFFSET_C = -299.5144
TEMP_VALID_BIT = 0x80000000

# Nonce layouts (see decode rules in codec.nonce_fields).
NONCE_BM1366 = 'bm1366'   # job = header & 0xF8, core = header & 7, chip addr in nonce bits 24..18
NONCE_BM1368 = 'bm1368'   # job = (header & 0xF0) >> 1, core = header & 0x0F, chip addr as BM1366 (ASSUMED)
NONCE_BM1370 = 'bm1370'   # job/core as BM1368, no chip address (chips told apart by nonce offset)
NONCE_BM1397 = 'bm1397'   # job = header, chip addr in nonce bits 24..18 as BM1366 (ASSUMED)

FAMILIES = {
    'BM1397': {
        'chip_id': 0x1397,
        'pll_fb_min': 60, 'pll_fb_max': 200, 'pll_pd_minus_one': False,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'fast_bauds': {},            # baud switch on BM1397 uses 0x18; not supported here
        'version_rolling': False,    # responses stay 9 bytes
        'nonce_layout': NONCE_BM1397,
        'die_temp': False,           # temperature comes from I2C sensors through 0x1C
        'hcn_at_nominal': 0x00001EB5,
    },
    'BM1362': {
        'chip_id': 0x1362,
        'pll_fb_min': 144, 'pll_fb_max': 235, 'pll_pd_minus_one': True,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'fast_bauds': {3125000: 0x11300000},
        'version_rolling': True,
        'nonce_layout': NONCE_BM1366,
        'die_temp': True,            # ASSUMED: 0xB0/0xB4 as BM1368 (simulator exposes it)
        'hcn_at_nominal': 0x00001EB5,
    },
    'BM1366': {
        'chip_id': 0x1366,
        'pll_fb_min': 144, 'pll_fb_max': 235, 'pll_pd_minus_one': True,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'fast_bauds': {1041667: 0x11300200, 3125000: 0x11300000},  # 3.125M value ASSUMED as BM1362
        'version_rolling': True,
        'nonce_layout': NONCE_BM1366,
        'die_temp': True,            # ASSUMED, as BM1362
        'hcn_at_nominal': 0x00001EB5,
    },
    'BM1368': {
        'chip_id': 0x1368,
        'pll_fb_min': 144, 'pll_fb_max': 235, 'pll_pd_minus_one': True,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'fast_bauds': {1041667: 0x11300200, 3125000: 0x11300000},  # 3.125M value ASSUMED as BM1362
        'version_rolling': True,
        'nonce_layout': NONCE_BM1368,
        'die_temp': True,
        'hcn_at_nominal': 0x00001EB5,
    },
    'BM1370': {
        'chip_id': 0x1370,
        'pll_fb_min': 160, 'pll_fb_max': 239, 'pll_pd_minus_one': True,
        'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
        'fast_bauds': {1041667: 0x11300200, 3125000: 0x01300000},
        'version_rolling': True,
        'nonce_layout': NONCE_BM1370,
        'die_temp': True,            # ASSUMED, as BM1368
        'hcn_at_nominal': 0x00001EB5,
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


def hash_counting_number(family, freq_mhz, f_nom_mhz):
    """Value for register 0x10 at a frequency (scales with frequency; see protocol notes)."""
    return int(family['hcn_at_nominal'] * freq_mhz / f_nom_mhz + 0.5) & 0xFFFFFFFF


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
        p = 1
        while p < chip_count:
            p <<= 1
        return max(1, 256 // p)
    if rule == 'even':
        return max(1, 256 // chip_count)
    raise ValueError("address rule must be 'pow2' or 'even', not %r" % (rule,))
