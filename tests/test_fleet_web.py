"""`hashpilot fleet serve` in a real headless Chromium: pages load, live data arrives over SSE,
heat maps are drawn, the page is read-only until an operator logs in, and a command sent from the
page reaches a real agent (simulated Bitaxe) whose cmd/result and alarm show on the page."""

import json
import os
import threading
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet import client as fclient
from fleet import fmt
from fleet import state as fstate
from fleet.web import auth, server
from tests.agentproc import AgentProcess
from tests.broker import Broker
from tests.browser import Browser
from tests.fleetfake import FakeFleet
from tests.simproc import start_sim


class Publisher:
    """Publishes a FakeFleet's real payloads every period_s until stopped."""

    def __init__(self, broker, fleet, period_s=1.0):
        self.fleet = fleet
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.connect('127.0.0.1', broker.port)
        self.c.loop_start()
        self.stop_ev = threading.Event()
        for topic, data, retain in sum([r.birth(int(time.time() * 1000)) for r in fleet.rigs], []):
            self.c.publish(topic, data, qos=1, retain=retain)
        self.t = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self.t.start()

    def _run(self, period_s):
        while not self.stop_ev.is_set():
            for r in self.fleet.rigs:
                for topic, data, retain in r.live(int(time.time() * 1000)):
                    self.c.publish(topic, data, qos=1, retain=retain)
            self.stop_ev.wait(period_s)

    def close(self):
        self.stop_ev.set()
        self.t.join(5)
        self.c.loop_stop()
        self.c.disconnect()


def _post(url, body, headers=None):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method='POST')
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _pixel(br, board, chip):
    return br.js('(() => { const c = document.querySelectorAll("canvas.chipmap")[%d]; const cols = Math.min(36, +c.dataset.chips);'
                 ' const d = c.getContext("2d").getImageData((%d %% cols) * 18 + 9, Math.floor(%d / cols) * 18 + 9, 1, 1).data;'
                 ' return [d[0], d[1], d[2]]; })()' % (board, chip, chip))


