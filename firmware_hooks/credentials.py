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


def write_secret(path, text, uid=None, gid=None, mode=0o600):
    """Create/replace a secret file atomically; never readable by others, not even briefly."""
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        if uid is not None and os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        os.write(fd, (text + '\n').encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
