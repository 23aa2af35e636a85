"""Outbox against a hostile disk: corruption anywhere counted exactly, stray state-dir entries,
a full disk that must not breed files. (issue 17)"""

import errno
import os

import pytest

from agent.outbox import MAGIC, MARK_NAME, Outbox, scan_segment


def segs(d):
    return sorted(n for n in os.listdir(d) if n.startswith('seg-'))


def filled(d, n=26, per_flush=1, seg_bytes=1024):
    """n records written in flushes of per_flush, none acked; returns their ids."""
    ob = Outbox(d, segment_bytes=seg_bytes, flush_bytes=1 << 20)
    ids = []
    for i in range(n):
        ids.append(ob.append('hashpilot/v1/s/r/telemetry', b'%04d' % i + b'x' * 60))
        if (i + 1) % per_flush == 0:
            ob.flush()
    ob.close()
    return ids


def rewrite(path, fn):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(fn(data))


def record_spans(data):
    """(start, end) of every record in a clean segment."""
    spans, pos = [], len(MAGIC)
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], 'little')
        spans.append((pos, pos + 8 + length))
        pos += 8 + length
    return spans


def corrupt_middle_record(data):
    s, e = record_spans(data)[3]
    return data[:s + 10] + b'\xff' * 20 + data[s + 30:]


