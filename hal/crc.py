"""CRC5 and CRC16/CCITT-FALSE for BM13xx frames (pure; runs on MicroPython)."""


def _make_crc5_table():
    # Table of the CRC5 register after shifting in one byte, indexed by (crc << 8 | byte):
    # 32 * 256 entries, built once, so a frame costs one lookup per byte.
    table = bytearray(32 * 256)
    for crc0 in range(32):
        for byte in range(256):
            crc = crc0
            for i in range(7, -1, -1):
                top = (crc >> 4) & 1
                crc = (crc << 1) & 0x1F
                if top ^ ((byte >> i) & 1):
                    crc ^= 0x05
            table[(crc0 << 8) | byte] = crc
    return table


_CRC5_TABLE = _make_crc5_table()


def crc5(data, nbits=None):
    """CRC5 (x^5+x^2+1, init 0x1F, MSB first, no reflection, no xor-out).

    With nbits, only the first nbits bits of data are used (responses carry the CRC over
    their body plus the three type bits of the last byte).
    """
    if nbits is None:
        crc = 0x1F
        table = _CRC5_TABLE
        for byte in data:
            crc = table[(crc << 8) | byte]
        return crc
    crc = 0x1F
    whole = nbits >> 3
    table = _CRC5_TABLE
    for k in range(whole):
        crc = table[(crc << 8) | data[k]]
    rest = nbits & 7
    if rest:
        byte = data[whole]
        for i in range(7, 7 - rest, -1):
            top = (crc >> 4) & 1
            crc = (crc << 1) & 0x1F
            if top ^ ((byte >> i) & 1):
                crc ^= 0x05
    return crc


def _make_crc16_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return table


_CRC16_TABLE = _make_crc16_table()


def crc16_ccitt_false(data):
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first ("123456789" -> 0x29B1)."""
    crc = 0xFFFF
    table = _CRC16_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc
