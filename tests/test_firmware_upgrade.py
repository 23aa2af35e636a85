"""Upgrade with health check and automatic rollback, using small fake `hashpilot` binaries.

A fake binary is a shell script: `--version` prints its version; `run` either writes the health
file (health.py contract) through python, or does not (a broken build), then stays up until
the restart script replaces it.
"""

import json
import os
import signal
import time

import pytest

from firmware_hooks import health, install, upgrade
from firmware_hooks import layout as L

from test_firmware_install import make_root

HEALTH_PY = ('import sys; sys.path.insert(0, %s); from firmware_hooks.health import write_health; '
             'write_health(sys.argv[1], sys.argv[2], healthy=sys.argv[3] == "1")'
             % json.dumps(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def fake(tmp_path, version, behaviour):
    """behaviour: 'good' (healthy), 'silent' (never writes health), 'unhealthy', 'crash'."""
    p = tmp_path / ('hp-%s-%s' % (version, behaviour))
    body = {'good': 'python3 -c \'%s\' "$STATE" %s 1' % (HEALTH_PY, version),
            'unhealthy': 'python3 -c \'%s\' "$STATE" %s 0' % (HEALTH_PY, version),
            'silent': ':', 'crash': 'exit 3'}[behaviour]
    p.write_text('#!/bin/sh\n'
                 'if [ "$1" = --version ]; then echo "hashpilot %s"; exit 0; fi\n'
                 '%s\nexec sleep 60\n' % (version, body))
    p.chmod(0o755)
    return str(p)


@pytest.fixture
def rig(tmp_path):
    root = make_root(tmp_path)
    restart = tmp_path / 'restart.sh'
    pidfile = tmp_path / 'agent.pid'
    count = tmp_path / 'restarts'
    # The pluggable restart command: stop the running fake agent, start `current`.
    restart.write_text('#!/bin/sh\n'
                       'echo "$HASHPILOT_RELEASE" >> %s\n'
                       '[ -s %s ] && kill "$(cat %s)" 2>/dev/null\n'
                       # no redirection: the agent keeps our stdout open on purpose
                       'STATE="$HASHPILOT_ROOT/var/lib/hashpilot" "$HASHPILOT_BINARY" run &\n'
                       'echo $! > %s\n' % (count, pidfile, pidfile, pidfile))
    restart.chmod(0o755)
    yield {'root': str(root), 'restart': str(restart), 'tmp': tmp_path, 'restarts': count}
    try:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _install(rig, version):
    install.install(rig['root'], fake(rig['tmp'], version, 'good'), log=lambda m: None)


def _links(rig):
    lay = L.Layout(rig['root'])
    return lay.link_target(L.CURRENT), lay.link_target(L.PREVIOUS), lay.releases()


def test_good_upgrade_switches_and_keeps_previous(rig):
    _install(rig, '1.0.0')
    rc = upgrade.upgrade(rig['root'], fake(rig['tmp'], '1.1.0', 'good'), health_timeout_s=15,
                         restart_cmd=rig['restart'], log=lambda m: None)
    assert rc == 0
    assert _links(rig) == ('1.1.0', '1.0.0', ['1.0.0', '1.1.0'])
    h = health.read_health(os.path.join(rig['root'], 'var/lib/hashpilot/health.json'))
    assert h['version'] == '1.1.0' and h['healthy'] is True


@pytest.mark.parametrize('behaviour', ['silent', 'unhealthy', 'crash'])
def test_failed_health_check_rolls_back_by_itself(rig, behaviour):
    _install(rig, '1.0.0')
    upgrade.upgrade(rig['root'], fake(rig['tmp'], '1.1.0', 'good'), health_timeout_s=15,
                    restart_cmd=rig['restart'], log=lambda m: None)
    lines = []
    t0 = time.monotonic()
    rc = upgrade.upgrade(rig['root'], fake(rig['tmp'], '2.0.0', behaviour), health_timeout_s=2,
                         restart_cmd=rig['restart'], log=lines.append)
    assert rc == 1
    assert time.monotonic() - t0 < 30
    # back on 1.1.0, 1.0.0 still the rollback target, the bad release gone
    assert _links(rig) == ('1.1.0', '1.0.0', ['1.0.0', '1.1.0'])
    assert any('rolling back to 1.1.0' in m for m in lines), lines
    # the old release was restarted and reported healthy again
    assert rig['restarts'].read_text().split() == ['1.1.0', '2.0.0', '1.1.0']
    h = health.read_health(os.path.join(rig['root'], 'var/lib/hashpilot/health.json'))
    assert h['version'] == '1.1.0' and h['healthy'] is True
    assert any('rolled back to 1.1.0: healthy' in m for m in lines), lines


def test_restart_failure_rolls_back(rig, tmp_path):
    _install(rig, '1.0.0')
    failing = tmp_path / 'restart-fail.sh'
    failing.write_text('#!/bin/sh\n[ "$HASHPILOT_RELEASE" = 1.2.0 ] && exit 1\nexec %s\n'
                       % rig['restart'])
    failing.chmod(0o755)
    rc = upgrade.upgrade(rig['root'], fake(tmp_path, '1.2.0', 'good'), health_timeout_s=5,
                         restart_cmd=str(failing), log=lambda m: None)
    assert rc == 1 and _links(rig)[0] == '1.0.0'


def test_keeps_last_two_releases_and_manual_rollback(rig):
    _install(rig, '1.0.0')
    for v in ('1.1.0', '1.2.0'):
        assert upgrade.upgrade(rig['root'], fake(rig['tmp'], v, 'good'), health_timeout_s=15,
                               restart_cmd=rig['restart'], log=lambda m: None) == 0
    assert _links(rig) == ('1.2.0', '1.1.0', ['1.1.0', '1.2.0'])
    assert upgrade.rollback(rig['root'], health_timeout_s=15, restart_cmd=rig['restart'],
                            log=lambda m: None) == 0
    assert _links(rig) == ('1.1.0', '1.2.0', ['1.1.0', '1.2.0'])
    h = health.read_health(os.path.join(rig['root'], 'var/lib/hashpilot/health.json'))
    assert h['version'] == '1.1.0'


def test_same_version_refused_without_force(rig):
    _install(rig, '1.0.0')
    with pytest.raises(upgrade.UpgradeError):
        upgrade.upgrade(rig['root'], fake(rig['tmp'], '1.0.0', 'good'),
                        restart_cmd=rig['restart'], log=lambda m: None)


def test_restart_cmd_required_off_root(rig):
    _install(rig, '1.0.0')
    with pytest.raises(upgrade.UpgradeError):
        upgrade.upgrade(rig['root'], fake(rig['tmp'], '1.1.0', 'good'), log=lambda m: None)


def test_cli_upgrade_exit_code(rig, capsys):
    from firmware_hooks import cli
    _install(rig, '1.0.0')
    rc = cli.main(['upgrade', '--root', rig['root'], '--binary',
                   fake(rig['tmp'], '3.0.0', 'silent'), '--health-timeout-s', '1',
                   '--restart-cmd', rig['restart']])
    assert rc == 1
    capsys.readouterr()
    assert cli.main(['status', '--root', rig['root']]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st['current'] == '1.0.0' and st['releases'] == ['1.0.0']


def test_health_check_rules():
    now = time.time()
    good = {'healthy': True, 'version': '1.1', 'ts': now}
    assert health.check(good, '1.1', now - 1)[0]
    assert not health.check(None, '1.1', now)[0]
    assert not health.check(dict(good, ts=now - 10), '1.1', now - 1)[0]   # stale
    assert not health.check(dict(good, version='1.0'), '1.1', now - 1)[0]  # old binary
    assert not health.check(dict(good, healthy='yes'), '1.1', now - 1)[0]
    assert not health.check(dict(good, ts='now'), '1.1', now - 1)[0]


def test_write_health_is_atomic_and_readable(tmp_path):
    path = health.write_health(str(tmp_path), '9.9', healthy=True, last_telemetry_ts=1.5)
    body = health.read_health(path)
    assert body['version'] == '9.9' and body['pid'] == os.getpid()
    assert body['last_telemetry_ts'] == 1.5
    assert os.listdir(tmp_path) == ['health.json']
    (tmp_path / 'health.json').write_text('{broken')
    assert health.read_health(path) is None
