"""Durable outbox: order, acks, batching, torn tails after kill -9, bound and compaction."""

import os
import random

import pytest

from agent.outbox import MAGIC, Outbox, parse_segment


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def segs(d):
    return sorted(n for n in os.listdir(d) if n.startswith('seg-'))


def test_reload_keeps_unacked_in_order(tmp_path):
    ob = Outbox(str(tmp_path))
    ids = [ob.append('t/%d' % i, b'payload-%d' % i) for i in range(50)]
    for rid in ids[::3]:
        assert ob.ack(rid)
    ob.close()
    ob2 = Outbox(str(tmp_path))
    want = [(rid, 't/%d' % i, b'payload-%d' % i) for i, rid in enumerate(ids) if i % 3]
    assert ob2.pending() == want
    new = ob2.append('x', b'y')
    assert new > max(ids)  # ids stay unique across restarts


def test_acked_before_flush_never_written(tmp_path):
    clock = FakeClock()
    ob = Outbox(str(tmp_path), flush_interval_s=5.0, clock=clock)
    for i in range(100):
        ob.ack(ob.append('t', b'x' * 100))
    clock.t = 10.0
    ob.maybe_flush()
    assert ob.flushes == 0 and segs(str(tmp_path)) == []
    assert Outbox(str(tmp_path)).pending() == []


def test_batched_fsync_on_timer_and_size(tmp_path):
    clock = FakeClock()
    ob = Outbox(str(tmp_path), flush_bytes=4096, flush_interval_s=1.0, clock=clock)
    for i in range(10):
        ob.append('t', b'x' * 10)
    assert not ob.maybe_flush()          # neither old nor big enough yet
    clock.t = 1.5
    assert ob.maybe_flush() and ob.flushes == 1   # one fsync for the whole batch
    for i in range(40):
        ob.append('t', b'y' * 200)       # crosses 4 KiB -> flushes by size, not per message
    assert 1 < ob.flushes <= 4


def test_unflushed_tail_is_lost_but_flushed_survives_without_close(tmp_path):
    ob = Outbox(str(tmp_path))
    a = ob.append('t', b'one')
    ob.flush()
    ob.append('t', b'two')                # never flushed: simulated kill -9, no close()
    assert [p[0] for p in Outbox(str(tmp_path)).pending()] == [a]


def test_torn_tail_at_every_offset(tmp_path):
    d = str(tmp_path / 'src')
    ob = Outbox(d)
    for i in range(3):
        ob.append('topic/%d' % i, bytes([i]) * 40)
    ob.flush()
    last = ob.append('topic/last', b'L' * 40)
    ob.flush()
    ob.close()
    name = segs(d)[0]
    data = open(os.path.join(d, name), 'rb').read()
    _recs, good = parse_segment(data)
    assert good == len(data)
    rec_len = len(data) - parse_segment(data[:-1])[1]
    first_cut = len(data) - rec_len
    for cut in range(first_cut, len(data)):   # truncated anywhere inside the last record
        w = str(tmp_path / ('cut%d' % cut))
        os.makedirs(w)
        with open(os.path.join(w, name), 'wb') as f:
            f.write(data[:cut])
        ob2 = Outbox(w)
        ids = [p[0] for p in ob2.pending()]
        assert len(ids) == 3 and last not in ids
        assert ob2.truncated_bytes == cut - first_cut
        assert os.path.getsize(os.path.join(w, name)) == first_cut   # tail cut off cleanly
        ob2.append('after', b'crash')
        ob2.close()
        assert [p[1] for p in Outbox(w).pending()][-1] == 'after'


def test_corrupt_byte_detected_by_crc(tmp_path):
    ob = Outbox(str(tmp_path))
    for i in range(5):
        ob.append('t', b'%d' % i * 30)
    ob.close()
    path = os.path.join(str(tmp_path), segs(str(tmp_path))[0])
    data = bytearray(open(path, 'rb').read())
    data[-5] ^= 0x55                      # bit rot in the last record's payload
    open(path, 'wb').write(bytes(data))
    assert len(Outbox(str(tmp_path)).pending()) == 4


def test_garbage_file_does_not_crash(tmp_path):
    rnd = random.Random(7)
    for i in range(20):
        d = str(tmp_path / str(i))
        os.makedirs(d)
        blob = MAGIC + bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        open(os.path.join(d, 'seg-00000001.log'), 'wb').write(blob if i % 2 else blob[6:])
        ob = Outbox(d)
        assert ob.pending() == []
        ob.append('t', b'ok')
        ob.close()
        assert [p[2] for p in Outbox(d).pending()] == [b'ok']


