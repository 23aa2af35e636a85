"""The agent's MQTT credentials and TLS come from its config file: a broker that demands a
password and a client certificate accepts the agent, and refuses it with a wrong password."""

import json
import os
import time

import pytest

from tests.agentproc import AgentProcess
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def wait_health(state_dir, timeout_s):
    path = os.path.join(state_dir, 'health.json')
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            time.sleep(0.2)
    return None


def mqtt_lines(password_file, broker):
    return ('username = "rig7"\npassword_file = "%s"\ntls_ca = "%s"\ntls_cert = "%s"\n'
            'tls_key = "%s"\n' % (password_file, broker.ca_file, broker.client_cert,
                                  broker.client_key))


def test_password_and_client_certificate_from_config(tmp_path):
    with start_sim('GAMMA', time_scale=5, seed=1) as sim, \
            Broker(username='rig7', password='s3cret-rig7', tls=True) as broker:
        good = tmp_path / 'good.pw'
        good.write_text('s3cret-rig7\n')
        bad = tmp_path / 'bad.pw'
        bad.write_text('wrong\n')
        with AgentProcess(tmp_path, sim.ports_file, broker, rig='tlsok', name='ok',
                          mqtt_extra=mqtt_lines(good, broker)) as ok_agent:
            health = wait_health(ok_agent.state_dir, 60)
            assert health and health['healthy'] is True, ok_agent.log()[-2000:]
        with AgentProcess(tmp_path, sim.ports_file, broker, rig='tlsbad', name='bad',
                          mqtt_extra=mqtt_lines(bad, broker)) as bad_agent:
            # it mines and keeps trying, but never gets in (so never reports healthy)
            assert wait_health(bad_agent.state_dir, 12) is None
            assert bad_agent.alive()
        assert 'rig7' in broker.log(tail=None)
