"""Consumer library: decode any hashpilot payload to long names and floats; parse commands safely."""

from mqtt_schema import codec, plans, topics
from mqtt_schema import fields as F

MAX_CMD_BYTES = 8192
MAX_ID = 64
MAX_SIG = 128


# Decoding is the fleet consumer's hot path (thousands of messages per second). Two layers, one
# answer: decode plans (mqtt_schema/plans.py) turn each map shape a rig sends into one generated
# dict display, scaled integers read through a per-decimals int -> float cache at C speed;
# whatever the plans cannot vouch for is decoded the previous way, by the generic decoder
# (each field table compiled once into {wire key: (name, converter)}, per element `_unscale`).
# `_unscale` stays the definition every fast path must agree with (tests/test_fleet_decode.py).
_CACHE_LIMIT = 1 << 24
_CACHE_MAX = 1 << 16


def _unscale(x, dec):
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return x
    if not dec:
        return x
    return round(x / (10 ** dec), dec)


class _Scaled(dict):
    """Wire int -> float for one number of decimals, filled on first use.

    0 and 1 are never cached: they equal False and True as dict keys, and a bool must come back
    as it was (junk is returned unchanged, as `_unscale` does).
    """

    def __init__(self, dec):
        dict.__init__(self)
        self.dec = dec
        self.exact = {}     # the same entries in a plain dict: [] on it is ~10x cheaper

    def __missing__(self, x):
        v = _unscale(x, self.dec)
        if x.__class__ is int and (1 < x < _CACHE_LIMIT or -_CACHE_LIMIT < x < 0) \
                and len(self) < _CACHE_MAX:
            self[x] = self.exact[x] = v
        return v


_SCALED = {}


def _scaled_table(dec):
    t = _SCALED.get(dec)
    if t is None:
        t = _SCALED[dec] = _Scaled(dec)
    return t


def _num_fn(dec):
    return lambda val: _unscale(val, dec)


def _list_num_fn(dec):
    return lambda val: [_unscale(x, dec) for x in val] if isinstance(val, list) else val


def _list_pair(val):
    if not isinstance(val, list):
        return val
    out = []
    states = F.CHIP_STATES
    for pair in val:
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int) \
                and 0 <= pair[1] < len(states):
            out.append([pair[0], states[pair[1]]])
        else:
            out.append(pair)
    return out


def _map_fn(defs):
    def as_map(val):
        return _unpack(_compiled(defs), val) if isinstance(val, dict) else val
    return as_map


def _list_map_fn(defs):
    def as_list(val):
        if not isinstance(val, list):
            return val
        table = _compiled(defs)
        return [_unpack(table, x) if isinstance(x, dict) else x for x in val]
    return as_list


def _converter(ftype, dec):
    """None when the wire value is already the decoded value."""
    if ftype == 'num':
        return _num_fn(dec) if dec else None
    if ftype == 'list:num':
        return _list_num_fn(dec) if dec else None
    if ftype == 'list:pair':
        return _list_pair
    if ftype.startswith('map:'):
        return _map_fn(F.TABLES[ftype[4:]])
    if ftype.startswith('list:map:'):
        return _list_map_fn(F.TABLES[ftype[9:]])
    return None


_COMPILED = {}


def _compiled(defs):
    """defs -> {wire key: (name, converter or None)}: the generic decoder, per element `_unscale`
    (no cache: cbor2's Decimal, Fraction and simple values equal ints as dict keys)."""
    table = _COMPILED.get(id(defs))
    if table is None or table[0] is not defs:
        conv = {}
        for f in defs:
            conv[f[0]] = (f[1], _converter(f[2], f[4]))
        table = _COMPILED[id(defs)] = (defs, conv)
    return table[1]


def _unpack(conv, wire):
    out = {}
    get = conv.get
    for key, val in wire.items():
        f = get(key)
        if f is None:
            out[key] = val                  # unknown keys keep their name
        elif f[1] is None or val is None:
            out[f[0]] = val
        else:
            out[f[0]] = f[1](val)
    return out


_PLANS = plans.Plans(_scaled_table, _list_pair, F.TABLES)


def unpack(defs, wire):
    """Wire dict -> long names, scaled ints back to floats. Unknown keys are kept as they are."""
    try:
        return _PLANS.unpack(defs, wire)
    except plans.Unproven:
        return _unpack(_compiled(defs), wire)


_KIND_FIELDS = dict((k, F.fields_for(k)) for k in ('telemetry', 'chips', 'status', 'meta', 'alarm'))
_PREFIX = topics.PREFIX
_TOPIC_FIELDS = {}            # full topic -> field table, for the topics seen (cleared when full)
_TOPIC_FIELDS_MAX = 1 << 18   # 50 000 rigs x 5 kinds fit


