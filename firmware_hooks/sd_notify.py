"""Minimal sd_notify(3) for the agent: READY=1, WATCHDOG=1, STOPPING=1, STATUS=... (stdlib only).

Sends one datagram to $NOTIFY_SOCKET ('@name' = Linux abstract namespace). Without systemd
(no NOTIFY_SOCKET) every call is a cheap no-op returning False, so the agent calls it
unconditionally. Under a PyInstaller one-file binary the agent runs as a child of the
bootloader: the unit therefore uses NotifyAccess=all.
"""

import os
import socket


def _address(raw):
    if raw.startswith('@'):
        return '\0' + raw[1:]
    return raw


def notify(state, env=None):
    """Send `state` (e.g. 'READY=1\\nSTATUS=running'); True if sent."""
    env = os.environ if env is None else env
    raw = env.get('NOTIFY_SOCKET')
    if not raw or not (raw.startswith('/') or raw.startswith('@')):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), _address(raw))
        return True
    except OSError:
        return False


def ready(status=None):
    return notify('READY=1' + ('\nSTATUS=' + status if status else ''))


def watchdog():
    return notify('WATCHDOG=1')


def stopping(status=None):
    return notify('STOPPING=1' + ('\nSTATUS=' + status if status else ''))


def status(text):
    return notify('STATUS=' + text)


def watchdog_interval_s(env=None):
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not requested."""
    env = os.environ if env is None else env
    usec = env.get('WATCHDOG_USEC')
    pid = env.get('WATCHDOG_PID')
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6
