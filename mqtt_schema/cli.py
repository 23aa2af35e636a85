"""`hashpilot schema`: decode payloads to JSON, write the reference doc, print payload sizes."""

import argparse
import json
import sys

from mqtt_schema import consumer, doc


def _jsonable(x):
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    return str(x)


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot schema', description=__doc__)
    sub = p.add_subparsers(dest='cmd', required=True)
    d = sub.add_parser('decode', help='decode a CBOR/JSON payload file (or stdin) and print JSON')
    d.add_argument('--topic', required=True, help="full topic or kind, e.g. 'chips'")
    d.add_argument('file', nargs='?', default='-')
    w = sub.add_parser('doc', help='write the topic/payload reference (Markdown + CDDL)')
    w.add_argument('--out', default='docs/mqtt-schema.md', help="output file, '-' for stdout")
    sub.add_parser('bench', help='payload sizes for full rigs')
    a = p.parse_args(argv)
    if a.cmd == 'decode':
        data = sys.stdin.buffer.read() if a.file == '-' else open(a.file, 'rb').read()
        try:
            out = consumer.decode(a.topic, data)
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
            with open(a.out, 'w') as f:
                f.write(text)
            print('wrote %s (%d bytes)' % (a.out, len(text)))
        return 0
    from mqtt_schema import bench
    return bench.main([])
