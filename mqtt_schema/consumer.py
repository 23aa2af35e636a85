"""Consumer library: decode any hashpilot payload to long names and floats; parse commands safely."""

from mqtt_schema import codec, topics
from mqtt_schema import fields as F

MAX_CMD_BYTES = 8192
MAX_ID = 64


def _value(ftype, dec, val):
    if val is None:
        return None
    if ftype == 'num':
        return _unscale(val, dec)
    if ftype == 'list:num' and isinstance(val, list):
        return [_unscale(x, dec) for x in val]
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
        return unpack(F.TABLES[ftype[4:]], val)
    if ftype.startswith('list:map:') and isinstance(val, list):
        table = F.TABLES[ftype[9:]]
        return [unpack(table, x) if isinstance(x, dict) else x for x in val]
    return val


def _unscale(x, dec):
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return x
    if not dec:
        return x
    return round(x / (10 ** dec), dec)


def unpack(defs, wire):
    """Wire dict -> long names, scaled ints back to floats. Unknown keys are kept as they are."""
    known = {}
    for f in defs:
        known[f[0]] = f
    out = {}
    for key, val in wire.items():
        f = known.get(key)
        if f is None:
            out[key] = val
        else:
            out[f[1]] = _value(f[2], f[4], val)
    return out


def decode(topic, data):
    """Payload bytes (CBOR or JSON) on `topic` (full topic or kind, e.g. 'chips') -> decoded dict.

    Raises ValueError with the reason on undecodable data or an unknown topic.
    """
    parts = topics.split(topic)
    if parts is None:
        raise ValueError('not a hashpilot topic: %r' % (topic,))
    defs = F.fields_for(parts[2])
    if defs is None:
        raise ValueError('unknown topic kind %r' % (parts[2],))
    payload = codec.loads(data)
    if not isinstance(payload, dict):
        raise ValueError('payload is not a map')
    return unpack(defs, payload)


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
        ts = payload.get('ts')
        if ts is not None:
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                return None, "'ts' must be a non-negative integer (ms)"
            cmd['ts_ms'] = ts
        return cmd, None
    except Exception as e:  # defence in depth: junk must never crash the agent
        return None, 'malformed command: %s' % (e,)
