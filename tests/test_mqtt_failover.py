"""Agent link failover: with `failover` brokers (cluster nodes) the link moves to the next broker
when its broker is lost, replays its outbox there, and nothing is lost; bad entries are refused."""

import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import config
from agent.mqtt_link import MqttLink, check_settings
from mqtt_schema import consumer, payloads
from tests.broker import Broker

STATUS = {'state': 'running', 'boards': [{'index': 0, 'chips': [
    {'temp_c': 60.5, 'freq_mhz': 525.0, 'hashrate_ghs': 1070.0, 'err_pct': 0.1, 'state': 'ok'}]}]}


def _subscriber(b, got, lock):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id='fo-sub-%d' % b.port, protocol=mqtt.MQTTv5)

    def on_message(cl, u, msg):
        with lock:
            got.append(consumer.decode(msg.topic, msg.payload)['seq'])
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe('hashpilot/v1/fo/+/telemetry', qos=1)
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def test_link_fails_over_to_the_next_broker_and_loses_nothing(tmp_path):
    b1, b2 = Broker().start(), Broker().start()
    got, lock = [], threading.Lock()
    subs = [_subscriber(b, got, lock) for b in (b1, b2)]
    link = MqttLink({'site': 'fo', 'rig': 'r1', 'host': b1.host, 'port': b1.port,
                     'failover': ['%s:%d' % (b2.host, b2.port)], 'state_dir': str(tmp_path / 'ob'),
                     'backoff_min_s': 0.2, 'backoff_max_s': 1.0}, queue.Queue())
    try:
        time.sleep(0.3)
        link.start()
        end = time.monotonic() + 10
        while not link.is_connected() and time.monotonic() < end:
            time.sleep(0.05)
        sent = 0
        for i in range(40):
            if i == 10:
                b1.stop()                     # the node dies: the link moves to b2
            link.publish('telemetry', payloads.build_telemetry(STATUS, link.session))
            sent += 1
            time.sleep(0.1)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            with lock:
                if len(set(got)) >= sent:
                    break
            time.sleep(0.1)
        st = link.get_status()
        assert st['broker'] == '%s:%d' % (b2.host, b2.port) and st['failovers'] >= 1
        with lock:
            assert sorted(set(got)) == list(range(1, sent + 1))
    finally:
        link.stop(drain_s=1.0)
        for c in subs:
            c.loop_stop()
            c.disconnect()
        b1.close()
        b2.close()


def test_failover_entries_are_checked(tmp_path):
    with pytest.raises(ValueError, match='failover'):
        check_settings({'site': 's', 'rig': 'r', 'state_dir': str(tmp_path), 'failover': ['nohost']})
    path = tmp_path / 'a.toml'
    path.write_text('[rig]\nsite = "s"\nrig = "r"\n[mqtt]\nfailover = ["10.0.0.2:1883", "bad"]\n')
    with pytest.raises(config.ConfigError, match='failover'):
        config.load_file(str(path))


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
