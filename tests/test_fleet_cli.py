"""The operator commands as a person starts them: `hashpilot fleet serve` as its own process
(HTTP API, /metrics, login), `hashpilot fleet watch` in a real terminal (tmux send-keys and
capture-pane), both fed through Mosquitto by rigs publishing real payloads."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from fleet.web import auth
from tests.agentproc import REPO
from tests.broker import Broker, free_port
from tests.fleetfake import FakeFleet
from tests.test_fleet_web import Publisher

TMUX = shutil.which('tmux')


def _wait(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError('timed out waiting for %s' % what)


def _get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def test_serve_command(tmp_path):
    users = tmp_path / 'users'
    users.write_text('alice:%s\n' % auth.hash_password('pw', iterations=1000))
    port = free_port()
    with Broker() as broker:
        proc = subprocess.Popen([sys.executable, '-m', 'agent', 'fleet', 'serve', '--broker',
                                 '127.0.0.1:%d' % broker.port, '--listen', '127.0.0.1:%d' % port,
                                 '--users', str(users)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        pub = None
        try:
            base = 'http://127.0.0.1:%d' % port
            _wait(lambda: socket.create_connection(('127.0.0.1', port), 0.5).close() or True, 20, 'the listener')
            pub = Publisher(broker, FakeFleet(n=6, sites=('east',), chips_per_board=4), period_s=0.5)
            _wait(lambda: _get_json(base + '/api/fleet')['totals'].get('east', {}).get('online') == 6, 20, 'six rigs online')
            d = _get_json(base + '/api/fleet?sort=w&rev=1&limit=2')
            assert len(d['rows']) == 2 and d['rows'][0]['w'] >= d['rows'][1]['w']
            assert d['totals']['east']['online'] == 6
            with urllib.request.urlopen(base + '/metrics', timeout=5) as r:
                text = r.read().decode()
            assert 'hashpilot_site_hashrate_hashes_per_second{site="east"}' in text
            req = urllib.request.Request(base + '/login', data=b'user=alice&password=pw', method='POST')
            opener = urllib.request.build_opener(NoRedirect)
            try:
                opener.open(req, timeout=5)
                raise AssertionError('no redirect after login')
            except urllib.error.HTTPError as e:
                assert e.code == 303 and 'hp_session=' in e.headers.get('Set-Cookie', '')
        finally:
            if pub is not None:
                pub.close()
            proc.terminate()
            proc.wait(10)
    assert 'operators can log in' in proc.stdout.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


@pytest.mark.skipif(TMUX is None, reason='tmux is installed by make setup (TEST_TOOLS)')
def test_watch_command_in_tmux(tmp_path):
    session = 'hp-watch-' + uuid.uuid4().hex[:6]
    with Broker() as broker:
        pub = None
        env = dict(os.environ, TERM='xterm-256color', PYTHONPATH=REPO)
        cmd = '%s -m agent fleet watch --broker 127.0.0.1:%d' % (sys.executable, broker.port)
        subprocess.run([TMUX, 'new-session', '-d', '-s', session, '-x', '160', '-y', '40', cmd],
                       check=True, env=env, cwd=REPO)

        def screen():
            return subprocess.run([TMUX, 'capture-pane', '-p', '-t', session], capture_output=True,
                                  text=True).stdout

        def keys(*k):
            subprocess.run([TMUX, 'send-keys', '-t', session] + list(k), check=True)
        try:
            _wait(lambda: '0 of 0 rigs' in screen(), 30, 'watch to start')
            # Alarms are not retained: the rigs start once watch listens.
            pub = Publisher(broker, FakeFleet(n=8, sites=('west', 'east'), chips_per_board=6), period_s=0.5)
            _wait(lambda: '8 of 8 rigs' in screen() and 'west/rig-0000' in screen(), 30, 'the fleet table')
            assert 'site east' in screen() and 'site west' in screen()
            keys('/')
            for ch in 'board_hot':
                keys(ch)
            keys('Enter')
            _wait(lambda: '1 of 8 rigs' in screen(), 10, 'the filter')      # rig 3 is the hot one
            keys('Enter')
            _wait(lambda: 'temp heat map' in screen() and 'board 2  6 chips' in screen(), 10, 'the rig view')
            keys('Escape')
            _wait(lambda: '1 of 8 rigs' in screen(), 10, 'back to the table')
            keys('q')
            _wait(lambda: subprocess.run([TMUX, 'has-session', '-t', session],
                                         capture_output=True).returncode != 0, 10, 'watch to quit on q')
        finally:
            subprocess.run([TMUX, 'kill-session', '-t', session], capture_output=True)
            if pub is not None:
                pub.close()
