"""Payload benchmarks: `python -m mqtt_schema.bench` prints chips/telemetry sizes for a full rig;
`python -m mqtt_schema.bench --decode` the decode rates (JSON)."""

import itertools
import json
import random
import sys
import time

from hal import models
from mqtt_schema import codec, consumer, payloads
from mqtt_schema import fields as F

CHIPS_TARGET_BYTES = 4096
TELEMETRY_TARGET_BYTES = 400


def sample_status(model_name='S21', seed=1):
    """Realistic rig status dict (input shape of payloads.build_telemetry/build_chips)."""
    model = models.get(model_name)
    rnd = random.Random(seed)
    f_nom = model['f_nom_mhz']
    ghs_per_chip = model['cores_per_chip'] * f_nom / 1000.0  # ~1 hash per core per clock
    boards = []
    for b in range(model['boards']):
        chips = []
        for i in range(model['chips_per_board']):
            dead = rnd.random() < 0.005
            freq = f_nom + 6.25 * rnd.randint(-3, 3) + rnd.choice((0.0, 0.3, 0.6))
            chips.append({
                'temp_c': None if dead else round(rnd.uniform(58.0, 76.0), 1),
                'freq_mhz': freq,
                'hashrate_ghs': 0.0 if dead else ghs_per_chip * freq / f_nom * rnd.uniform(0.93, 1.03),
                'err_pct': 0.0 if dead else round(rnd.expovariate(1 / 0.15), 2),
                'state': 'dead' if dead else 'ok'})
        boards.append({'index': b, 'chips': chips, 'temps_c': [rnd.uniform(50, 60), rnd.uniform(55, 66)],
                       'voltage_mv': model['stock_board_mv'] + rnd.randint(-30, 30),
                       'enabled': True, 'safety': 'normal', 'freq_cap_pct': 100.0})
    power_w = model['nameplate_w'] * 0.98
    ths = sum(c['hashrate_ghs'] for b in boards for c in b['chips']) / 1000.0
    return {'state': 'normal', 'uptime_s': 86400.0 * 3 + 1234.5, 'power_w': power_w,
            'j_per_th': power_w / ths if ths else None,
            'fans': [{'duty_pct': 62, 'rpm': 4140 + 10 * i} for i in range(model['fans'])],
            # what agent/health.py reports on a Linux control board
            'ctrl': {'cpu_pct': 14.2, 'mem_pct': 31.5, 'load1': 0.42, 'agent_rss_mb': 29.4,
                     'agent_cpu_pct': 2.1},
            'tuner': {'state': 'idle', 'progress_pct': 100, 'target': 'efficiency'},
            'outbox_dropped': 0, 'boards': boards}


def measure(model_name='S21', seed=1):
    """Sizes in bytes: {'chips_cbor', 'chips_json', 'telemetry_cbor', 'telemetry_json', 'chips'}."""
    status = sample_status(model_name, seed)
    session = payloads.new_session()
    for kind in ('chips', 'telemetry'):  # realistic, multi-byte sequence numbers
        session['seq'][kind] = 123456
    ts = 1795000000000
    chips = payloads.build_chips(status, session, ts)
    tele = payloads.build_telemetry(status, session, ts)
    return {'model': model_name, 'chips': sum(len(b['chips']) for b in status['boards']),
            'chips_cbor': len(codec.encode(chips, 'cbor')), 'chips_json': len(codec.encode(chips, 'json')),
            'telemetry_cbor': len(codec.encode(tele, 'cbor')),
            'telemetry_json': len(codec.encode(tele, 'json'))}


def _reference_value(ftype, dec, val):
    if val is None:
        return None
    if ftype == 'num':
        return consumer._unscale(val, dec)
    if ftype == 'list:num' and isinstance(val, list):
        return [consumer._unscale(x, dec) for x in val]
    if ftype == 'list:pair' and isinstance(val, list):
        out = []
        for pair in val:
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int) \
                    and 0 <= pair[1] < len(F.CHIP_STATES):
                out.append([pair[0], F.CHIP_STATES[pair[1]]])
            else:
                out.append(pair)
        return out
    if ftype.startswith('map:') and isinstance(val, dict):
        return reference_unpack(F.TABLES[ftype[4:]], val)
    if ftype.startswith('list:map:') and isinstance(val, list):
        table = F.TABLES[ftype[9:]]
        return [reference_unpack(table, x) if isinstance(x, dict) else x for x in val]
    return val


