"""hal/recent.RecentKeys, the chain driver's duplicate-nonce window: a key is a duplicate while it
is one of the last n, forgotten after; under MicroPython its memory is taken at construction and
does not grow however many keys pass (a growing dict failed in a fragmented 256 KB heap)."""

from hal.recent import RecentKeys


def test_duplicates_within_the_window_only():
    r = RecentKeys(3)
    assert [r.add(k) for k in ('a', 'b', 'a', 'c')] == [False, False, True, False]
    assert len(r) == 3
    assert r.add('d') is False            # 'a' forgotten now (oldest)
    assert 'a' not in r and 'b' in r
    assert r.add('a') is False and r.add('d') is True
    assert len(r) == 3


def test_chain_driver_counts_duplicates_through_it():
    from hal.chain import ChainDriver
    from hal.transport import Transport
    drv = ChainDriver(Transport('loop://', 115200), 'BM1370', recent_nonces=2)
    for n in (1, 2, 1, 3, 1):
        drv._on_nonce({'nonce': n, 'header': None, 'version': 0})
    assert drv.nonces == 5 and drv.nonces_duplicate == 1   # the last 1 came after 2 others


MPY_SCRIPT = '''
import gc, sys
from hal.recent import RecentKeys


class Growing:
    # the window as it was: a dict and a list that grow (and are reallocated) as keys come
    def __init__(self, n):
        self.n, self.d, self.o = n, {}, []

    def add(self, key):
        if key in self.d:
            return True
        self.d[key] = True
        self.o.append(key)
        if len(self.o) > self.n:
            self.d.pop(self.o.pop(0), None)
        return False


def main(kind):
    r = RecentKeys(256) if kind == 'recent' else Growing(256)
    # Fragment the heap: fill it with small blocks, free every other one. What is left are
    # holes of one small block each, as after hours of telemetry, MQTT and frame buffers.
    junk = [None] * 8000
    n = 0
    try:
        while n < len(junk):
            junk[n] = bytearray(40)
            n += 1
    except MemoryError:
        pass
    i = 0
    while i < n:
        junk[i] = None
        i += 2
    gc.collect()
    dups = 0
    i = 0
    while i < 20000:
        k = i * 2654435761 & 0xffffffff
        if r.add((k, None, i % 7)):
            dups += 1
        if r.add((k, None, i % 7)):
            dups += 1
        i += 1
    return dups


print('dups', main(sys.argv[-1]))
'''


def test_memory_fixed_under_micropython(tmp_path):
    """In a heap fragmented to small holes, 20 000 nonces pass through the window without one
    allocation bigger than a key; the growing dict and list it replaced fail there."""
    from tests import mpyunix
    path = tmp_path / 'recent_mpy.py'
    path.write_text(MPY_SCRIPT)
    runs = {}
    for kind in ('recent', 'growing'):
        runs[kind] = mpyunix.run(path, ['hal/__init__.py', 'hal/recent.py'], tmp_path / 'lib',
                                 heapsize='256K', vendor=False, args=(kind,))
    ok = runs['recent']
    assert ok.returncode == 0 and ok.stdout.split() == ['dups', '20000'], ok.stderr + ok.stdout
    grown = runs['growing']
    assert grown.returncode != 0 and 'MemoryError' in grown.stdout + grown.stderr, grown.stdout
