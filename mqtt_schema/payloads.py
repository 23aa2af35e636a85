"""Payload builders: plain input dicts -> wire dicts (short keys, scaled ints). Pure, MicroPython-safe.

Input shape for `build_telemetry` / `build_chips` (every key optional unless noted; None = unknown):

    status = {
      'state': 'running', 'uptime_s': 812.0, 'hashrate_ghs': 200100.0, 'power_w': 3480.0,
      'fans': [{'duty_pct': 62, 'rpm': 4100}, ...],
      'ctrl': {'cpu_pct': 14.0, 'mem_pct': 31.0, 'load1': 0.42, 'temp_c': 48.5, 'disk_pct': 12.0},
      'tuner': {'state': 'idle', 'progress_pct': 0, 'target': 'efficiency'},
      'outbox_dropped': 0,
      'boards': [                      # required for chips/telemetry
        {'index': 0, 'temps_c': [55.1, 61.0], 'voltage_mv': 14380, 'enabled': True, 'safety': 'ok',
         # optional board totals; computed from 'chips' when absent:
         'hashrate_ghs': ..., 'temp_max_c': ..., 'freq_avg_mhz': ..., 'chips_ok': ..., 'err_pct': ...,
         'chips': [{'temp_c': 66.2, 'freq_mhz': 490.0, 'hashrate_ghs': 617.3, 'err_pct': 0.12,
                    'state': 'ok'},          # or 'alive': True (chain driver status)
                   ...]},
        ...]}

A session is `new_session()`: {'boot_id': str, 'seq': {kind: last seq}}; builders number their
topic's messages from it (seq per topic, starting at 1 for each boot_id).
"""

import os
import time

from mqtt_schema import fields as F

ALARM_EVENTS = ('raise', 'clear')
ALARM_SEVERITIES = ('info', 'warning', 'critical')


def _random_id():
    try:
        return ''.join(['%02x' % b for b in os.urandom(4)])
    except AttributeError:  # MicroPython ports without os.urandom
        import random
        return '%08x' % random.getrandbits(32)


def new_session(boot_id=None):
    if boot_id is None:
        boot_id = _random_id()
    return {'boot_id': str(boot_id), 'seq': {}}


def next_seq(session, kind):
    n = session['seq'].get(kind, 0) + 1
    session['seq'][kind] = n
    return n


def now_ms():
    return int(time.time() * 1000)


