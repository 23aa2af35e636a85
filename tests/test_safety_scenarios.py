"""Safety scenarios on the simulator (its own process, time-warped), judged from its truth log.

Each test prints a `SCENARIO` line with the peak die temperature and the time to the safe state,
the figures the safety issue asks for (`pytest -s -k scenario` shows them).
"""

import json
import re
import threading
import time

import pytest

from agent import config, runner
from tests.agentproc import AgentProcess, Recorder
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HOT_C, DANGER_C = 85.0, 95.0   # S21 model limits (hal/models.py)
# Log lines that explain a failed scenario (a stall, a trip, a re-init, an error).
RELEVANT = re.compile(r'stall|watchdog|alarm|WARNING|ERROR|CRITICAL|Traceback|re-?init|power')
STARTED = []                   # (agent, sim) of the running test, for its failure report


def relevant_lines(text, limit=40):
    lines = [l for l in text.splitlines() if RELEVANT.search(l)]
    return lines[-limit:]


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """A failed scenario prints the agent's and the simulator's lines that explain it."""
    STARTED.clear()
    yield
    rep = getattr(request.node, 'rep_call', None)
    if rep is None or not rep.failed:
        return
    for agent, sim in STARTED:
        print('--- agent log (relevant lines) ---')
        try:
            print('\n'.join(relevant_lines(agent.log())) or '(none)')
        except OSError as e:
            print('(agent log unreadable: %s)' % e)
        print('--- simulator output (relevant lines) ---')
        print('\n'.join(relevant_lines(getattr(sim, 'output', ''))) or '(none)')


