"""/metrics scraped by the real Prometheus (Debian package): fleet hashrate queried through its
HTTP API matches the fleet state; the shipped alert rules load, pass promtool's unit tests and
the offline alert goes pending; every Grafana panel's query is valid PromQL on this data."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from fleet import state as fstate
from fleet.web import server
from mqtt_schema import codec, payloads
from tests.broker import free_port
from tests.fleetfake import FakeFleet

FLEET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fleet')
RULES = os.path.join(FLEET, 'prometheus', 'alerts.yml')
GRAFANA = os.path.join(FLEET, 'grafana', 'hashpilot-fleet.json')
PROMETHEUS = shutil.which('prometheus') or '/usr/bin/prometheus'
PROMTOOL = shutil.which('promtool') or '/usr/bin/promtool'


def _get(url, timeout_s=5):
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.load(r)


def _query(port, expr):
    d = _get('http://127.0.0.1:%d/api/v1/query?%s' % (port, urllib.parse.urlencode({'query': expr})))
    assert d['status'] == 'success', d
    return d['data']['result']


class Prometheus:
    def __init__(self, target_port, rules):
        self.dir = tempfile.mkdtemp(prefix='hp-prom-')
        self.port = free_port()
        shutil.copy(rules, os.path.join(self.dir, 'alerts.yml'))
        with open(os.path.join(self.dir, 'prometheus.yml'), 'w') as f:
            f.write('global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
                    'rule_files: [alerts.yml]\n'
                    'scrape_configs:\n  - job_name: hashpilot-fleet\n'
                    '    static_configs:\n      - targets: ["127.0.0.1:%d"]\n' % target_port)
        self.log = open(os.path.join(self.dir, 'log'), 'wb')
        self.proc = subprocess.Popen(
            [PROMETHEUS, '--config.file=' + os.path.join(self.dir, 'prometheus.yml'),
             '--storage.tsdb.path=' + os.path.join(self.dir, 'data'),
             '--web.listen-address=127.0.0.1:%d' % self.port], stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, 'prometheus exited: %s' % self.text()
            try:
                urllib.request.urlopen('http://127.0.0.1:%d/-/ready' % self.port, timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError('prometheus not ready: %s' % self.text())

    def text(self):
        with open(os.path.join(self.dir, 'log'), 'rb') as f:
            return f.read().decode(errors='replace')[-3000:]

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_rules_check_and_unit_tests():
    out = subprocess.run([PROMTOOL, 'check', 'rules', RULES], capture_output=True, text=True)
    assert out.returncode == 0 and '3 rules found' in out.stdout, out.stdout + out.stderr
    out = subprocess.run([PROMTOOL, 'test', 'rules', 'alerts_test.yml'], capture_output=True, text=True,
                         cwd=os.path.dirname(RULES))
    assert out.returncode == 0 and 'SUCCESS' in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_prometheus_scrapes_fleet_hashrate():
    st = fstate.FleetState()
    fleet = FakeFleet(n=12, sites=('north', 'south'), chips_per_board=10)
    fleet.feed(st, int(time.time() * 1000))
    gone = fleet.rigs[5]
    st.feed(gone.root() + 'status', codec.encode(payloads.build_will(gone.session, 1)))
    dash = server.Dashboard(st)
    srv = server.make_server(dash, '127.0.0.1', 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    prom = Prometheus(srv.server_address[1], RULES)
    try:
        prom.wait_ready()
        deadline = time.monotonic() + 30
        res = []
        while time.monotonic() < deadline and not res:
            res = _query(prom.port, 'sum(hashpilot_site_hashrate_hashes_per_second)')
            time.sleep(0.5)
        assert res, 'no scrape reached prometheus: %s' % prom.text()
        want_ths = sum(t['ths'] for t in st.site_totals().values())
        got_ths = float(res[0]['value'][1]) / 1e12
        assert got_ths == pytest.approx(want_ths, rel=1e-6) and want_ths > 1000
        by_site = dict((r['metric']['site'], float(r['value'][1]))
                       for r in _query(prom.port, 'hashpilot_site_power_watts'))
        assert by_site['north'] == pytest.approx(st.site_totals()['north']['w'])
        up = _query(prom.port, 'hashpilot_rig_up == 0')
        assert [(r['metric']['site'], r['metric']['rig']) for r in up] == [(gone.site, gone.name)]
        boards = _query(prom.port, 'count(hashpilot_board_temperature_max_celsius)')
        assert float(boards[0]['value'][1]) == 12 * 3
        # The shipped rules are loaded and healthy; the offline rig's alert is pending (for: 5m).
        deadline = time.monotonic() + 20
        alerts = []
        while time.monotonic() < deadline and not alerts:
            alerts = [a for a in _get('http://127.0.0.1:%d/api/v1/alerts' % prom.port)['data']['alerts']
                      if a['labels']['alertname'] == 'HashpilotRigOffline']
            time.sleep(0.5)
        assert alerts and alerts[0]['labels']['rig'] == gone.name and alerts[0]['state'] == 'pending'
        groups = _get('http://127.0.0.1:%d/api/v1/rules' % prom.port)['data']['groups']
        assert sorted(r['name'] for g in groups for r in g['rules']) == [
            'HashpilotDangerousTemperature', 'HashpilotEfficiencyDrift', 'HashpilotRigOffline']
        assert all(r['health'] == 'ok' for g in groups for r in g['rules'])
        # Every Grafana panel query is valid PromQL and returns data here.
        with open(GRAFANA) as f:
            dash_json = json.load(f)
        for panel in dash_json['panels']:
            for t in panel['targets']:
                expr = t['expr'].replace('$site', '.*').replace('$rig', '.*')
                assert _query(prom.port, expr), (panel['title'], expr)
    finally:
        prom.close()
        srv.shutdown()
        srv.server_close()
