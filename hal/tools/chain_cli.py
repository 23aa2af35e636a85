"""`hashpilot chain`: integrator tools for one chain on one UART.

  hashpilot chain scan --port /dev/ttyS1 [--json] [--silence-s 1] [--address-rule pow2|even]
  hashpilot chain status --port /dev/ttyS1 [--json] [--freq-mhz 490] [--measure-s 2]
  hashpilot chain init --dry-run --chip BM1368 --chips 108 --mhz 490 [--baud 3125000] [--json]
  hashpilot chain init --port /dev/ttyS1 [--mhz 490] [--baud 3125000] [--json]

`init --dry-run` prints the exact frames the driver sends to bring up such a chain, each decoded
(register names and fields), without a port: for comparing with a logic-analyser capture.
"""

import argparse
import json
import sys

from hal import bringup, families, models, pll
from hal.chain import ChainDriver, ChainError
from hal.framer import CommandFramer
from hal.tools.frame_cli import decode_one
from hal.clock import Clock
from hal.limits import HardwareLimits, LimitError
from hal.transport import Transport, TransportError


def _model_for(family, name=None):
    if name:
        return models.get(name)
    for m in models.MODELS.values():
        if m['chip'] == family['name']:
            return m
    raise ChainError('no rig model uses %s; give --model' % family['name'])


def open_chain(args):
    t = Transport(args.port, args.baud)
    drv = ChainDriver(t, family=None, clock=Clock(args.time_scale), address_rule=args.address_rule)
    fast = sorted(set(b for f in families.FAMILIES.values() for b in f['fast_bauds']))
    ids = drv.enumerate(silence_s=args.silence_s, try_bauds=fast)
    if not ids:
        t.close()
        raise ChainError('no chips answered on %s at %d baud' % (args.port, args.baud))
    model = _model_for(drv.family, args.model)
    drv.limits = HardwareLimits(model, drv.family)
    drv.f_nom_mhz = model['f_nom_mhz']
    drv.assign_addresses()
    return drv, model


def cmd_scan(args):
    drv, model = open_chain(args)
    try:
        answered = set(drv.verify_addresses())
        out = {'port': args.port, 'family': drv.family['name'], 'chips': len(drv.chips),
               'baud': drv.transport.baud,
               'address_rule': drv.address_rule,
               'address_interval': families.address_interval(len(drv.chips), drv.address_rule),
               'response_len': drv.framer.frame_len,
               'chip_list': [{'index': c.index, 'chip_id': '0x%04X' % c.chip_id, 'addr': c.addr,
                              'answers': c.addr in answered} for c in drv.chips],
               'framer': drv.framer.stats()}
    finally:
        drv.transport.close()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print('%s: %d x %s at %d baud, addresses every %d (%s rule), %d answer at their address'
              % (args.port, out['chips'], out['family'], out['baud'], out['address_interval'],
                 out['address_rule'], len(answered)))
        for c in out['chip_list']:
            print('  chip %3d  id %s  addr 0x%02X%s' % (c['index'], c['chip_id'], c['addr'],
                                                        '' if c['answers'] else '  (silent)'))
    return 0


def cmd_status(args):
    drv, model = open_chain(args)
    try:
        target = args.freq_mhz if args.freq_mhz is not None else model['f_nom_mhz']
        drv.limits.check_freq(target)
        # Init only if the chips are not already running at the target with version rolling on.
        res = drv.read_registers([(c.addr, families.REG_PLL0) for c in drv.chips])
        words = [res.get((c.addr, families.REG_PLL0)) for c in drv.chips]
        freqs = [pll.decode(drv.family, v) if v is not None else None for v in words]
        ready = (drv.framer.frame_len == families.response_len(drv.family, True)
                 and all(f is not None and abs(f - pll.solve(drv.family, target)['freq_mhz']) < 0.01
                         for f in freqs))
        if ready:
            for c, f in zip(drv.chips, freqs):
                c.freq_mhz = f
            drv.initialised = True
        else:
            drv.init(target, baud=args.chain_baud)
        drv.poll()
        drv.clock.sleep(args.measure_s)
        st = drv.poll()
        st['port'] = args.port
        st['did_init'] = not ready
    finally:
        drv.transport.close()
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        print('%s: %d x %s, %.1f GH/s, %d alive, baud %d%s'
              % (args.port, len(st['chips']), st['family'], st['hashrate_ghs'], st['alive'],
                 st['baud'], ' (initialised now)' if st['did_init'] else ''))
        print('  chip addr   MHz    die C     GH/s   err %  alive')
        for c in st['chips']:
            print('  %4d 0x%02X %6.1f %8s %8s %7s  %s' % (
                c['index'], c['addr'], c['freq_mhz'] or 0,
                '-' if c['temp_c'] is None else '%.1f' % c['temp_c'],
                '-' if c['hashrate_ghs'] is None else '%.1f' % c['hashrate_ghs'],
                '-' if c['err_pct'] is None else '%.2f' % c['err_pct'],
                'yes' if c['alive'] else 'DEAD'))
    return 0