def reference_unpack(defs, wire):
    """The decoder as it was before the compiled one (per-element round): the oracle and the
    'before' figure of decode_rates()."""
    known = dict((f[0], f) for f in defs)
    out = {}
    for key, val in wire.items():
        f = known.get(key)
        if f is None:
            out[key] = val
        else:
            out[f[1]] = _reference_value(f[2], f[4], val)
    return out


def _rate(fn, min_s):
    """Calls per CPU second of fn(), best of 5 runs of at least min_s / 5 each. CPU time
    (time.process_time), not wall time: other work on a shared host does not count against fn."""
    best = 0.0
    for _ in range(5):
        n, t0 = 0, time.process_time()
        while True:
            for _ in range(20):
                fn()
            n += 20
            dt = time.process_time() - t0
            if dt >= min_s / 5:
                break
        best = max(best, n / dt)
    return best


def _rig_payloads(model_name, build, kind, rigs):
    """CBOR payloads of `rigs` different sample rigs (own values, seq and ts), to decode in turn."""
    out = []
    for seed in range(1, rigs + 1):
        session = payloads.new_session()
        session['seq'][kind] = seed * 1000
        out.append(codec.encode(build(sample_status(model_name, seed), session, 1795000000000 + seed)))
    return out


def decode_rates(model_name='S21', min_s=1.0, rigs=64):
    """Messages per CPU second for telemetry and chips: hashpilot decode (decode plans, cbrrr when
    installed), the previous decoder (cbor2.loads + the per-element rule, unchanged), cbor2.loads,
    cbrrr's parse alone (when installed) and json.loads of the same payload, in one run; and both
    decoders again over `rigs` different rigs' payloads in turn (no single payload's values)."""
    status = sample_status(model_name, 1)
    session = payloads.new_session()
    out = {'model': model_name}
    for kind, build in (('telemetry', payloads.build_telemetry), ('chips', payloads.build_chips)):
        wire = build(status, session, 1795000000000)
        cb, js = codec.encode(wire, 'cbor'), codec.encode(wire, 'json')
        defs = F.fields_for(kind)
        many = _rig_payloads(model_name, build, kind, rigs)
        nxt_new, nxt_old = itertools.cycle(many).__next__, itertools.cycle(many).__next__
        r = {'decode': _rate(lambda: consumer.decode(kind, cb), min_s),
             'previous_decode': _rate(lambda: reference_unpack(defs, codec.loads(cb)), min_s),
             'decode_%d_rigs' % rigs: _rate(lambda: consumer.decode(kind, nxt_new()), min_s),
             'previous_decode_%d_rigs' % rigs: _rate(lambda: reference_unpack(defs, codec.loads(nxt_old())),
                                                     min_s),
             'cbor2_loads': _rate(lambda: codec._cbor.loads(cb), min_s),
             'json_loads': _rate(lambda: json.loads(js), min_s)}
        if codec._strict is not None:
            r['cbrrr_parse'] = _rate(lambda: codec._strict(cb, None, False), min_s)
        r = dict((k, round(v)) for k, v in r.items())
        r['speedup'] = round(r['decode'] / r['previous_decode'], 2)
        r['speedup_%d_rigs' % rigs] = round(r['decode_%d_rigs' % rigs] / r['previous_decode_%d_rigs' % rigs], 2)
        r['bytes_cbor'] = len(cb)
        out[kind] = r
    out['parser'] = 'cbrrr' if codec._strict is not None else 'cbor2'
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--decode']:
        print(json.dumps(decode_rates(*(argv[1:2] or ['S21'])), indent=1))
        return 0
    names = argv or ['S21', 'S19JPRO', 'GAMMA']
    for name in names:
        r = measure(name)
        print('%-8s chips snapshot (%d chips x temp,freq,hashrate,err): CBOR %d bytes%s, JSON %d bytes'
              % (name, r['chips'], r['chips_cbor'],
                 ' (target <= %d)' % CHIPS_TARGET_BYTES if name == 'S21' else '', r['chips_json']))
        print('%-8s telemetry: CBOR %d bytes%s, JSON %d bytes'
              % (name, r['telemetry_cbor'],
                 ' (target <= %d)' % TELEMETRY_TARGET_BYTES if name == 'S21' else '', r['telemetry_json']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
