"""Durable outbox for QoS 1 messages the broker has not acknowledged (survives kill -9 and power loss).

Layout: `<state_dir>/seg-00000001.log`, ... Each segment starts with MAGIC, then records
`<u32 body length><u32 crc32(body)><body>`; body is
  data: b'D' <u64 id> <u16 topic length> topic payload
  ack:  b'A' <u64 id>*
Appends and acks are buffered in RAM and written in batches (one write + one fsync per batch,
on a size threshold or timer) to spare flash. A record acknowledged before its batch is written
never touches the disk. On open, segments are replayed in order and a torn or corrupt tail
(crash mid-write) is cut off at the last good record. Segments are deleted oldest-first once
none of their data records is live. The total (segments + buffer) is bounded: when full, the
oldest segment is dropped whole and the number of messages lost is counted in `dropped`.
Not thread-safe: the owner serialises calls (agent/mqtt_link.py holds a lock).
"""

import os
import struct
import time
import zlib

MAGIC = b'HPOB\x01\n'
_HDR = struct.Struct('<II')
_DATA = struct.Struct('<cQH')
_ID = struct.Struct('<Q')
MAX_RECORD = 16 << 20


def _record(body):
    return _HDR.pack(len(body), zlib.crc32(body) & 0xffffffff) + body


