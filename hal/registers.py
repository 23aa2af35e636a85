"""BM13xx register names and field decoders (pure; runs on MicroPython).

For the protocol analyser (`hashpilot frame decode`) and the dry run (`hashpilot chain init
--dry-run`): a register write or answer becomes a name and its fields. Layouts and sources are
in docs/protocol-notes.md (mujina REFERENCE.md register map, ESP-Miner, skot/BM1397).
"""

from hal import families, pll

NAMES = {
    0x00: 'CHIP_ID', 0x04: 'HASH_RATE', 0x08: 'PLL0', 0x0C: 'CHIP_NONCE_OFFSET',
    0x10: 'HASH_COUNTING_NUMBER', 0x14: 'TICKET_MASK', 0x18: 'MISC_CONTROL',
    0x1C: 'I2C_CONTROL', 0x20: 'ORDERED_CLOCK_ENABLE', 0x28: 'UART_BAUD', 0x2C: 'UART_RELAY',
    0x3C: 'CORE_MAILBOX', 0x4C: 'ERROR_COUNT', 0x54: 'ANALOG_MUX', 0x58: 'IO_DRIVER_STRENGTH',
    0x68: 'RING_OSC_PAD_DISABLE', 0x70: 'PLL0_DIVIDER', 0x80: 'CLOCK_ORDER_CONTROL0',
    0x84: 'CLOCK_ORDER_CONTROL1', 0x88: 'DOMAIN0_COUNT', 0x89: 'DOMAIN1_COUNT',
    0x8A: 'DOMAIN2_COUNT', 0x8B: 'DOMAIN3_COUNT', 0x8C: 'TOTAL_COUNT',
    0xA4: 'MIDSTATE_CONFIG', 0xA8: 'SOFT_RESET_CONTROL', 0xB0: 'TEMP_SENSOR_CTRL',
    0xB4: 'TEMP_SENSOR_RESULT', 0xB8: 'ADC_CONFIG', 0xB9: 'ADC_CTRL1', 0xBD: 'ADC_RESULT',
}

CORE_REGS = {0x00: 'clock_delay', 0x02: 'core_enable', 0x05: 'clock_select',
             0x0B: 'clock_select', 0x0D: 'nonce_bin_overflow_control'}
ANALOG_SELECT = {2: 'temperature diode to the analog pin', 3: 'default (no diode readout)'}


def _bits(v, hi, lo):
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def _chip_id(v, fam):
    f = families.by_chip_id(v >> 16)
    return {'chip_id': '%04X' % (v >> 16), 'family': f['name'] if f else None,
            'core_num_byte': _bits(v, 15, 8), 'chip_addr': v & 0xFF}


def _pll(v, fam):
    fam = fam or families.get('BM1368')
    fb, ref, post = _bits(v, 27, 16), _bits(v, 13, 8), v & 0xFF
    d = {'flag': '%X' % (v >> 28), 'vco_high': bool(v & 0x10000000), 'fb': fb, 'ref': ref}
    f = pll.decode(fam, v)
    if fam['pll_pd_minus_one']:
        d['pd1'], d['pd2'] = _bits(post, 7, 4) + 1, _bits(post, 3, 0) + 1
    else:
        d['pd1'], d['pd2'] = _bits(post, 7, 4), _bits(post, 3, 0)
    d['freq_mhz'] = round(f, 4) if f is not None else None
    d['vco_mhz'] = round(families.REF_CLOCK_MHZ * fb / ref, 3) if ref else None
    return d


def _offset(v, fam):
    return {'enable': bool(v & 0x80000000), 'offset': '%04X' % (v & 0xFFFF),
            'sweep_start': (v & 0xFFFF) << 9}


def _hcn(v, fam):
    return {'crystal_ticks': v, 'sweep_s': round(v / (families.REF_CLOCK_MHZ * 1e6), 9),
            'halts_hashing': v == 0}


def _ticket(v, fam):
    bits = families.ticket_bits_from_mask(v)
    return {'zero_bits': bits, 'difficulty': (1 << bits) if bits is not None else None}


