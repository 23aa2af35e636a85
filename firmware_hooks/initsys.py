"""Init-system integration: pick systemd / SysV-BusyBox / OpenWrt procd and install its script."""

import os
import shutil

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')
KINDS = ('systemd', 'sysv', 'procd')

SYSTEMD_UNIT = '/etc/systemd/system/hashpilot.service'
SYSTEMD_WANTS = '/etc/systemd/system/multi-user.target.wants/hashpilot.service'
INITD = '/etc/init.d/hashpilot'
BUSYBOX_INITD = '/etc/init.d/S95hashpilot'   # Buildroot-style rcS runs /etc/init.d/S??*
PROCD_LINK = '/etc/rc.d/S95hashpilot'


def template(name):
    return os.path.join(TEMPLATES, name)


def _exists(layout, *paths):
    return any(os.path.lexists(layout.p(p)) for p in paths)


def detect(layout):
    if _exists(layout, '/etc/openwrt_release', '/sbin/procd', '/etc/rc.common'):
        return 'procd'
    if _exists(layout, '/lib/systemd/systemd', '/usr/lib/systemd/systemd', '/run/systemd/system',
               '/etc/systemd/system'):
        return 'systemd'
    return 'sysv'


def restart_command(kind):
    if kind == 'systemd':
        return ['systemctl', 'restart', 'hashpilot.service']
    return [INITD, 'restart']


def _copy(src, dst, mode):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + '.hp-tmp'
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def _symlink(target, link):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        if os.path.islink(link) and os.readlink(link) == target:
            return
        os.unlink(link)
    os.symlink(target, link)


def install(layout, kind):
    """Install and enable the init script for `kind`; returns the paths written."""
    if kind not in KINDS:
        raise ValueError('init %r: expected one of %s' % (kind, ', '.join(KINDS)))
    written = []
    if kind == 'systemd':
        _copy(template('hashpilot.service'), layout.p(SYSTEMD_UNIT), 0o644)
        _symlink(SYSTEMD_UNIT, layout.p(SYSTEMD_WANTS))
        written += [SYSTEMD_UNIT, SYSTEMD_WANTS]
    elif kind == 'procd':
        _copy(template('hashpilot.procd'), layout.p(INITD), 0o755)
        _symlink('../init.d/hashpilot', layout.p(PROCD_LINK))
        written += [INITD, PROCD_LINK]
    else:
        _copy(template('hashpilot.sysv'), layout.p(INITD), 0o755)
        written.append(INITD)
        rc_dirs = [d for d in ('rc0.d', 'rc1.d', 'rc2.d', 'rc3.d', 'rc4.d', 'rc5.d', 'rc6.d')
                   if os.path.isdir(layout.p('/etc/' + d))]
        if rc_dirs:  # Debian-style runlevel links
            for d in rc_dirs:
                name = ('K05hashpilot' if d in ('rc0.d', 'rc1.d', 'rc6.d') else 'S95hashpilot')
                _symlink('../init.d/hashpilot', layout.p('/etc/%s/%s' % (d, name)))
                written.append('/etc/%s/%s' % (d, name))
        elif os.path.exists(layout.p('/etc/init.d/rcS')):  # BusyBox/Buildroot rcS
            _symlink('hashpilot', layout.p(BUSYBOX_INITD))
            written.append(BUSYBOX_INITD)
    return written


def remove(layout):
    paths = [SYSTEMD_UNIT, SYSTEMD_WANTS, INITD, BUSYBOX_INITD, PROCD_LINK]
    for d in ('rc0.d', 'rc1.d', 'rc2.d', 'rc3.d', 'rc4.d', 'rc5.d', 'rc6.d'):
        paths += ['/etc/%s/S95hashpilot' % d, '/etc/%s/K05hashpilot' % d]
    removed = []
    for p in paths:
        if os.path.lexists(layout.p(p)):
            os.unlink(layout.p(p))
            removed.append(p)
    return removed
