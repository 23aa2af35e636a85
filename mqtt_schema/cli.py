"""`hashpilot schema`: decode payloads to JSON, write the reference doc, print payload sizes."""

import argparse
import json
import os
import sys

from mqtt_schema import codec, consumer, doc, topics
from mqtt_schema import fields as F

# The reference doc lives in the repository, wherever the command is run from.
DOC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                        'mqtt-schema.md')


def _jsonable(x):
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    return str(x)


def foreign_keys(kind, data):
    """Wire keys of the payload that the topic kind does not define, and the kinds that
    define them all (the topic the payload probably came from)."""
    try:
        payload = codec.loads(data)
    except ValueError:
        return [], []
    if not isinstance(payload, dict):
        return [], []
    defs = F.fields_for(kind) or []
    known = set(f[0] for f in defs)
    extra = sorted(str(k) for k in payload if k not in known)
    fits = [k for k in F.TOPIC_ORDER
            if set(payload) <= set(f[0] for f in F.fields_for(k) or [])]
    return extra, fits


def decode(topic, data):
    """Decoded payload, or ValueError naming a topic mismatch."""
    out = consumer.decode(topic, data)
    kind = (topics.split(topic) or (None, None, topic))[2]
    extra, fits = foreign_keys(kind, data)
    if extra:
        hint = (' (it fits: %s)' % ', '.join(fits)) if fits else ''
        raise ValueError('payload keys %s are not %s fields: wrong --topic?%s'
                         % (', '.join(extra), kind, hint))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot schema', description=__doc__)
    sub = p.add_subparsers(dest='cmd', required=True)
    d = sub.add_parser('decode', help='decode a CBOR/JSON payload file (or stdin) and print JSON')
    d.add_argument('--topic', required=True, help="full topic or kind, e.g. 'chips'")
    d.add_argument('file', nargs='?', default='-')
    w = sub.add_parser('doc', help='write the topic/payload reference (Markdown + CDDL)')
    w.add_argument('--out', default=DOC_PATH,
                   help="output file, '-' for stdout (default: docs/mqtt-schema.md of this "
                        "installation)")
    sub.add_parser('bench', help='payload sizes for full rigs')
    a = p.parse_args(argv)
    if a.cmd == 'decode':
        try:
            data = sys.stdin.buffer.read() if a.file == '-' else open(a.file, 'rb').read()
        except OSError as e:
            print('hashpilot schema decode: %s' % e, file=sys.stderr)
            return 1
        try:
            out = decode(a.topic, data)
        except ValueError as e:
            print('hashpilot schema decode: %s' % e, file=sys.stderr)
            return 1
        print(json.dumps(out, indent=1, default=_jsonable))
        return 0
    if a.cmd == 'doc':
        text = doc.markdown()
        if a.out == '-':
            sys.stdout.write(text)
        else:
            try:
                with open(a.out, 'w') as f:
                    f.write(text)
            except OSError as e:
                print('hashpilot schema doc: %s (use --out FILE or --out -)' % e, file=sys.stderr)
                return 1
            print('wrote %s (%d bytes)' % (a.out, len(text)))
        return 0
    from mqtt_schema import bench
    return bench.main([])
