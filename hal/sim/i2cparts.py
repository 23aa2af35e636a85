"""Simulated I2C parts of a Bitaxe-class board (EMC2101, TPS546, INA260, DS4432U), register for
register as docs/bitaxe-parts.md describes them, wired to the simulated rig's fan, rail, enable,
sensors and chip power. Reached through the board controller's I2C_XFER command
(hal/sim/boardctl.py), so the agent's real drivers (hal/bitaxe/) run against them.
"""

from hal.bitaxe import ds4432u, emc2101, ina260, pmbus, tps546

VOUT_MODE = 0x17       # ULINEAR16 exponent -9 (1.95 mV/bit): ASSUMED, the TPS546D24A's default
VIN_V = 5.0            # Gamma: 5 V barrel input (ESP-Miner nominal_voltage 5)


class Part:
    """Register file: read(reg, n) -> bytes, write(reg, data); unknown registers read 0."""

    def __init__(self, rig, rng):
        self.rig = rig
        self.rng = rng
        self.regs = {}
        self.reads = 0
        self.writes = 0

    def read(self, reg, n):
        self.reads += 1
        return bytes([self.regs.get(reg + i, 0) & 0xFF for i in range(n)])

    def write(self, reg, data):
        self.writes += 1
        for i, b in enumerate(data):
            self.regs[reg + i] = b

    def die_c(self):
        temps = self.rig.temps[0]
        return max(temps) if temps else self.rig.ambient_c


class SimEMC2101(Part):
    """Fan 0 (duty register 0x4C, tach 0x46/0x47), board air (internal), ASIC diode (external)."""

    def __init__(self, rig, rng):
        Part.__init__(self, rig, rng)
        self.regs.update({emc2101.REG_PRODUCT_ID: 0x16, emc2101.REG_FAN_CONFIG: 0x20,
                          emc2101.REG_IDEALITY: 0x12, emc2101.REG_BETA: 0x08})
        self._tach_msb = 0xFF
        self._ext_lsb = 0

    def _ext_c(self):
        key = (0, 1)
        if key in self.rig.sensor_fault:        # sensor-absent / sensor-stuck on the diode
            return self.rig.sensor_fault[key]
        if not self.rig.chains[0].chips[0].diode_routed():
            return None     # open diode: the BM1370 routes its diode out only with 0x54 = 2
        return self.die_c() + self.rng.gauss(0.0, 0.125)

    def read(self, reg, n):
        if n != 1:
            return Part.read(self, reg, n)
        self.reads += 1
        rig = self.rig
        if reg == emc2101.REG_FAN_SETTING:
            return bytes([emc2101.duty_to_setting(rig.fan_duty[0] * 100.0)])
        if reg == emc2101.REG_TACH_LSB:
            rpm = rig.fan_rpm[0] * (1.0 + self.rng.uniform(-0.01, 0.01))
            count = emc2101.rpm_to_tach(rpm)
            self._tach_msb = count >> 8
            return bytes([count & 0xFF])
        if reg == emc2101.REG_TACH_MSB:
            return bytes([self._tach_msb])
        if reg == emc2101.REG_EXT_TEMP_MSB:
            msb, self._ext_lsb = emc2101.c_to_ext(self._ext_c())
            return bytes([msb])
        if reg == emc2101.REG_EXT_TEMP_LSB:
            return bytes([self._ext_lsb])
        if reg == emc2101.REG_INTERNAL_TEMP:
            t = rig.sensor_c(0, 0)
            return bytes([0 if t is None else int(round(max(-64, min(127, t)))) & 0xFF])
        return Part.read(self, reg, n)

    def write(self, reg, data):
        Part.write(self, reg, data)
        if reg == emc2101.REG_FAN_SETTING and data:
            self.rig.set_fan_duty(0, emc2101.setting_to_duty(data[0]) / 100.0)