def test_bound_drops_oldest_and_counts(tmp_path):
    ob = Outbox(str(tmp_path), max_bytes=16384, segment_bytes=2048, flush_bytes=1024)
    ids = [ob.append('t', b'%06d' % i + b'z' * 94) for i in range(1000)]
    st = ob.get_status()
    assert st['disk_bytes'] + st['buffered_bytes'] <= 16384
    assert ob.dropped > 0 and ob.dropped + len(ob) == 1000
    kept = [p[0] for p in ob.pending()]
    assert kept == ids[-len(kept):]       # the newest survive, in order
    ob.close()
    assert [p[0] for p in Outbox(str(tmp_path), max_bytes=16384).pending()] == kept


def test_compaction_deletes_acked_segments(tmp_path):
    ob = Outbox(str(tmp_path), max_bytes=1 << 20, segment_bytes=1024, flush_bytes=512)
    ids = [ob.append('t', b'q' * 100) for i in range(100)]
    ob.flush()
    assert len(segs(str(tmp_path))) > 5
    for rid in ids[:-1]:
        ob.ack(rid)
    ob.flush()
    assert len(segs(str(tmp_path))) <= 2
    ob.close()
    assert [p[0] for p in Outbox(str(tmp_path)).pending()] == [ids[-1]]


def test_acks_persist_across_restart(tmp_path):
    ob = Outbox(str(tmp_path))
    ids = [ob.append('t', b'm%d' % i) for i in range(10)]
    ob.flush()
    for rid in ids[:7]:
        ob.ack(rid)
    ob.flush()                            # acks written in one batch record
    ob.append('t', b'unflushed')          # lost with the simulated kill
    assert [p[0] for p in Outbox(str(tmp_path)).pending()] == ids[7:]


@pytest.mark.parametrize('seed', range(5))
def test_random_ops_match_model(tmp_path, seed):
    rnd = random.Random(seed)
    d = str(tmp_path)

    def mk():
        return Outbox(d, max_bytes=1 << 20, segment_bytes=4096, flush_bytes=1024)
    ob = mk()
    durable = {}   # id -> payload as of the last batch written
    acked = set()  # acked since that batch: may or may not come back (segment already deleted)
    live = {}
    flushes = 0
    for step in range(600):
        r = rnd.random()
        if r < 0.5:
            p = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 60)))
            live[ob.append('t/%d' % step, p)] = p
        elif r < 0.8 and live:
            rid = rnd.choice(list(live))
            assert ob.ack(rid)
            del live[rid]
            acked.add(rid)
        elif r < 0.95:
            ob.flush()
        else:
            ob = mk()   # crash: nothing closed, unflushed batch lost
            got = {p[0]: p[2] for p in ob.pending()}
            must = {k: v for k, v in durable.items() if k not in acked}
            assert set(must) <= set(got) <= set(durable)
            assert all(got[k] == durable[k] for k in got)
            live = got
            acked = set()
        if ob.flushes != flushes or r >= 0.8:
            durable = dict(live)
            acked = set()
        flushes = ob.flushes
        assert [p[0] for p in ob.pending()] == sorted(live)
    ob.close()
    assert {p[0]: p[2] for p in Outbox(d).pending()} == live


def test_failed_write_keeps_batch_and_file_clean(tmp_path, monkeypatch):
    ob = Outbox(str(tmp_path), flush_bytes=1 << 20)
    a = ob.append('t', b'first')
    ob.flush()
    b = ob.append('t', b'second')
    size_before = os.path.getsize(os.path.join(str(tmp_path), segs(str(tmp_path))[0]))

    def enospc(fd):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', enospc)
    with pytest.raises(OSError):
        ob.flush()
    assert not ob.maybe_flush(now=1e9)              # timer path reports, never raises
    assert ob.get_status()['write_errors'] == 2
    first = os.path.join(str(tmp_path), segs(str(tmp_path))[0])
    assert os.path.getsize(first) == size_before    # partial batch cut off again
    monkeypatch.undo()
    ob.flush()                                      # the disk is back: the batch is retried
    assert [p[0] for p in Outbox(str(tmp_path)).pending()] == [a, b]
