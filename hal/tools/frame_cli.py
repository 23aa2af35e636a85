"""`hashpilot frame`: decode BM13xx frames from hex (protocol analyser) or encode commands.

  hashpilot frame decode "55 AA 52 05 00 00 0A" AA55137000000000 06 ...   (JSON line per frame)
  hashpilot frame decode --family BM1368 AA55...          (nonce job/core/chip fields)
  hashpilot frame encode read --reg 0x00 --broadcast
  hashpilot frame encode write --addr 2 --reg 0x08 --value 0x50C20240
  hashpilot frame encode set-address --addr 2 | inactive
  hashpilot frame encode pll --chip BM1366 --mhz 485
"""

import argparse
import json
import sys

from hal import codec, families, pll, registers


class UsageError(ValueError):
    pass


def parse_hex(words):
    text = ''.join(words).replace(' ', '').replace(':', '').replace(',', '')
    if text.lower().startswith('0x'):
        text = text[2:]
    if not text:
        raise UsageError('no hex given')
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError('not valid hex: %r' % ' '.join(words))


def int_arg(text):
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError('not an integer: %r (use 12 or 0x0C)' % text)


def byte_arg(text):
    v = int_arg(text)
    if not 0 <= v <= 0xFF:
        raise argparse.ArgumentTypeError('%r is outside 0..255' % text)
    return v


def u32_arg(text):
    v = int_arg(text)
    if not 0 <= v <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError('%r is outside 0..0xFFFFFFFF' % text)
    return v


def _jsonable(d):
    out = {}
    for k, v in d.items():
        out[k] = v.hex() if isinstance(v, (bytes, bytearray)) else v
    return out


def decode_one(frame, layout=None, family=None):
    """Decode one frame of either direction; adds hex, the register's name and its fields
    (hal/registers.py; family-specific layouts follow `family` when given)."""
    if frame[:2] == codec.CMD_PREAMBLE:
        d = codec.decode_command(frame)
    else:
        d = codec.decode_response(frame, layout)
    d = _jsonable(d)
    d['hex'] = frame.hex(' ')
    if 'value' in d:
        d['value_hex'] = '0x%08X' % d['value']
    if 'reg' in d:
        d['reg_hex'] = '0x%02X' % d['reg']
        d['reg_name'] = registers.name(d['reg'], family)
        if 'value' in d and d.get('kind') in ('command', 'reg'):
            d['fields'] = registers.fields(d['reg'], d['value'], family)
    if d.get('kind') == 'reg' and d.get('reg') == families.REG_CHIP_ID:
        fam = families.by_chip_id((d['value'] >> 16) & 0xFFFF)
        d['family'] = fam['name'] if fam else None
    return d


def _resp_len(data, i, flen):
    """Length of the response frame at data[i:]: --frame-len if given, else the length whose CRC
    holds (or that ends where the next frame starts)."""
    if flen:
        return flen
    left = len(data) - i
    for n in (11, 9):
        if left >= n and codec.response_crc_ok(data[i:i + n]):
            return n
    for n in (11, 9):
        if left == n or data[i + n:i + n + 2] in (codec.CMD_PREAMBLE, codec.RESP_PREAMBLE):
            return n
    return min(left, 9)


