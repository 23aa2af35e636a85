"""Firmware package: assembly, MANIFEST verification (and that it catches tampering), install.sh.

Runs without PyInstaller: the "build" is a stand-in one-folder directory whose `hashpilot` runs
this source tree (`python3 -m agent`), so install.sh exercises the real `firmware verify` and
`firmware install` code paths.
"""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from firmware_hooks import manifest

from test_firmware_install import make_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'build', 'package.py')
VERIFY = os.path.join(ROOT, 'build', 'verify-package.py')


@pytest.fixture
def tarball(tmp_path):
    from agent import __version__
    build = tmp_path / 'build'
    exe_dir = build / 'onedir' / 'hashpilot'
    (exe_dir / '_internal').mkdir(parents=True)
    (exe_dir / '_internal' / 'base_library.zip').write_bytes(os.urandom(64))
    exe = exe_dir / 'hashpilot'
    exe.write_text('#!/bin/sh\nPYTHONPATH=%s exec %s -m agent "$@"\n' % (ROOT, sys.executable))
    exe.chmod(0o755)
    (build / 'build-info.json').write_text(json.dumps({
        'hashpilot': __version__, 'arch': 'x86_64', 'python': '3.11.2',
        'deps': {'cbor2': '5.9.0', 'paho-mqtt': '2.2.0'}, 'libc': 'glibc-2.36'}))
    out = tmp_path / 'out'
    arch = os.uname().machine
    r = subprocess.run([sys.executable, PACKAGE, '--arch', arch, '--build-dir', str(build),
                        '--out-dir', str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    path = out / ('hashpilot-%s-%s.tar.gz' % (__version__, arch))
    assert path.exists()
    return path


def _unpack(tarball, dest):
    with tarfile.open(tarball) as tf:
        tf.extractall(dest)
    (top,) = os.listdir(dest)
    return dest / top


def test_package_layout_and_manifest(tarball, tmp_path):
    pkg = _unpack(tarball, tmp_path / 'x')
    body = json.loads((pkg / 'MANIFEST.json').read_text())
    assert body['name'] == 'hashpilot' and body['deps']['cbor2'] == '5.9.0'
    for rel in ('hashpilot/hashpilot', 'install.sh', 'init/hashpilot.service', 'init/hashpilot.sysv',
                'init/hashpilot.procd', 'config/hashpilot.toml.template',
                'hooks.d/50-syslog.sample'):
        assert rel in body['files'], rel
    for rel, desc in body['files'].items():
        assert len(desc['sha256']) == 64, rel
    assert body['files']['install.sh']['mode'] == '0755'
    assert manifest.verify(str(pkg)) == []
    with tarfile.open(tarball) as tf:
        assert {m.uid for m in tf.getmembers()} == {0}


def test_verifier_accepts_good_and_rejects_tampered(tarball, tmp_path):
    r = subprocess.run([sys.executable, VERIFY, str(tarball)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    pkg = _unpack(tarball, tmp_path / 'x')
    with open(pkg / 'init' / 'hashpilot.sysv', 'a') as f:
        f.write('# tampered\n')
    (pkg / 'extra').write_text('x')
    os.unlink(pkg / 'hooks.d' / '50-syslog.sample')
    problems = manifest.verify(str(pkg))
    assert any('hashpilot.sysv: content differs' in p for p in problems)
    assert any('extra: present but not in the manifest' in p for p in problems)
    assert any('50-syslog.sample: listed but missing' in p for p in problems)
    bad = tmp_path / 'bad.tar.gz'
    with tarfile.open(bad, 'w:gz') as tf:
        tf.add(pkg, arcname=pkg.name)
    r = subprocess.run([sys.executable, VERIFY, str(bad)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and 'content differs' in r.stderr


def test_install_sh_verifies_then_installs(tarball, tmp_path):
    from agent import __version__
    pkg = _unpack(tarball, tmp_path / 'x')
    root = make_root(tmp_path)
    r = subprocess.run([str(pkg / 'install.sh'), '--root', str(root), '--init', 'sysv'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'verify: OK' in r.stdout
    assert os.readlink(root / 'opt/hashpilot/current') == 'releases/' + __version__
    assert (root / 'opt/hashpilot/current/_internal/base_library.zip').exists()
    assert (root / 'etc/hashpilot/hooks.d/50-syslog.sample').exists()
    assert (root / 'etc/init.d/hashpilot').exists()
    # a tampered package is refused before anything is installed
    root2 = make_root(tmp_path, name='root2')
    with open(pkg / 'hashpilot' / 'hashpilot', 'a') as f:
        f.write('# tampered\n')
    r = subprocess.run([str(pkg / 'install.sh'), '--root', str(root2)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and 'content differs' in r.stderr
    assert not (root2 / 'opt').exists()
