"""Home Assistant bridge against a real Mosquitto and a simulated Bitaxe agent: discovery configs
pass the documented schema checks, states follow telemetry, availability follows birth/Will, and a
power target set from Home Assistant reaches the agent as a validated command."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet import client as fclient
from fleet import homeassistant as ha
from fleet import state as fstate
from tests import ha_schema
from tests.agentproc import AgentProcess
from tests.broker import Broker
from tests.simproc import start_sim


class Watcher:
    def __init__(self, port, filters):
        self.msgs = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on
        self.c.connect('127.0.0.1', port)
        for f in filters:
            self.c.subscribe(f, qos=1)
        self.c.loop_start()

    def _on(self, c, u, m):
        with self.lock:
            self.msgs[m.topic] = (bytes(m.payload), m.retain)

    def get(self, topic):
        with self.lock:
            return self.msgs.get(topic)

    def topics(self, prefix):
        with self.lock:
            return sorted(t for t in self.msgs if t.startswith(prefix))

    def wait(self, cond, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError('timed out waiting for %s' % what)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_discovery_configs_pass_the_documented_schema():
    for model, boards in (('GAMMA', 1), ('S21', 3), ('unknown-model', 0)):
        cfgs = ha.discovery_configs('home office', 'bitaxe.1', model, '1.0', boards)
        assert cfgs
        for topic, cfg in cfgs:
            assert ha_schema.check(topic, json.dumps(cfg).encode()) == [], (topic, cfg)
        comps = sorted(set(t.split('/')[1] for t, _ in cfgs))
        want = ['binary_sensor', 'button', 'number', 'select', 'sensor']
        assert comps == want
    # The checker itself refuses what HA would refuse.
    bad = dict(cfgs[0][1], unit_of_measurement='TH/s', device_class='power')
    assert ha_schema.check(cfgs[0][0], json.dumps(bad).encode())
    assert ha_schema.check('homeassistant/sensor/a b/x/config', b'{}')
    assert ha_schema.check('homeassistant/number/n/x/config', json.dumps(
        {'command_topic': 'a/b', 'min': 5, 'max': 5}).encode())
    assert ha.parse_set('power_target', '15', 'GAMMA') == ('set_power_target', {'w': 15.0})
    for what, text in (('power_target', '500'), ('fan_duty', '-1'), ('nope', '1'), ('power_target', 'x')):
        try:
            ha.parse_set(what, text, 'GAMMA')
            raise AssertionError('accepted %s=%s' % (what, text))
        except ValueError:
            pass


@pytest.mark.slow
def test_bridge_with_a_real_agent(tmp_path):
    with Broker() as broker, start_sim('GAMMA', seed=4) as sim:
        st = fstate.FleetState()
        fc = fclient.FleetClient(st, '127.0.0.1:%d' % broker.port)
        bridge = ha.Bridge(st, fc)
        fc.start()
        w = Watcher(broker.port, ['homeassistant/#', 'hashpilot/ha/#', 'hashpilot/v1/+/+/cmd/#'])
        agent = AgentProcess(tmp_path, sim.ports_file, broker, site='home', rig='bitaxe', telemetry_s=1)
        root = 'hashpilot/ha/home/bitaxe/'
        try:
            w.wait(lambda: w.get(root + 'state') is not None and
                   json.loads(w.get(root + 'state')[0]).get('hashrate_ths'), 60, 'a state with hashrate')
            configs = w.topics('homeassistant/')
            assert len(configs) == len(ha.SENSORS) + 1 + 5      # + board sensor, problem, 2 numbers, select, button
            for t in configs:
                data, retained = w.get(t)
                assert ha_schema.check(t, data) == [], t
                cfg = json.loads(data)
                assert cfg['device']['model'] == 'GAMMA' and cfg['availability'][0]['topic'] == root + 'availability'
            assert w.get(root + 'availability')[0] == b'online'
            s = json.loads(w.get(root + 'state')[0])
            tel = st.rig('home/bitaxe').tel
            assert abs(s['hashrate_ths'] - tel['hashrate_ghs'] / 1000.0) < 0.05
            assert s['board_0_temp_max_c'] is not None and s['alarm_count'] == 0
            # HA sets a power target: a validated command reaches the agent, which accepts it.
            pt = json.loads(w.get('homeassistant/number/hashpilot_home_bitaxe/power_target/config')[0])
            assert pt['min'] == 3.6 and pt['max'] == 30.0
            fc.publish(pt['command_topic'], b'15')
            w.wait(lambda: w.get('hashpilot/v1/home/bitaxe/cmd/set_power_target') is not None, 10, 'the command')
            cmd = json.loads(w.get('hashpilot/v1/home/bitaxe/cmd/set_power_target')[0])
            assert cmd['args'] == {'w': 15.0}
            w.wait(lambda: st.result('home/bitaxe', cmd['id']) is not None, 20, 'cmd/result')
            assert st.result('home/bitaxe', cmd['id'])['ok'] is True
            w.wait(lambda: json.loads(w.get(root + 'state')[0]).get('power_target_w') == 15.0, 10, 'target in state')
            # Out of range from HA: refused by the bridge, nothing sent.
            fc.publish(pt['command_topic'], b'400')
            w.wait(lambda: bridge.refused, 10, 'the refusal')
            assert 'outside' in bridge.refused[0][1]
            # The agent stops: its Will/offline status makes the entities unavailable.
            agent.stop()
            w.wait(lambda: w.get(root + 'availability')[0] == b'offline', 30, 'offline availability')
        finally:
            agent.stop()
            w.close()
            fc.stop()
