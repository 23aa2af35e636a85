"""Install into temporary roots: files, modes, owners, user entries, credentials, init choice."""

import os
import re
import shutil
import socket
import stat
import subprocess
import time

import pytest

from firmware_hooks import credentials, install, layout as L, users

AS_ROOT = os.geteuid() == 0


def make_root(tmp_path, kind='systemd', name='root'):
    root = tmp_path / name
    (root / 'etc').mkdir(parents=True)
    (root / 'usr/sbin').mkdir(parents=True)
    (root / 'usr/sbin/nologin').write_text('')
    (root / 'etc/passwd').write_text('root:x:0:0:root:/root:/bin/sh\n'
                                     'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n'
                                     'sys:x:999:999::/:/usr/sbin/nologin\n')
    (root / 'etc/group').write_text('root:x:0:\ndialout:x:20:pi\n')
    (root / 'etc/shadow').write_text('root:*:19000:0:99999:7:::\n')
    os.chmod(root / 'etc/shadow', 0o640)
    (root / 'etc/gshadow').write_text('root:*::\ndialout:*::pi\n')
    (root / 'etc/hostname').write_text('rig-07\n')
    if kind == 'systemd':
        (root / 'etc/systemd/system').mkdir(parents=True)
    elif kind == 'procd':
        (root / 'etc/openwrt_release').write_text("DISTRIB_ID='OpenWrt'\n")
    elif kind == 'sysv':
        for d in ('rc0.d', 'rc2.d', 'rc6.d'):
            (root / 'etc' / d).mkdir()
    elif kind == 'busybox':
        (root / 'etc/init.d').mkdir()
        (root / 'etc/init.d/rcS').write_text('#!/bin/sh\n')
    return root


def fake_binary(path, version):
    path.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "hashpilot %s" && exit 0\nexit 1\n'
                    % version)
    path.chmod(0o755)
    return path


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_install_systemd_root(tmp_path):
    root = make_root(tmp_path)
    binp = fake_binary(tmp_path / 'hp', '0.3.1')
    res = install.install(str(root), str(binp), log=lambda m: None)
    assert res['version'] == '0.3.1' and res['init'] == 'systemd'

    # user / group: system range, no shell, locked password, serial ports group
    pw = [ln.split(':') for ln in (root / 'etc/passwd').read_text().splitlines()]
    hp = [e for e in pw if e[0] == 'hashpilot']
    assert len(hp) == 1
    uid, gid = int(hp[0][2]), int(hp[0][3])
    assert 100 <= uid < 1000 and uid != 999  # 999 is taken by `sys`
    assert hp[0][6] == '/usr/sbin/nologin' and hp[0][5] == '/var/lib/hashpilot'
    grp = (root / 'etc/group').read_text()
    assert re.search(r'^hashpilot:x:%d:$' % gid, grp, re.M)
    assert re.search(r'^dialout:x:20:pi,hashpilot$', grp, re.M)
    sh = [ln.split(':') for ln in (root / 'etc/shadow').read_text().splitlines()]
    assert [e[1] for e in sh if e[0] == 'hashpilot'] == ['!']
    assert mode(root / 'etc/shadow') == 0o640
    assert 'hashpilot:!::' in (root / 'etc/gshadow').read_text()

    # release, links
    rel = root / 'opt/hashpilot/releases/0.3.1'
    assert mode(rel / 'hashpilot') == 0o755
    assert os.readlink(root / 'opt/hashpilot/current') == 'releases/0.3.1'
    usr_bin = root / 'usr/bin/hashpilot'
    assert os.path.islink(usr_bin) and not os.readlink(usr_bin).startswith('/')
    out = subprocess.run([str(usr_bin), '--version'], capture_output=True, text=True).stdout
    assert out.strip() == 'hashpilot 0.3.1'

    # config, state, credentials: modes and owners
    etc = root / 'etc/hashpilot'
    cfg = etc / 'hashpilot.toml'
    assert mode(etc) == 0o750 and mode(cfg) == 0o640
    if AS_ROOT:  # owners can only be set by root
        assert os.stat(etc).st_gid == gid
        assert os.stat(cfg).st_uid == 0 and os.stat(cfg).st_gid == gid
    text = cfg.read_text()
    assert 'username = "hashpilot-rig-07"' in text and 'rig = "rig-07"' in text
    assert mode(root / 'var/lib/hashpilot') == 0o750
    pwf = etc / 'mqtt-password'
    assert mode(pwf) == 0o600
    if AS_ROOT:
        assert os.stat(root / 'var/lib/hashpilot').st_uid == uid
        assert os.stat(pwf).st_uid == uid
    password = pwf.read_text().strip()
    assert len(password) >= 32
    entry = (etc / 'mqtt-passwd-entry').read_text().strip()
    assert mode(etc / 'mqtt-passwd-entry') == 0o600
    assert re.match(r'^hashpilot-rig-07:\$7\$101\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{88}$', entry)
    assert password not in entry
    assert mode(etc / 'hooks.d') == 0o750

    # init
    unit = root / 'etc/systemd/system/hashpilot.service'
    assert mode(unit) == 0o644 and 'Type=notify' in unit.read_text()
    assert os.readlink(root / 'etc/systemd/system/multi-user.target.wants/hashpilot.service') == \
        '/etc/systemd/system/hashpilot.service'


