"""EMC2101 fan controller + temperature sensor (Bitaxe: I2C 0x4C; on a Gamma its external diode
is the BM1370's). Register facts from ESP-Miner main/thermal/EMC2101.h/.c (docs/bitaxe-parts.md).
"""

ADDR = 0x4C
REG_INTERNAL_TEMP = 0x00      # signed 8-bit, 1 degC
REG_EXT_TEMP_MSB = 0x01       # external diode, high byte (reading it latches the low byte)
REG_STATUS = 0x02
REG_CONFIG = 0x03             # 0x04: pin 6 is the TACH input (ESP-Miner init)
REG_EXT_TEMP_LSB = 0x10       # bits 7..5 = 1/8 degC
REG_IDEALITY = 0x17
REG_BETA = 0x18
REG_TACH_LSB = 0x46           # reading the low byte latches the high byte
REG_TACH_MSB = 0x47
REG_FAN_CONFIG = 0x4A         # 0x23: driver on, direct setting (0x4C), 2 edges, ~22.5 kHz PWM
REG_FAN_SETTING = 0x4C        # 6-bit duty, 0..63 = 0..100 %
REG_PRODUCT_ID = 0xFD         # 0x16 (EMC2101) or 0x28 (EMC2101-R)

PRODUCT_IDS = (0x16, 0x28)
CONFIG_TACH = 0x04
FAN_CONFIG_DIRECT = 0x23
FAN_SETTING_MAX = 63
TACH_NUMERATOR = 5400000      # rpm = 5 400 000 / tach count
TACH_STOPPED = 0xFFFF         # count when no tach edge arrives (ESP-Miner reads it as 82 rpm -> 0)
EXT_OPEN = 0x3F8              # 11-bit diode codes: open circuit, short
EXT_SHORT = 0x3FF
GAMMA_IDEALITY = 0x24         # ESP-Miner device_config for Gamma boards 600..603
GAMMA_BETA = 0x00


def duty_to_setting(pct):
    """0..100 % -> 0..63 register value (rounded; ESP-Miner truncates 63 * fraction)."""
    pct = max(0.0, min(100.0, float(pct)))
    return int(round(pct * FAN_SETTING_MAX / 100.0))


def setting_to_duty(value):
    return (value & 0x3F) * 100.0 / FAN_SETTING_MAX


def tach_to_rpm(count):
    if count == 0 or count >= TACH_STOPPED:
        return 0
    rpm = TACH_NUMERATOR // count
    return 0 if rpm <= 82 else rpm


def rpm_to_tach(rpm):
    if rpm < 83:
        return TACH_STOPPED
    return max(1, min(TACH_STOPPED - 1, int(round(TACH_NUMERATOR / rpm))))


def ext_to_c(msb, lsb):
    """Diode bytes -> degC, or None for the open/short fault codes."""
    code = ((msb << 8) | lsb) >> 5
    if code in (EXT_OPEN, EXT_SHORT):
        return None
    if code & 0x400:
        code -= 0x800
    return code / 8.0


def c_to_ext(temp_c):
    """degC -> (msb, lsb) of the 11-bit diode reading (None -> the open-circuit code)."""
    if temp_c is None:
        code = EXT_OPEN
    else:
        code = int(round(max(-64.0, min(126.875, temp_c)) * 8)) & 0x7FF
    raw = code << 5
    return (raw >> 8) & 0xFF, raw & 0xE0


class EMC2101:
    def __init__(self, bus, addr=ADDR):
        self.bus = bus
        self.addr = addr

    def _read(self, reg):
        return self.bus.readfrom_mem(self.addr, reg, 1)[0]

    def _write(self, reg, value):
        self.bus.writeto_mem(self.addr, reg, bytes([value & 0xFF]))

    def init(self, ideality=GAMMA_IDEALITY, beta=GAMMA_BETA):
        """Check the part, tach input, direct fan setting, diode ideality/beta (Gamma values)."""
        pid = self._read(REG_PRODUCT_ID)
        if pid not in PRODUCT_IDS:
            raise OSError('EMC2101 at 0x%02X: product id 0x%02X' % (self.addr, pid))
        self._write(REG_CONFIG, CONFIG_TACH)
        self._write(REG_FAN_CONFIG, FAN_CONFIG_DIRECT)
        if ideality is not None:
            self._write(REG_IDEALITY, ideality)
            self._write(REG_BETA, beta)
        return pid

    def set_duty_pct(self, pct):
        value = duty_to_setting(pct)
        self._write(REG_FAN_SETTING, value)
        return setting_to_duty(value)

    def duty_pct(self):
        return setting_to_duty(self._read(REG_FAN_SETTING))

    def rpm(self):
        lsb = self._read(REG_TACH_LSB)      # low byte first: it latches the high byte
        msb = self._read(REG_TACH_MSB)
        return tach_to_rpm((msb << 8) | lsb)

    def external_c(self):
        msb = self._read(REG_EXT_TEMP_MSB)  # high byte first: it latches the low byte
        lsb = self._read(REG_EXT_TEMP_LSB)
        return ext_to_c(msb, lsb)

    def internal_c(self):
        v = self._read(REG_INTERNAL_TEMP)
        return float(v - 256 if v & 0x80 else v)