def _fields_of(topic):
    """Field table for a topic, or raises ValueError (fast path: a bare kind or
    hashpilot/v1/<site>/<rig>/<kind>, the same answer topics.split gives)."""
    if topic.__class__ is str:
        defs = _TOPIC_FIELDS.get(topic)
        if defs is not None:
            return defs
        defs = _KIND_FIELDS.get(topic)
        if defs is None and topic.startswith(_PREFIX) and topic.count('/') == 4:
            defs = _KIND_FIELDS.get(topic[topic.rfind('/') + 1:])
        if defs is not None:
            if len(_TOPIC_FIELDS) >= _TOPIC_FIELDS_MAX:
                _TOPIC_FIELDS.clear()
            _TOPIC_FIELDS[topic] = defs
            return defs
    parts = topics.split(topic)
    if parts is None:
        raise ValueError('not a hashpilot topic: %r' % (topic,))
    defs = F.fields_for(parts[2])
    if defs is None:
        raise ValueError('unknown topic kind %r' % (parts[2],))
    return defs


_TOPIC_TABLES = {}            # full topic -> its table's decode plans (cleared when full)
_strict_map = codec.loads_canonical


def _table_of(topic):
    table = _PLANS.table(_fields_of(topic))        # ValueError for a bad topic
    if topic.__class__ is str:
        if len(_TOPIC_TABLES) >= _TOPIC_FIELDS_MAX:
            _TOPIC_TABLES.clear()
        _TOPIC_TABLES[topic] = table
    return table


def decode(topic, data):
    """Payload bytes (CBOR or JSON) on `topic` (full topic or kind, e.g. 'chips') -> decoded dict.

    Raises ValueError with the reason on undecodable data or an unknown topic.
    """
    table = _TOPIC_TABLES.get(topic) if topic.__class__ is str else None
    if table is None:
        table = _table_of(topic)
    payload = _strict_map(data)
    if payload is not None:         # maps in canonical key order: whole-message plans
        try:
            return table.canon_entry(payload)
        except (plans.Unproven, TypeError):     # TypeError: junk where a scalar belongs
            pass
    defs = table.defs
    payload, plain = codec.loads_plain(data)
    if plain:
        if payload.__class__ is dict:
            try:
                return _PLANS.unpack(defs, payload)
            except plans.Unproven:
                pass
        payload = codec.loads(data)   # the previous way: cbor2 (its limits, its types) or json
    if not isinstance(payload, dict):
        raise ValueError('payload is not a map')
    try:
        return _unpack(_compiled(defs), payload)
    except (OverflowError, RecursionError) as e:    # e.g. a CBOR bignum where a scaled number belongs
        raise ValueError('undecodable value in payload: %s' % (e,))


def parse_command(op, data):
    """Command payload on cmd/<op> -> ({'op', 'id', 'args', 'ts_ms'?}, None) or (None, reason).

    Never raises: any junk gives a reason string.
    """
    try:
        reason = topics.check_op(op)
        if reason:
            return None, reason
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return None, 'payload must be bytes'
        if len(data) == 0:
            return None, 'empty payload'
        if len(data) > MAX_CMD_BYTES:
            return None, 'payload larger than %d bytes' % MAX_CMD_BYTES
        try:
            payload = codec.loads(data)
        except ValueError as e:
            return None, str(e)
        if not isinstance(payload, dict):
            return None, 'payload is not a map'
        cid = payload.get('id')
        if not isinstance(cid, str) or not cid or len(cid) > MAX_ID:
            return None, "'id' must be a string of 1..%d characters" % MAX_ID
        v = payload.get('v', 1)
        if v != 1 or isinstance(v, bool):
            return None, "unsupported schema version 'v': %r" % (v,)
        args = payload.get('args', {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return None, "'args' must be a map"
        for k in args:
            if not isinstance(k, str):
                return None, "'args' keys must be strings"
        cmd = {'op': op, 'id': cid, 'args': args}
        sig = payload.get('sig')
        if sig is not None:
            if not isinstance(sig, str) or len(sig) > MAX_SIG:
                return None, "'sig' must be a hex string"
            cmd['sig'] = sig
        ts = payload.get('ts')
        if ts is not None:
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                return None, "'ts' must be a non-negative integer (ms)"
            cmd['ts_ms'] = ts
        return cmd, None
    except Exception as e:  # defence in depth: junk must never crash the agent
        return None, 'malformed command: %s' % (e,)
