"""Bring-up of a BM13xx chain as the family registry describes it (hal/families.py 'bringup').

The step list is data; this module only knows how to carry out each kind of step on a
ChainDriver (dict dispatch, no chip-type branches). The list splits into three parts that match
the driver's contract: before the chip scan (enumerate), from the scan to the set-address loop
(assign_addresses) and the rest (init). A recording transport (RecordingTransport) lets
`hashpilot chain init --dry-run` show the exact frames without a port.
"""

import time

from hal import codec, families, pll

TEMP_STEP_GAP_S = 0.01       # 0xB0 enable writes about 10 ms apart (factory test firmware)
BAUD_DRAIN_S = 0.06          # let TX drain after the baud write before moving the host UART


def split(family):
    """(before scan, scan..address, after address) parts of the family's step list."""
    steps = family['bringup']
    kinds = [s[0] for s in steps]
    i_scan = kinds.index('scan')
    end = 'address' if 'address' in kinds else 'inactive'
    i_addr = kinds.index(end) if end in kinds else i_scan
    return steps[:i_scan], steps[i_scan + 1:i_addr + 1], steps[i_addr + 1:]


def _bc(drv, step, ctx):
    drv.write(step[1], step[2], None, tag='bc')
    if step[1] == families.REG_VERSION_ROLLING:
        drv.rolling_written(step[2])


def _one(drv, step, ctx):
    drv.write(step[1], step[2], drv.chips[0].addr if drv.chips else 0, tag='one')


def _inactive(drv, step, ctx):
    drv.send(codec.chain_inactive(), 'inactive')


def _address(drv, step, ctx):
    drv.send_addresses()


def _chip(drv, step, ctx):
    for c in drv.chips:
        for reg, value in step[1]:
            drv.write(reg, value, c.addr, tag='chip')


def _ticket(drv, step, ctx):
    drv.ticket_bits = ctx['ticket_bits']
    drv.write(families.REG_TICKET_MASK, families.ticket_mask_value(ctx['ticket_bits']), None,
              tag='ticket')


def _ramp(drv, step, ctx):
    drv.ramp_all(ctx['freq_mhz'])


def _hcn(drv, step, ctx):
    drv.write_hcn([c.addr for c in drv.chips])


def _offsets(drv, step, ctx):
    n = len(drv.chips)
    if n < 2:
        return                       # one chip sweeps the whole space (ESP-Miner writes none)
    for i, c in enumerate(drv.chips):
        word = families.nonce_offset_word(i, n)
        drv.write(families.REG_NONCE_OFFSET, word, c.addr, tag='offsets')
        drv.offsets.append((word & 0xFFFF, c))


def _baud(drv, step, ctx):
    baud = ctx.get('baud')
    if baud is not None and baud != drv.transport.baud:
        drv.set_baud(baud)


def _temp(drv, step, ctx):
    for k, value in enumerate(step[1]):
        if k:
            drv.pause(step[2])
        drv.write(families.REG_TEMP_ENABLE, value, None, tag='temp')


STEP_RUNNERS = {'bc': _bc, 'one': _one, 'inactive': _inactive, 'address': _address,
                'chip': _chip, 'ticket': _ticket, 'ramp': _ramp, 'hcn': _hcn,
                'offsets': _offsets, 'baud': _baud, 'temp': _temp}


def run(drv, steps, ctx):
    """Carry out steps on drv in order."""
    for step in steps:
        STEP_RUNNERS[step[0]](drv, step, ctx)


def pll_frames(family, word, chip_addr=None):
    """The frames of one PLL0 change: the family's prefix writes (BM1397 0x70) then 0x08,
    each repeated as the family's driver does."""
    out = bytearray()
    bc = chip_addr is None
    for reg, value in family['pll_prefix']:
        out += codec.write_reg(reg, value, chip_addr or 0, broadcast=bc)
    for _ in range(family['pll_repeat']):
        out += codec.write_reg(families.REG_PLL0, word, chip_addr or 0, broadcast=bc)
    return bytes(out)


def hcn_for(family, chip_count, freq_mhz):
    s = pll.solve(family, freq_mhz)
    return families.hash_counting_number(family, chip_count, s['fb'], s['ref'], s['pd1'], s['pd2'])


class RecordingTransport:
    """Transport stand-in that records what would be sent (dry runs); nothing ever answers."""

    def __init__(self, baud=115200):
        self.baud = int(baud)
        self.records = []       # (kind, bytes or baud, baud at the time)
        self.t0 = time.monotonic()

    def write(self, data):
        self.records.append(('tx', bytes(data), self.baud))

    def read(self, timeout_s=0.0):
        return b''

    def drain(self):
        pass

    def discard_input(self):
        pass

    def set_baud(self, baud):
        self.records.append(('baud', int(baud), self.baud))
        self.baud = int(baud)

    def byte_time_s(self):
        return 10.0 / self.baud

    def close(self):
        pass

    def get_status(self):
        return {'url': 'recording://', 'baud': self.baud, 'os_baud_ok': True}
