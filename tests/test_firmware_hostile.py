"""Installer and hooks against an adversary (issue 17): planted symlinks at secret paths, hooks
that detach children with setsid, staging roots whose hooks must not run on the build host, a
--site that would make a config the agent refuses, a SysV script that trusts its environment."""

import os
import subprocess
import time

import pytest

from firmware_hooks import credentials, events, install
from tests.test_firmware_install import make_root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hook(d, name, body):
    p = d / name
    p.write_text('#!/bin/sh\n' + body + '\n')
    p.chmod(0o755)
    return p


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError:
        return False


@pytest.mark.parametrize('detach', ['setsid', 'setsid+parent-exits-first', 'double-fork'])
def test_timed_out_hook_tree_killed_and_reported(tmp_path, detach):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    pids = tmp_path / 'pids'
    body = {
        'setsid': 'setsid sleep 300 & echo $! >> %s; sleep 300' % pids,
        # the detached child's parent (a subshell) is gone before the timeout
        'setsid+parent-exits-first': '( setsid sh -c "echo \\$\\$ >> %s; exec sleep 300" & ); sleep 300' % pids,
        'double-fork': '( ( sh -c "echo \\$\\$ >> %s; exec sleep 300" & ) & ); sleep 300' % pids,
    }[detach]
    hook(hooks, '10-detach', 'exec </dev/null >/dev/null 2>&1; ' + body)
    t0 = time.monotonic()
    res = events.run_hooks(str(hooks), {'event': 'test'}, timeout_s=1.0)
    assert time.monotonic() - t0 < 10
    assert res[0]['timed_out'] and res[0]['survivors'] == 0 and res[0]['killed'] >= 2, res
    for _ in range(50):
        if pids.exists() and pids.read_text().split():
            break
        time.sleep(0.1)
    kids = [int(x) for x in pids.read_text().split()]
    assert kids
    deadline = time.monotonic() + 5
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids), 'detached hook child survived the timeout'


def test_secret_writer_never_follows_planted_links(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('precious')
    target = tmp_path / 'mqtt-password'
    os.symlink(str(victim), str(tmp_path / 'mqtt-password.tmp'))     # the planted tmp link
    credentials.write_secret(str(target), 's3cret')
    assert victim.read_text() == 'precious'
    assert target.read_text() == 's3cret\n' and not target.is_symlink()
    assert (target.stat().st_mode & 0o777) == 0o600
    os.unlink(str(target))
    os.symlink(str(victim), str(target))                             # the secret itself a link
    credentials.write_secret(str(target), 'other')
    assert victim.read_text() == 'precious' and not target.is_symlink()


def fake_binary(tmp_path):
    exe = tmp_path / 'bin' / 'hashpilot'
    exe.parent.mkdir(exist_ok=True)
    exe.write_text('#!/bin/sh\necho "hashpilot 9.9.9"\n')
    exe.chmod(0o755)
    return str(exe)


def staging_root(tmp_path):
    return make_root(tmp_path, 'systemd')


def test_existing_secret_symlink_is_not_chowned_and_install_refuses(tmp_path):
    root = staging_root(tmp_path)
    victim = tmp_path / 'victim'
    victim.write_text('precious')
    os.chmod(str(victim), 0o644)
    (root / 'etc' / 'hashpilot').mkdir()
    os.symlink(str(victim), str(root / 'etc' / 'hashpilot' / 'mqtt-password'))
    with pytest.raises(install.InstallError, match='symlink|regular'):
        install.install(str(root), fake_binary(tmp_path), site='s1', rig='r1', log=lambda m: None)
    assert victim.read_text() == 'precious' and (victim.stat().st_mode & 0o777) == 0o644


def test_install_root_does_not_run_staging_hooks(tmp_path):
    root = staging_root(tmp_path)
    hooks = root / 'etc' / 'hashpilot' / 'hooks.d'
    hooks.mkdir(parents=True)
    ran = tmp_path / 'ran'
    hook(hooks, '10-evil', 'touch %s' % ran)
    logs = []
    install.install(str(root), fake_binary(tmp_path), site='s1', rig='r1', log=logs.append)
    assert not ran.exists()
    assert any('hooks' in m and 'not run' in m for m in logs), logs


@pytest.mark.parametrize('site', ['bad\nsite', 'a/b', 'a+b', '#', '', 'x' * 300])
def test_install_validates_site_and_rig(tmp_path, site):
    root = staging_root(tmp_path)
    with pytest.raises(install.InstallError):
        install.install(str(root), fake_binary(tmp_path), site=site, rig='r1', log=lambda m: None)
    with pytest.raises(install.InstallError):
        install.install(str(root), fake_binary(tmp_path), site='s1', rig=site or '#',
                        log=lambda m: None)
    assert not (root / 'etc' / 'hashpilot' / 'hashpilot.toml').exists()


def test_sysv_script_ignores_defaults_from_environment(tmp_path):
    script = os.path.join(REPO, 'firmware_hooks', 'templates', 'hashpilot.sysv')
    with open(script) as f:
        text = f.read()
    assert '$HASHPILOT_DEFAULTS' not in text.replace('HASHPILOT_DEFAULTS=', '')
    evil = tmp_path / 'evil'
    proof = tmp_path / 'proof'
    evil.write_text('touch %s\n' % proof)
    env = dict(os.environ, HASHPILOT_DEFAULTS=str(evil))
    subprocess.run(['sh', script, 'status'], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=20)
    assert not proof.exists()
