"""DS4432U current DAC trimming the TPS40305 feedback (older Bitaxes: I2C 0x48, OUT0 at 0xF8).
Transfer function and resistor values from ESP-Miner main/power/DS4432U.c (docs/bitaxe-parts.md):
code = ceil(|(VFB/RB - (V - VFB)/RA) / IFS * 127|), bit 7 set (sink) below the nominal 1.451 V.
"""

ADDR = 0x48
REG_OUT0 = 0xF8
REG_OUT1 = 0xF9
VFB_V = 0.6              # TPS40305 feedback reference
RA_OHM = 4750.0          # R14
RB_OHM = 3320.0          # R15
IFS_A = 0.000098921      # full-scale current: (Vrfs / Rfs) * 127 / 16, Vrfs 0.997 V, Rfs 80 kOhm
VNOM_V = 1.451           # output with the DAC at 0
VMIN_V = 0.046
VMAX_V = 2.39


def _ceil(x):
    n = int(x)
    return n if n == x else n + 1


def code_for_v(v):
    if not VMIN_V <= v <= VMAX_V:
        raise ValueError('DS4432U: %.3f V outside %.3f..%.3f V' % (v, VMIN_V, VMAX_V))
    change = abs(((VFB_V / RB_OHM) - ((v - VFB_V) / RA_OHM)) / IFS_A * 127)
    code = min(0x7F, _ceil(change))
    if v < VNOM_V:
        code |= 0x80
    return code


def v_for_code(code):
    """Inverse of code_for_v (the output the regulator settles at for a DAC code)."""
    mag = (code & 0x7F) * IFS_A / 127.0
    # VFB/RB - (V - VFB)/RA = +mag (sink, below nominal) or -mag (source, above)
    i = mag if code & 0x80 else -mag
    return VFB_V + RA_OHM * (VFB_V / RB_OHM - i)


class DS4432U:
    def __init__(self, bus, addr=ADDR):
        self.bus = bus
        self.addr = addr

    def set_mv(self, mv):
        code = code_for_v(mv / 1000.0)
        self.bus.writeto_mem(self.addr, REG_OUT0, bytes([code]))
        return int(round(v_for_code(code) * 1000))

    def mv(self):
        return int(round(v_for_code(self.bus.readfrom_mem(self.addr, REG_OUT0, 1)[0]) * 1000))
