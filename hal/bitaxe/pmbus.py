"""PMBus number formats (LINEAR11, ULINEAR16 with VOUT_MODE) and SMBus word access (little-endian).
Facts: ESP-Miner main/power/TPS546.c slinear11/ulinear16 helpers, PMBus spec part II sec. 7-8.
"""


def linear11_to_float(word):
    """5-bit two's-complement exponent (bits 15..11), 11-bit two's-complement mantissa."""
    exp = (word >> 11) & 0x1F
    if exp & 0x10:
        exp -= 0x20
    mant = word & 0x7FF
    if mant & 0x400:
        mant -= 0x800
    return mant * (2.0 ** exp)


def float_to_linear11(value):
    """Smallest exponent whose mantissa fits 11 signed bits (most precision)."""
    for exp in range(-16, 16):
        mant = int(round(value / (2.0 ** exp)))
        if -1024 <= mant <= 1023:
            return ((exp & 0x1F) << 11) | (mant & 0x7FF)
    raise ValueError('%r does not fit LINEAR11' % (value,))


def vout_exponent(mode):
    """VOUT_MODE (linear mode) -> exponent: bits 4..0, two's complement."""
    exp = mode & 0x1F
    return exp - 0x20 if exp & 0x10 else exp


def ulinear16_to_float(word, mode):
    return word * (2.0 ** vout_exponent(mode))


def float_to_ulinear16(value, mode):
    word = int(round(value / (2.0 ** vout_exponent(mode))))
    if not 0 <= word <= 0xFFFF:
        raise ValueError('%r V does not fit ULINEAR16 with VOUT_MODE 0x%02X' % (value, mode))
    return word


def word_le(data):
    return data[0] | (data[1] << 8)


def le_word(value):
    return bytes([value & 0xFF, (value >> 8) & 0xFF])
