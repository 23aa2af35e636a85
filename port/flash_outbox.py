"""Outbox on flash for a small board: QoS 1 messages the broker has not acknowledged, oldest
first, with the payloads on flash rather than in RAM (a 256 KB heap cannot hold an hour of
telemetry; the filesystem can).

Wear: nothing is written while the broker takes messages as they come; only while it is away
(or a publish fails) records are buffered in RAM and appended to the current segment in one
write per `flush_bytes` or `flush_s`, never a write per message. Segments (`ob-NNNNNN.bin`,
`segment_bytes` each) are deleted whole once sent, so no block is rewritten in place.
Record: <u16 topic length><u16 payload length><u32 crc32(topic + payload)> topic payload.
A torn or corrupt tail (power cut mid-write) ends the segment's readable part.

Bounded by `max_bytes` (flash and RAM buffer): when full the oldest segment is dropped whole
and its messages are counted in `dropped`. After a restart a partly sent segment is sent again
from its start (at least once; consumers drop repeats by boot_id and seq).
"""

import os
import struct

try:
    from binascii import crc32
except ImportError:  # pragma: no cover - every MicroPython port we build has binascii.crc32
    from zlib import crc32

_HDR = '<HHI'
_HDR_SIZE = 8


def _record(topic, payload):
    t = topic.encode()
    return struct.pack(_HDR, len(t), len(payload), crc32(t + payload) & 0xFFFFFFFF) + t + payload


def _read_record(f):
    """(topic, payload) or None at the end / a torn or corrupt record."""
    hdr = f.read(_HDR_SIZE)
    if not hdr or len(hdr) < _HDR_SIZE:
        return None
    tlen, plen, crc = struct.unpack(_HDR, hdr)
    body = f.read(tlen + plen)
    if len(body) < tlen + plen or crc32(body) & 0xFFFFFFFF != crc:
        return None
    return body[:tlen].decode(), body[tlen:]


def _makedirs(path):
    cur = ''
    for part in path.split('/'):
        cur = cur + '/' + part if cur or path.startswith('/') else part
        if not part:
            continue
        try:
            os.mkdir(cur)
        except OSError:
            pass


