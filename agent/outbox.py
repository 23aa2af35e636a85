"""Durable outbox for QoS 1 messages the broker has not acknowledged (survives kill -9 and power loss).

Layout: `<state_dir>/seg-00000001.log`, ... Each segment starts with MAGIC, then records
`<u32 body length><u32 crc32(body)><body>`; body is
  data: b'E' <u64 id> <u64 disk seq> <u16 topic length> topic payload
  ack:  b'B' (<u64 id> <u64 disk seq>)*
(b'D' data without disk seq and b'A' acks of ids only are older formats, still read.)
Every data record written gets the next disk sequence number, so on load a gap in the sequence
is a record that was written and lost (corruption, truncation, a deleted or overwritten
segment). `outbox.mark` (16 bytes + crc, rewritten after each batch) holds the next disk seq and
the lowest one that may still be live, so a truncated or destroyed newest segment is counted too.
Losses are counted exactly (`lost`), then settled in the mark so they are reported once.

Appends and acks are buffered in RAM and written in batches (one write + one fsync per batch,
on a size threshold or timer) to spare flash. A record acknowledged before its batch is written
never touches the disk. On open, segments are replayed in order; a corrupt stretch is skipped
to the next intact record (resync on length + crc), a torn tail (crash mid-write) is cut off.
Segments are deleted oldest-first once none of their data records is live. The total
(segments + buffer) is bounded: when full, the oldest segment is dropped whole and the number of
messages lost is counted in `dropped`. A failed write (disk full) keeps the batch in RAM (still
bounded) and leaves no new file behind. A state dir that cannot be used (a file in its place,
unreadable) gives a RAM-only outbox: `persistent` is False and `problems` says why.
Not thread-safe: the owner serialises calls (agent/mqtt_link.py holds a lock).
"""

import os
import stat
import struct
import time
import zlib

MAGIC = b'HPOB\x01\n'
MARK_MAGIC = b'HPOM'
MARK_NAME = 'outbox.mark'
_HDR = struct.Struct('<II')
_DATA = struct.Struct('<cQH')
_DATA2 = struct.Struct('<cQQH')
_ID = struct.Struct('<Q')
_ACK2 = struct.Struct('<QQ')
_MARK = struct.Struct('<4sQQI')
MAX_RECORD = 16 << 20
_KINDS = b'DAEB'


def _record(body):
    return _HDR.pack(len(body), zlib.crc32(body) & 0xffffffff) + body