def parse_segment(data):
    """Segment bytes -> (records, good_length). records: ('D', id, topic, payload) | ('A', [ids]).

    Stops at the first torn or corrupt record; good_length is where the valid prefix ends
    (0 when the header itself is missing or wrong).
    """
    if data[:len(MAGIC)] != MAGIC:
        return [], 0
    out = []
    pos = len(MAGIC)
    n = len(data)
    while pos + _HDR.size <= n:
        length, crc = _HDR.unpack_from(data, pos)
        start = pos + _HDR.size
        if length < 1 or length > MAX_RECORD or start + length > n:
            break
        body = data[start:start + length]
        if zlib.crc32(body) & 0xffffffff != crc:
            break
        kind = body[:1]
        if kind == b'D' and length >= _DATA.size:
            _k, rid, tlen = _DATA.unpack_from(body, 0)
            if _DATA.size + tlen > length:
                break
            topic = body[_DATA.size:_DATA.size + tlen].decode('utf-8', 'replace')
            out.append(('D', rid, topic, bytes(body[_DATA.size + tlen:])))
        elif kind == b'A' and (length - 1) % _ID.size == 0:
            out.append(('A', [_ID.unpack_from(body, 1 + i * _ID.size)[0]
                              for i in range((length - 1) // _ID.size)]))
        else:
            break
        pos = start + length
    return out, pos


class Outbox:
    def __init__(self, state_dir, max_bytes=8 << 20, segment_bytes=None, flush_bytes=32 << 10,
                 flush_interval_s=2.0, clock=time.monotonic, fsync=True):
        if max_bytes < 4096:
            raise ValueError('outbox max_bytes must be at least 4096')
        self.dir = state_dir
        self.max_bytes = int(max_bytes)
        self.segment_bytes = int(segment_bytes or max(1024, self.max_bytes // 8))
        self.flush_bytes = min(int(flush_bytes), self.segment_bytes)
        self.flush_interval_s = float(flush_interval_s)
        self._clock = clock
        self._fsync = fsync
        self._records = {}      # id -> [segment no or None (buffered), topic, payload]; id order
        self._seg_live = {}     # segment no -> live data records in it
        self._seg_size = {}     # segment no -> bytes on disk
        self._buf_ids = []      # buffered data ids, in order
        self._buf_acks = []     # (id, segment no) acks of records already on disk
        self._buf_bytes = 0
        self._buf_since = None
        self._cur = None        # segment no being appended, file object
        self._cur_file = None
        self._next_id = 1
        self._live_bytes = 0
        self.dropped = 0
        self.flushes = 0
        self.truncated_bytes = 0
        self.write_errors = 0
        self.last_error = None
        os.makedirs(state_dir, exist_ok=True)
        self._load()

    # --- public API -------------------------------------------------------------------------
    def append(self, topic, payload):
        """Queue one message; returns its id (increasing, unique across restarts)."""
        rid = self._next_id
        self._next_id += 1
        payload = bytes(payload)
        self._records[rid] = [None, topic, payload]
        self._buf_ids.append(rid)
        size = _HDR.size + _DATA.size + len(topic.encode()) + len(payload)
        self._buf_bytes += size
        self._live_bytes += len(payload)
        if self._buf_since is None:
            self._buf_since = self._clock()
        if self._buf_bytes >= self.flush_bytes:
            self._try_flush()
        self._enforce_bound()
        return rid

    def ack(self, rid):
        """Broker acknowledged `rid`: forget it. Returns False for unknown (already gone) ids."""
        rec = self._records.pop(rid, None)
        if rec is None:
            return False
        self._live_bytes -= len(rec[2])
        seg = rec[0]
        if seg is None:
            self._buf_bytes -= _HDR.size + _DATA.size + len(rec[1].encode()) + len(rec[2])
            # stays in _buf_ids; skipped at flush because it is no longer in _records
        else:
            self._seg_live[seg] -= 1
            self._buf_acks.append((rid, seg))
            self._buf_bytes += _ID.size
            if self._buf_since is None:
                self._buf_since = self._clock()
            self._compact()
        return True

    def get(self, rid):
        rec = self._records.get(rid)
        return None if rec is None else (rec[1], rec[2])

    def pending(self):
        """[(id, topic, payload), ...] of every unacknowledged message, oldest first."""
        return [(rid, r[1], r[2]) for rid, r in self._records.items()]

    def ids(self):
        return list(self._records)

    def __len__(self):
        return len(self._records)

    def maybe_flush(self, now=None):
        """Flush when the batch is old enough or big enough; returns True if it wrote."""
        if self._buf_since is None:
            return False
        now = self._clock() if now is None else now
        if self._buf_bytes >= self.flush_bytes or now - self._buf_since >= self.flush_interval_s:
            if not self._try_flush():
                self._buf_since = now   # retry after another interval, not in a tight loop
                return False
            return True
        return False

    def flush(self):
        """Write the batch (buffered appends still unacked + acks) with one write and one fsync.

        Raises OSError if the disk refuses; the batch then stays buffered (and the partial write
        is cut off) so a later flush retries it.
        """
        ids = [rid for rid in self._buf_ids if rid in self._records]
        acks = [(rid, seg) for rid, seg in self._buf_acks if seg in self._seg_size]
        if not ids and not acks:
            self._buf_ids, self._buf_acks, self._buf_bytes, self._buf_since = [], [], 0, None
            return
        parts = []
        for rid in ids:
            rec = self._records[rid]
            t = rec[1].encode()
            parts.append(_record(_DATA.pack(b'D', rid, len(t)) + t + rec[2]))
        for i in range(0, len(acks), 4096):
            chunk = acks[i:i + 4096]
            parts.append(_record(b'A' + b''.join([_ID.pack(a[0]) for a in chunk])))
        blob = b''.join(parts)
        seg = None
        try:
            seg = self._open_current()
            self._cur_file.write(blob)
            self._cur_file.flush()
            if self._fsync:
                os.fsync(self._cur_file.fileno())
        except OSError as e:
            self.write_errors += 1
            self.last_error = str(e)
            if seg is not None:
                self._abandon_current(seg)
            raise
        self._buf_ids, self._buf_acks, self._buf_bytes, self._buf_since = [], [], 0, None
        self.flushes += 1
        self._seg_size[seg] += len(blob)
        for rid in ids:
            self._records[rid][0] = seg
        self._seg_live[seg] += len(ids)
        if self._seg_size[seg] >= self.segment_bytes:
            self._close_current()
        self._compact()
        self._enforce_bound()

    def _abandon_current(self, seg):
        """After a failed write: cut the file back to its last good size and stop appending to it."""
        try:
            self._cur_file.truncate(self._seg_size[seg])
        except (OSError, ValueError):
            pass
        try:
            self._cur_file.close()
        except OSError:
            pass
        self._cur = None
        self._cur_file = None

    def _try_flush(self):
        try:
            self.flush()
            return True
        except OSError:
            return False   # kept buffered; visible in get_status() as write_errors/last_error

    def close(self):
        try:
            self.flush()
        finally:
            self._close_current()

    def get_status(self):
        return {'queued': len(self._records), 'bytes': self._live_bytes,
                'disk_bytes': sum(self._seg_size.values()), 'buffered_bytes': self._buf_bytes,
                'segments': len(self._seg_size), 'dropped': self.dropped, 'flushes': self.flushes,
                'truncated_bytes': self.truncated_bytes, 'max_bytes': self.max_bytes,
                'write_errors': self.write_errors, 'last_error': self.last_error}

    # --- internals --------------------------------------------------------------------------
    def _path(self, seg):
        return os.path.join(self.dir, 'seg-%08d.log' % seg)

    def _segments_on_disk(self):
        segs = []
        for name in os.listdir(self.dir):
            if name.startswith('seg-') and name.endswith('.log'):
                try:
                    segs.append(int(name[4:-4]))
                except ValueError:
                    pass
        return sorted(segs)

    def _load(self):
        max_id = 0
        for seg in self._segments_on_disk():
            path = self._path(seg)
            with open(path, 'rb') as f:
                data = f.read()
            records, good = parse_segment(data)
            if good < len(data):  # torn tail from a crash mid-batch: cut it off cleanly
                self.truncated_bytes += len(data) - good
                if good == 0:
                    os.remove(path)
                    continue
                with open(path, 'r+b') as f:
                    f.truncate(good)
                    f.flush()
                    os.fsync(f.fileno())
            self._seg_size[seg] = good
            self._seg_live[seg] = 0
            for r in records:
                if r[0] == 'D':
                    max_id = max(max_id, r[1])
                    if r[1] not in self._records:
                        self._records[r[1]] = [seg, r[2], r[3]]
                        self._seg_live[seg] += 1
                        self._live_bytes += len(r[3])
                else:
                    for rid in r[1]:
                        max_id = max(max_id, rid)
                        rec = self._records.pop(rid, None)
                        if rec is not None:
                            self._seg_live[rec[0]] -= 1
                            self._live_bytes -= len(rec[2])
        self._next_id = max_id + 1
        self._compact()
        self._enforce_bound()

    def _open_current(self):
        if self._cur is None:
            segs = list(self._seg_size) + self._segments_on_disk()
            seg = max(segs) + 1 if segs else 1
            self._cur_file = open(self._path(seg), 'ab')
            self._cur_file.write(MAGIC)
            self._cur = seg
            self._seg_size[seg] = len(MAGIC)
            self._seg_live[seg] = 0
            self._sync_dir()
        return self._cur

    def _close_current(self):
        if self._cur_file is not None:
            self._cur_file.close()
        self._cur = None
        self._cur_file = None

    def _sync_dir(self):
        if not self._fsync:
            return
        try:
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _delete_segment(self, seg):
        if seg == self._cur:
            self._close_current()
        try:
            os.remove(self._path(seg))
        except OSError:
            pass
        del self._seg_size[seg]
        del self._seg_live[seg]

    def _compact(self):
        """Delete fully acknowledged segments, oldest first (a later segment may hold the acks
        of an older one's records, so deletion never skips ahead of a live segment)."""
        for seg in sorted(self._seg_size):
            if seg == self._cur or self._seg_live[seg] > 0:
                break
            self._delete_segment(seg)

    def _enforce_bound(self):
        while sum(self._seg_size.values()) + self._buf_bytes > self.max_bytes:
            old = [s for s in sorted(self._seg_size) if s != self._cur]
            if old:
                seg = old[0]
                lost = [rid for rid, r in self._records.items() if r[0] == seg]
                for rid in lost:
                    self._live_bytes -= len(self._records.pop(rid)[2])
                self.dropped += len(lost)
                self._delete_segment(seg)
            elif self._cur is not None:
                self._close_current()  # the current segment becomes droppable next round
            else:
                ids = [rid for rid in self._buf_ids if rid in self._records]
                if not ids:
                    self._buf_acks = []
                    self._buf_bytes = 0
                    break
                rec = self._records.pop(ids[0])
                self._live_bytes -= len(rec[2])
                self._buf_bytes -= _HDR.size + _DATA.size + len(rec[1].encode()) + len(rec[2])
                self.dropped += 1