def _finite(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    if x != x or x in (float('inf'), float('-inf')):
        return None
    return x


def _scaled(x, dec):
    x = _finite(x)
    if x is None:
        return None
    if dec:
        x = x * (10 ** dec)
    return int(round(x))


def _wire(ftype, dec, value):
    if ftype == 'num':
        return _scaled(value, dec)
    if ftype == 'list:num':
        return [_scaled(x, dec) for x in value]
    if ftype in ('uint', 'int'):
        return int(value)
    if ftype == 'str':
        return str(value)
    if ftype == 'bool':
        return bool(value)
    if ftype == 'list:str':
        return [str(x) for x in value]
    if ftype.startswith('map:'):
        return pack(F.TABLES[ftype[4:]], value)
    if ftype.startswith('list:map:'):
        table = F.TABLES[ftype[9:]]
        return [pack(table, x) for x in value]
    return value


def pack(defs, src):
    """Input dict (long names) -> wire dict (short keys, scaled ints). Missing optionals are left out."""
    out = {}
    for key, name, ftype, _unit, dec, req, _desc in defs:
        value = src.get(name)
        if value is not None:
            value = _wire(ftype, dec, value)
        if value is None:
            if req:
                raise ValueError('missing required field %r' % name)
            continue
        out[key] = value
    return out


def _envelope(session, kind, ts_ms):
    return {'v': F.SCHEMA_VERSION, 'seq': next_seq(session, kind),
            'ts_ms': now_ms() if ts_ms is None else int(ts_ms), 'boot_id': session['boot_id']}


def chip_state_code(chip):
    state = chip.get('state')
    if state is None:
        alive = chip.get('alive')
        return 0 if alive is None or alive else 1
    try:
        return F.CHIP_STATES.index(state)
    except ValueError:
        return len(F.CHIP_STATES) - 1


def board_summary(board, position=0):
    """Telemetry board entry (long names): given totals win, else computed from the chips."""
    chips = board.get('chips') or ()
    ok = [c for c in chips if chip_state_code(c) == 0]

    def values(src, key):
        return [v for v in [_finite(c.get(key)) for c in src] if v is not None]

    s = {'index': board.get('index', position), 'temps_c': board.get('temps_c'),
         'voltage_mv': board.get('voltage_mv'), 'safety': board.get('safety'),
         'enabled': board.get('enabled'), 'freq_cap_pct': board.get('freq_cap_pct'),
         'safety_reason': board.get('safety_reason'), 'scaling': board.get('scaling')}
    hr = board.get('hashrate_ghs')
    if hr is None and chips:
        # the rule of hal/hashsum.chain_ghs: a dead chip's last rate is stale, an off one's moot
        hr = sum(values(ok, 'hashrate_ghs'))
    s['hashrate_ghs'] = hr
    tmx = board.get('temp_max_c')
    if tmx is None:
        temps = values(chips, 'temp_c')
        tmx = max(temps) if temps else None
    s['temp_max_c'] = tmx
    f = board.get('freq_avg_mhz')
    if f is None:
        freqs = values(ok or chips, 'freq_mhz')
        f = sum(freqs) / len(freqs) if freqs else None
    s['freq_avg_mhz'] = f
    n = board.get('chips_ok')
    s['chips_ok'] = len(ok) if n is None and chips else n
    e = board.get('err_pct')
    if e is None:
        errs = values(ok, 'err_pct')
        e = sum(errs) / len(errs) if errs else None
    s['err_pct'] = e
    return s


def build_telemetry(status, session, ts_ms=None):
    src = _envelope(session, 'telemetry', ts_ms)
    boards = [board_summary(b, i) for i, b in enumerate(status.get('boards') or ())]
    hr = status.get('hashrate_ghs')
    if hr is None:
        hr = sum([_finite(b['hashrate_ghs']) or 0.0 for b in boards])
    fans = status.get('fans')
    if fans is not None:
        src['fan_duty_pct'] = [f.get('duty_pct') for f in fans]
        src['fan_rpm'] = [f.get('rpm') for f in fans]
    for name in ('state', 'reason', 'power_w', 'j_per_th', 'uptime_s', 'ctrl', 'tuner', 'outbox_dropped',
                 'pools', 'cooling', 'coolant_c', 'dynamic_scaling'):
        src[name] = status.get(name)
    src['hashrate_ghs'] = hr
    src['boards'] = boards
    return pack(F.TELEMETRY, src)


def build_chips(status, session, ts_ms=None):
    src = _envelope(session, 'chips', ts_ms)
    boards = []
    for position, b in enumerate(status.get('boards') or ()):
        chips = b.get('chips') or ()
        row = {'index': b.get('index', position),
               'temp_c': [c.get('temp_c') for c in chips],
               'freq_mhz': [c.get('freq_mhz') for c in chips],
               'hashrate_ghs': [c.get('hashrate_ghs') for c in chips],
               'err_pct': [c.get('err_pct') for c in chips]}
        if any('nonce_hashrate_ghs' in c for c in chips):
            row['nonce_hashrate_ghs'] = [c.get('nonce_hashrate_ghs') for c in chips]
            row['hw_err_pct'] = [c.get('hw_err_pct') for c in chips]
        bad = []
        for i, c in enumerate(chips):
            code = chip_state_code(c)
            if code:
                bad.append([i, code])
        if bad:
            row['abnormal'] = bad
        boards.append(row)
    src['boards'] = boards
    return pack(F.CHIPS, src)


def field_units():
    """meta.fields: {topic or topic.key: {wire key: [name, unit, scale]}} for every outgoing field."""
    out = {}

    def add(label, defs):
        entry = {}
        for key, name, ftype, unit, dec, _req, _desc in defs:
            entry[key] = [name, unit, F.scale_of(dec)]
            if ftype.startswith('map:') or ftype.startswith('list:map:'):
                add(label + '.' + key, F.TABLES[ftype.split(':')[-1]])
        out[label] = entry

    for kind in F.TOPIC_ORDER:
        if F.TOPICS[kind][3] == 'out':
            add(kind, F.TOPICS[kind][0])
    return out


def build_meta(model, session, ts_ms=None, firmware=None, board_ids=None, telemetry_s=10,
               chips_s=60, fmt='cbor', pools=None):
    """`model` is a hal/models.py entry (plain dict)."""
    src = _envelope(session, 'meta', ts_ms)
    for name in ('chip', 'boards', 'chips_per_board', 'domains_per_board', 'fans', 'voltage_per',
                 'f_nom_mhz', 'freq_max_mhz', 'temp_hot_c', 'temp_danger_c'):
        src[name] = model.get(name)
    src['model'] = model.get('name')
    src['firmware'] = firmware
    src['board_ids'] = board_ids
    src['telemetry_s'] = telemetry_s
    src['chips_s'] = chips_s
    src['format'] = fmt
    src['chip_states'] = list(F.CHIP_STATES)
    src['fields'] = field_units()
    src['pools'] = pools
    return pack(F.META, src)


def build_birth(session, session_seq, firmware=None, model=None, ts_ms=None):
    return pack(F.STATUS, {'v': F.SCHEMA_VERSION, 'seq': session_seq,
                           'ts_ms': now_ms() if ts_ms is None else ts_ms, 'online': True,
                           'boot_id': session['boot_id'], 'session_seq': session_seq,
                           'firmware': firmware, 'model': model})


def build_will(session, session_seq, ts_ms=None):
    return pack(F.STATUS, {'v': F.SCHEMA_VERSION, 'seq': session_seq,
                           'ts_ms': now_ms() if ts_ms is None else ts_ms, 'online': False,
                           'boot_id': session['boot_id'], 'session_seq': session_seq})


def build_alarm(session, alarm_id, event, severity, message, board=None, value=None, ts_ms=None):
    if event not in ALARM_EVENTS:
        raise ValueError('alarm event must be one of %s' % (ALARM_EVENTS,))
    if severity not in ALARM_SEVERITIES:
        raise ValueError('alarm severity must be one of %s' % (ALARM_SEVERITIES,))
    src = _envelope(session, 'alarm', ts_ms)
    src.update({'id': alarm_id, 'event': event, 'severity': severity, 'message': message,
                'board': board, 'value': value})
    return pack(F.ALARM, src)


def build_cmd_result(session, cmd_id, ok, error=None, op=None, result=None, ts_ms=None):
    src = _envelope(session, 'cmd/result', ts_ms)
    src.update({'id': cmd_id, 'ok': bool(ok), 'error': error, 'op': op, 'result': result})
    return pack(F.CMD_RESULT, src)
