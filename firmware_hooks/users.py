"""Add the dedicated `hashpilot` system user/group to a root's passwd/group/shadow files.

Done by editing the files (not useradd) so it works on a staging root and on BusyBox systems.
No shell, locked password; ids picked like `useradd -r` (highest free id below 1000).
"""

import os
import tempfile
import time

NOLOGIN_SHELLS = ('/usr/sbin/nologin', '/sbin/nologin', '/bin/false')
EXTRA_GROUPS = ('dialout',)  # serial ports of the hashboards


def _read(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return None


def _write_like(path, lines):
    """Atomic replace keeping the original file's mode and owner."""
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.hp-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        os.chmod(tmp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _entries(lines):
    return {ln.split(':', 1)[0]: ln.split(':') for ln in lines if ln and not ln.startswith('#')}


def lookup(root, name):
    """(uid, gid) of `name` in root/etc/passwd, or None."""
    lines = _read(os.path.join(root, 'etc/passwd')) or []
    e = _entries(lines).get(name)
    return (int(e[2]), int(e[3])) if e else None


def group_id(root, name):
    e = _entries(_read(os.path.join(root, 'etc/group')) or []).get(name)
    return int(e[2]) if e else None


def _free_id(used):
    for i in range(999, 99, -1):
        if i not in used:
            return i
    raise RuntimeError('no free system id in 100..999')


def ensure_user(root, name='hashpilot', home='/var/lib/hashpilot', gecos='hashpilot agent'):
    """Create user+group if missing; return (uid, gid), or None when the root has no etc/passwd."""
    etc = os.path.join(root, 'etc')
    passwd_p, group_p = os.path.join(etc, 'passwd'), os.path.join(etc, 'group')
    passwd = _read(passwd_p)
    if passwd is None:
        return None
    group = _read(group_p)
    if group is None:
        group = []
        with open(group_p, 'w') as f:
            os.fchmod(f.fileno(), 0o644)
    users, groups = _entries(passwd), _entries(group)
    used_uids = {int(e[2]) for e in users.values() if len(e) > 2 and e[2].isdigit()}
    used_gids = {int(e[2]) for e in groups.values() if len(e) > 2 and e[2].isdigit()}

    if name in groups:
        gid = int(groups[name][2])
    else:
        gid = _free_id(used_gids | used_uids)
        group.append('%s:x:%d:' % (name, gid))
    _add_members(group, name)
    _write_like(group_p, group)
    _gshadow(etc, name)

    if name in users:
        return int(users[name][2]), int(users[name][3])
    uid = gid if gid not in used_uids else _free_id(used_uids | used_gids)
    shell = next((s for s in NOLOGIN_SHELLS if os.path.exists(os.path.join(root, s.lstrip('/')))),
                 NOLOGIN_SHELLS[-1])
    passwd.append('%s:x:%d:%d:%s:%s:%s' % (name, uid, gid, gecos, home, shell))
    _write_like(passwd_p, passwd)
    shadow_p = os.path.join(etc, 'shadow')
    shadow = _read(shadow_p)
    if shadow is not None and name not in _entries(shadow):
        # '!': locked, no password can ever match.
        shadow.append('%s:!:%d::::::' % (name, int(time.time() // 86400)))
        _write_like(shadow_p, shadow)
    return uid, gid


def _add_members(group_lines, name):
    for i, ln in enumerate(group_lines):
        f = ln.split(':')
        if len(f) == 4 and f[0] in EXTRA_GROUPS:
            members = [m for m in f[3].split(',') if m]
            if name not in members:
                f[3] = ','.join(members + [name])
                group_lines[i] = ':'.join(f)


def _gshadow(etc, name):
    path = os.path.join(etc, 'gshadow')
    lines = _read(path)
    if lines is None:
        return
    if name not in _entries(lines):
        lines.append('%s:!::' % name)
    for i, ln in enumerate(lines):
        f = ln.split(':')
        if len(f) == 4 and f[0] in EXTRA_GROUPS and name not in f[3].split(','):
            f[3] = ','.join([m for m in f[3].split(',') if m] + [name])
            lines[i] = ':'.join(f)
    _write_like(path, lines)


def remove_user(root, name='hashpilot'):
    """Drop the user, its group and its memberships (uninstall --purge)."""
    for fn, field in (('passwd', None), ('shadow', None), ('group', 3), ('gshadow', 3)):
        path = os.path.join(root, 'etc', fn)
        lines = _read(path)
        if lines is None:
            continue
        out = []
        for ln in lines:
            f = ln.split(':')
            if f[0] == name:
                continue
            if field is not None and len(f) > field:
                f[field] = ','.join(m for m in f[field].split(',') if m and m != name)
                ln = ':'.join(f)
            out.append(ln)
        _write_like(path, out)
