"""The agent with the sysfs board backend (fake hwmon/pwm/gpio tree) and simulated chains:
fans are driven through pwm files, and a control-loop stall leaves pwm at full and boards off."""

import json
import threading
import time

import pytest

from agent import config, runner
from tests.broker import Broker
from tests.simproc import start_sim
from tests.test_board_sysfs import make_tree

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def read(root, rel):
    return (root / rel).read_text().strip()


def test_agent_drives_sysfs_and_watchdog_writes_safe_state(tmp_path):
    sysroot = tmp_path / 'sys'
    mapping = make_tree(sysroot)
    map_path = tmp_path / 'map.json'
    map_path.write_text(json.dumps(mapping))
    with start_sim('S21', time_scale=5, seed=2) as sim, Broker() as broker:
        cfg = config.defaults()
        cfg['rig'].update({'ports_file': sim.ports_file, 'board_backend': 'sysfs',
                           'sysfs_root': str(sysroot), 'sysfs_map': str(map_path), 'rig': 'sysfs'})
        cfg['mqtt']['broker'] = '127.0.0.1:%d' % broker.port
        cfg['state']['state_dir'] = str(tmp_path / 'state')
        agent = runner.Agent(cfg)
        th = threading.Thread(target=agent.run, daemon=True)
        th.start()
        try:
            deadline = time.monotonic() + 30
            while agent.control.ticks < 5 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert agent.control.ticks >= 5
            assert agent.control.last_snapshot['boards'][1]['sensors_c'] == [41.0, 56.5]
            # the supervisor's fan duty reached the pwm files (0..255)
            duty = agent.control.fan_duty_pct[0]
            assert duty is not None and read(sysroot, 'hwmon1/pwm1') == str(int(round(duty * 255 / 100)))
            assert read(sysroot, 'gpio/board0/value') == '1'
            agent.scheduler.call_soon(time.sleep, 3 * agent.watchdog.timeout_s / 5.0)
            deadline = time.monotonic() + 10
            while agent.watchdog.trips == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert agent.watchdog.trips == 1
            assert [read(sysroot, 'hwmon1/pwm%d' % i) for i in range(1, 5)] == ['255'] * 4
            assert [read(sysroot, 'gpio/board%d/value' % b) for b in range(3)] == ['0'] * 3
        finally:
            agent.scheduler.stop()
            th.join(30)
            agent.shutdown()