class FlashOutbox:
    def __init__(self, state_dir, clock, max_bytes=128 << 10, segment_bytes=8 << 10,
                 flush_bytes=2 << 10, flush_s=30.0):
        if max_bytes < 2 * segment_bytes:
            raise ValueError('outbox max_bytes must hold at least two segments')
        self.dir = state_dir.rstrip('/')
        self.clock = clock                  # monotonic seconds
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.flush_bytes = flush_bytes
        self.flush_s = flush_s
        self._buf = []                      # [(topic, payload)] not yet on flash, oldest first
        self._buf_bytes = 0
        self._buf_since = None
        self._segs = []                     # [[no, bytes, records]] on flash, oldest first
        self._head = None                   # open file of the oldest segment, being sent
        self._head_pos = 0                  # records of it already sent
        self._peeked = None
        self.dropped = 0
        self.writes = 0
        self.written_bytes = 0
        self.write_errors = 0
        self.last_error = None
        _makedirs(self.dir)
        self._load()

    # --- public API -------------------------------------------------------------------------
    def append(self, topic, payload):
        payload = bytes(payload)
        self._buf.append((topic, payload))
        self._buf_bytes += _HDR_SIZE + len(topic) + len(payload)
        if self._buf_since is None:
            self._buf_since = self.clock()
        if self._buf_bytes >= self.flush_bytes:
            self.flush()
        self._enforce_bound()

    def __len__(self):
        return sum(s[2] for s in self._segs) - self._head_pos + len(self._buf)

    def peek(self):
        """Oldest unsent (topic, payload), or None."""
        if self._peeked is not None:
            return self._peeked
        while self._segs:
            seg = self._segs[0]
            if self._head_pos >= seg[2]:
                self._drop_head()
                continue
            if self._head is None:
                self._head = open(self._path(seg[0]), 'rb')
                for _ in range(self._head_pos):
                    _read_record(self._head)
            rec = _read_record(self._head)
            if rec is None:                 # torn or corrupt: the rest of it is lost
                self.dropped += seg[2] - self._head_pos
                self._drop_head()
                continue
            self._peeked = rec
            return rec
        if self._buf:
            self._peeked = self._buf[0]
            return self._peeked
        return None

    def pop(self):
        """The peeked record was acknowledged: forget it."""
        if self._peeked is None:
            return
        self._peeked = None
        if self._segs:                      # (a peeked RAM record may have been flushed since)
            self._head_pos += 1
            if self._head_pos >= self._segs[0][2]:
                self._drop_head()
        elif self._buf:
            topic, payload = self._buf.pop(0)
            self._buf_bytes -= _HDR_SIZE + len(topic) + len(payload)
            if not self._buf:
                self._buf_since = None

    def maybe_flush(self):
        if self._buf and self.clock() - self._buf_since >= self.flush_s:
            self.flush()

    def flush(self):
        """Append the RAM buffer to the tail segment (one write per segment touched)."""
        try:
            while self._buf:
                seg = self._tail()
                room = self.segment_bytes - seg[1]
                parts = []
                size = 0
                for topic, payload in self._buf:
                    r = _record(topic, payload)
                    if parts and size + len(r) > room:
                        break
                    parts.append(r)
                    size += len(r)
                with open(self._path(seg[0]), 'ab') as f:
                    f.write(b''.join(parts))
                self.writes += 1
                self.written_bytes += size
                seg[1] += size
                seg[2] += len(parts)
                del self._buf[:len(parts)]
                self._buf_bytes -= size
        except OSError as e:            # flash full or failing: keep the rest in RAM, say so
            self.write_errors += 1
            self.last_error = 'outbox write: %s' % e
        if not self._buf:
            self._buf_since = None

    def _tail(self):
        """Segment to append to: the last one if it has room and is not being read, else a new one."""
        if self._segs:
            seg = self._segs[-1]
            if seg[1] < self.segment_bytes and not (len(self._segs) == 1 and self._head is not None):
                return seg
        seg = [self._segs[-1][0] + 1 if self._segs else 1, 0, 0]
        self._segs.append(seg)
        return seg

    def get_status(self):
        return {'queued': len(self), 'segments': len(self._segs),
                'disk_bytes': sum(s[1] for s in self._segs), 'buffered_bytes': self._buf_bytes,
                'dropped': self.dropped, 'writes': self.writes,
                'written_bytes': self.written_bytes, 'write_errors': self.write_errors,
                'last_error': self.last_error}

    def close(self):
        self.flush()
        if self._head is not None:
            self._head.close()
            self._head = None

    # --- internals --------------------------------------------------------------------------
    def _path(self, no):
        return '%s/ob-%06d.bin' % (self.dir, no)

    def _load(self):
        nos = []
        for name in os.listdir(self.dir):
            if name.startswith('ob-') and name.endswith('.bin'):
                try:
                    nos.append(int(name[3:-4]))
                except ValueError:
                    pass
        nos.sort()
        for no in nos:
            n = 0
            with open(self._path(no), 'rb') as f:
                while _read_record(f) is not None:
                    n += 1
            if n:
                # Appends after a torn tail would be unreadable: never append to a loaded one.
                self._segs.append([no, self.segment_bytes, n])
            else:
                os.remove(self._path(no))

    def _drop_head(self):
        if self._head is not None:
            self._head.close()
            self._head = None
        no = self._segs.pop(0)[0]
        self._head_pos = 0
        self._peeked = None
        try:
            os.remove(self._path(no))
        except OSError:
            pass

    def _enforce_bound(self):
        while self._segs and sum(s[1] for s in self._segs) + self._buf_bytes > self.max_bytes:
            lost = self._segs[0][2] - self._head_pos
            self.dropped += lost
            self._drop_head()
        while not self._segs and self._buf_bytes > self.max_bytes and self._buf:
            topic, payload = self._buf.pop(0)
            self._buf_bytes -= _HDR_SIZE + len(topic) + len(payload)
            self.dropped += 1
            self._peeked = None