CASES = {
    # name: (how the outbox is damaged, records lost)
    'bit flip in one record': (lambda d: rewrite(os.path.join(d, segs(d)[0]), corrupt_middle_record), 1),
    'middle segment truncated to half': (
        lambda d: rewrite(os.path.join(d, segs(d)[1]), lambda b: b[:len(MAGIC) + (len(b) - len(MAGIC)) // 2]),
        None),
    'newest segment truncated to its header': (
        lambda d: rewrite(os.path.join(d, segs(d)[-1]), lambda b: b[:len(MAGIC)]), 'last'),
    'oldest segment overwritten with junk': (
        lambda d: rewrite(os.path.join(d, segs(d)[0]), lambda b: b'\x5a' * len(b)), 'first'),
    'newest segment overwritten with junk': (
        lambda d: rewrite(os.path.join(d, segs(d)[-1]), lambda b: os.urandom(len(b))), 'last'),
    'middle segment deleted': (lambda d: os.remove(os.path.join(d, segs(d)[1])), 'second'),
    'header overwritten, records intact': (
        lambda d: rewrite(os.path.join(d, segs(d)[0]), lambda b: b'JUNK!!' + b[6:]), 0),
    'mark file deleted': (lambda d: os.remove(os.path.join(d, MARK_NAME)), 0),
    'mark file garbage': (lambda d: rewrite(os.path.join(d, MARK_NAME), lambda b: b'\x00' * len(b)), 0),
}


def per_segment_counts(d):
    out = []
    for name in segs(d):
        with open(os.path.join(d, name), 'rb') as f:
            out.append(len([r for r in scan_segment(f.read())[0] if r[0] == 'D']))
    return out


@pytest.mark.parametrize('case', sorted(CASES))
def test_corruption_recovers_intact_and_counts_lost_exactly(tmp_path, case):
    d = str(tmp_path)
    ids = filled(d, n=26, per_flush=2)
    counts = per_segment_counts(d)
    assert len(counts) >= 3 and sum(counts) == 26
    before = {}
    for name in segs(d):
        with open(os.path.join(d, name), 'rb') as f:
            before[name] = [r[1] for r in scan_segment(f.read())[0] if r[0] == 'D']
    damage, lost = CASES[case]
    names = segs(d)
    damage(d)
    if lost == 'first':
        lost = len(before[names[0]])
    elif lost == 'second':
        lost = len(before[names[1]])
    elif lost == 'last':
        lost = len(before[names[-1]])
    ob = Outbox(d)
    got = [p[0] for p in ob.pending()]
    assert got == sorted(got) and set(got) <= set(ids)
    if lost is None:      # truncated to half: whatever did not survive is counted
        lost = 26 - len(got)
        assert 0 < lost < len(before[names[1]]) + 1
    assert ob.lost == 26 - len(got) == lost, (case, ob.lost, len(got), ob.problems)
    assert ob.get_status()['lost'] == lost
    ob.append('hashpilot/v1/s/r/telemetry', b'after')
    ob.close()
    again = Outbox(d)     # reported once: a restart does not count the same loss again
    assert again.lost == 0
    assert len(again) == len(got) + 1


def test_acked_records_in_a_lost_segment_are_not_lost(tmp_path):
    d = str(tmp_path)
    ob = Outbox(d, segment_bytes=1024, flush_bytes=1 << 20)
    ids = [ob.append('t', b'x' * 60) for _ in range(10)]
    ob.flush()
    for rid in ids[:4]:
        ob.ack(rid)
    ob.flush()       # ack records in the same (first) segment
    more = [ob.append('t', b'y' * 60) for _ in range(10)]
    ob.flush()
    ob.close()
    first = os.path.join(d, segs(d)[0])
    with open(first, 'rb') as f:
        data = f.read()
    spans = record_spans(data)
    # destroy the data of records 2 and 3 (acked, ack record intact) and of record 6 (live)
    bad = bytearray(data)
    for k in (2, 3, 6):
        s, e = spans[k]
        bad[s + 9] ^= 0xff
    with open(first, 'wb') as f:
        f.write(bytes(bad))
    ob2 = Outbox(d)
    assert ob2.lost == 1
    assert [p[0] for p in ob2.pending()] == [r for r in ids[4:] if r != ids[6]] + more


def test_directory_named_like_a_segment_does_not_stop_start(tmp_path):
    d = str(tmp_path)
    ids = filled(d, n=5)
    os.mkdir(os.path.join(d, 'seg-00000000.log'))
    os.mkdir(os.path.join(d, 'seg-99999999.log'))
    ob = Outbox(d)
    assert ob.persistent and [p[0] for p in ob.pending()] == ids
    assert any('not a regular file' in p for p in ob.problems)
    ob.append('t', b'new')
    ob.close()             # the next segment number skips past the stray directory
    assert len(Outbox(d)) == 6


def test_symlink_named_like_a_segment_is_never_read_or_truncated(tmp_path):
    d = str(tmp_path / 'ob')
    os.mkdir(d)
    victim = tmp_path / 'victim'
    victim.write_bytes(MAGIC + b'junk that would be truncated')
    os.symlink(str(victim), os.path.join(d, 'seg-00000001.log'))
    ob = Outbox(d)
    assert victim.read_bytes() == MAGIC + b'junk that would be truncated'
    ob.append('t', b'x')
    ob.close()
    assert victim.read_bytes() == MAGIC + b'junk that would be truncated'
    assert len(Outbox(d)) == 1


def test_state_dir_is_a_file_runs_in_ram(tmp_path):
    f = tmp_path / 'outbox'
    f.write_text('not a directory')
    ob = Outbox(str(f), max_bytes=8192)
    assert not ob.persistent and ob.problems
    ids = [ob.append('t', b'z' * 100) for _ in range(200)]
    assert ob.maybe_flush(now=1e9) is False
    ob.flush()
    st = ob.get_status()
    assert st['buffered_bytes'] <= 8192 and st['dropped'] > 0        # bounded in RAM too
    assert [p[0] for p in ob.pending()] == ids[-len(ob):]
    assert f.read_text() == 'not a directory'


def test_parent_not_a_directory_runs_in_ram(tmp_path):
    f = tmp_path / 'state'
    f.write_text('x')
    ob = Outbox(str(f / 'outbox'))
    assert not ob.persistent
    ob.ack(ob.append('t', b'x'))
    ob.close()


def test_full_disk_does_not_breed_segments_and_is_reported(tmp_path, monkeypatch):
    d = str(tmp_path)
    ob = Outbox(d, max_bytes=64 << 10, flush_bytes=512, segment_bytes=4096)
    ob.append('t', b'a' * 100)
    ob.flush()
    real_fsync = os.fsync

    def enospc(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', enospc)
    for i in range(3000):
        ob.append('t', b'%05d' % i + b'b' * 95)
        ob.maybe_flush(now=1e9 + i)
    st = ob.get_status()
    assert st['failing'] and st['write_errors'] > 0
    assert 'No space' in st['last_error']
    assert len(segs(d)) <= 2                       # not one new file per failed flush
    assert st['disk_bytes'] + st['buffered_bytes'] <= 64 << 10
    assert st['dropped'] > 0 and st['dropped'] + len(ob) == 3001
    monkeypatch.setattr(os, 'fsync', real_fsync)
    ob.maybe_flush(now=2e9)
    assert not ob.get_status()['failing']
    kept = [p[0] for p in ob.pending()]
    ob.close()
    again = Outbox(d, max_bytes=64 << 10)
    assert [p[0] for p in again.pending()] == kept and again.lost == 0


def test_failing_clears_only_when_a_write_succeeds(tmp_path, monkeypatch):
    d = str(tmp_path)
    ob = Outbox(d, flush_bytes=1 << 20)
    real_fsync = os.fsync

    def enospc(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', enospc)
    rid = ob.append('t', b'x')
    assert not ob.maybe_flush(now=1e9) and ob.failing
    ob.ack(rid)                                   # delivered meanwhile: nothing left to write
    assert not ob.maybe_flush(now=2e9) and ob.failing   # the disk is still full: still failing
    assert len(segs(d)) == 0
    monkeypatch.setattr(os, 'fsync', real_fsync)
    ob.append('t', b'y')
    ob.ack(ob.ids()[0])
    ob.maybe_flush(now=3e9)
    assert not ob.failing                         # a real write (the probe) went through