def _misc(v, fam):
    if fam is not None and fam['report_sections'] is None:      # BM1397: baud divider here
        return {'baud': families.baud_of_word(fam, v), 'bt8d_low': _bits(v, 12, 8)}
    return {'report_enables': [b for b in (28, 29, 30, 31) if v & (1 << b)],
            'unexplained_27_16': '%03X' % _bits(v, 27, 16), 'low': '%04X' % (v & 0xFFFF)}


def _baud(v, fam):
    if fam is not None and fam['baud_reg'] != families.REG_UART_BAUD:
        # BM1397: 0x28 is a fast-UART configuration; its baud divider lives in 0x18
        return {'fast_uart_config': '%08X' % v}
    div = _bits(v, 15, 8)
    return {'divider': div, 'baud': families.baud_from_divider(div), 'bit28': bool(v & 1 << 28)}


def _relay(v, fam):
    return {'gap_count': v >> 16, 'rsp_relay': bool(v & 2), 'cmd_relay': bool(v & 1)}


def _mailbox(v, fam):
    reg = _bits(v, 12, 8)
    return {'all_cores': bool(v & 0x80000000), 'core_id': _bits(v, 23, 16),
            'write': bool(v & 0x8000), 'core_reg': reg, 'core_reg_name': CORE_REGS.get(reg),
            'value': '%02X' % (v & 0xFF)}


def _mux(v, fam):
    return {'select': v & 0xF, 'meaning': ANALOG_SELECT.get(v & 0xF)}


def _drive(v, fam):
    return {'ro_ds': _bits(v, 19, 16), 'clko_ds': _bits(v, 15, 12), 'nrsto_ds': _bits(v, 11, 8),
            'bo_ds': _bits(v, 7, 4), 'co_ds': _bits(v, 3, 0), 'high_bits': '%03X' % (v >> 20)}


def _midstate(v, fam):
    return {'auto': bool(v & 0x80000000), 'fix': bool(v & 0x40000000),
            'gen_code': _bits(v, 29, 28), 'version_mask': '%04X' % (v & 0xFFFF),
            'rolls': bool(v & 0x80000000)}


def _soft_reset(v, fam):
    return {'power_on_bits_18_16': _bits(v, 18, 16), 'bringup_bits_8_4': _bits(v, 8, 4),
            'core_srst_3_0': _bits(v, 3, 0)}


def _temp_ctrl(v, fam):
    return {'power_down': bool(v & 0x80000000), 'run': bool(v & 0x10000000),
            'cload': bool(v & 0x01000000), 'srst_release': bool(v & 0x00020000)}


def _temp(v, fam):
    return {'valid': bool(v & families.TEMP_VALID_BIT), 'code': v & 0xFFFF,
            'temp_c': families.temp_c_from_code(v)}


def _count(v, fam):
    return {'count': v, 'hashes': v * 4294967296}


def _rate(v, fam):
    return {'valid': not v & 0x80000000, 'hash_rate_hs': (v & 0x7FFFFFFF) << 24}


DECODERS = {0x00: _chip_id, 0x04: _rate, 0x08: _pll, 0x0C: _offset, 0x10: _hcn, 0x14: _ticket,
            0x18: _misc, 0x28: _baud, 0x2C: _relay, 0x3C: _mailbox, 0x4C: _count, 0x54: _mux,
            0x58: _drive, 0x88: _count, 0x89: _count, 0x8A: _count, 0x8B: _count, 0x8C: _count,
            0xA4: _midstate, 0xA8: _soft_reset, 0xB0: _temp_ctrl, 0xB4: _temp}


def name(reg, family=None):
    """Register name; a family's own meaning first (BM1397 0x68 is its PLL3)."""
    own = family.get('reg_names', {}).get(reg) if family is not None else None
    return own or NAMES.get(reg, 'REG_%02X' % reg)


def fields(reg, value, family=None):
    """{field: value} of a register value (empty when the layout is unknown). BM1397 registers
    that mean something else there (0x18 baud, 0x68 PLL3) follow the family when given."""
    fn = DECODERS.get(reg)
    if fn is None:
        return {}
    return fn(value & 0xFFFFFFFF, family)
