"""The work path's pure core (hal/work) gives the same frames, hashes and submits under a real
MicroPython 1.27 (Unix port, tests/mpyunix.py) as under CPython."""

import json
import os
import subprocess
import sys

from tests import mpyunix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE = ['hal/__init__.py', 'hal/crc.py', 'hal/codec.py', 'hal/work/__init__.py',
        'hal/work/sha256.py', 'hal/work/jobs.py', 'hal/work/chipjobs.py',
        'agent/__init__.py', 'agent/stratum/__init__.py', 'agent/stratum/protocol.py',
        'agent/work/__init__.py', 'agent/work/tally.py']

SCRIPT = r'''
from hal import codec
from hal.work import jobs, chipjobs
from agent.stratum import protocol
params = PARAMS
job = jobs.parse_notify(params)
work = jobs.build_work(job, jobs.unhex('4128064f'), jobs.extranonce2(0x17, 4))
print(jobs.tohex(chipjobs.job_frame('BM1370', work, 0x68)))
print(jobs.tohex(chipjobs.job_frame('BM1397', work, 8, 0x1fffe000)))
d = codec.decode_response(jobs.unhex('aa554c0352750cd205a29c'), 'bm1370')
fmt = chipjobs.job_format('BM1370')
ok, h, v, n4 = chipjobs.check_nonce(fmt, work, d, 0x1fffe000, 40)
print(ok, jobs.display_hash(h), int(jobs.difficulty(h)), hex(v))
print(jobs.submit_params('w', work, n4, v, 0x1fffe000))
print(hex(jobs.target_of(8192)), jobs.increment_bitmask(0x20000004, 0x00ffff00))
s = protocol.Session('u.rig', 'pw')
print(sorted(s.request('mining.subscribe', ['hashpilot']).items()))
print(sorted(s.handle({'id': None, 'method': 'mining.set_difficulty', 'params': [0.5]}).items()))
from agent.work.tally import ChipTally
t = ChipTally(10.0)
t.update(0.0)
for k in range(30):
    t.add(k % 10 != 0, 8)
t.update(12.0)
print(sorted(t.get_status().items()))
'''


def test_work_core_matches_under_micropython(tmp_path):
    with open(os.path.join(ROOT, 'tests', 'data', 'work_capture_bm1370_notify.json')) as f:
        params = json.load(f)['params']
    path = tmp_path / 'check.py'
    path.write_text(SCRIPT.replace('PARAMS', repr(params)))
    cpy = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert cpy.returncode == 0, cpy.stderr
    mpy = mpyunix.run(path, PURE, tmp_path / 'lib', vendor=False, timeout=120)
    assert mpy.returncode == 0, mpy.stderr + mpy.stdout
    assert mpy.stdout.splitlines() == cpy.stdout.splitlines()
    assert '7552034c' in cpy.stdout


POOL_MODULES = PURE + ['hal/parallel.py', 'hal/clock.py', 'agent/stratum/pools.py',
                       'agent/stratum/netio.py']

POOL_SCRIPT = r'''
import sys, time
from agent.stratum.pools import PoolCore
from agent.stratum import netio
from hal.work import jobs
evs = []
core = PoolCore([{'url': 'stratum+tcp://127.0.0.1:%s' % sys.argv[1], 'user': 'acct.bx',
                  'password': 'x'}], on_event=evs.append, connect=netio.open_connection,
                timeout_s=3.0, backoff_base_s=0.1, backoff_max_s=0.3)

def until(pred, wait_s=20.0):
    t0 = time.time()
    while time.time() - t0 < wait_s:
        core.service(0.02)
        if pred():
            return True
    raise AssertionError('timeout; events %r' % [e['event'] for e in evs])

def last_job():
    js = [e for e in evs if e['event'] == 'job']
    return js[-1] if js else None

until(last_job)
job = last_job()
st = core.status()['pools'][0]
print('up', st['state'], st['connected'], st['bad_lines'], job['en2_size'], hex(job['mask']))
work = jobs.build_work(job['job'], job['extranonce1'], jobs.extranonce2(1, job['en2_size']))
target = jobs.target_of(job['difficulty'])
for n in range(1 << 20):
    n4 = n.to_bytes(4, 'little')
    if jobs.hash_value(jobs.sha256d(jobs.header(work, work['version'], n4))) <= target:
        break
print('submit', core.submit(jobs.submit_params('', work, n4, work['version'], job['mask'])[1:],
                            job['gen']))
until(lambda: core.status()['pools'][0]['accepted'] == 1)
print('accepted', core.status()['pools'][0]['accepted'])
sys.stdout.write('killed\n')
until(lambda: core.status()['all_down'])
print('down', core.status()['pools'][0]['state'], core.submit(['x'], job['gen']))
open(sys.argv[2], 'w').write('revive')
until(lambda: core.status()['pools'][0]['connected'])
print('back', core.gen > job['gen'], core.status()['pools'][0]['failures'])
'''


def test_pool_core_under_micropython(tmp_path):
    """PoolCore + netio (no thread) under MicroPython against the test pool: handshake with
    junk lines skipped, a share accepted, the pool killed (all down, submits refused), back."""
    import threading
    import time
    from agent.stratum.testpool import TestPool
    pool = TestPool(difficulty=1.0 / (1 << 16), quirks=('junk_lines',))
    flag = tmp_path / 'flag'
    path = tmp_path / 'pool.py'
    path.write_text(POOL_SCRIPT)
    lines = []

    def control():
        # the pool side of the script's story: kill after the share, revive when asked
        end = time.monotonic() + 60
        while time.monotonic() < end and pool.counts['accepted'] < 1:
            time.sleep(0.05)
        time.sleep(0.3)
        pool.kill()
        while time.monotonic() < end and not flag.exists():
            time.sleep(0.05)
        pool.revive()
    t = threading.Thread(target=control, daemon=True)
    t.start()
    try:
        mpy = mpyunix.run(path, POOL_MODULES, tmp_path / 'lib', timeout=120,
                          args=(str(pool.port), str(flag)))
    finally:
        t.join(5)
        pool.close()
    lines = mpy.stdout.splitlines()
    assert mpy.returncode == 0, mpy.stderr + mpy.stdout
    assert lines[0] == 'up up True 3 4 0x1fffe000', lines
    assert lines[1] == 'submit sent' and lines[2] == 'accepted 1', lines
    assert lines[4] == 'down down down', lines
    assert lines[5].startswith('back True'), lines
    assert pool.counts['accepted'] == 1 and pool.counts['connections'] == 2