class Truth:
    """Incremental reader of the simulator's truth file."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.lines = []
        self.header = None

    def read(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                while True:
                    line = f.readline()
                    if not line.endswith('\n'):
                        break
                    self.pos += len(line.encode())
                    d = json.loads(line)
                    if d.get('type') == 'header':
                        self.header = d
                    else:
                        self.lines.append(d)
        except FileNotFoundError:
            pass
        return self.lines

    def t(self):
        self.read()
        return self.lines[-1]['t_s'] if self.lines else 0.0

    def wait_until(self, t_s, timeout_s, proc=None):
        deadline = time.monotonic() + timeout_s
        while self.t() < t_s:
            assert time.monotonic() < deadline, 'simulated time stuck at %.0f s' % self.t()
            if proc is not None:
                assert proc.alive(), 'agent died:\n' + proc.log()[-3000:]
            time.sleep(0.3)
        return self.lines


def mean_f(line):
    fs = [f for b in line['boards'] for f in b['f_mhz'] if f > 0]
    return sum(fs) / len(fs) if fs else 0.0


def all_off(line):
    return all(not b['enabled'] for b in line['boards'])


def report(name, **figures):
    print('SCENARIO %s %s' % (name, json.dumps(figures)))


def scenario(tmp_path, faults, time_scale, extra_cfg=''):
    truth_path = str(tmp_path / 'truth.jsonl')
    made = []
    try:
        sim = start_sim('S21', time_scale=time_scale, seed=5, truth=truth_path, faults=faults)
        made.append(sim)
        broker = Broker().start()
        made.append(broker)
        rec = Recorder(broker, 'lab', 'safety')
        made.append(rec)
        agent = AgentProcess(tmp_path, sim.ports_file, broker, rig='safety', telemetry_s=5,
                             chips_s=60, extra_cfg=extra_cfg)
        STARTED.append((agent, sim))
    except BaseException:
        close(*reversed(made))   # nothing started here outlives a failed set-up
        raise
    return sim, broker, rec, agent, Truth(truth_path)


def close(*things):
    for t in things:
        for m in ('__exit__', 'close'):
            if hasattr(t, m):
                try:
                    getattr(t, m)(None, None, None) if m == '__exit__' else getattr(t, m)()
                except Exception:
                    pass
                break


def test_scenario_all_fans_stop_at_full_load(tmp_path):
    t0 = 90.0
    faults = ['fan-stop:fan=%d,at=%g' % (k, t0) for k in range(4)]
    sim, broker, rec, agent, truth = scenario(tmp_path, faults, time_scale=4)
    try:
        lines = truth.wait_until(t0 + 90, 120, agent)
        before = [l for l in lines if l['t_s'] < t0]
        assert before and not all_off(before[-1]) and before[-1]['good_ths'] > 150, 'not mining before'
        off = [l for l in lines if l['t_s'] >= t0 and all_off(l)]
        assert off, 'boards still powered after all fans stopped'
        t_off = off[0]['t_s']
        peak = max(l['hottest_c'] for l in lines)
        peak_on = max(l['hottest_c'] for l in lines if l['t_s'] <= t_off)
        assert peak < DANGER_C, 'a die reached %.1f C' % peak
        ids = {(a['id'], a['event']) for a in rec.of('alarm') if a}
        fan_alarms = [i for i, ev in ids if 'fan' in i and ev == 'raise']
        assert fan_alarms, ids
        msgs = ' '.join(a['message'] for a in rec.of('alarm') if a)
        assert 'fan' in msgs and ('off' in msgs or 'lost' in msgs), msgs
        report('all_fans_stop', peak_die_c=round(peak, 1), peak_die_until_off_c=round(peak_on, 1),
               time_to_safe_state_s=round(t_off - t0, 1), fan_alarms=sorted(fan_alarms))
    finally:
        close(agent, rec, broker, sim)


def test_scenario_ambient_step_derates_and_recovers(tmp_path):
    up, down = 100.0, 700.0
    faults = ['ambient:to_c=45,at=%g,ramp_s=60' % up, 'ambient:to_c=25,at=%g,ramp_s=60' % down]
    sim, broker, rec, agent, truth = scenario(tmp_path, faults, time_scale=20)
    try:
        lines = truth.wait_until(1300, 150, agent)
        settled = [l for l in lines if up + 60 + 180 <= l['t_s'] <= down]
        peak_settled = max(l['hottest_c'] for l in settled)
        assert peak_settled <= HOT_C, 'die at %.1f C after the transient' % peak_settled
        hot_f = mean_f(settled[-1])
        assert all(b['enabled'] for b in settled[-1]['boards']), 'mining should go on, derated'
        assert hot_f < 0.99 * 490 or all(f['duty_pct'] >= 99 for f in settled[-1]['fans']), \
            'no derating at 45 C ambient'
        end = lines[-1]
        assert abs(mean_f(end) - 490) < 2.0, 'not recovered: %.1f MHz' % mean_f(end)
        peak = max(l['hottest_c'] for l in lines)
        assert peak < DANGER_C
        report('ambient_25_45_25', peak_die_c=round(peak, 1), peak_after_transient_c=round(peak_settled, 1),
               mean_mhz_at_45c=round(hot_f, 1), mean_mhz_recovered=round(mean_f(end), 1),
               fans_pct_at_45c=[f['duty_pct'] for f in settled[-1]['fans']],
               time_to_safe_state_s=None)
    finally:
        close(agent, rec, broker, sim)


def test_scenario_board_sensor_stuck_low_does_not_slow_fans(tmp_path):
    t0 = 100.0
    faults = ['sensor-stuck:board=1,sensor=1,value_c=30,at=%g' % t0]
    sim, broker, rec, agent, truth = scenario(tmp_path, faults, time_scale=10,
                                              extra_cfg='\n[safety]\ncontrol_source = "board"\n')
    try:
        lines = truth.wait_until(t0 + 200, 120, agent)

        def lowest(a, b):
            return min(f['duty_pct'] for l in lines if a <= l['t_s'] < b for f in l['fans'])
        # Until the detector has seen 60 s of a frozen value the fans may only wander as much as
        # they did before the fault (PID regulation); once the sensor is distrusted it counts
        # as hot, so the fans run at 100 %.
        duty_before = lowest(t0 - 60, t0)
        lowest_after = lowest(t0, t0 + 70)
        assert lowest_after >= duty_before - 3, 'fans slowed from %s to %s %%' % (duty_before, lowest_after)
        flagged = lowest(t0 + 90, t0 + 200)
        assert flagged >= 99, 'fans at %s %% with a distrusted sensor' % flagged
        ids = [a['id'] for a in rec.of('alarm') if a and a['event'] == 'raise']
        assert any(i.startswith('board1.sensor1') for i in ids), ids
        peak = max(l['hottest_c'] for l in lines)
        assert peak <= HOT_C + 0.5
        report('sensor_stuck_30c', peak_die_c=round(peak, 1), fan_pct_before=duty_before,
               fan_pct_min_after=lowest_after, fan_pct_min_once_flagged=flagged, alarms=sorted(set(i for i in ids if 'sensor' in i)),
               time_to_safe_state_s=None)
    finally:
        close(agent, rec, broker, sim)


def test_scenario_one_fan_of_four_fails(tmp_path):
    t0 = 100.0
    sim, broker, rec, agent, truth = scenario(tmp_path, ['fan-stop:fan=2,at=%g' % t0], time_scale=10)
    try:
        lines = truth.wait_until(t0 + 400, 150, agent)
        after = [l for l in lines if l['t_s'] >= t0]
        assert all(all(b['enabled'] for b in l['boards']) for l in after), 'a board went off'
        settled = [l for l in after if l['t_s'] >= t0 + 120]
        peak_settled = max(l['hottest_c'] for l in settled)
        assert peak_settled <= HOT_C
        end = lines[-1]
        assert end['good_ths'] > 100, 'stopped mining: %.1f TH/s' % end['good_ths']
        assert mean_f(end) < 490 * 0.99, 'not derated: %.1f MHz' % mean_f(end)
        ids = [a['id'] for a in rec.of('alarm') if a and a['event'] == 'raise']
        assert any('fan2' in i for i in ids), ids
        peak = max(l['hottest_c'] for l in lines)
        report('one_fan_fails', peak_die_c=round(peak, 1), peak_after_transient_c=round(peak_settled, 1),
               good_ths=round(end['good_ths'], 1), mean_mhz=round(mean_f(end), 1),
               time_to_safe_state_s=None)
    finally:
        close(agent, rec, broker, sim)


def test_scenario_control_loop_stall_reaches_safe_state(tmp_path):
    scale = 5.0
    truth_path = str(tmp_path / 'truth.jsonl')
    with start_sim('S21', time_scale=scale, seed=5, truth=truth_path,
                   extra=('--truth-period-s', '0.5')) as sim, Broker() as broker:
        cfg = config.defaults()
        cfg['rig'].update({'ports_file': sim.ports_file, 'rig': 'stall'})
        cfg['mqtt']['broker'] = '127.0.0.1:%d' % broker.port
        cfg['state']['state_dir'] = str(tmp_path / 'state')
        agent = runner.Agent(cfg)
        th = threading.Thread(target=agent.run, daemon=True)
        th.start()
        truth = Truth(truth_path)
        try:
            lines = truth.wait_until(60, 60)
            assert not all_off(lines[-1])
            watchdog_s = agent.watchdog.timeout_s
            stall_wall_s = 3 * watchdog_s / scale
            t_stall = agent.clock.monotonic()
            t_stall_sim = truth.t()
            agent.scheduler.call_soon(time.sleep, stall_wall_s)   # the control thread hangs
            lines = truth.wait_until(t_stall_sim + 3 * watchdog_s, 60)
            safe = [l for l in lines if l['t_s'] > t_stall_sim and all_off(l)
                    and all(f['duty_pct'] >= 99 for f in l['fans'])]
            assert safe, 'no safe state after the stall'
            t_safe = safe[0]['t_s'] - t_stall_sim
            # The stall starts after the last kick (ticks are 1 s apart) and the truth log is
            # sampled every 0.5 s: allow one tick and one sample beyond the watchdog time.
            assert t_safe <= watchdog_s + 1.5 + 1e-6, \
                'safe state after %.1f s (watchdog %.0f s)' % (t_safe, watchdog_s)
            assert agent.watchdog.trips == 1
            peak = max(l['hottest_c'] for l in lines)
            report('control_loop_stall', peak_die_c=round(peak, 1), watchdog_s=watchdog_s,
                   time_to_safe_state_s=round(t_safe, 1), agent_clock_stall_at_s=round(t_stall, 1))
        finally:
            agent.scheduler.stop()
            th.join(30)
            agent.shutdown()


def test_scenario_frozen_agent_board_controller_makes_rig_safe(tmp_path):
    """The whole agent process stops (SIGSTOP: no thread of it runs, as after kill -9): the board
    controller's heartbeat watchdog switches the boards off and the fans to 100 %; when the
    agent runs again it notices, re-initialises and mines again."""
    import signal
    sim, broker, rec, agent, truth = scenario(tmp_path, [], time_scale=5)
    try:
        truth.wait_until(60, 60, agent)
        hw_s = runner.HW_WATCHDOG_FACTOR * config.defaults()['safety']['watchdog_s']
        t_freeze = truth.t()
        agent.proc.send_signal(signal.SIGSTOP)
        lines = truth.wait_until(t_freeze + hw_s + 10, 60)
        safe = [l for l in lines if l['t_s'] > t_freeze and all_off(l)
                and all(f['duty_pct'] >= 99 for f in l['fans'])]
        assert safe, 'rig not made safe while the agent was frozen'
        t_safe = safe[0]['t_s'] - t_freeze
        # heartbeat + the controller's check period (0.5 s simulated here) + truth sampling (1 s)
        # + the last request's age when the agent froze (up to one tick, 1 s)
        assert t_safe <= hw_s + 3.0, 'safe after %.1f s (heartbeat %.0f s)' % (t_safe, hw_s)
        agent.proc.send_signal(signal.SIGCONT)
        t_cont = truth.t()
        lines = truth.wait_until(t_cont + 240, 120, agent)
        back = [l for l in lines if l['t_s'] > t_cont and not any(not b['enabled'] for b in l['boards'])
                and l['good_ths'] > 100]
        assert back, 'the agent did not bring the rig back'
        # Whichever notices first after SIGCONT explains it: the power loss the controller
        # caused, or the agent's own watchdog reporting the stall.
        raised = [a for a in rec.of('alarm') if a and a['event'] == 'raise']
        assert any(a['id'].endswith('.power_lost') or 'stalled' in a['message'] for a in raised), \
            [a['id'] for a in raised]
        peak = max(l['hottest_c'] for l in lines)
        report('agent_frozen', peak_die_c=round(peak, 1), heartbeat_s=hw_s,
               time_to_safe_state_s=round(t_safe, 1),
               back_mining_after_s=round(back[0]['t_s'] - t_cont, 1))
    finally:
        if agent.alive():
            agent.proc.send_signal(signal.SIGCONT)
        close(agent, rec, broker, sim)
