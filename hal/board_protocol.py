"""Byte protocol of the board controller (fans, board voltage/enable, board sensors, PSU power).

The simulator's board controller speaks it over its own pty; a real port would put a PIC/MCU or
a small daemon behind the same frames. Pure; runs on MicroPython. Reference: docs/board-protocol.md.

Frame (both directions): B5 5B | seq | cmd | len | payload[len] | crc16 (CCITT-FALSE over
seq..payload, big-endian). A reply echoes seq, sets cmd | 0x80 and starts its payload with a
status byte (0 = ok). Frames with a bad CRC are dropped without reply; the host times out.
"""

from hal.crc import crc16_ccitt_false
from hal.framer import BAD, FRAME, JUNK, NEED_MORE, StreamFramer  # noqa: F401 (scan statuses)

PREAMBLE = b'\xb5\x5b'
REPLY_FLAG = 0x80
MAX_PAYLOAD = 250
ALL = 0xFF  # board or fan index meaning "all" (voltage: the rig's shared rail)

GET_INFO = 0x01      # -> boards u8, fans u8, sensors/board u8, voltage_per u8 (0 rig, 1 board), rpm_max u16, model ascii
SET_FAN = 0x10       # fan u8 (0xFF all), duty_pct u8 0..100
GET_FANS = 0x11      # -> n u8, n * (duty_pct u8, rpm u16)
SET_VOLTAGE = 0x20   # board u8 (0xFF rail), mv u16
GET_VOLTAGE = 0x21   # board u8 -> setpoint_mv u16, readback_mv u16, enabled u8
SET_ENABLE = 0x22    # board u8 (0xFF all), on u8
GET_BOARD_ID = 0x23  # board u8 -> ascii identity (serial number)
SET_WATCHDOG = 0x24  # timeout_ds u16 (0.1 s; 0 = off) -> trips u16. Heartbeat: any valid request
                     # restarts it; on expiry every board is switched off and every fan set to 100 %
GET_TEMPS = 0x30     # board u8 -> n u8, n * (ok u8, centi_c s16)
GET_POWER = 0x40     # -> input_dw u32 (deci-watts)
I2C_XFER = 0x50      # addr u8, nread u8, write bytes -> nread bytes read after a repeated start
                     # (Bitaxe-class boards: the board's own I2C parts, hal/bitaxe/)

ST_OK = 0
ST_UNKNOWN_CMD = 1
ST_BAD_ARG = 2
ST_OUT_OF_RANGE = 3
ST_UNSUPPORTED = 4
ST_NACK = 5          # I2C_XFER: no device answered at that address

STATUS_TEXT = {ST_OK: 'ok', ST_UNKNOWN_CMD: 'unknown command', ST_BAD_ARG: 'bad argument',
               ST_OUT_OF_RANGE: 'out of range', ST_UNSUPPORTED: 'unsupported',
               ST_NACK: 'no I2C device (NACK)'}


def encode(seq, cmd, payload=b''):
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError('payload too long')
    body = bytes([seq & 0xFF, cmd & 0xFF, len(payload)]) + payload
    crc = crc16_ccitt_false(body)
    return PREAMBLE + body + bytes([(crc >> 8) & 0xFF, crc & 0xFF])


def reply(seq, cmd, status, payload=b''):
    return encode(seq, (cmd | REPLY_FLAG) & 0xFF, bytes([status & 0xFF]) + bytes(payload))


def scan(buf, start):
    """One frame at buf[start:]: (NEED_MORE|FRAME|JUNK|BAD, begin, end) as in hal/framer; never raises."""
    n = len(buf)
    i = buf.find(PREAMBLE, start)
    if i < 0:
        keep = n - 1 if n > start and buf[n - 1] == 0xB5 else n
        if keep > start:
            return JUNK, start, keep
        return NEED_MORE, start, start
    if i > start:
        return JUNK, start, i
    if n - i < 5:
        return NEED_MORE, i, i
    length = buf[i + 4]
    if length > MAX_PAYLOAD:
        return BAD, i, i + 1
    end = i + 5 + length + 2
    if end > n:
        return NEED_MORE, i, i
    crc = (buf[end - 2] << 8) | buf[end - 1]
    if crc16_ccitt_false(bytes(buf[i + 2:end - 2])) == crc:
        return FRAME, i, end
    return BAD, i, i + 1


def decode(frame):
    """(seq, cmd, payload) of a whole frame that scan() accepted."""
    return frame[2], frame[3], bytes(frame[5:-2])


class Framer(StreamFramer):
    """Board-controller byte stream -> decoded frames, on the shared stream framer (buffering,
    junk skipping, counters)."""

    def _scan(self):
        return scan, ()

    def feed(self, data):
        """Add bytes; return [(seq, cmd, payload), ...] of the complete frames."""
        return [decode(f) for f in StreamFramer.feed(self, data)]


def u16(v):
    return bytes([(v >> 8) & 0xFF, v & 0xFF])


def s16(v):
    return u16(v & 0xFFFF)


def u32(v):
    return bytes([(v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])


def get_u16(b, i):
    return (b[i] << 8) | b[i + 1]


def get_s16(b, i):
    v = get_u16(b, i)
    return v - 0x10000 if v & 0x8000 else v


def get_u32(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]
