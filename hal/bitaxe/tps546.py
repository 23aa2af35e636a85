"""TPS546 PMBus buck regulator: the Gamma's core voltage (I2C 0x24). Sets VOUT with limits,
reads back VOUT, IOUT, VIN, temperature, status. Facts: ESP-Miner main/power/TPS546.h/.c,
main/power/vcore.c (Gamma: VOUT 1..2 V, 1 voltage domain), main/pmbus_commands.h.
"""

from hal.bitaxe import pmbus

ADDR = 0x24
OPERATION = 0x01
CLEAR_FAULTS = 0x03
VOUT_MODE = 0x20
VOUT_COMMAND = 0x21
VOUT_MAX = 0x24
VOUT_MIN = 0x2B
STATUS_WORD = 0x79
READ_VIN = 0x88
READ_VOUT = 0x8B
READ_IOUT = 0x8C
READ_TEMPERATURE_1 = 0x8D

OPERATION_OFF = 0x00
OPERATION_ON = 0x80
STATUS_OFF = 0x0040
STATUS_VOUT_OV = 0x0020
STATUS_IOUT_OC = 0x0010
STATUS_VIN_UV = 0x0008
STATUS_TEMP = 0x0004
STATUS_FAULTS = STATUS_VOUT_OV | STATUS_IOUT_OC | STATUS_VIN_UV | STATUS_TEMP
GAMMA_VOUT_MIN_V = 1.0       # vcore.c defaults for MAX/ULTRA/SUPRA/GAMMA
GAMMA_VOUT_MAX_V = 2.0


class TPS546:
    def __init__(self, bus, addr=ADDR, vout_min_v=GAMMA_VOUT_MIN_V, vout_max_v=GAMMA_VOUT_MAX_V):
        self.bus = bus
        self.addr = addr
        self.vout_min_v = vout_min_v
        self.vout_max_v = vout_max_v
        self.mode = None

    def _word(self, cmd):
        return pmbus.word_le(self.bus.readfrom_mem(self.addr, cmd, 2))

    def _set_word(self, cmd, value):
        self.bus.writeto_mem(self.addr, cmd, pmbus.le_word(value))

    def _byte(self, cmd):
        return self.bus.readfrom_mem(self.addr, cmd, 1)[0]

    def init(self):
        """Read VOUT_MODE, clear latched faults, program the VOUT window."""
        self.mode = self._byte(VOUT_MODE)
        self.bus.writeto(self.addr, bytes([CLEAR_FAULTS]))
        self._set_word(VOUT_MAX, pmbus.float_to_ulinear16(self.vout_max_v, self.mode))
        self._set_word(VOUT_MIN, pmbus.float_to_ulinear16(self.vout_min_v, self.mode))
        return self.mode

    def _mode(self):
        if self.mode is None:
            self.mode = self._byte(VOUT_MODE)
        return self.mode

    def set_vout_mv(self, mv):
        """Program VOUT_COMMAND (limits are checked by the caller's HardwareLimits first; this
        window is the regulator's own)."""
        v = mv / 1000.0
        if not self.vout_min_v <= v <= self.vout_max_v:
            raise ValueError('TPS546: %d mV outside %.3f..%.3f V' % (mv, self.vout_min_v,
                                                                    self.vout_max_v))
        word = pmbus.float_to_ulinear16(v, self._mode())
        self._set_word(VOUT_COMMAND, word)
        return int(round(pmbus.ulinear16_to_float(word, self._mode()) * 1000))

    def vout_command_mv(self):
        return int(round(pmbus.ulinear16_to_float(self._word(VOUT_COMMAND), self._mode()) * 1000))

    def set_on(self, on):
        self.bus.writeto_mem(self.addr, OPERATION, bytes([OPERATION_ON if on else OPERATION_OFF]))

    def is_on(self):
        return self._byte(OPERATION) == OPERATION_ON

    def vout_mv(self):
        return int(round(pmbus.ulinear16_to_float(self._word(READ_VOUT), self._mode()) * 1000))

    def iout_a(self):
        return pmbus.linear11_to_float(self._word(READ_IOUT))

    def vin_v(self):
        return pmbus.linear11_to_float(self._word(READ_VIN))

    def temp_c(self):
        return pmbus.linear11_to_float(self._word(READ_TEMPERATURE_1))

    def status(self):
        return self._word(STATUS_WORD)
