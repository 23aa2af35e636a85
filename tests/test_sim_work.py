"""Simulated chips' work (hal/sim/work.py): a real job frame in, nonces out that the host's own
check accepts (real solutions at work_check_bits), wrong ones at the fault share; the plug-in
interface (job_sink / nonce_source) a Chain uses."""

import json
import os
import random

from hal import codec, families
from hal.sim.work import SimWork
from hal.work import chipjobs, jobs

DATA = os.path.join(os.path.dirname(__file__), 'data')


class Chip:
    def __init__(self, addr, frac=0.0):
        self.addr = addr
        self.rolling = True
        self.regs = {0xA4: 0x9000FFFF}
        self.silicon = {'bad_nonce_frac': frac}

    def err(self):
        return 0.0


def _work():
    with open(os.path.join(DATA, 'work_capture_bm1370_notify.json')) as f:
        job = jobs.parse_notify(json.load(f)['params'])
    return jobs.build_work(job, b'\x01\x02\x03\x04', jobs.extranonce2(7, 8))


def test_solutions_pass_the_hosts_check_and_bad_ones_fail():
    fam = families.get('BM1368')
    sw = SimWork(fam, random.Random(3), check_bits=8)
    work = _work()
    fmt = chipjobs.job_format('BM1368')
    chip = Chip(0x2A)
    assert sw.nonce_source(chip)[0] is not None          # before any job: random fields
    sw.job_sink(chipjobs.job_frame('BM1368', work, 48, 0x1FFFE000), 0.0)
    assert sw.has_job() and sw.get_status()['jobs'] == 1
    for bad in (False, True):
        for _ in range(20):
            chip.silicon['bad_nonce_frac'] = 1.0 if bad else 0.0
            src = sw.nonce_source(chip)
            fr = codec.nonce_response(src[0], src[1], src[2], src[3], 11)
            d = codec.decode_response(fr, fam['nonce_layout'])
            assert d['crc_ok'] and chipjobs.result_job_id(fmt, d['header']) == 48
            assert d['chip_addr'] == 0x2A
            ok = chipjobs.check_nonce(fmt, work, d, 0x1FFFE000, 8)[0]
            assert ok != bad
    assert sw.hashes > 40


def test_midstate_jobs_are_counted_not_hashed():
    sw = SimWork(families.get('BM1397'), random.Random(1))
    sw.job_sink(chipjobs.job_frame('BM1397', _work(), 4), 0.0)
    assert not sw.has_job() and sw.get_status()['unsupported_jobs'] == 1