class SimTPS546(Part):
    """Board 0's core rail: VOUT_COMMAND sets it, OPERATION switches it, READ_* report it."""

    def __init__(self, rig, rng):
        Part.__init__(self, rig, rng)
        self.vout_min_v = 0.5
        self.vout_max_v = 2.0
        self.minmax_hits = 0

    def _vout_v(self):
        return self.rig.board_mv[0] / 1000.0

    def read(self, reg, n):
        rig = self.rig
        on = rig.board_on(0)
        if reg == tps546.VOUT_MODE and n == 1:
            return bytes([VOUT_MODE])
        if reg == tps546.OPERATION and n == 1:
            return bytes([tps546.OPERATION_ON if rig.enabled[0] else tps546.OPERATION_OFF])
        if n != 2:
            return Part.read(self, reg, n)
        self.reads += 1
        word = None
        if reg == tps546.VOUT_COMMAND:
            word = pmbus.float_to_ulinear16(self._vout_v(), VOUT_MODE)
        elif reg == tps546.VOUT_MAX:
            word = pmbus.float_to_ulinear16(self.vout_max_v, VOUT_MODE)
        elif reg == tps546.VOUT_MIN:
            word = pmbus.float_to_ulinear16(self.vout_min_v, VOUT_MODE)
        elif reg == tps546.READ_VOUT:
            v = self._vout_v() * (1.0 + self.rng.gauss(0.0, 0.001)) if on else 0.0
            word = pmbus.float_to_ulinear16(max(0.0, v), VOUT_MODE)
        elif reg == tps546.READ_IOUT:
            amps = sum(rig.powers[0]) / self._vout_v() if on and self._vout_v() > 0 else 0.0
            word = pmbus.float_to_linear11(amps * (1.0 + self.rng.uniform(-0.01, 0.01)))
        elif reg == tps546.READ_VIN:
            word = pmbus.float_to_linear11(VIN_V * (1.0 + self.rng.gauss(0.0, 0.002)))
        elif reg == tps546.READ_TEMPERATURE_1:
            word = pmbus.float_to_linear11(round(rig.ambient_c + 0.6 * (self.die_c() - rig.ambient_c)))
        elif reg == tps546.STATUS_WORD:
            word = 0 if rig.enabled[0] else tps546.STATUS_OFF
        if word is None:
            return Part.read(self, reg, n)
        return pmbus.le_word(word)

    def write(self, reg, data):
        Part.write(self, reg, data)
        rig = self.rig
        if reg == tps546.OPERATION and len(data) == 1:
            rig.set_enabled(0, data[0] == tps546.OPERATION_ON)
        elif reg in (tps546.VOUT_COMMAND, tps546.VOUT_MAX, tps546.VOUT_MIN) and len(data) == 2:
            v = pmbus.ulinear16_to_float(pmbus.word_le(data), VOUT_MODE)
            if reg == tps546.VOUT_MAX:
                self.vout_max_v = v
            elif reg == tps546.VOUT_MIN:
                self.vout_min_v = v
            else:
                if not self.vout_min_v <= v <= self.vout_max_v:   # the part clamps and flags
                    self.minmax_hits += 1
                    v = max(self.vout_min_v, min(self.vout_max_v, v))
                rig.set_board_mv(0, int(round(v * 1000)))


class SimINA260(Part):
    """Input power monitor of the older boards: the rig's wall power at 5 V."""

    def read(self, reg, n):
        if n != 2:
            return Part.read(self, reg, n)
        self.reads += 1
        w = self.rig.wall_w() * (1.0 + self.rng.uniform(-0.01, 0.01))
        value = {ina260.REG_MFG_ID: ina260.MFG_ID,
                 ina260.REG_BUS_VOLTAGE: int(round(VIN_V * 1000 / ina260.VOLTAGE_LSB_MV)),
                 ina260.REG_CURRENT: int(round(w / VIN_V * 1000 / ina260.CURRENT_LSB_MA)),
                 ina260.REG_POWER: int(round(w * 1000 / ina260.POWER_LSB_MW))}.get(reg)
        if value is None:
            return Part.read(self, reg, n)
        value = max(0, min(0xFFFF, value))
        return bytes([value >> 8, value & 0xFF])


class SimDS4432U(Part):
    """Older boards' core voltage: the DAC code on OUT0 moves board 0's rail."""

    def write(self, reg, data):
        Part.write(self, reg, data)
        if reg == ds4432u.REG_OUT0 and data:
            self.rig.set_board_mv(0, int(round(ds4432u.v_for_code(data[0]) * 1000)))


PARTS = {'EMC2101': (emc2101.ADDR, SimEMC2101), 'TPS546': (tps546.ADDR, SimTPS546),
         'INA260': (ina260.ADDR, SimINA260), 'DS4432U': (ds4432u.ADDR, SimDS4432U)}


def build_bus(rig, rng, names):
    """{i2c address: part} for the model's parts list."""
    bus = {}
    for name in names:
        addr, cls = PARTS[name]
        bus[addr] = cls(rig, rng)
    return bus


def transfer(bus, addr, nread, wbytes):
    """One I2C transaction: (ok, read bytes). ok False = NACK (no device at addr)."""
    part = bus.get(addr)
    if part is None:
        return False, b''
    if len(wbytes) > 1:
        part.write(wbytes[0], bytes(wbytes[1:]))
    elif len(wbytes) == 1 and not nread:
        part.write(wbytes[0], b'')         # SMBus send byte (e.g. PMBus CLEAR_FAULTS)
    if nread:
        return True, part.read(wbytes[0] if wbytes else 0, nread)
    return True, b''
