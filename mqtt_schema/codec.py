"""Wire encoding: the only module that calls cbor2/json, so micropython-lib cbor2 can replace it.

Maps go out with their keys in canonical CBOR order (RFC 8949 4.2.3: shorter key first, then
bytewise), whatever order the builder made them in: MicroPython's dicts do not keep insertion
order, so this is what makes the CPython agent's and the MicroPython agent's payloads the same
bytes (tests/test_mpy_agent.py compares them).
"""

import json
from collections import OrderedDict

try:
    import cbor2 as _cbor
except ImportError:  # pragma: no cover - JSON-only build
    _cbor = None

try:  # CPython fleet consumers (the `fleet` extra): a faster decoder for canonical CBOR
    from cbrrr import _cbrrr
    _strict = _cbrrr.decode_dag_cbor    # (data, cid_ctor, atjson_mode) -> (object, bytes used)
except ImportError:
    _strict = None

# micropython-lib's cbor2 picks encoders by exact type: teach it that an OrderedDict is a map.
# (CPython's cbor2 encodes dict subclasses as maps already.)
_table = getattr(getattr(_cbor, '_encoder', None), 'cbor_encoders', None)
if _table is not None and OrderedDict not in _table:
    _table[OrderedDict] = _table[dict]


def _key_order(k):
    if isinstance(k, str):
        return (0, len(k.encode()), k)
    return (1, 0, repr(k))


def canonical(obj):
    """Nested dicts -> OrderedDicts with keys in canonical order (lists and scalars as they are)."""
    if isinstance(obj, dict):
        out = OrderedDict()
        for k in sorted(obj, key=_key_order):
            out[k] = canonical(obj[k])
        return out
    if isinstance(obj, (list, tuple)):
        return [canonical(x) for x in obj]
    return obj

FORMATS = ('cbor', 'json')


def encode(payload, fmt='cbor'):
    """Wire dict -> bytes in 'cbor' (default) or 'json'."""
    if fmt == 'cbor':
        if _cbor is None:
            raise ValueError('cbor2 is not available; use fmt json')
        return _cbor.dumps(canonical(payload))
    if fmt == 'json':
        return json.dumps(canonical(payload), separators=(',', ':')).encode()
    raise ValueError('unknown payload format %r (use cbor or json)' % (fmt,))


def detect(data):
    """'json' when the bytes start with '{' or '[' (never the first byte of a CBOR map), else 'cbor'."""
    head = bytes(data[:64]).lstrip()[:1]
    return 'json' if head in (b'{', b'[') else 'cbor'


def loads(data):
    """Bytes -> object, format auto-detected; raises ValueError with the reason on junk."""
    fmt = detect(data)
    try:
        if fmt == 'json':
            return json.loads(bytes(data).decode('utf-8'))
        if _cbor is None:
            raise ValueError('cbor2 is not available')
        return _cbor.loads(bytes(data))
    except Exception as e:  # cbor2 raises several types on junk (EOF, bad tags, recursion)
        raise ValueError('undecodable %s payload: %s' % (fmt, e))


def cbor_parser():
    """'cbrrr' when loads_plain parses canonical CBOR with cbrrr, else 'cbor2' (reports say it)."""
    return 'cbor2' if _strict is None else 'cbrrr'


def _no_cid(cid_bytes):
    raise ValueError('tag 42')       # cbrrr's CID: not ours, cbor2 decides what it is


def loads_canonical(data):
    """The map in `data` when cbrrr parses it (canonical CBOR: every map's keys in canonical
    order, JSON's types only), else None (then loads_plain decides)."""
    if _strict is not None and data.__class__ is bytes and b'\xa0' <= data[:1] < b'\xc0':
        try:
            obj, used = _strict(data, _no_cid, False)
        except Exception:
            return None
        if used == len(data):
            return obj
    return None


def loads_plain(data):
    """loads() for the fleet consumer's hot path -> (object, plain), the object as loads() gives it.

    plain is True when the object can hold only JSON's types (dict, list, str, int, float, bool,
    None): JSON, and CBOR in cbrrr's strict subset (DAG-CBOR: canonical map order, string keys,
    minimal integers, 64-bit floats, no tags: what every hashpilot agent sends), which cbrrr (when
    installed) parses about twice as fast as cbor2. Anything else goes to cbor2 as before, and
    may hold its other types (Decimal, CBORSimpleValue, tags...): plain is False.
    """
    if _strict is not None and data.__class__ is bytes and b'\xa0' <= data[:1] < b'\xc0':
        # a CBOR map (JSON never starts so); cbrrr's C function, not its wrapper: 0.2 us a call
        try:
            obj, used = _strict(data, _no_cid, False)
            if used == len(data):
                return obj, True
        except Exception:  # outside the strict subset, or junk: cbor2 answers or errs
            pass
    obj = loads(data)
    return obj, detect(data) == 'json'


def mark_historical(data):
    """Re-encode a stored payload with h: true (the outbox backlog replay), same format."""
    fmt = detect(data)
    payload = loads(data)
    if not isinstance(payload, dict):
        return bytes(data)
    payload['h'] = True
    return encode(payload, fmt)