@pytest.mark.slow
@pytest.mark.slow
def test_dashboard_in_chromium(tmp_path):
    users = {'alice': auth.hash_password('s3cret', iterations=1000)}
    fleet = FakeFleet(n=20, sites=('north', 'south'), chips_per_board=108)
    with Broker() as broker, start_sim('GAMMA', seed=2) as sim:
        st = fstate.FleetState()
        fc = fclient.FleetClient(st, '127.0.0.1:%d' % broker.port).start()
        dash = server.Dashboard(st, fc, auth.Sessions(users), refresh_s=0.5)
        srv = server.make_server(dash, '127.0.0.1', 0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        base = 'http://127.0.0.1:%d' % srv.server_address[1]
        pub = Publisher(broker, fleet)
        agent = AgentProcess(tmp_path, sim.ports_file, broker, site='home', rig='bitaxe', telemetry_s=1,
                             chips_s=5)
        try:
            with Browser() as br:
                # Fleet page: every rig, totals per site, live.
                br.goto(base + '/')
                try:
                    br.wait_js('document.querySelectorAll("#rigs tbody tr").length === 21', 60, 'all 21 rigs')
                except AssertionError:
                    raise AssertionError('rigs known: %s; table rows %s; agent log:\n%s' % (
                        sorted(st.rigs), br.js('document.querySelectorAll("#rigs tbody tr").length'),
                        agent.log()[-3000:]))
                first = int(br.js('document.body.dataset.live'))
                br.wait_js('+document.body.dataset.live > %d' % first, 10, 'a second live snapshot')
                sites = br.js('[...document.querySelectorAll(".card.site")].map(c => c.dataset.site)')
                assert sorted(sites) == ['home', 'north', 'south']
                north = br.js('document.querySelector(\'.card.site[data-site="north"] .online\').textContent')
                assert north == '10'
                assert 'bitaxe' in br.js('document.querySelector("#rigs").innerText')
                # Filter by alarm id, as typed by a person.
                br.js('(() => { const f = document.querySelector("#filter"); f.value = "board_hot";'
                      ' f.dispatchEvent(new Event("input")); })()')
                br.wait_js('document.querySelectorAll("#rigs tbody tr").length === 3', 10, 'the 3 hot rigs')
                assert 'board_hot' in br.js('document.querySelector("#alarms").innerText')
                png = br.screenshot(str(tmp_path / 'fleet.png'))
                assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 20000

                # Rig page: three boards of 108 chips in chain order, coloured cells, no commands.
                br.goto(base + '/rig/north/rig-0002')
                br.wait_js('document.querySelectorAll("canvas.chipmap").length === 3', 20, 'three heat maps')
                assert br.js('[...document.querySelectorAll("canvas.chipmap")].map(c => c.dataset.chips)') == ['108'] * 3
                # Each cell has the colour of its chip's temperature on the 40..danger scale (the
                # snapshot drawn is the one the page got: compare with the page's own data).
                temps = br.js('window.hp.last.chips.boards[0].temp_c')
                danger = br.js('window.hp.last.meta.temp_danger_c')
                for chip in (0, 11, 50, 107):
                    want = fmt.heat_rgb((temps[chip] - 40.0) / (danger - 40.0))
                    got = _pixel(br, 0, chip)
                    assert all(abs(a - b) <= 3 for a, b in zip(got, want)), (chip, got, want)
                assert _pixel(br, 0, 11) != _pixel(br, 0, 0)
                assert br.js('document.querySelector("#commands")') is None
                assert br.js('+document.querySelector("#chart-ths").dataset.points') >= 1
                br.js('document.querySelector(\'[data-metric="freq"]\').click()')
                assert 'MHz' in br.js('document.querySelector("#scale").textContent')
                br.screenshot(str(tmp_path / 'rig.png'), full_page=True)
                code, _ = _post(base + '/api/cmd', json.dumps({'site': 'home', 'rig': 'bitaxe', 'op': 'identify',
                                                                'args': {}}).encode())
                assert code == 403

                # Wrong password, then a login; a command from the page reaches the real agent.
                code, _ = _post(base + '/login', b'user=alice&password=nope')
                assert code == 401
                br.goto(base + '/rig/home/bitaxe')
                br.wait_js('document.querySelectorAll("canvas.chipmap").length === 1', 60, 'the Bitaxe chip map')
                br.js('(() => { const f = document.querySelector("form.login"); f.user.value = "alice";'
                      ' f.password.value = "s3cret"; f.submit(); })()')
                br.wait_js('document.querySelector("#commands") !== null', 20, 'the commands panel after login')
                assert br.js('document.body.dataset.user') == 'alice'
                br.wait_js('+document.body.dataset.live >= 1', 20)
                br.js('document.querySelector(\'#commands [data-op="identify"]\').click()')
                br.wait_js('document.querySelector("#cmd-out").innerText.includes("identify") &&'
                           ' document.querySelector("#cmd-out .ok") !== null', 30, 'cmd/result ok from the agent')
                br.wait_js('document.querySelector("#alarms").innerText.includes("rig.identify")', 30,
                           'the identify alarm on the rig page')
                # Bad argument: refused by the agent, the reason is shown.
                br.js('document.querySelector("#cmd-w").value = "500"')
                br.js('document.querySelector(\'#commands [data-op="set_power_target"]\').click()')
                br.wait_js('document.querySelector("#cmd-out .bad") !== null', 30, 'refusal shown')
                assert 'outside' in br.js('document.querySelector("#cmd-out .bad").innerText')
        finally:
            agent.stop()
            pub.close()
            dash.stop.set()
            srv.shutdown()
            srv.server_close()
            fc.stop()
    assert os.path.getsize(tmp_path / 'rig.png') > 20000
