"""Per-rig MQTT credentials: a random password made at install (or provisioned from a file).

The plaintext goes to /etc/hashpilot/mqtt-password (0600, agent user). The broker side gets a
Mosquitto 2 password-file line (`user:$7$...`, PBKDF2-SHA512) so the plaintext never has to leave
the rig; hooks get that line on stdin (event `credentials`).
"""

import base64
import hashlib
import os
import re
import secrets

USER_RE = re.compile(r'^[A-Za-z0-9._-]{1,64}$')


def generate_password():
    return secrets.token_urlsafe(24)  # 192 random bits


def mosquitto_entry(username, password, iterations=101, salt=None):
    """One line for mosquitto's password_file, same format as `mosquitto_passwd` writes."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac('sha512', password.encode(), salt, iterations)
    return '%s:$7$%d$%s$%s' % (username, iterations, base64.b64encode(salt).decode(),
                               base64.b64encode(digest).decode())


def default_username(root):
    name = ''
    try:
        with open(os.path.join(root, 'etc/hostname')) as f:
            name = f.read().strip()
    except OSError:
        pass
    name = re.sub(r'[^A-Za-z0-9._-]', '-', name or os.uname().nodename)[:48]
    return 'hashpilot-' + name


def read_password_file(path):
    with open(path) as f:
        pw = f.readline().rstrip('\r\n')
    if not pw:
        raise ValueError('%s: empty password' % path)
    return pw


def create_exclusive(path, mode):
    """A new file next to `path`, created exclusively and without following links (a link
    planted at a predictable temp name is never written through); returns (fd, tmp path)."""
    for _ in range(100):
        tmp = '%s.tmp-%s' % (path, secrets.token_hex(6))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0),
                         mode)
            return fd, tmp
        except FileExistsError:
            continue
    raise OSError('%s: no free temporary name' % path)


def write_secret(path, text, uid=None, gid=None, mode=0o600):
    """Create/replace a secret file atomically; never readable by others, not even briefly.
    A symlink at `path` is replaced by the file, its target left alone."""
    fd, tmp = create_exclusive(path, mode)
    try:
        try:
            os.fchmod(fd, mode)
            if uid is not None and os.geteuid() == 0:
                os.fchown(fd, uid, gid)
            os.write(fd, (text + '\n').encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fix_secret_owner(path, uid, gid, mode=0o600):
    """chown/chmod an existing secret through a no-follow handle; ValueError when `path` is a
    symlink or not a regular file (never change a file someone pointed us at)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0))
    except OSError as e:
        if os.path.islink(path):
            raise ValueError('%s is a symlink: refusing to touch it' % path)
        raise ValueError('%s: %s' % (path, e))
    try:
        import stat
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError('%s is not a regular file: refusing to touch it' % path)
        if uid is not None and os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
