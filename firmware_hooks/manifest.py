"""MANIFEST.json of a firmware package: versions and the SHA-256 of every file; verification.

Written by build/package.py; checked by build/verify-package.py and, on the rig, by install.sh
through `hashpilot firmware verify --dir PKG` before anything is installed.
"""

import hashlib
import json
import os
import stat

NAME = 'MANIFEST.json'


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def walk(top):
    """Relative paths of regular files and symlinks under top, sorted (manifest excluded)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn), top)
            if rel != NAME:
                out.append(rel)
        for d in dirnames:  # symlinked directories are listed as links, not walked
            if os.path.islink(os.path.join(dirpath, d)):
                out.append(os.path.relpath(os.path.join(dirpath, d), top))
    return sorted(out)


def describe(top, rel):
    path = os.path.join(top, rel)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return {'symlink': os.readlink(path)}
    return {'sha256': sha256_file(path), 'size': st.st_size, 'mode': '%04o' % stat.S_IMODE(st.st_mode)}


def build(top, meta):
    """Write top/MANIFEST.json: meta (versions) plus every file's digest; returns the dict."""
    body = dict(meta)
    body['files'] = {rel: describe(top, rel) for rel in walk(top)}
    with open(os.path.join(top, NAME), 'w') as f:
        json.dump(body, f, indent=2, sort_keys=True)
        f.write('\n')
    return body


def verify(top):
    """List of problems (empty = the directory matches its manifest exactly)."""
    try:
        with open(os.path.join(top, NAME)) as f:
            body = json.load(f)
    except (OSError, ValueError) as e:
        return ['%s: %s' % (NAME, e)]
    problems = []
    for key in ('name', 'version', 'arch', 'python', 'deps', 'files'):
        if key not in body:
            problems.append('%s: missing %r' % (NAME, key))
    files = body.get('files') or {}
    present = set(walk(top))
    for rel in sorted(set(files) - present):
        problems.append('%s: listed but missing' % rel)
    for rel in sorted(present - set(files)):
        problems.append('%s: present but not in the manifest' % rel)
    for rel in sorted(present & set(files)):
        want = files[rel]
        got = describe(top, rel)
        if want.get('symlink') != got.get('symlink') or want.get('sha256') != got.get('sha256'):
            problems.append('%s: content differs from the manifest' % rel)
        elif 'mode' in want and want['mode'] != got['mode']:
            problems.append('%s: mode %s, manifest says %s' % (rel, got['mode'], want['mode']))
    return problems