def split_frames(data, flen=None):
    """Split a hex blob into frames (either direction) and junk runs, in order."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        head = data[i:i + 2]
        if head == codec.CMD_PREAMBLE and i + 3 < n:
            end = min(n, i + 2 + max(data[i + 3], 3))
            if data[i + 2] & 0x60 == codec.TYPE_JOB and data[i + 3] == 0x36 \
                    and not codec.decode_command(data[i:end])['crc_ok']:
                end = min(n, i + 88)   # stock firmware's full-format job: LEN 0x36, 88 bytes
            out.append(('frame', data[i:end]))
            i = end
        elif head == codec.RESP_PREAMBLE:
            end = i + _resp_len(data, i, flen)
            out.append(('frame', data[i:end]))
            i = end
        else:
            j = i + 1
            while j < n and data[j:j + 2] not in (codec.CMD_PREAMBLE, codec.RESP_PREAMBLE):
                j += 1
            out.append(('junk', data[i:j]))
            i = j
    return out


def cmd_decode(args):
    layout = fam = None
    if args.family:
        fam = families.get(args.family)
        layout = fam['nonce_layout']
    data = parse_hex(args.hex)
    out = []
    for what, chunk in split_frames(data, args.frame_len):
        if what == 'frame':
            out.append(decode_one(chunk, layout, fam))
        else:
            out.append({'kind': 'junk', 'hex': chunk.hex(' '), 'bytes': len(chunk)})
    for d in out:
        print(json.dumps(d, sort_keys=True))
    bad = [d for d in out if d['kind'] in ('invalid', 'junk') or not d.get('crc_ok', False)]
    return 1 if bad else 0


def cmd_encode(args):
    k = args.kind
    if k == 'read':
        frame = codec.read_reg(args.reg, args.addr, broadcast=args.broadcast)
    elif k == 'write':
        frame = codec.write_reg(args.reg, args.value, args.addr, broadcast=args.broadcast)
    elif k == 'set-address':
        frame = codec.set_address(args.addr)
    elif k == 'inactive':
        frame = codec.chain_inactive()
    elif k == 'pll':
        fam = families.get(args.chip)
        lo, hi = fam['freq_min_mhz'], fam['freq_max_mhz']
        if not lo <= args.mhz <= hi:     # the driver's HardwareLimits would refuse it too
            raise UsageError('%s runs %.0f..%.0f MHz; %s MHz refused (limits in hal/families.py)'
                             % (fam['name'], lo, hi, args.mhz))
        try:
            s = pll.solve(fam, args.mhz)
        except ValueError as exc:
            raise UsageError(str(exc))
        frame = codec.write_reg(families.REG_PLL0, s['reg'], args.addr,
                                broadcast=args.addr == 0 and not args.unicast)
        out = dict(s)
        out['reg_hex'] = '%08X' % s['reg']
        out['reg_bytes'] = s['reg'].to_bytes(4, 'big').hex(' ').upper()
        out['frame'] = frame.hex(' ').upper()
        out['chip'] = fam['name']
        print(json.dumps(out, sort_keys=True) if args.json else
              '%s %.3f MHz -> reg 0x08 = %s (FB %d REF %d PD1 %d PD2 %d, VCO %.0f MHz)\n%s'
              % (fam['name'], s['freq_mhz'], out['reg_bytes'], s['fb'], s['ref'], s['pd1'],
                 s['pd2'], s['vco_mhz'], out['frame']))
        return 0
    else:
        raise UsageError('unknown frame kind %r' % k)
    if args.json:
        print(json.dumps({'frame': frame.hex(' ').upper(), 'decoded': _jsonable(
            codec.decode_command(frame))}, sort_keys=True))
    else:
        print(frame.hex(' ').upper())
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot frame', description='decode or encode BM13xx frames')
    sub = p.add_subparsers(dest='cmd', required=True)
    d = sub.add_parser('decode', help='hex -> JSON per frame (commands and responses)')
    d.add_argument('hex', nargs='+',
                   help='hex bytes; all arguments form one stream, split into frames')
    d.add_argument('--family', help='chip family for nonce fields (e.g. BM1368)')
    d.add_argument('--frame-len', type=int, choices=(9, 11), default=None,
                   help='response frame length (default: whichever CRC holds)')
    e = sub.add_parser('encode', help='build a command frame')
    esub = e.add_subparsers(dest='kind', required=True)
    r = esub.add_parser('read')
    r.add_argument('--reg', type=byte_arg, required=True)
    r.add_argument('--addr', type=byte_arg, default=0)
    r.add_argument('--broadcast', action='store_true')
    w = esub.add_parser('write')
    w.add_argument('--reg', type=byte_arg, required=True)
    w.add_argument('--value', type=u32_arg, required=True)
    w.add_argument('--addr', type=byte_arg, default=0)
    w.add_argument('--broadcast', action='store_true')
    s = esub.add_parser('set-address')
    s.add_argument('--addr', type=byte_arg, required=True)
    esub.add_parser('inactive')
    q = esub.add_parser('pll', help='PLL register for a frequency + the broadcast write frame')
    q.add_argument('--chip', required=True, help='family, e.g. BM1366')
    q.add_argument('--mhz', type=float, required=True,
                   help='target frequency, inside the family limits (e.g. 50..800 MHz)')
    q.add_argument('--addr', type=byte_arg, default=0, help='chip address (default: broadcast)')
    q.add_argument('--unicast', action='store_true', help='write to --addr only, even address 0')
    for sp in (r, w, s, q, esub.choices['inactive']):
        sp.add_argument('--json', action='store_true')
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)        # bad options: argparse prints usage, exits 2
    try:
        if args.cmd == 'decode':
            return cmd_decode(args)
        return cmd_encode(args)
    except (UsageError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print('hashpilot frame: error: %s' % msg, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
