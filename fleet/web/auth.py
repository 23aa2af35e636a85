"""Operator logins for the dashboard: a users file of PBKDF2 hashes, sessions in memory.

Users file, one per line: `name:pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (make a line
with `hashpilot fleet serve --hash-password NAME`). Without a users file nobody can log in and the
dashboard is read-only. A session is a random cookie plus a CSRF token the page sends back in a
header with every command.
"""

import hashlib
import hmac
import os
import threading
import time

ITERATIONS = 200000
SESSION_S = 8 * 3600


def hash_password(password, salt=None, iterations=ITERATIONS):
    salt = salt or os.urandom(16)
    dk = hashlib.pbkdf2_hmac('sha256', password.encode(), salt, iterations)
    return 'pbkdf2_sha256$%d$%s$%s' % (iterations, salt.hex(), dk.hex())


def check_password(stored, password):
    try:
        algo, iters, salt, want = stored.split('$')
        if algo != 'pbkdf2_sha256':
            return False
        dk = hashlib.pbkdf2_hmac('sha256', password.encode(), bytes.fromhex(salt), int(iters))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)


def load_users(path):
    """name -> stored hash; ValueError naming the line on a malformed file."""
    users = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            name, sep, stored = line.partition(':')
            if not sep or not name or not stored.startswith('pbkdf2_sha256$'):
                raise ValueError('%s:%d: expected name:pbkdf2_sha256$...' % (path, n))
            users[name] = stored
    return users


class Sessions:
    def __init__(self, users, clock=time.monotonic):
        self.users = users
        self.clock = clock
        self.lock = threading.Lock()
        self.by_token = {}   # token -> {'user', 'csrf', 'expires'}

    def login(self, name, password):
        stored = self.users.get(name)
        if stored is None or not check_password(stored, password):
            return None
        token = os.urandom(24).hex()
        with self.lock:
            self.by_token[token] = {'user': name, 'csrf': os.urandom(16).hex(),
                                    'expires': self.clock() + SESSION_S}
        return token

    def get(self, token):
        if not token:
            return None
        with self.lock:
            s = self.by_token.get(token)
            if s is not None and s['expires'] < self.clock():
                del self.by_token[token]
                s = None
            return s

    def logout(self, token):
        with self.lock:
            self.by_token.pop(token, None)
