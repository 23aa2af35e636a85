"""Run a script under the MicroPython 1.27 Unix port that `make setup` builds
(build/micropython/build.sh -> build/cache/micropython/bin/micropython).

Only the listed project modules are copied into a fresh lib folder, as they would be flashed to a
board, so a module that imports something not copied fails here as it would there.
"""

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MPY_CACHE as in build/micropython/build.sh (worktrees that share build/cache can each have one:
# `build.sh frozen` rewrites the one frozen binary with its own tree's sources).
BIN_DIR = os.path.join(os.environ.get('MPY_CACHE') or os.path.join(ROOT, 'build', 'cache', 'micropython'),
                       'bin')
MICROPYTHON = os.path.join(BIN_DIR, 'micropython')
MPY_CROSS = os.path.join(BIN_DIR, 'mpy-cross')
VENDOR_LIB = os.path.join(ROOT, 'build', 'micropython', 'lib')   # umqtt, cbor2, logging


def require():
    """Path of the interpreter, or a clear failure telling how to get it."""
    if not os.access(MICROPYTHON, os.X_OK):
        raise AssertionError('MicroPython Unix port missing: run `make setup` '
                             '(build/micropython/build.sh)')
    return MICROPYTHON


def stage(dest, modules):
    """Copy repo-relative module paths into dest (keeping their folders)."""
    for mod in modules:
        target = os.path.join(str(dest), mod)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, mod), target)
    return str(dest)


def run(script, modules, lib_dir, heapsize='8M', timeout=300, vendor=True, args=()):
    """Run script (a path) with modules staged in lib_dir; returns the CompletedProcess."""
    exe = require()
    stage(lib_dir, modules)
    path = str(lib_dir) + (':' + VENDOR_LIB if vendor else '')
    env = dict(os.environ, MICROPYPATH=path)
    return subprocess.run([exe, '-X', 'heapsize=' + heapsize, str(script)] + list(args),
                          cwd=str(lib_dir), env=env, capture_output=True, text=True,
                          timeout=timeout)
