"""`hashpilot work job|share|hash` on the captured BM1370 round trip and the genesis header."""

import json
import os

from agent import cli

DATA = os.path.join(os.path.dirname(__file__), 'data')
NOTIFY = os.path.join(DATA, 'work_capture_bm1370_notify.json')


def _run(capsys, argv):
    rc = cli.main(['work'] + argv)
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else err)


def test_job_share_hash(capsys):
    with open(os.path.join(DATA, 'work_capture_bm1370.json')) as f:
        cap = json.load(f)
    common = ['--notify', NOTIFY, '--extranonce1', cap['extranonce1'], '--extranonce2',
              cap['extranonce2'], '--chip', 'BM1370', '--version-mask', cap['version_mask'], '--json']
    rc, job = _run(capsys, ['job', '--job-id', '104'] + common)
    assert rc == 0 and job['frame'] == cap['job_frame']
    assert len(bytes.fromhex(job['header'])) == 80 and job['header'].endswith('00000000')
    rc, share = _run(capsys, ['share', '--nonce-frame', cap['nonce_frame'],
                              '--pool-difficulty', '8192'] + common)
    assert rc == 0 and share['submit'] == cap['submit'] and share['meets_pool']
    assert round(share['difficulty']) == 29588
    rc, share = _run(capsys, ['share', '--nonce-frame', cap['nonce_frame'],
                              '--pool-difficulty', '65536'] + common)
    assert not share['meets_pool']
    hdr = bytes.fromhex(job['header'][:-8]) + bytes.fromhex(share['submit'][3])[::-1]
    # the header with the rolled version and the chip's nonce hashes to the share's hash
    hdr = bytes.fromhex(share['version'])[::-1] + hdr[4:]
    rc, h = _run(capsys, ['hash', '--header', hdr.hex(), '--json'])
    assert rc == 0 and h['hash'] == share['hash'] and not h['meets_nbits']


def test_bad_input_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / 'n.json'
    bad.write_text('{"params": ["x"]}')
    rc, err = _run(capsys, ['job', '--notify', str(bad), '--extranonce1', '00', '--extranonce2',
                            '00', '--chip', 'BM1370', '--job-id', '8'])
    assert rc == 2 and '9 params' in err
    rc, err = _run(capsys, ['hash', '--header', 'abcd'])
    assert rc == 2 and '80 bytes' in err
    rc, err = _run(capsys, ['job', '--notify', NOTIFY, '--extranonce1', '00', '--extranonce2',
                            '00', '--chip', 'BM9999', '--job-id', '8'])
    assert rc == 2 and 'BM9999' in err