def test_install_is_idempotent_and_keeps_config(tmp_path):
    root = make_root(tmp_path)
    binp = fake_binary(tmp_path / 'hp', '0.3.1')
    install.install(str(root), str(binp), log=lambda m: None)
    cfg = root / 'etc/hashpilot/hashpilot.toml'
    cfg.write_text(cfg.read_text() + '# edited by the operator\n')
    before = {p: (root / p).read_text() for p in ('etc/passwd', 'etc/group', 'etc/shadow',
                                                   'etc/hashpilot/mqtt-password')}
    install.install(str(root), str(binp), log=lambda m: None)
    for p, text in before.items():
        assert (root / p).read_text() == text, p
    assert cfg.read_text().endswith('# edited by the operator\n')
    assert os.listdir(root / 'opt/hashpilot/releases') == ['0.3.1']


def test_two_rigs_get_different_passwords(tmp_path):
    binp = fake_binary(tmp_path / 'hp', '0.3.1')
    pws = []
    for name in ('a', 'b'):
        root = make_root(tmp_path, name=name)
        install.install(str(root), str(binp), log=lambda m: None)
        pws.append((root / 'etc/hashpilot/mqtt-password').read_text())
    assert pws[0] != pws[1]


def test_provisioned_and_rotated_credentials(tmp_path):
    root = make_root(tmp_path)
    binp = fake_binary(tmp_path / 'hp', '0.3.1')
    src = tmp_path / 'pw'
    src.write_text('s3cret-from-factory\n')
    install.install(str(root), str(binp), mqtt_user='rig-a1', password_file=str(src),
                    log=lambda m: None)
    pwf = root / 'etc/hashpilot/mqtt-password'
    assert pwf.read_text() == 's3cret-from-factory\n'
    assert 'username = "rig-a1"' in (root / 'etc/hashpilot/hashpilot.toml').read_text()
    install.install(str(root), str(binp), rotate_credentials=True, log=lambda m: None)
    new = pwf.read_text().strip()
    assert new != 's3cret-from-factory'
    assert (root / 'etc/hashpilot/mqtt-passwd-entry').read_text().startswith('rig-a1:$7$')
    with pytest.raises(install.InstallError):
        install.install(str(root), str(binp), password_file=str(src), log=lambda m: None)


def test_credentials_hook_gets_broker_entry(tmp_path):
    root = make_root(tmp_path)
    hooks = root / 'etc/hashpilot/hooks.d'
    hooks.mkdir(parents=True)
    out = tmp_path / 'hook.out'
    (hooks / '10-broker').write_text('#!/bin/sh\ncat > %s\n' % out)
    (hooks / '10-broker').chmod(0o755)
    install.install(str(root), str(fake_binary(tmp_path / 'hp', '1.0')), log=lambda m: None,
                    run_staging_hooks=True)   # a staging root's hooks run only when asked
    import json
    ev = json.loads(out.read_text())
    assert ev['event'] == 'credentials' and ev['username'] == 'hashpilot-rig-07'
    assert ev['broker_entry'] == (root / 'etc/hashpilot/mqtt-passwd-entry').read_text().strip()
    assert 'password' not in ev


@pytest.mark.parametrize('kind,expect', [
    ('procd', ['etc/init.d/hashpilot', 'etc/rc.d/S95hashpilot']),
    ('sysv', ['etc/init.d/hashpilot', 'etc/rc2.d/S95hashpilot', 'etc/rc0.d/K05hashpilot',
              'etc/rc6.d/K05hashpilot']),
    ('busybox', ['etc/init.d/hashpilot', 'etc/init.d/S95hashpilot']),
])
def test_init_auto_detection(tmp_path, kind, expect):
    root = make_root(tmp_path, kind)
    res = install.install(str(root), str(fake_binary(tmp_path / 'hp', '1.0')), log=lambda m: None)
    assert res['init'] == ('sysv' if kind == 'busybox' else kind)
    for p in expect:
        assert os.path.exists(root / p), p
    script = (root / 'etc/init.d/hashpilot').read_text()
    assert mode(root / 'etc/init.d/hashpilot') == 0o755
    assert ('USE_PROCD=1' in script) == (kind == 'procd')
    assert not os.path.exists(root / 'etc/systemd/system/hashpilot.service')


