"""Streaming framers for BM13xx byte streams (pure; runs on MicroPython).

Each framer is fed arbitrary chunks and returns whole frames. It never raises on junk: bytes that
cannot start a valid frame are dropped and counted, a frame with a bad CRC is counted and the
search resumes one byte later, so the stream resynchronises after garbage.
"""

from hal.crc import crc5, crc16_ccitt_false

FACTORY_JOB_LEN = 0x36   # LEN byte of stock firmware's full-format jobs (S21 Pro, S19j Pro)
FULL_JOB_BYTES = 88      # 55 AA 21 LEN + 82 bytes of job + CRC16

NEED_MORE = 0
FRAME = 1
JUNK = 2      # bytes that cannot start a frame
BAD = 3       # a preamble whose frame fails its check: skip one byte and search on


def drain(buf, scan, *args):
    """Run scan(buf, pos, *args) over buf until it needs more bytes.

    Returns (frames, consumed, dropped_bytes, bad_frames): frames found, how many leading bytes
    of buf are used up, how many of those were dropped, and how many preambles failed their
    check (a corrupt frame, or a false preamble inside one).
    """
    frames = []
    pos = 0
    dropped = 0
    bad = 0
    while True:
        status, begin, end = scan(buf, pos, *args)
        if status == FRAME:
            frames.append(bytes(buf[begin:end]))
            pos = end
        elif status == JUNK or status == BAD:
            if status == BAD:
                bad += 1
            dropped += end - begin
            pos = end
        else:
            return frames, begin, dropped, bad


def scan_response(buf, start, frame_len):
    """Look at buf[start:] for one response frame of frame_len bytes.

    Returns (status, begin, end): NEED_MORE (begin = where to keep from), FRAME (buf[begin:end] is a
    frame with a good CRC), JUNK (buf[begin:end] holds no preamble: drop it) or BAD (a preamble
    whose CRC fails: drop one byte and search on).
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
    return BAD, i, i + 1


class StreamFramer:
    """Buffer + counters around one scan function (subclasses name the scan and its args)."""

    def __init__(self):
        self.buf = bytearray()
        self.frames = 0
        self.dropped_bytes = 0
        self.crc_errors = 0

    def _scan(self):
        raise NotImplementedError

    def feed(self, data):
        """Add bytes; return the list of complete frames (bytes) found."""
        if data:
            self.buf.extend(data)
        scan, args = self._scan()
        frames, used, dropped, bad = drain(self.buf, scan, *args)
        self.frames += len(frames)
        self.dropped_bytes += dropped
        self.crc_errors += bad
        if used:
            # slice copy, not del: MicroPython bytearrays do not support item deletion
            self.buf = self.buf[used:]
        return frames

    def stats(self):
        return {'frames': self.frames, 'dropped_bytes': self.dropped_bytes,
                'crc_errors': self.crc_errors, 'buffered': len(self.buf)}


class ResponseFramer(StreamFramer):
    """Chips -> host stream: 9- or 11-byte response frames (length set by the driver)."""

    def __init__(self, frame_len=9):
        StreamFramer.__init__(self)
        self.frame_len = frame_len

    def set_frame_len(self, frame_len):
        if frame_len not in (9, 11):
            raise ValueError('response frames are 9 or 11 bytes')
        self.frame_len = frame_len

    def _scan(self):
        return scan_response, (self.frame_len,)


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
            return BAD, i, i + 1
    elif ftype == 0x20:
        if length < 5:
            return BAD, i, i + 1
    else:
        return BAD, i, i + 1
    end = i + 2 + length
    if end > n:
        return NEED_MORE, i, i
    if ftype == 0x40:
        ok = crc5(bytes(buf[i + 2:end - 1])) == buf[end - 1]
    else:
        ok = _job_crc_ok(buf, i, end)
        if not ok and length == FACTORY_JOB_LEN:
            # Stock firmware declares a full-format job (88 bytes) with LEN 0x36, the length of
            # a one-midstate BM1397 job: try the full size before calling it junk.
            end = i + FULL_JOB_BYTES
            if end > n:
                return NEED_MORE, i, i
            ok = _job_crc_ok(buf, i, end)
    if ok:
        return FRAME, i, end
    return BAD, i, i + 1


def _job_crc_ok(buf, i, end):
    return crc16_ccitt_false(bytes(buf[i + 2:end - 2])) == ((buf[end - 2] << 8) | buf[end - 1])


class CommandFramer(StreamFramer):
    """Host -> chips stream framer (the simulator's chips, and trace analysis)."""

    def _scan(self):
        return scan_command, ()
