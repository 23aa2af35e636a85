"""Wire encoding: the only module that calls cbor2/json, so micropython-lib cbor2 can replace it."""

import json

try:
    import cbor2 as _cbor
except ImportError:  # pragma: no cover - JSON-only build
    _cbor = None

FORMATS = ('cbor', 'json')


def encode(payload, fmt='cbor'):
    """Wire dict -> bytes in 'cbor' (default) or 'json'."""
    if fmt == 'cbor':
        if _cbor is None:
            raise ValueError('cbor2 is not available; use fmt json')
        return _cbor.dumps(payload)
    if fmt == 'json':
        return json.dumps(payload, separators=(',', ':')).encode()
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


def mark_historical(data):
    """Re-encode a stored payload with h: true (the outbox backlog replay), same format."""
    fmt = detect(data)
    payload = loads(data)
    if not isinstance(payload, dict):
        return bytes(data)
    payload['h'] = True
    return encode(payload, fmt)
