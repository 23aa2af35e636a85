"""`hashpilot work`: build chip job frames from a Stratum notify, check a chip's nonce frame
and turn it into mining.submit params, hash a header (for integrators and checks).

  hashpilot work job --notify N.json --extranonce1 HEX --extranonce2 HEX --chip BM1370 --job-id K
  hashpilot work share --notify N.json --extranonce1 HEX --extranonce2 HEX --chip BM1370 \
      --nonce-frame HEX [--version-mask HEX] [--pool-difficulty D]
  hashpilot work hash --header HEX
N.json holds a whole mining.notify message or just its params list.
"""

import argparse
import json
import sys

from agent.cli import summary
from hal import codec, families
from hal.work import chipjobs, jobs


class UsageError(ValueError):
    pass


def _hex(text, what):
    t = text.replace(' ', '').replace(':', '')
    if t.lower().startswith('0x'):
        t = t[2:]
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise UsageError('%s: not valid hex: %r' % (what, text))


def _load_notify(path):
    try:
        with open(path) as f:
            msg = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError('--notify %s: %s' % (path, exc))
    params = msg.get('params') if isinstance(msg, dict) else msg
    return jobs.parse_notify(params)


def _work(args):
    job = _load_notify(args.notify)
    return job, jobs.build_work(job, _hex(args.extranonce1, '--extranonce1'),
                                _hex(args.extranonce2, '--extranonce2'))


def _mask(args):
    return int(args.version_mask, 16) if args.version_mask else 0


def cmd_job(args):
    job, work = _work(args)
    if not 0 <= args.job_id <= 127:
        raise UsageError('--job-id must be 0..127')
    frame = chipjobs.job_frame(args.chip, work, args.job_id, _mask(args))
    return {'frame': frame.hex(), 'merkle_root': work['merkle_root'].hex(),
            'merkle_root_display': jobs.display_hash(work['merkle_root']),
            'header': jobs.header(work, work['version'], b'\x00' * 4).hex(),
            'job_id': job['job_id'], 'chip_job_id': args.job_id, 'chip': args.chip.upper()}


def cmd_share(args):
    job, work = _work(args)
    fam = families.get(args.chip)
    d = codec.decode_response(_hex(args.nonce_frame, '--nonce-frame'), fam['nonce_layout'])
    if d['kind'] != 'nonce':
        raise UsageError('--nonce-frame is not a nonce frame: %s' % d.get('error', d['kind']))
    fmt = chipjobs.job_format(args.chip)
    mask = _mask(args)
    ok, h, version, n4 = chipjobs.check_nonce(fmt, work, d, mask, 32)
    diff = jobs.difficulty(h)
    out = {'submit': jobs.submit_params('', work, n4, version, mask)[1:],
           'hash': jobs.display_hash(h), 'difficulty': diff, 'version': '%08x' % version,
           'chip_job_id': chipjobs.result_job_id(fmt, d['header']), 'crc_ok': d['crc_ok']}
    if args.pool_difficulty is not None:
        out['meets_pool'] = jobs.hash_value(h) <= jobs.target_of(args.pool_difficulty)
    return out


def cmd_hash(args):
    hdr = _hex(args.header, '--header')
    if len(hdr) != 80:
        raise UsageError('--header must be 80 bytes, got %d' % len(hdr))
    h = jobs.sha256d(hdr)
    nbits = int.from_bytes(hdr[72:76], 'little')
    return {'hash': jobs.display_hash(h), 'difficulty': jobs.difficulty(h),
            'meets_nbits': jobs.hash_value(h) <= jobs.target_of_nbits(nbits)}


def _common(p):
    p.add_argument('--notify', required=True, help='file with a mining.notify message or params')
    p.add_argument('--extranonce1', required=True)
    p.add_argument('--extranonce2', required=True)
    p.add_argument('--chip', required=True, help='chip family, e.g. BM1370')
    p.add_argument('--version-mask', help='negotiated version-rolling mask (hex)')
    p.add_argument('--json', action='store_true', help='JSON output (the default)')


def build_parser():
    ap = argparse.ArgumentParser(prog='hashpilot work', description=summary(__doc__))
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('job', help='chip job frame, merkle root and header from a notify')
    _common(p)
    p.add_argument('--job-id', type=int, required=True, help='chip job id (0..127)')
    p.set_defaults(fn=cmd_job)
    p = sub.add_parser('share', help='check a nonce frame and build mining.submit params')
    _common(p)
    p.add_argument('--nonce-frame', required=True, help='the chip\'s nonce response (hex)')
    p.add_argument('--pool-difficulty', type=float)
    p.set_defaults(fn=cmd_share)
    p = sub.add_parser('hash', help='block hash (display order) and difficulty of a header')
    p.add_argument('--header', required=True, help='80-byte header (hex)')
    p.add_argument('--json', action='store_true')
    p.set_defaults(fn=cmd_hash)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        out = args.fn(args)
    except (UsageError, jobs.JobError, KeyError) as exc:
        print('hashpilot work: %s' % (exc.args[0] if exc.args else exc), file=sys.stderr)
        return 2
    print(json.dumps(out, sort_keys=True))
    return 0