def test_root_without_passwd(tmp_path):
    root = tmp_path / 'bare'
    root.mkdir()
    res = install.install(str(root), str(fake_binary(tmp_path / 'hp', '1.0')), init='sysv',
                          log=lambda m: None)
    assert res['uid'] is None
    assert not (root / 'etc/passwd').exists()
    assert (root / 'etc/init.d/hashpilot').exists()


def test_bad_binary_is_refused(tmp_path):
    root = make_root(tmp_path)
    bad = tmp_path / 'bad'
    bad.write_text('#!/bin/sh\necho something else\n')
    bad.chmod(0o755)
    with pytest.raises(install.InstallError):
        install.install(str(root), str(bad), log=lambda m: None)
    assert not (root / 'opt').exists() and 'hashpilot' not in (root / 'etc/passwd').read_text()


def test_onedir_build_installs_as_directory(tmp_path):
    root = make_root(tmp_path)
    d = tmp_path / 'dist/hashpilot'
    (d / '_internal').mkdir(parents=True)
    (d / '_internal/lib.so').write_bytes(b'\x7fELF')
    fake_binary(d / 'hashpilot', '2.0')
    install.install(str(root), str(d), log=lambda m: None)
    assert (root / 'opt/hashpilot/current/_internal/lib.so').exists()
    assert os.access(root / 'usr/bin/hashpilot', os.X_OK)


def test_uninstall_and_purge(tmp_path):
    root = make_root(tmp_path)
    install.install(str(root), str(fake_binary(tmp_path / 'hp', '1.0')), log=lambda m: None)
    install.uninstall(str(root), log=lambda m: None)
    assert not os.path.lexists(root / 'usr/bin/hashpilot')
    assert not (root / 'opt/hashpilot').exists()
    assert not (root / 'etc/systemd/system/hashpilot.service').exists()
    assert (root / 'etc/hashpilot/hashpilot.toml').exists()  # kept without --purge
    install.uninstall(str(root), purge=True, log=lambda m: None)
    assert not (root / 'etc/hashpilot').exists()
    for f in ('passwd', 'group', 'shadow', 'gshadow'):
        assert 'hashpilot' not in (root / 'etc' / f).read_text(), f
    assert users.lookup(str(root), 'daemon') == (1, 1)


def test_default_config_passes_agent_config_check(tmp_path):
    config = pytest.importorskip('agent.config')
    root = make_root(tmp_path)
    install.install(str(root), str(fake_binary(tmp_path / 'hp', '1.0')), log=lambda m: None)
    cfg = config.load_file(str(root / 'etc/hashpilot/hashpilot.toml'))
    assert cfg['mqtt']['username'] == 'hashpilot-rig-07'
    assert cfg['mqtt']['password_file'] == L.MQTT_PASSWORD
    assert cfg['state']['state_dir'] == L.STATE


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which('mosquitto'), reason='mosquitto not installed')
def test_broker_entry_is_accepted_by_mosquitto(tmp_path):
    """The generated password_file line authenticates against a real Mosquitto."""
    import paho.mqtt.client as mqtt
    password = credentials.generate_password()
    (tmp_path / 'passwd').write_text(credentials.mosquitto_entry('rig-x', password) + '\n')
    port = _free_port()
    # `user root`: as root, mosquitto would switch to `mosquitto` and not read the 0700 tmp dir
    (tmp_path / 'm.conf').write_text('listener %d 127.0.0.1\nallow_anonymous false\n'
                                     'password_file %s\n%s' % (port, tmp_path / 'passwd',
                                     'user root\n' if os.geteuid() == 0 else ''))
    broker = subprocess.Popen(['mosquitto', '-c', str(tmp_path / 'm.conf')],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def connect(pw):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id='t-%s' % pw[:4])
            c.username_pw_set('rig-x', pw)
            deadline = time.monotonic() + 10
            while True:
                try:
                    c.connect('127.0.0.1', port, 5)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            rc = []
            c.on_connect = lambda cl, ud, fl, reason, props: rc.append(reason)
            while not rc and time.monotonic() < deadline:
                c.loop(0.2)
            c.disconnect()
            return rc[0] if rc else None
        ok = connect(password)
        bad = connect(password + 'x')
        assert ok is not None and not ok.is_failure, ok
        assert bad is not None and bad.is_failure, bad
    finally:
        broker.terminate()
        broker.wait(5)