def dry_run(family, chips, mhz, baud=None, ticket_bits=8, address_rule='pow2', model=None):
    """[{'step', 'host_baud', 'hex', 'decoded'} or {'host_baud_change': b}] of a bring-up."""
    try:
        model = _model_for(family, model)
    except ChainError:
        # no rig model carries this family: the family's own frequency range bounds the run
        model = dict(models.get('S21'), name='generic', chip=family['name'], f_nom_mhz=mhz,
                     freq_max_mhz=family['freq_max_mhz'])
    rec = bringup.RecordingTransport(families.RESET_BAUD)
    drv = ChainDriver(rec, family, Clock(1e6), HardwareLimits(model, family), address_rule,
                      model['f_nom_mhz'])
    drv.trace = []
    drv.pause = lambda seconds: None
    drv._wait_wire = lambda nbytes, extra_s=0.01: None
    drv.enumerate(silence_s=1e-6)
    drv.assume_chips(chips)
    drv.ticket_bits = ticket_bits
    drv.assign_addresses()
    drv.init(mhz, ticket_bits=ticket_bits, baud=baud)
    out = []
    tags = iter(drv.trace)
    framer = CommandFramer()
    for kind, data, host_baud in rec.records:
        if kind == 'baud':
            out.append({'host_baud_change': data, 'from': host_baud})
            continue
        tag = next(tags)[0]
        for frame in framer.feed(data):
            out.append({'step': tag, 'host_baud': host_baud, 'hex': frame.hex(' ').upper(),
                        'decoded': decode_one(frame, family['nonce_layout'], family)})
    return out


def _summary(d):
    dec = d['decoded']
    if dec.get('op') in ('write', 'read'):
        where = 'all' if dec.get('broadcast') else 'chip 0x%02X' % dec.get('chip_addr', 0)
        what = '%s %s' % (dec['op'], dec.get('reg_name'))
        if 'value' in dec:
            what += ' = %s' % dec['value_hex']
        return '%-8s %-6s %-10s %s' % (d['step'], where, '', what)
    if dec.get('op') == 'set_address':
        return '%-8s %-6s %-10s set address 0x%02X' % (d['step'], '', '', dec.get('chip_addr', 0))
    return '%-8s %s' % (d['step'], dec.get('op', dec.get('kind')))


def cmd_init(args):
    if args.dry_run:
        if not args.chip or not args.chips or args.mhz is None:
            raise ChainError('--dry-run needs --chip, --chips and --mhz')
        fam = families.get(args.chip)
        frames = dry_run(fam, args.chips, args.mhz, args.chain_baud, args.ticket_bits,
                         args.address_rule, args.model)
        if args.json:
            print(json.dumps({'family': fam['name'], 'chips': args.chips, 'mhz': args.mhz,
                              'baud': args.chain_baud, 'frames': frames}, indent=1))
        else:
            for d in frames:
                if 'host_baud_change' in d:
                    print('-- host UART %d -> %d baud' % (d['from'], d['host_baud_change']))
                else:
                    print('%-34s %s' % (d['hex'], _summary(d)))
        return 0
    if not args.port:
        raise ChainError('give --port (or --dry-run)')
    drv, model = open_chain(args)
    try:
        drv.init(args.mhz if args.mhz is not None else model['f_nom_mhz'],
                 ticket_bits=args.ticket_bits, baud=args.chain_baud)
        st = drv.get_status()
    finally:
        drv.transport.close()
    print(json.dumps(st, indent=1) if args.json else '%s: %d x %s initialised, baud %d'
          % (args.port, len(st['chips']), st['family'], st['baud']))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot chain', description='scan or show one BM13xx chain')
    sub = p.add_subparsers(dest='cmd', required=True)
    for name, helptext in (('scan', 'enumerate and address the chips'),
                           ('status', 'init if needed, then per-chip frequency/temp/hashrate'),
                           ('init', 'full bring-up; --dry-run prints the frames without a port')):
        s = sub.add_parser(name, help=helptext)
        s.add_argument('--port', required=name != 'init', help='serial port or pyserial URL')
        if name == 'init':
            s.add_argument('--baud', type=int, default=None, dest='chain_baud',
                           help='switch the chain to this rate during bring-up (e.g. 3125000)')
            s.set_defaults(baud=115200)
        else:
            s.add_argument('--baud', type=int, default=115200,
                           help='host UART rate now (115200)')
        s.add_argument('--json', action='store_true')
        s.add_argument('--silence-s', type=float, default=1.0,
                       help='enumeration ends after this much silence (1.0)')
        s.add_argument('--address-rule', choices=('pow2', 'even'), default='pow2')
        s.add_argument('--model', help='rig model for limits (default: from the chip family)')
        s.add_argument('--time-scale', type=float, default=1.0,
                       help='physics time scale of a simulator (rates come out right)')
        if name == 'init':
            s.add_argument('--dry-run', action='store_true',
                           help='record the frames instead of sending them (no port)')
            s.add_argument('--chip', help='family for --dry-run (BM1362/66/68/70/97)')
            s.add_argument('--chips', type=int, help='chips on the chain for --dry-run')
            s.add_argument('--mhz', type=float, default=None, help='target (model f_nom)')
            s.add_argument('--ticket-bits', type=int, default=8,
                           help='ticket mask difficulty 2^N (8 -> 256)')
        if name == 'status':
            s.add_argument('--freq-mhz', type=float, default=None, help='target (model f_nom)')
            s.add_argument('--measure-s', type=float, default=2.0,
                           help='counter window in physics seconds (2)')
            s.add_argument('--chain-baud', type=int, default=None,
                           help='switch the chain to this rate during init (e.g. 3125000)')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.time_scale <= 0 or args.silence_s <= 0:
        print('hashpilot chain: --time-scale and --silence-s must be > 0', file=sys.stderr)
        return 2
    try:
        if args.cmd == 'scan':
            return cmd_scan(args)
        if args.cmd == 'init':
            return cmd_init(args)
        return cmd_status(args)
    except BrokenPipeError:          # output piped into `head`
        return 0
    except (ChainError, LimitError, TransportError, KeyError) as exc:
        print('hashpilot chain: error: %s' % (exc.args[0] if exc.args else exc), file=sys.stderr)
        return 1
