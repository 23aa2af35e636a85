"""BM13xx frame codec: command frames (host -> chips) and response frames (chips -> host).

Pure functions over bytes; runs on MicroPython (no dataclasses, typing or CPython-only imports).
Framing of a byte stream lives in hal/framer.py; this module encodes and decodes single frames.
"""

from hal.crc import crc5, crc16_ccitt_false

CMD_PREAMBLE = b'\x55\xaa'
RESP_PREAMBLE = b'\xaa\x55'

TYPE_JOB = 0x20
TYPE_CMD = 0x40
FLAG_BROADCAST = 0x10
OP_SET_ADDRESS = 0
OP_WRITE = 1
OP_READ = 2
OP_INACTIVE = 3

OP_NAMES = {OP_SET_ADDRESS: 'set_address', OP_WRITE: 'write', OP_READ: 'read',
            OP_INACTIVE: 'chain_inactive'}

RESP_TYPE_REG = 0
RESP_TYPE_NONCE = 4


def _command(header, payload):
    body = bytes([header, len(payload) + 3]) + payload
    return CMD_PREAMBLE + body + bytes([crc5(body)])


_READ_FRAMES = {}   # (reg, addr, broadcast) -> frame: polls repeat the same few hundred reads


def read_reg(reg, chip_addr=0, broadcast=False):
    """Read a register of one chip (or of all chips with broadcast)."""
    key = ((reg & 0xFF) << 9) | ((chip_addr & 0xFF) << 1) | (1 if broadcast else 0)
    frame = _READ_FRAMES.get(key)
    if frame is None:
        hdr = TYPE_CMD | OP_READ | (FLAG_BROADCAST if broadcast else 0)
        frame = _command(hdr, bytes([chip_addr & 0xFF, reg & 0xFF]))
        _READ_FRAMES[key] = frame
    return frame


