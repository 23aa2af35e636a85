"""port/flash_outbox.py, the MicroPython agent's outbox: order, restart, torn tail, bound —
the same script under CPython and under the MicroPython Unix port, same answers."""

import os
import subprocess
import sys

import pytest

from tests import mpyunix

SCRIPT = r'''
import os
from port.flash_outbox import FlashOutbox
t = [0.0]
clock = lambda: t[0]
d = DIR


def drain(ob, n=None):
    got = []
    while n is None or len(got) < n:
        r = ob.peek()
        if r is None:
            break
        got.append(r[1][-1])
        ob.pop()
    return got


ob = FlashOutbox(d, clock, max_bytes=8192, segment_bytes=1024, flush_bytes=300, flush_s=5)
for i in range(40):
    ob.append('hashpilot/v1/s/r/telemetry', b'x' * 50 + bytes([i]))
    t[0] += 1
    ob.maybe_flush()
st = ob.get_status()
print('queued', len(ob), 'segments', st['segments'], 'writes', st['writes'], 'dropped', ob.dropped)
first = drain(ob, 15)
ob.close()
ob = FlashOutbox(d, clock, max_bytes=8192, segment_bytes=1024, flush_bytes=300, flush_s=5)
print('after restart', len(ob))
rest = drain(ob)
print('order', first + rest)
# a torn tail: the last record half written (power cut mid-write)
for i in range(5):
    ob.append('t', b'y' * 20 + bytes([100 + i]))
ob.flush()
ob.close()
names = sorted(n for n in os.listdir(d) if n.startswith('ob-'))
path = d + '/' + names[-1]
with open(path, 'rb') as f:
    data = f.read()
with open(path, 'wb') as f:
    f.write(data[:-7])
ob = FlashOutbox(d, clock, max_bytes=8192, segment_bytes=1024, flush_bytes=300, flush_s=5)
print('torn', drain(ob))
for i in range(300):
    ob.append('t', b'z' * 100)
print('bounded', len(ob), ob.dropped, ob.get_status()['disk_bytes'] <= 8192)
for n in os.listdir(d):
    os.remove(d + '/' + n)
'''


def _expected_lines(out):
    lines = out.strip().splitlines()
    assert lines[0].startswith('queued 40 segments') and lines[0].endswith('dropped 0'), lines
    assert lines[1] == 'after restart 27'            # a partly sent segment goes out again
    order = eval(lines[2][6:])
    assert order[:15] == list(range(15)) and sorted(set(order)) == list(range(40)), order
    assert lines[3] == 'torn [100, 101, 102, 103]'   # the torn record is gone, the rest kept
    assert lines[4].startswith('bounded ') and lines[4].endswith(' True'), lines[4]
    return lines


@pytest.mark.e2e
def test_flash_outbox_same_under_cpython_and_micropython(tmp_path):
    cp_dir = tmp_path / 'cp'
    mp_dir = tmp_path / 'mp'
    script = tmp_path / 'ob.py'
    script.write_text('DIR = %r\n' % str(cp_dir) + SCRIPT)
    cp = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, PYTHONPATH=mpyunix.ROOT))
    assert cp.returncode == 0, cp.stderr
    script.write_text('DIR = %r\n' % str(mp_dir) + SCRIPT)
    mp = mpyunix.run(script, ['port/__init__.py', 'port/flash_outbox.py'], tmp_path / 'lib',
                     vendor=False, heapsize='256K', timeout=60)
    assert mp.returncode == 0, mp.stderr + mp.stdout
    assert _expected_lines(mp.stdout) == _expected_lines(cp.stdout)
