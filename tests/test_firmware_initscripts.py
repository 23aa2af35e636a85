"""Init scripts checked with the real tools, and the SysV supervisor run under dash and BusyBox.

Tools (Debian packages): systemd-analyze (systemd), shellcheck, checkbashisms (devscripts),
busybox. A missing tool skips its test with the package to install.
"""

import os
import shutil
import subprocess
import time

import pytest

from firmware_hooks import initsys, install

from test_firmware_install import fake_binary, make_root

pytestmark = [pytest.mark.e2e]

SYSV = initsys.template('hashpilot.sysv')
PROCD = initsys.template('hashpilot.procd')
UNIT = initsys.template('hashpilot.service')


def need(tool, package):
    if not shutil.which(tool):
        pytest.skip('%s not installed (apt-get install %s)' % (tool, package))


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def systemd_root(tmp_path):
    """Installed root plus the host's system units (sysinit.target, ...) for `verify --root`."""
    need('systemd-analyze', 'systemd')
    if not os.path.isdir('/lib/systemd/system'):
        pytest.skip('no /lib/systemd/system on this host')
    root = make_root(tmp_path)
    install.install(str(root), str(fake_binary(tmp_path / 'hp', '1.0')), log=lambda m: None)
    (root / 'lib/systemd').mkdir(parents=True)
    shutil.copytree('/lib/systemd/system', root / 'lib/systemd/system', symlinks=True)
    return root


def test_systemd_unit_verifies_clean(systemd_root):
    r = run(['systemd-analyze', 'verify', '--root=%s' % systemd_root,
             '/etc/systemd/system/hashpilot.service'])
    assert r.returncode == 0 and r.stderr.strip() == '', r.stderr


def test_systemd_verify_catches_a_broken_unit(systemd_root):
    """Negative control: the check above can fail."""
    unit = systemd_root / 'etc/systemd/system/hashpilot.service'
    unit.write_text(unit.read_text().replace('Type=notify', 'Type=notifyy'))
    r = run(['systemd-analyze', 'verify', '--root=%s' % systemd_root,
             '/etc/systemd/system/hashpilot.service'])
    assert 'notifyy' in r.stderr


def test_systemd_unit_contract():
    text = open(UNIT).read()
    for line in ('Type=notify', 'NotifyAccess=all', 'Restart=on-failure', 'KillSignal=SIGTERM',
                 'User=hashpilot'):
        assert line in text.splitlines(), line
    for key in ('WatchdogSec=', 'StartLimitBurst=', 'StartLimitIntervalSec=', 'TimeoutStopSec='):
        assert any(ln.startswith(key) for ln in text.splitlines()), key


@pytest.mark.parametrize('shell', ['sh', 'bash', 'dash', 'busybox'])
@pytest.mark.parametrize('script', [SYSV, PROCD])
def test_shell_syntax(shell, script):
    if shell == 'busybox':
        need('busybox', 'busybox')
        argv = ['busybox', 'sh', '-n', script]
    else:
        need(shell, shell)
        argv = [shell, '-n', script]
    r = run(argv)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize('script', [SYSV, PROCD])
def test_shellcheck(script):
    need('shellcheck', 'shellcheck')
    r = run(['shellcheck', '--shell=sh', script])
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize('script', [SYSV, PROCD])
def test_checkbashisms(script):
    need('checkbashisms', 'devscripts')
    r = run(['checkbashisms', '--force', '--posix', script])
    assert r.returncode == 0, r.stderr + r.stdout


def test_procd_script_contract():
    text = open(PROCD).read()
    assert text.startswith('#!/bin/sh /etc/rc.common\n')
    assert 'USE_PROCD=1' in text
    assert 'procd_set_param respawn "$RESPAWN_THRESHOLD_S" "$RESPAWN_DELAY_S" "$RESPAWN_RETRY"' in text
    assert 'procd_set_param term_timeout' in text


# --- the SysV supervisor, run for real -----------------------------------------------------

AGENT = '''#!/bin/sh
echo "$$" >> {d}/starts
[ -e {d}/fail ] && exit 1
sleep 30 &
trap 'echo term >> {d}/terms; kill $! 2>/dev/null; exit 0' TERM
wait
'''


@pytest.fixture(params=['dash', 'busybox'])
def sysv(request, tmp_path):
    shell = request.param
    need(shell, shell)
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    if shell == 'busybox':
        os.symlink(shutil.which('busybox'), bindir / 'sh')
    else:
        os.symlink(shutil.which('dash'), bindir / 'sh')
    agent = tmp_path / 'agent'
    agent.write_text(AGENT.format(d=tmp_path))
    agent.chmod(0o755)
    defaults = tmp_path / 'defaults'
    defaults.write_text('DAEMON=%s\nRUN_AS=\nPIDDIR=%s/run\nLOGFILE=%s/log\nRESPAWN_MAX=2\n'
                        'RESPAWN_DELAY_S=0\nSTOP_TIMEOUT_S=10\nSUPERVISOR_SHELL=%s\n'
                        % (agent, tmp_path, tmp_path, bindir / 'sh'))
    # the script reads only its fixed defaults path: a copy points it at the test's file
    script = tmp_path / 'hashpilot.sysv'
    with open(SYSV) as f:
        text = f.read()
    assert text.count('DEFAULTS_FILE=/etc/default/hashpilot\n') == 1
    script.write_text(text.replace('DEFAULTS_FILE=/etc/default/hashpilot\n',
                                   'DEFAULTS_FILE=%s\n' % defaults))
    env = dict(os.environ)

    def ctl(action):
        return run([str(bindir / 'sh'), str(script), action], env=env)
    yield ctl, tmp_path
    ctl('stop')


def _wait(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _lines(p):
    return p.read_text().split() if p.exists() else []


def test_sysv_start_status_respawn_stop(sysv):
    ctl, d = sysv
    assert ctl('status').returncode == 3
    assert ctl('start').returncode == 0
    assert _wait(lambda: len(_lines(d / 'starts')) == 1)
    st = ctl('status')
    assert st.returncode == 0 and 'running' in st.stdout
    # the agent dies: the supervisor starts it again
    first = int(_lines(d / 'starts')[0])
    os.kill(first, 9)
    assert _wait(lambda: len(_lines(d / 'starts')) == 2), (d / 'log').read_text()
    assert ctl('start').stdout.startswith('hashpilot already running')
    assert ctl('stop').returncode == 0
    assert _lines(d / 'terms') == ['term']  # SIGTERM reached the agent: it could go safe
    assert ctl('status').returncode == 3
    assert not os.path.exists(d / 'run/hashpilot.pid')


def test_sysv_respawn_limit(sysv):
    ctl, d = sysv
    (d / 'fail').write_text('')
    ctl('start')  # 0 or 1: the supervisor may already have given up when start checks
    # 1 start + RESPAWN_MAX (2) respawns, then the supervisor gives up
    assert _wait(lambda: ctl('status').returncode == 3, 20), (d / 'log').read_text()
    assert len(_lines(d / 'starts')) == 3
    assert 'giving up' in (d / 'log').read_text()