def write_reg(reg, value, chip_addr=0, broadcast=False):
    """Write a 32-bit value (sent big-endian) to a register of one chip or of all chips."""
    hdr = TYPE_CMD | OP_WRITE | (FLAG_BROADCAST if broadcast else 0)
    v = value & 0xFFFFFFFF
    return _command(hdr, bytes([chip_addr & 0xFF, reg & 0xFF,
                                (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF]))


def set_address(chip_addr):
    """Give the first unaddressed chip on the chain this address."""
    return _command(TYPE_CMD | OP_SET_ADDRESS, bytes([chip_addr & 0xFF, 0x00]))


def chain_inactive():
    """Make every chip forget its address and stop forwarding address commands."""
    return _command(TYPE_CMD | FLAG_BROADCAST | OP_INACTIVE, b'\x00\x00')


def job(payload):
    """Job frame: header 0x21, CRC16/CCITT-FALSE (two bytes, big-endian) over HDR..payload."""
    body = bytes([TYPE_JOB | OP_WRITE, len(payload) + 4]) + bytes(payload)
    crc = crc16_ccitt_false(body)
    return CMD_PREAMBLE + body + bytes([(crc >> 8) & 0xFF, crc & 0xFF])


def decode_command(frame):
    """Decode one whole command frame (with preamble) into a dict; never raises.

    Keys: kind ('command'|'job'|'invalid'), op, broadcast, chip_addr, reg, value, crc_ok, error.
    """
    out = {'kind': 'invalid', 'crc_ok': False}
    if len(frame) < 5 or frame[0] != 0x55 or frame[1] != 0xAA:
        out['error'] = 'missing 55 AA preamble or too short'
        return out
    hdr = frame[2]
    length = frame[3]
    factory_job = hdr & 0x60 == TYPE_JOB and length == 0x36 and len(frame) == 88
    if length + 2 != len(frame) and not factory_job:
        out['error'] = 'length byte %d does not match frame of %d bytes' % (length, len(frame))
        return out
    ftype = hdr & 0x60
    if ftype == TYPE_JOB:
        body = bytes(frame[2:-2])
        crc = (frame[-2] << 8) | frame[-1]
        out['kind'] = 'job'
        out['crc_ok'] = crc16_ccitt_false(body) == crc
        out['payload'] = bytes(frame[4:-2])
        return out
    if ftype != TYPE_CMD:
        out['error'] = 'header 0x%02X is neither command nor job' % hdr
        return out
    out['kind'] = 'command'
    out['crc_ok'] = crc5(bytes(frame[2:-1])) == frame[-1]
    op = hdr & 0x0F
    out['op'] = OP_NAMES.get(op, 'op%d' % op)
    out['broadcast'] = bool(hdr & FLAG_BROADCAST)
    payload = frame[4:-1]
    if len(payload) >= 2:
        out['chip_addr'] = payload[0]
        out['reg'] = payload[1]
    if op == OP_WRITE:
        if len(payload) != 6:
            out['error'] = 'write needs 4 data bytes'
            out['crc_ok'] = False
        else:
            out['value'] = int.from_bytes(bytes(payload[2:6]), 'big')
    elif len(payload) != 2:
        out['error'] = '%s takes 2 payload bytes, got %d' % (out['op'], len(payload))
    return out


def response(body, resp_type, frame_len):
    """Build a response frame: AA 55 | body (padded to frame_len - 3) | type<<5 | crc5."""
    nbody = frame_len - 3
    b = bytes(body)
    if len(b) < nbody:
        b = b + bytes(nbody - len(b))
    elif len(b) > nbody:
        b = b[:nbody]
    type_bits = (resp_type & 7) << 5
    crc = crc5(b + bytes([type_bits]), len(b) * 8 + 3)
    return RESP_PREAMBLE + b + bytes([type_bits | crc])


def reg_response(value, chip_addr, reg, frame_len=9, extra=b'\x00\x00'):
    v = value & 0xFFFFFFFF
    body = bytes([(v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF,
                  chip_addr & 0xFF, reg & 0xFF])
    if frame_len == 11:
        body = body + bytes(extra[:2])
    return response(body, RESP_TYPE_REG, frame_len)


def nonce_response(nonce, midstate, header, version=0, frame_len=11):
    n = nonce & 0xFFFFFFFF
    body = bytes([(n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF,
                  midstate & 0xFF, header & 0xFF])
    if frame_len == 11:
        body = body + bytes([(version >> 8) & 0xFF, version & 0xFF])
    return response(body, RESP_TYPE_NONCE, frame_len)


def response_crc_ok(frame):
    """True when crc5 over every byte after AA 55 (last byte included) is zero."""
    return len(frame) > 3 and crc5(bytes(frame[2:])) == 0


def nonce_fields(layout, nonce, header):
    """Job id, small core and chip address (None when the layout carries none) of a nonce."""
    if layout == 'bm1366':
        return header & 0xF8, header & 0x07, ((nonce >> 18) & 0x7F) << 1
    if layout == 'bm1368':
        return (header & 0xF0) >> 1, header & 0x0F, ((nonce >> 18) & 0x7F) << 1
    if layout == 'bm1370':
        return (header & 0xF0) >> 1, header & 0x0F, None
    # bm1397 (ESP-Miner bm1397.c): job id in bits 7..2, the midstate index in bits 1..0
    return header & 0xFC, header & 0x03, ((nonce >> 18) & 0x7F) << 1


def encode_nonce_fields(layout, rand_nonce, job_id, core, chip_addr):
    """Inverse of nonce_fields for a simulator: put job, core and chip address where they belong.

    Returns (nonce, header). Bits not carrying fields keep their random values.
    """
    if layout in ('bm1366', 'bm1397'):
        nonce = (rand_nonce & ~(0x7F << 18)) | (((chip_addr >> 1) & 0x7F) << 18)
        if layout == 'bm1366':
            header = (job_id & 0xF8) | (core & 0x07)
        else:
            header = (job_id & 0xFC) | (core & 0x03)
        return nonce & 0xFFFFFFFF, header
    header = ((job_id << 1) & 0xF0) | (core & 0x0F)
    if layout == 'bm1368':
        nonce = (rand_nonce & ~(0x7F << 18)) | (((chip_addr >> 1) & 0x7F) << 18)
        return nonce & 0xFFFFFFFF, header
    return rand_nonce & 0xFFFFFFFF, header


def decode_response(frame, layout=None, crc_checked=False):
    """Decode one response frame (9 or 11 bytes, with preamble) into a dict; never raises.

    kind 'reg': value, chip_addr, reg. kind 'nonce': nonce, midstate, header, version (11-byte
    form), and with a family nonce layout also job_id, core, chip_addr. crc_checked=True skips
    the CRC (a framer already verified it).
    """
    out = {'kind': 'invalid', 'crc_ok': False, 'length': len(frame)}
    if len(frame) not in (9, 11) or frame[0] != 0xAA or frame[1] != 0x55:
        out['error'] = 'not a 9- or 11-byte frame starting AA 55'
        return out
    out['crc_ok'] = True if crc_checked else response_crc_ok(frame)
    last = frame[-1]
    rtype = last >> 5
    word = (frame[2] << 24) | (frame[3] << 16) | (frame[4] << 8) | frame[5]
    if rtype == RESP_TYPE_NONCE:
        out['kind'] = 'nonce'
        out['nonce'] = word
        out['midstate'] = frame[6]
        out['header'] = frame[7]
        if len(frame) == 11:
            out['version'] = (frame[8] << 8) | frame[9]
        if layout is not None:
            job_id, core, addr = nonce_fields(layout, word, frame[7])
            out['job_id'] = job_id
            out['core'] = core
            out['chip_addr'] = addr
    elif rtype == RESP_TYPE_REG:
        out['kind'] = 'reg'
        out['value'] = word
        out['chip_addr'] = frame[6]
        out['reg'] = frame[7]
    else:
        out['kind'] = 'unknown'
        out['type'] = rtype
    return out
