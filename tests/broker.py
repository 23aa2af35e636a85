"""Test helper: a real Mosquitto on a free loopback port with a temp config (and optional password).

    with Broker() as b:                 # or Broker(username='u', password='p') / Broker(tls=True)
                                        # or Broker(users={'u': 'p', ...}, extra=['acl_file F'])
        b.host, b.port
        b.stop(); b.start()             # b.restart() = stop + start on the same port
Persistence is on (retained messages and persistent sessions survive restart()), queues are
unbounded so an offline persistent subscriber loses nothing. With tls=True the listener needs
TLS and a client certificate; `b.ca_file`, `b.client_cert`, `b.client_key` are made by openssl.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from fleet.brokerconf import free_port  # noqa: F401 (tests import it from here)

MOSQUITTO = shutil.which('mosquitto') or '/usr/sbin/mosquitto'
MOSQUITTO_PASSWD = shutil.which('mosquitto_passwd') or '/usr/bin/mosquitto_passwd'


def _user():
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return 'root'


class Broker:
    def __init__(self, port=None, username=None, password=None, persistence=True, verbose=False,
                 tls=False, users=None, extra=()):
        self.host = '127.0.0.1'
        self.port = port or free_port()
        self.username = username
        self.password = password
        self.dir = tempfile.mkdtemp(prefix='hp-mosq-')
        self.log_path = os.path.join(self.dir, 'mosquitto.log')
        self.proc = None
        lines = ['listener %d 127.0.0.1' % self.port,
                 'user %s' % _user(),      # as root mosquitto would otherwise drop to 'mosquitto'
                 'max_queued_messages 0', 'max_queued_bytes 0', 'max_inflight_messages 20',
                 'persistent_client_expiration 1h',
                 'log_dest file %s' % self.log_path,
                 'log_type error', 'log_type warning', 'log_type notice']
        if verbose:
            lines.append('log_type all')
        if persistence:
            lines += ['persistence true', 'persistence_location %s/' % self.dir, 'autosave_interval 1']
        users = dict(users or {})
        if username is not None:
            users[username] = password or ''
        if users:
            pw = os.path.join(self.dir, 'passwd')
            for i, (name, secret) in enumerate(sorted(users.items())):
                subprocess.run([MOSQUITTO_PASSWD, '-b'] + (['-c'] if i == 0 else []) + [pw, name, secret],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            lines += ['allow_anonymous false', 'password_file %s' % pw]
        else:
            lines.append('allow_anonymous true')
        self.ca_file = self.client_cert = self.client_key = None
        if tls:
            self._make_certs()
            lines += ['cafile %s' % self.ca_file, 'certfile %s' % os.path.join(self.dir, 'server.crt'),
                      'keyfile %s' % os.path.join(self.dir, 'server.key'), 'require_certificate true']
        lines += list(extra)
        self.conf = os.path.join(self.dir, 'mosquitto.conf')
        with open(self.conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    def _make_certs(self):
        """Throw-away CA, server cert for 127.0.0.1 and client cert (EC P-256, 2 days)."""
        d = self.dir

        def ossl(*args):
            subprocess.run(['openssl'] + list(args), check=True, cwd=d,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
        ossl('req', '-x509', *ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=hp-test-ca')
        for name, extra in (('server', ['-addext', 'subjectAltName=IP:127.0.0.1']), ('client', [])):
            ossl('req', *ec, '-keyout', name + '.key', '-out', name + '.csr', '-subj', '/CN=hp-' + name, *extra)
            ossl('x509', '-req', '-in', name + '.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
                 '-out', name + '.crt', '-days', '2', '-copy_extensions', 'copy')
        self.ca_file = os.path.join(d, 'ca.crt')
        self.client_cert = os.path.join(d, 'client.crt')
        self.client_key = os.path.join(d, 'client.key')

    def start(self, timeout_s=10.0):
        if self.proc is not None:
            return self
        self.proc = subprocess.Popen([MOSQUITTO, '-c', self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('mosquitto exited with %s: %s' % (self.proc.returncode, self.log()))
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError('mosquitto did not listen on port %d: %s' % (self.port, self.log()))

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()   # SIGTERM: mosquitto saves its persistence database
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self, tail=2000):
        try:
            with open(self.log_path) as f:
                return f.read()[-tail:] if tail else f.read()
        except OSError:
            return ''

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
