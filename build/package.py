"""Assemble the firmware tarball build/out/hashpilot-<version>-<arch>.tar.gz from a PyInstaller build.

Contents: the binary (one-folder build by default: no per-start extraction into RAM-backed /tmp,
nothing left behind in /tmp when the watchdog SIGKILLs it; --mode onefile for a single file),
init scripts, default config, example hooks, install.sh, MANIFEST.json (versions + SHA-256 of
every file). The tarball is verified after writing (build/verify-package.py does the same).

Usage: python3 build/package.py [--arch ARCH] [--mode onedir|onefile]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from firmware_hooks import manifest  # noqa: E402

TEMPLATES = os.path.join(ROOT, 'firmware_hooks', 'templates')


def host_arch():
    m = platform.machine()
    return {'armv7l': 'armhf', 'armv8l': 'armhf', 'arm64': 'aarch64'}.get(m, m)


def source_epoch():
    try:
        return int(subprocess.run(['git', '-C', ROOT, 'log', '-1', '--format=%ct'],
                                  capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def assemble(stage, arch, mode, out):
    with open(os.path.join(out, 'build-info.json')) as f:
        info = json.load(f)
    if mode == 'onedir':
        shutil.copytree(os.path.join(out, 'onedir', 'hashpilot'), os.path.join(stage, 'hashpilot'),
                        symlinks=True)
    else:
        shutil.copy2(os.path.join(out, 'onefile', 'hashpilot'), os.path.join(stage, 'hashpilot'))
    os.makedirs(os.path.join(stage, 'init'))
    for name in ('hashpilot.service', 'hashpilot.sysv', 'hashpilot.procd'):
        shutil.copy2(os.path.join(TEMPLATES, name), os.path.join(stage, 'init', name))
    os.makedirs(os.path.join(stage, 'config'))
    shutil.copy2(os.path.join(TEMPLATES, 'hashpilot.toml'),
                 os.path.join(stage, 'config', 'hashpilot.toml.template'))
    shutil.copytree(os.path.join(HERE, 'pkg', 'hooks.d'), os.path.join(stage, 'hooks.d'))
    shutil.copy2(os.path.join(HERE, 'pkg', 'install.sh'), os.path.join(stage, 'install.sh'))
    for dirpath, dirnames, filenames in os.walk(stage):  # predictable modes whatever the umask
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
    meta = {'name': 'hashpilot', 'version': info['hashpilot'], 'arch': arch, 'mode': mode,
            'python': info['python'], 'deps': info['deps'], 'libc': info.get('libc'),
            'install': './install.sh [--root DIR] [--init auto|systemd|sysv|procd]'}
    return manifest.build(stage, meta)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', default=host_arch())
    ap.add_argument('--mode', default='onedir', choices=('onedir', 'onefile'))
    ap.add_argument('--build-dir', help='PyInstaller output (default build/out/ARCH)')
    ap.add_argument('--out-dir', default=os.path.join(HERE, 'out'), help='where the tarball goes')
    args = ap.parse_args(argv)
    build_dir = args.build_dir or os.path.join(HERE, 'out', args.arch)
    if not os.path.exists(os.path.join(build_dir, 'build-info.json')):
        print('package: no build in %s (run make build / make build-armhf)' % build_dir,
              file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix='hp-pkg-')
    try:
        with open(os.path.join(build_dir, 'build-info.json')) as f:
            info = json.load(f)
        top = 'hashpilot-%s-%s' % (info['hashpilot'], args.arch)
        stage = os.path.join(tmp, top)
        os.makedirs(stage)
        body = assemble(stage, args.arch, args.mode, build_dir)
        os.makedirs(args.out_dir, exist_ok=True)
        tarball = os.path.join(args.out_dir, top + '.tar.gz')
        epoch = source_epoch()

        def clean(ti):
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = 'root'
            ti.mtime = epoch or ti.mtime
            return ti
        with tarfile.open(tarball + '.tmp', 'w:gz', compresslevel=9) as tf:
            tf.add(stage, arcname=top, filter=clean)
        os.replace(tarball + '.tmp', tarball)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rc = subprocess.run([sys.executable, os.path.join(HERE, 'verify-package.py'), tarball]).returncode
    print('package: %s (%.1f MiB, %d files, %s)' % (tarball,
                                                    os.path.getsize(tarball) / 1048576.0,
                                                    len(body['files']), args.mode))
    return rc


if __name__ == '__main__':
    sys.exit(main())
