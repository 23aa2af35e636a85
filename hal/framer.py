"""Streaming framers for BM13xx byte streams (pure; runs on MicroPython).

Each framer is fed arbitrary chunks and returns whole frames. It never raises on junk: bytes that
cannot start a valid frame are dropped and counted, a frame with a bad CRC is counted and the
search resumes one byte later, so the stream resynchronises after garbage.
"""

from hal.crc import crc5, crc16_ccitt_false

NEED_MORE = 0
FRAME = 1
JUNK = 2


def scan_response(buf, start, frame_len):
    """Look at buf[start:] for one response frame of frame_len bytes.

    Returns (status, begin, end): NEED_MORE (begin = where to keep from), FRAME (buf[begin:end] is a
    frame with a good CRC) or JUNK (buf[begin:end] is to be dropped: no preamble or a bad CRC).
    """
    n = len(buf)
    i = buf.find(b'\xaa\x55', start)
    if i < 0:
        # Keep a trailing 0xAA: it may be the first half of a preamble.
        keep = n - 1 if n > start and buf[n - 1] == 0xAA else n
        if keep > start:
            return JUNK, start, keep
        return NEED_MORE, start, start
    if i > start:
        return JUNK, start, i
    if n - i < frame_len:
        return NEED_MORE, i, i
    if crc5(bytes(buf[i + 2:i + frame_len])) == 0:
        return FRAME, i, i + frame_len
    return JUNK, i, i + 1


class ResponseFramer:
    """Chips -> host stream: 9- or 11-byte response frames (length set by the driver)."""

    def __init__(self, frame_len=9):
        self.frame_len = frame_len
        self.buf = bytearray()
        self.frames = 0
        self.dropped_bytes = 0
        self.crc_errors = 0

    def set_frame_len(self, frame_len):
        if frame_len not in (9, 11):
            raise ValueError('response frames are 9 or 11 bytes')
        self.frame_len = frame_len

    def feed(self, data):
        """Add bytes; return the list of complete frames (bytes) found."""
        if data:
            self.buf.extend(data)
        out = []
        buf = self.buf
        pos = 0
        flen = self.frame_len
        while True:
            status, begin, end = scan_response(buf, pos, flen)
            if status == FRAME:
                out.append(bytes(buf[begin:end]))
                self.frames += 1
                pos = end
            elif status == JUNK:
                if end - begin == 1 and buf[begin] == 0xAA and len(buf) - begin >= flen:
                    self.crc_errors += 1
                self.dropped_bytes += end - begin
                pos = end
            else:
                pos = begin
                break
        if pos:
            # slice copy, not del: MicroPython bytearrays do not support item deletion
            self.buf = buf[pos:]
        return out

    def stats(self):
        return {'frames': self.frames, 'dropped_bytes': self.dropped_bytes,
                'crc_errors': self.crc_errors, 'buffered': len(self.buf)}


def scan_command(buf, start):
    """Host -> chips stream: one command or job frame at buf[start:] (see scan_response)."""
    n = len(buf)
    i = buf.find(b'\x55\xaa', start)
    if i < 0:
        keep = n - 1 if n > start and buf[n - 1] == 0x55 else n
        if keep > start:
            return JUNK, start, keep
        return NEED_MORE, start, start
    if i > start:
        return JUNK, start, i
    if n - i < 4:
        return NEED_MORE, i, i
    hdr = buf[i + 2]
    length = buf[i + 3]
    ftype = hdr & 0x60
    if ftype == 0x40:
        if length not in (5, 9):
            return JUNK, i, i + 1
    elif ftype == 0x20:
        if length < 5:
            return JUNK, i, i + 1
    else:
        return JUNK, i, i + 1
    end = i + 2 + length
    if end > n:
        return NEED_MORE, i, i
    if ftype == 0x40:
        ok = crc5(bytes(buf[i + 2:end - 1])) == buf[end - 1]
    else:
        ok = crc16_ccitt_false(bytes(buf[i + 2:end - 2])) == ((buf[end - 2] << 8) | buf[end - 1])
    if ok:
        return FRAME, i, end
    return JUNK, i, i + 1


class CommandFramer:
    """Host -> chips stream framer (the simulator's chips, and trace analysis)."""

    def __init__(self):
        self.buf = bytearray()
        self.frames = 0
        self.dropped_bytes = 0
        self.crc_errors = 0

    def feed(self, data):
        if data:
            self.buf.extend(data)
        out = []
        buf = self.buf
        pos = 0
        while True:
            status, begin, end = scan_command(buf, pos)
            if status == FRAME:
                out.append(bytes(buf[begin:end]))
                self.frames += 1
                pos = end
            elif status == JUNK:
                if end - begin == 1:
                    self.crc_errors += 1
                self.dropped_bytes += end - begin
                pos = end
            else:
                pos = begin
                break
        if pos:
            # slice copy, not del: MicroPython bytearrays do not support item deletion
            self.buf = buf[pos:]
        return out

    def stats(self):
        return {'frames': self.frames, 'dropped_bytes': self.dropped_bytes,
                'crc_errors': self.crc_errors, 'buffered': len(self.buf)}
