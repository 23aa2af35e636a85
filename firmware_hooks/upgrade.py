"""Upgrade with automatic rollback, and manual rollback.

upgrade: install the new release beside the old one, switch `current` atomically (the old one
becomes `previous`), restart the service, wait for the agent's health file (health.py contract)
newer than the switch and naming the new version; if it does not come, switch back, restart and
report failure. Keeps the last two releases. One upgrade at a time (flock on /opt/hashpilot/.lock).
"""

import fcntl
import os
import shlex
import subprocess
import tempfile
import time

from firmware_hooks import events, health, initsys
from firmware_hooks import install as inst
from firmware_hooks import layout as L


class UpgradeError(Exception):
    pass


def _lock(lay):
    os.makedirs(lay.p(L.OPT), exist_ok=True)
    fd = os.open(lay.p(L.LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UpgradeError('another upgrade/rollback is running (%s)' % L.LOCK)
    return fd


def restart_argv(lay, restart_cmd):
    if restart_cmd:
        return shlex.split(restart_cmd) if isinstance(restart_cmd, str) else list(restart_cmd)
    if lay.root != '/':
        raise UpgradeError('--restart-cmd is required when --root is not /')
    return initsys.restart_command(initsys.detect(lay))


def _restart(lay, argv, version, log, timeout_s=120):
    env = dict(os.environ, HASHPILOT_ROOT=lay.root, HASHPILOT_RELEASE=version or '',
               HASHPILOT_BINARY=lay.p(L.CURRENT + '/' + L.EXE))
    # Output to a file, not a pipe: a restart script that leaves a daemon holding the pipe open
    # must not make us wait for the daemon.
    with tempfile.TemporaryFile() as out:
        try:
            r = subprocess.run(argv, env=env, timeout=timeout_s, stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            log('restart %s failed: %s' % (' '.join(argv), e))
            return False
        if r.returncode != 0:
            out.seek(0)
            log('restart %s: exit %d: %s' % (' '.join(argv), r.returncode,
                                             out.read(400).decode('utf-8', 'replace').strip()))
    return r.returncode == 0


def wait_healthy(lay, version, since_ts, timeout_s, health_cmd=None, poll_s=0.25):
    """(ok, reason): the health file must be fresh, healthy and from `version`; plus health_cmd."""
    deadline = time.monotonic() + timeout_s
    reason = 'no check ran'
    while True:
        ok, reason = health.check(health.read_health(lay.p(L.HEALTH)), version, since_ts)
        if ok and health_cmd:
            try:
                r = subprocess.run(shlex.split(health_cmd), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=30)
                ok = r.returncode == 0
                reason = 'healthy' if ok else 'health command exit %d' % r.returncode
            except (OSError, subprocess.TimeoutExpired) as e:
                ok, reason = False, 'health command: %s' % e
        if ok:
            return True, reason
        if time.monotonic() >= deadline:
            return False, reason
        time.sleep(poll_s)


def upgrade(root, binary, version=None, health_timeout_s=120.0, health_cmd=None,
            restart_cmd=None, force=False, log=print):
    """Returns 0 when the new release is running healthy, 1 when it was rolled back."""
    lay = L.Layout(root)
    argv = restart_argv(lay, restart_cmd)
    version = version or inst.probe_version(binary)
    fd = _lock(lay)
    try:
        old = lay.link_target(L.CURRENT)
        old_prev = lay.link_target(L.PREVIOUS)
        if old is None:
            raise UpgradeError('nothing installed in %s: use install' % lay.root)
        if old == version and not force:
            raise UpgradeError('%s is already the current release (use --force)' % version)
        inst.install_release(lay, binary, version)
        switch_ts = time.time()
        inst.set_link(lay, L.PREVIOUS, old)
        inst.set_link(lay, L.CURRENT, version)
        log('switched current: %s -> %s; restarting' % (old, version))
        ok = _restart(lay, argv, version, log)
        reason = 'restart command failed'
        if ok:
            ok, reason = wait_healthy(lay, version, switch_ts, health_timeout_s, health_cmd)
        if ok:
            log('hashpilot %s healthy; previous release %s kept for rollback' % (version, old))
            inst.prune(lay, log)
            _event(lay, {'event': 'upgraded', 'from': old, 'to': version})
            return 0
        log('hashpilot %s not healthy within %.0f s (%s): rolling back to %s'
            % (version, health_timeout_s, reason, old))
        back_ts = time.time()
        inst.set_link(lay, L.CURRENT, old)
        inst.set_link(lay, L.PREVIOUS, old_prev)
        if version not in (old, old_prev):
            inst.prune(lay, log)
        restarted = _restart(lay, argv, old, log)
        back_ok, back_reason = (wait_healthy(lay, old, back_ts, health_timeout_s)
                                if restarted else (False, 'restart failed'))
        log('rolled back to %s: %s' % (old, back_reason if back_ok else 'NOT healthy: ' + back_reason))
        _event(lay, {'event': 'rolled_back', 'from': version, 'to': old, 'reason': reason,
                     'automatic': True, 'healthy_after': back_ok})
        return 1
    finally:
        os.close(fd)


def rollback(root, health_timeout_s=0.0, restart_cmd=None, log=print):
    """Swap `current` and `previous` by hand; health-checked when health_timeout_s > 0."""
    lay = L.Layout(root)
    argv = restart_argv(lay, restart_cmd)
    fd = _lock(lay)
    try:
        cur, prev = lay.link_target(L.CURRENT), lay.link_target(L.PREVIOUS)
        if prev is None or not os.path.isdir(lay.release_dir(prev)):
            raise UpgradeError('no previous release to roll back to')
        ts = time.time()
        inst.set_link(lay, L.CURRENT, prev)
        inst.set_link(lay, L.PREVIOUS, cur)
        log('switched current: %s -> %s; restarting' % (cur, prev))
        ok = _restart(lay, argv, prev, log)
        if ok and health_timeout_s > 0:
            ok, reason = wait_healthy(lay, prev, ts, health_timeout_s)
            log('%s: %s' % (prev, reason))
        _event(lay, {'event': 'rolled_back', 'from': cur, 'to': prev, 'automatic': False,
                     'healthy_after': ok})
        return 0 if ok else 1
    finally:
        os.close(fd)


def _event(lay, event):
    try:
        events.run_hooks(lay.p(L.HOOKS), event)
    except Exception as e:  # hooks are advisory; the upgrade result stands
        print('hooks: %s' % e)


def status(root):
    lay = L.Layout(root)
    return {'root': lay.root, 'current': lay.link_target(L.CURRENT),
            'previous': lay.link_target(L.PREVIOUS), 'releases': lay.releases(),
            'health': health.read_health(lay.p(L.HEALTH))}