def _decode(body):
    """One record body -> tuple, or None when it does not parse."""
    kind, length = body[:1], len(body)
    if kind == b'E' and length >= _DATA2.size:
        _k, rid, dseq, tlen = _DATA2.unpack_from(body, 0)
        if _DATA2.size + tlen <= length:
            topic = body[_DATA2.size:_DATA2.size + tlen].decode('utf-8', 'replace')
            return ('D', rid, topic, bytes(body[_DATA2.size + tlen:]), dseq)
    elif kind == b'D' and length >= _DATA.size:
        _k, rid, tlen = _DATA.unpack_from(body, 0)
        if _DATA.size + tlen <= length:
            topic = body[_DATA.size:_DATA.size + tlen].decode('utf-8', 'replace')
            return ('D', rid, topic, bytes(body[_DATA.size + tlen:]), None)
    elif kind == b'B' and (length - 1) % _ACK2.size == 0:
        pairs = [_ACK2.unpack_from(body, 1 + i * _ACK2.size) for i in range((length - 1) // _ACK2.size)]
        return ('A', [p[0] for p in pairs], [p[1] for p in pairs])
    elif kind == b'A' and (length - 1) % _ID.size == 0:
        return ('A', [_ID.unpack_from(body, 1 + i * _ID.size)[0]
                      for i in range((length - 1) // _ID.size)], [])
    return None


def _record_at(data, pos):
    """(decoded record, end) of an intact record starting at pos, else (None, 0)."""
    n = len(data)
    if pos + _HDR.size > n:
        return None, 0
    length, crc = _HDR.unpack_from(data, pos)
    start = pos + _HDR.size
    if length < 1 or length > MAX_RECORD or start + length > n or data[start] not in _KINDS:
        return None, 0
    body = bytes(data[start:start + length])
    if zlib.crc32(body) & 0xffffffff != crc:
        return None, 0
    rec = _decode(body)
    return (rec, start + length) if rec is not None else (None, 0)


def scan_segment(data):
    """Segment bytes -> (records, good_end, skipped_bytes).

    records: ('D', id, topic, payload, disk seq|None) | ('A', [ids], [disk seqs]). A corrupt
    stretch (or a wrong header) is skipped byte by byte to the next intact record, so one bad
    record never hides the good ones behind it. good_end is where the last intact record ends
    (0: none); bytes after it are a torn tail.
    """
    data = memoryview(data) if not isinstance(data, memoryview) else data
    pos = len(MAGIC) if bytes(data[:len(MAGIC)]) == MAGIC else 0
    good_end = pos
    skipped = 0
    out = []
    n = len(data)
    while pos + _HDR.size <= n:
        rec, end = _record_at(data, pos)
        if rec is None:
            pos += 1
            continue
        skipped += pos - good_end
        out.append(rec)
        pos = good_end = end
    if not out and good_end == 0:
        return [], 0, 0
    return out, good_end, skipped


def parse_segment(data):
    """Segment bytes -> (records, good_length) (see scan_segment)."""
    records, good, _skipped = scan_segment(data)
    return records, good


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
        self._records = {}      # id -> [segment no or None (buffered), topic, payload, disk seq]
        self._seg_live = {}     # segment no -> live data records in it
        self._seg_size = {}     # segment no -> bytes on disk
        self._buf_ids = []      # buffered data ids, in order
        self._buf_acks = []     # (id, segment no, disk seq) acks of records already on disk
        self._buf_bytes = 0
        self._buf_since = None
        self._cur = None        # segment no being appended, file object
        self._cur_file = None
        self._next_id = 1
        self._next_dseq = 1     # disk seq of the next data record written
        self._settled = 0       # disk seqs below this are acked, dropped or counted lost
        self._live_bytes = 0
        self.dropped = 0
        self.lost = 0           # written records found missing on load (corruption, truncation)
        self.corrupt_bytes = 0  # bytes skipped inside segments on load
        self.flushes = 0
        self.truncated_bytes = 0
        self.write_errors = 0
        self.failing = False    # the last write failed (disk full, read-only): batch kept in RAM
        self.last_error = None
        self.persistent = True
        self.problems = []      # what was wrong with the state dir (stray entries, unusable)
        try:
            if os.path.lexists(state_dir) and not os.path.isdir(state_dir):
                raise OSError('%s exists and is not a directory' % state_dir)
            os.makedirs(state_dir, exist_ok=True)
            self._load()
        except OSError as e:
            self._go_volatile('state dir %s unusable (%s): outbox kept in RAM only' % (state_dir, e))

    def _go_volatile(self, why):
        self._close_current()
        self.persistent = False
        self.problems.append(why)
        self._seg_size, self._seg_live = {}, {}
        for rid, rec in self._records.items():
            rec[0], rec[3] = None, None
        self._buf_ids = list(self._records)
        self._buf_acks = []
        self._buf_bytes = sum(self._rec_size(r) for r in self._records.values())
        self._enforce_bound()

    # --- public API -------------------------------------------------------------------------
    def append(self, topic, payload):
        """Queue one message; returns its id (increasing, unique across restarts)."""
        rid = self._next_id
        self._next_id += 1
        payload = bytes(payload)
        rec = [None, topic, payload, None]
        self._records[rid] = rec
        self._buf_ids.append(rid)
        self._buf_bytes += self._rec_size(rec)
        self._live_bytes += len(payload)
        if self._buf_since is None:
            self._buf_since = self._clock()
        if self._buf_bytes >= self.flush_bytes and not self.failing:
            self._try_flush()
        self._enforce_bound()
        return rid

    @staticmethod
    def _rec_size(rec):
        return _HDR.size + _DATA2.size + len(rec[1].encode()) + len(rec[2])

    def ack(self, rid):
        """Broker acknowledged `rid`: forget it. Returns False for unknown (already gone) ids."""
        rec = self._records.pop(rid, None)
        if rec is None:
            return False
        self._live_bytes -= len(rec[2])
        seg = rec[0]
        if seg is None:
            self._buf_bytes -= self._rec_size(rec)
            # stays in _buf_ids; skipped at flush because it is no longer in _records
        else:
            self._seg_live[seg] -= 1
            self._buf_acks.append((rid, seg, rec[3] or 0))
            self._buf_bytes += _ACK2.size
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
        if not self.persistent:
            self._buf_since = None
            return False
        if (self._buf_bytes >= self.flush_bytes and not self.failing) or \
                now - self._buf_since >= self.flush_interval_s:
            if not self._try_flush():
                self._buf_since = now   # retry after another interval, not in a tight loop
                return False
            return True
        return False

    def flush(self):
        """Write the batch (buffered appends still unacked + acks) with one write and one fsync.

        Raises OSError if the disk refuses; the batch then stays buffered (and the partial write
        is cut off, a segment it had just created removed) so a later flush retries it.
        """
        if not self.persistent:
            return
        ids = [rid for rid in self._buf_ids if rid in self._records]
        acks = [a for a in self._buf_acks if a[1] in self._seg_size]
        if not ids and not acks:
            self._buf_ids, self._buf_acks, self._buf_bytes, self._buf_since = [], [], 0, None
            if self.failing:
                self._probe()   # everything was acked meanwhile: is the disk writable again?
            return
        parts = []
        dseq = self._next_dseq
        for rid in ids:
            rec = self._records[rid]
            t = rec[1].encode()
            parts.append(_record(_DATA2.pack(b'E', rid, dseq, len(t)) + t + rec[2]))
            dseq += 1
        for i in range(0, len(acks), 4096):
            chunk = acks[i:i + 4096]
            parts.append(_record(b'B' + b''.join([_ACK2.pack(a[0], a[2]) for a in chunk])))
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
            self.failing = True
            self.last_error = str(e)
            if seg is not None:
                self._abandon_current(seg)
            raise
        self.failing = False
        self._buf_ids, self._buf_acks, self._buf_bytes, self._buf_since = [], [], 0, None
        self.flushes += 1
        self._seg_size[seg] += len(blob)
        dseq = self._next_dseq
        for rid in ids:
            self._records[rid][0] = seg
            self._records[rid][3] = dseq
            dseq += 1
        self._next_dseq = dseq
        self._seg_live[seg] += len(ids)
        if self._seg_size[seg] >= self.segment_bytes:
            self._close_current()
        self._compact()
        self._enforce_bound()
        self._write_mark()

    def _probe(self):
        """One segment header written and synced: clears `failing` or raises OSError."""
        seg = None
        try:
            seg = self._open_current()
            self._cur_file.flush()
            if self._fsync:
                os.fsync(self._cur_file.fileno())
        except OSError as e:
            self.write_errors += 1
            self.last_error = str(e)
            if seg is not None:
                self._abandon_current(seg)
            raise
        self.failing = False

    def _abandon_current(self, seg):
        """After a failed write: cut the file back to its last good size and stop appending to
        it; a segment that holds nothing yet is removed (a full disk must not breed files)."""
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
        if self._seg_size[seg] <= len(MAGIC) and self._seg_live[seg] == 0:
            try:
                os.remove(self._path(seg))
            except OSError:
                pass
            del self._seg_size[seg]
            del self._seg_live[seg]

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
                'write_errors': self.write_errors, 'failing': self.failing,
                'last_error': self.last_error, 'lost': self.lost,
                'corrupt_bytes': self.corrupt_bytes, 'persistent': self.persistent,
                'problems': list(self.problems)}

    # --- internals --------------------------------------------------------------------------
    def _path(self, seg):
        return os.path.join(self.dir, 'seg-%08d.log' % seg)

    def _segments_on_disk(self, note=False, taken=False):
        """Segment numbers of regular files named like segments; anything else is left alone
        (and, with note=True, reported): a directory or a symlink is never read or written.
        taken=True: every number in use by any entry (new segments go after all of them)."""
        segs = []
        for name in os.listdir(self.dir):
            if not (name.startswith('seg-') and name.endswith('.log')):
                continue
            try:
                num = int(name[4:-4])
                if num < 0:
                    raise ValueError(name)
                mode = os.lstat(os.path.join(self.dir, name)).st_mode
            except (ValueError, OSError):
                continue
            if stat.S_ISREG(mode) or taken:
                segs.append(num)
            elif note:
                self.problems.append('%s is not a regular file: ignored' % name)
        return sorted(segs)

    def _read_segment(self, path):
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
        with os.fdopen(fd, 'rb') as f:
            return f.read()

    def _load(self):
        max_id = 0
        seen = set()       # disk seqs of intact data records
        acked = set()      # disk seqs acknowledged
        for seg in self._segments_on_disk(note=True):
            path = self._path(seg)
            try:
                data = self._read_segment(path)
            except OSError as e:
                self.problems.append('%s unreadable (%s): ignored' % (os.path.basename(path), e))
                continue
            records, good, skipped = scan_segment(data)
            self.corrupt_bytes += skipped
            if skipped:
                self.problems.append('%s: %d corrupt bytes skipped' % (os.path.basename(path), skipped))
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
                    if r[4] is not None:
                        seen.add(r[4])
                    if r[1] not in self._records:
                        self._records[r[1]] = [seg, r[2], r[3], r[4]]
                        self._seg_live[seg] += 1
                        self._live_bytes += len(r[3])
                else:
                    acked.update(r[2])
                    for rid in r[1]:
                        max_id = max(max_id, rid)
                        rec = self._records.pop(rid, None)
                        if rec is not None:
                            self._seg_live[rec[0]] -= 1
                            self._live_bytes -= len(rec[2])
        self._next_id = max_id + 1
        self._count_lost(seen, acked)
        self._compact()
        self._enforce_bound()
        if self.lost:
            self._write_mark()    # settled: reported once, not at every start

    def _count_lost(self, seen, acked):
        """Disk seqs between the settled mark and the newest written one that are neither
        intact nor acknowledged were written and lost."""
        mark = self._read_mark()
        lo = mark[1] if mark else (min(seen) if seen else 1)
        hi = max(mark[0] if mark else 1, max(seen) + 1 if seen else 1)
        if hi - lo > 0:
            present = len([d for d in seen | acked if lo <= d < hi])
            self.lost = (hi - lo) - present
            self.dropped += self.lost
        self._next_dseq = hi
        self._settled = hi

    def _read_mark(self):
        try:
            fd = os.open(os.path.join(self.dir, MARK_NAME), os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
            with os.fdopen(fd, 'rb') as f:
                data = f.read(_MARK.size + 1)
        except OSError:
            return None
        if len(data) != _MARK.size:
            self.problems.append('%s damaged: ignored' % MARK_NAME)
            return None
        magic, nxt, lo, crc = _MARK.unpack(data)
        if magic != MARK_MAGIC or zlib.crc32(data[:-4]) & 0xffffffff != crc or lo > nxt:
            self.problems.append('%s damaged: ignored' % MARK_NAME)
            return None
        return nxt, lo

    def _write_mark(self):
        """Next disk seq and the lowest one still live (everything below is settled). Not
        fsynced on its own: it only ever lags what the segments hold."""
        lo = self._next_dseq
        for rec in self._records.values():
            if rec[3] is not None:
                lo = rec[3]
                break      # records are in id order; written ones come first
        lo = max(lo, self._settled)
        body = struct.pack('<4sQQ', MARK_MAGIC, self._next_dseq, lo)
        path = os.path.join(self.dir, MARK_NAME)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o600)
            try:
                os.pwrite(fd, body + struct.pack('<I', zlib.crc32(body) & 0xffffffff), 0)
            finally:
                os.close(fd)
        except OSError:
            pass   # the mark only sharpens loss counting; segments stay the truth

    def _open_current(self):
        if self._cur is None:
            segs = list(self._seg_size) + self._segments_on_disk(taken=True)
            seg = max(segs) + 1 if segs else 1
            fd = os.open(self._path(seg), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND |
                         getattr(os, 'O_NOFOLLOW', 0), 0o600)
            self._cur_file = os.fdopen(fd, 'ab')
            self._cur_file.write(MAGIC)
            self._cur = seg
            self._seg_size[seg] = len(MAGIC)
            self._seg_live[seg] = 0
            self._sync_dir()
        return self._cur

    def _close_current(self):
        if self._cur_file is not None:
            try:
                self._cur_file.close()
            except OSError:
                pass
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
        dropped = self.dropped
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
                self._buf_bytes -= self._rec_size(rec)
                self.dropped += 1
        if self.dropped != dropped and self.persistent:
            self._write_mark()    # dropped records are counted now, not again as lost
