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
