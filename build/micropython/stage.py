#!/usr/bin/env python3
"""Compile the agent's MicroPython modules (build/micropython/modules.txt) to .mpy with mpy-cross.

    python3 build/micropython/stage.py [--target unix|esp32] [--out DIR] [--json]
    python3 build/micropython/stage.py --profiles FILE

Output: DIR/<module>.mpy (default build/cache/micropython/lib-<target>), ready for MICROPYPATH on
the Unix port or for copying to an ESP32's /lib (mpremote cp -r). Prints the total .mpy size.
ESP32-S3 targets get `-march=xtensawin`; the bytecode is the same, native code is not used.
--profiles writes the shipped tuner profiles (agent/profiles/*.toml, read by CPython: there is no
TOML on MicroPython) as JSON for port/agent.py.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MPY_CROSS = os.path.join(ROOT, 'build', 'cache', 'micropython', 'bin', 'mpy-cross')


def modules(target):
    """[(source path, module path relative to lib)]: modules.txt roots and what they import."""
    sys.path.insert(0, HERE)
    import closure
    return closure.modules(target)


def stage(target, out_dir):
    if not os.access(MPY_CROSS, os.X_OK):
        raise SystemExit('stage: %s missing; run make setup' % MPY_CROSS)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)            # no stale .mpy of a module no longer imported
    sizes = {}
    for src, rel in modules(target):
        dest = os.path.join(out_dir, rel[:-3] + '.mpy')
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        args = [MPY_CROSS, '-o', dest, '-s', rel]
        if target == 'esp32':
            args.append('-march=xtensawin')
        proc = subprocess.run(args + [src], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit('stage: mpy-cross %s failed:\n%s' % (rel, proc.stderr))
        sizes[rel] = os.path.getsize(dest)
    return sizes


def export_profiles(path):
    """The shipped tuner profiles, validated by CPython's agent/autotune/profile.py, as JSON."""
    sys.path.insert(0, ROOT)
    from agent.autotune import profile
    out = dict((name, profile.load(name)) for name in profile.shipped())
    with open(path, 'w') as f:
        json.dump(out, f, indent=1, sort_keys=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--target', choices=('unix', 'esp32'), default='unix')
    p.add_argument('--out')
    p.add_argument('--json', action='store_true')
    p.add_argument('--profiles', metavar='FILE', help='write the tuner profiles as JSON instead')
    a = p.parse_args(argv)
    if a.profiles:
        names = export_profiles(a.profiles)
        print('stage: %d profiles -> %s' % (len(names), a.profiles))
        return 0
    out = a.out or os.path.join(ROOT, 'build', 'cache', 'micropython', 'lib-' + a.target)
    sizes = stage(a.target, out)
    own = sum(v for k, v in sizes.items() if not os.path.exists(os.path.join(HERE, 'lib', k)))
    total = sum(sizes.values())
    if a.json:
        print(json.dumps({'target': a.target, 'dir': out, 'modules': len(sizes),
                          'agent_mpy_bytes': own, 'total_mpy_bytes': total}))
    else:
        print('stage: %d modules -> %s: agent %d B .mpy, with umqtt/cbor2/logging %d B'
              % (len(sizes), out, own, total))
    return 0


if __name__ == '__main__':
    sys.exit(main())
