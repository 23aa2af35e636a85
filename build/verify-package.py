"""Verify a firmware tarball: layout, MANIFEST.json digests/modes, versions; runs the binary's
`--version` when the package is for this machine's architecture.

Usage: python3 build/verify-package.py build/out/hashpilot-<version>-<arch>.tar.gz
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from firmware_hooks import manifest  # noqa: E402

REQUIRED = ('install.sh', 'init/hashpilot.service', 'init/hashpilot.sysv', 'init/hashpilot.procd',
            'config/hashpilot.toml.template')


def verify(tarball):
    problems = []
    tmp = tempfile.mkdtemp(prefix='hp-verify-')
    try:
        with tarfile.open(tarball) as tf:
            names = tf.getnames()
            tops = {n.split('/', 1)[0] for n in names}
            if len(tops) != 1:
                return ['expected one top directory, found %s' % sorted(tops)]
            bad = [n for n in names if n.startswith('/') or '..' in n.split('/')]
            if bad:
                return ['unsafe paths in tarball: %s' % bad[:3]]
            if hasattr(tarfile, 'data_filter'):
                tf.extractall(tmp, filter='tar')
            else:
                tf.extractall(tmp)
        top = tops.pop()
        pkg = os.path.join(tmp, top)
        problems += manifest.verify(pkg)
        with open(os.path.join(pkg, manifest.NAME)) as f:
            body = json.load(f)
        want_top = 'hashpilot-%s-%s' % (body.get('version'), body.get('arch'))
        if top != want_top:
            problems.append('top directory %s, manifest says %s' % (top, want_top))
        for rel in REQUIRED:
            if rel not in body.get('files', {}):
                problems.append('%s missing from the package' % rel)
        exe = os.path.join(pkg, 'hashpilot', 'hashpilot')
        if not os.path.isfile(exe):
            exe = os.path.join(pkg, 'hashpilot')
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            problems.append('no executable hashpilot binary')
        elif not os.access(os.path.join(pkg, 'install.sh'), os.X_OK):
            problems.append('install.sh not executable')
        host = {'armv7l': 'armhf', 'arm64': 'aarch64'}.get(platform.machine(), platform.machine())
        if not problems and body.get('arch') == host:
            out = subprocess.run([exe, '--version'], capture_output=True, text=True,
                                 timeout=60).stdout.strip()
            if out != 'hashpilot %s' % body['version']:
                problems.append('binary says %r, manifest version %s' % (out, body['version']))
            r = subprocess.run([exe, 'firmware', 'verify', '--dir', pkg], capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                problems.append('packaged binary rejects its own manifest: %s' % r.stderr.strip())
        for key in ('python', 'deps'):
            if not body.get(key):
                problems.append('manifest lacks %s' % key)
        return problems
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    problems = verify(argv[0])
    for p in problems:
        print('verify-package: ' + p, file=sys.stderr)
    print('verify-package: %s %s' % (argv[0], 'FAILED' if problems else 'OK'))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
