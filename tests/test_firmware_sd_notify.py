"""sd_notify over a real AF_UNIX datagram socket (path and abstract namespace)."""

import os
import socket

from firmware_hooks import sd_notify


def _listen(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(5)
    return s


def test_ready_watchdog_stopping_on_path_socket(tmp_path, monkeypatch):
    path = str(tmp_path / 'notify')
    s = _listen(path)
    monkeypatch.setenv('NOTIFY_SOCKET', path)
    assert sd_notify.ready('chains up')
    assert s.recv(256) == b'READY=1\nSTATUS=chains up'
    assert sd_notify.watchdog()
    assert s.recv(256) == b'WATCHDOG=1'
    assert sd_notify.stopping()
    assert s.recv(256) == b'STOPPING=1'
    s.close()


def test_abstract_namespace(monkeypatch):
    name = 'hashpilot-test-%d' % os.getpid()
    s = _listen('\0' + name)
    monkeypatch.setenv('NOTIFY_SOCKET', '@' + name)
    assert sd_notify.status('tuning')
    assert s.recv(256) == b'STATUS=tuning'
    s.close()


def test_no_socket_is_a_noop(monkeypatch, tmp_path):
    monkeypatch.delenv('NOTIFY_SOCKET', raising=False)
    assert sd_notify.ready() is False
    monkeypatch.setenv('NOTIFY_SOCKET', str(tmp_path / 'gone'))
    assert sd_notify.watchdog() is False
    monkeypatch.setenv('NOTIFY_SOCKET', 'relative')
    assert sd_notify.watchdog() is False


def test_watchdog_interval():
    pid = str(os.getpid())
    assert sd_notify.watchdog_interval_s({'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': pid}) == 15
    assert sd_notify.watchdog_interval_s({'WATCHDOG_USEC': '30000000'}) == 15
    assert sd_notify.watchdog_interval_s({'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': '1'}) is None
    assert sd_notify.watchdog_interval_s({}) is None
