"""Command fuzz against a real agent (simulated Gamma, real Mosquitto, `hashpilot run` process),
issue 17: every command answered on cmd/result, no traceback, nothing out of range applied
(judged from the simulator's truth log), RSS within 10 MB of its start.

Short run in `make test`; `make fuzz` sends HASHPILOT_FUZZ_N (100 000) commands.
"""

import json
import os
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hal import families, models
from hal.limits import HardwareLimits
from tests.agentproc import AgentProcess
from tests.broker import Broker
from tests.fuzzcmd import CommandFuzzer
from tests.simproc import start_sim

pytestmark = [pytest.mark.e2e]

WINDOW = 48             # commands in flight: the agent's inbox holds 256
FLOOD = 3000            # then this many at once: beyond the inbox, answered "busy"
OPS = ['autotune', 'identify', 'rebirth', 'reset_safety', 'set_fan', 'set_frequency',
       'set_power_target', 'switch_pool']
ROOT = 'hashpilot/v1/lab/fz/'
FAN_MIN_PCT = 20.0      # the agent's fan.min_pct default


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class Results:
    def __init__(self, broker):
        self.n = 0
        self.ok = 0
        self.cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id='fz-res')
        self.c.on_message = self._on
        ready = threading.Event()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(ROOT + 'cmd/result', qos=1)
        self.c.connect(broker.host, broker.port, 30)
        self.c.loop_start()
        assert ready.wait(10)

    def _on(self, c, u, msg):
        with self.cond:
            self.n += 1
            self.cond.notify_all()

    def wait_below(self, sent, window, timeout_s=60.0):
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while sent - self.n > window:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def check_truth(path, model):
    lim = HardwareLimits(model, families.get(model['chip']))
    bad, lines = [], 0
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d.get('type') != 'state':
                continue
            lines += 1
            for b in d['boards']:
                for fm in b['f_mhz']:
                    if fm and not lim.freq_min_mhz - 0.5 <= fm <= lim.freq_max_mhz + 0.5:
                        bad.append(('freq', d['t_s'], fm))
                if b['mv'] and b['enabled'] and not lim.board_mv_min <= b['mv'] <= lim.board_mv_max:
                    bad.append(('mv', d['t_s'], b['mv']))
            for fan in d['fans']:
                if not (FAN_MIN_PCT - 0.5 <= fan['duty_pct'] <= 100.0):
                    bad.append(('fan', d['t_s'], fan['duty_pct']))
    return lines, bad


def fuzz(tmp_path, n, seed=17):
    truth = str(tmp_path / 'truth.jsonl')
    with start_sim('GAMMA', time_scale=5, seed=2, truth=truth) as sim, Broker() as broker:
        res = Results(broker)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id='fz-pub')
        pub.connect(broker.host, broker.port, 30)
        pub.loop_start()
        agent = AgentProcess(tmp_path, sim.ports_file, broker, rig='fz', telemetry_s=5, chips_s=60)
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(agent.state_dir, 'health.json')):
                assert agent.alive(), agent.log()[-3000:]
                assert time.monotonic() < deadline, 'agent never healthy'
                time.sleep(0.2)
            gen = CommandFuzzer(seed, OPS)
            t0 = time.monotonic()
            rss0 = None
            for i in range(n):
                op, data = gen.next(int(time.time() * 1000))
                pub.publish(ROOT + 'cmd/' + op, data, qos=1)
                if i == min(2000, n // 4):
                    rss0 = rss_kb(agent.proc.pid)      # after warm-up (imports, caches)
                assert res.wait_below(i + 1, WINDOW), 'no answer: %d sent, %d answered\n%s' \
                    % (i + 1, res.n, agent.log()[-3000:])
            assert res.wait_below(n, 0, 60), '%d sent, %d answered' % (n, res.n)
            elapsed = time.monotonic() - t0
            # flood: no window at all
            for i in range(FLOOD):
                op, data = gen.next(int(time.time() * 1000))
                pub.publish(ROOT + 'cmd/' + op, data, qos=1)
            n += FLOOD
            assert res.wait_below(n, 0, 120), 'flood: %d sent, %d answered' % (n, res.n)
            time.sleep(1.0)
            rss1 = rss_kb(agent.proc.pid)
            assert agent.alive(), agent.log()[-3000:]
            log = agent.log()
            assert agent.stop() == 0
            lines, bad = check_truth(truth, models.get('GAMMA'))
            busy = log.count('busy: command queue full')
            figures = {'commands': n, 'answered': res.n, 'flood': FLOOD, 'extra_answers': res.n - n,
                       'tracebacks': log.count('Traceback'), 'out_of_range': len(bad),
                       'rss_start_kb': rss0, 'rss_end_kb': rss1, 'rss_growth_kb': rss1 - rss0,
                       'rate_per_s': round(n / elapsed), 'truth_lines': lines,
                       'log_bytes': len(log), 'applied': log.count(') applied'),
                       'busy_logged': busy}
            print('FUZZ %s' % json.dumps(figures))
            assert res.n == n, figures
            assert figures['applied'] > 0, 'the fuzz never reached a handler'
            assert 'Traceback' not in log, log[log.index('Traceback') - 500:][:3000]
            assert not bad, bad[:10]
            assert lines > 10
            assert rss1 - rss0 <= 10 * 1024, figures
            return figures
        finally:
            if agent.alive():
                agent.proc.kill()
            pub.disconnect()
            pub.loop_stop()
            res.close()


def test_fuzz_commands_short(tmp_path):
    fuzz(tmp_path, int(os.environ.get('HASHPILOT_FUZZ_SHORT_N', '3000')))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('HASHPILOT_FUZZ_N'), reason='make fuzz (HASHPILOT_FUZZ_N)')
def test_fuzz_commands_long(tmp_path):
    fuzz(tmp_path, int(os.environ['HASHPILOT_FUZZ_N']), seed=1700)
