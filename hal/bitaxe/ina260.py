"""INA260 power monitor (older Bitaxes: I2C 0x40). Big-endian 16-bit registers; current
1.25 mA/bit (signed), bus voltage 1.25 mV/bit, power 10 mW/bit. Facts: ESP-Miner
main/power/INA260.h/.c, TI INA260 datasheet.
"""

ADDR = 0x40
REG_CONFIG = 0x00
REG_CURRENT = 0x01
REG_BUS_VOLTAGE = 0x02
REG_POWER = 0x03
REG_MFG_ID = 0xFE            # 0x5449 ("TI")
MFG_ID = 0x5449
CURRENT_LSB_MA = 1.25
VOLTAGE_LSB_MV = 1.25
POWER_LSB_MW = 10.0


def _be(data):
    return (data[0] << 8) | data[1]


class INA260:
    def __init__(self, bus, addr=ADDR):
        self.bus = bus
        self.addr = addr

    def _reg(self, reg):
        return _be(self.bus.readfrom_mem(self.addr, reg, 2))

    def init(self):
        mid = self._reg(REG_MFG_ID)
        if mid != MFG_ID:
            raise OSError('INA260 at 0x%02X: manufacturer id 0x%04X' % (self.addr, mid))
        return mid

    def current_ma(self):
        v = self._reg(REG_CURRENT)
        if v & 0x8000:
            v -= 0x10000
        return v * CURRENT_LSB_MA

    def bus_mv(self):
        return self._reg(REG_BUS_VOLTAGE) * VOLTAGE_LSB_MV

    def power_w(self):
        return self._reg(REG_POWER) * POWER_LSB_MW / 1000.0
