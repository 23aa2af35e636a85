"""The agent's MicroPython module set: the roots in modules.txt plus every repo or vendored module
they import (ast walk, imports inside functions too), so a new core module that the chain driver
or the control loop starts to import is frozen without anyone editing a list.

CPython only (used by manifest.py at freeze time and by stage.py). modules(target) ->
[(source path, module path relative to lib)].
"""

import ast
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIB = os.path.join(HERE, 'lib')


def roots(target):
    out = []
    with open(os.path.join(HERE, 'modules.txt')) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('['):
                tag, line = line[1:].split(']', 1)
                if tag != target:
                    continue
                line = line.strip()
            out.append(line[4:] if line.startswith('lib:') else line)
    return out


def _find(rel):
    """rel 'hal/codec.py' -> source path in the repo or the vendored lib, or None."""
    for base in (ROOT, LIB):
        path = os.path.join(base, rel)
        if os.path.isfile(path):
            return path
    return None


def _candidates(name):
    """Module name -> repo-relative files it may be (module or package), with its parents."""
    parts = name.split('.')
    out = []
    for i in range(1, len(parts) + 1):
        stem = '/'.join(parts[:i])
        out.extend([stem + '/__init__.py', stem + '.py'])
    return out


def _imports(path, rel):
    pkg = os.path.dirname(rel).replace('/', '.')
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                up = pkg.split('.')[:len(pkg.split('.')) - (node.level - 1)] if pkg else []
                base = '.'.join([p for p in up if p] + ([base] if base else []))
            yield base
            for a in node.names:          # `from hal import codec`: codec may be a module
                yield base + '.' + a.name if base else a.name


def modules(target):
    todo = list(roots(target))
    seen = []
    while todo:
        rel = todo.pop(0)
        if rel in seen:
            continue
        path = _find(rel)
        if path is None:
            raise SystemExit('closure: %s listed or imported but not found' % rel)
        seen.append(rel)
        for name in _imports(path, rel):
            for cand in _candidates(name):
                if cand not in seen and cand not in todo and _find(cand):
                    todo.append(cand)
    return [(_find(rel), rel) for rel in seen]
