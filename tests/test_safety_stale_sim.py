"""Stale-data scenarios on the simulator (its own process, time-warped), judged from its truth
log (issue 17): the agent runs in this process so the chip poll can be stopped the two ways the
issue names: the poll loop dies (its timer never runs again) and the driver hangs (a poll that
never returns blocks the control thread). Then the intake air gets hot. The boards must be safe
before any die passes the dangerous limit."""

import threading
import time

import pytest

from agent import config, runner
from tests.broker import Broker
from tests.simproc import start_sim
from tests.test_safety_scenarios import DANGER_C, Truth, all_off, report

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

T0 = 120.0          # sim seconds: the poll stops
HEAT_AT = 125.0     # then the intake air heats up fast


def make_agent(tmp_path, ports_file, broker):
    cfg_path = tmp_path / 'agent.toml'
    cfg_path.write_text('[rig]\nsite = "lab"\nrig = "stale"\nports_file = "%s"\n\n[mqtt]\n'
                        'broker = "127.0.0.1:%d"\n\n[telemetry]\npoll_s = 2.0\n\n[state]\n'
                        'state_dir = "%s"\n' % (ports_file, broker.port, tmp_path / 'state'))
    args = runner.build_parser().parse_args(['--config', str(cfg_path)])
    return runner.Agent(config.from_args(args))


@pytest.mark.parametrize('how', ['poll loop dies', 'driver hangs'])
def test_stale_dies_boards_safe_before_dangerous(tmp_path, how):
    truth_path = str(tmp_path / 'truth.jsonl')
    faults = ['ambient:to_c=75,at=%g,ramp_s=20' % HEAT_AT]
    with start_sim('S21', time_scale=10, seed=7, truth=truth_path, faults=faults) as sim, \
            Broker() as broker:
        agent = make_agent(tmp_path, sim.ports_file, broker)
        truth = Truth(truth_path)
        hang = threading.Event()
        release = threading.Event()
        orig_poll = agent.control.poll_chains

        def poll():
            if agent.clock.monotonic() >= T0 + agent_t0[0]:
                if how == 'poll loop dies':
                    raise RuntimeError('poll loop died')   # the timer is not rescheduled
                hang.set()
                release.wait()                              # the driver never returns
            orig_poll()
        agent_t0 = [agent.clock.monotonic()]
        agent.control.poll_chains = poll
        th = threading.Thread(target=agent.run, daemon=True)
        th.start()
        try:
            lines = truth.wait_until(HEAT_AT + 150, 150)
            if how == 'driver hangs':
                assert hang.is_set()
            off = [l for l in lines if l['t_s'] >= T0 and all_off(l)]
            assert off, 'boards still powered with stale die readings'
            t_off = off[0]['t_s']
            danger = [l['t_s'] for l in lines if l['hottest_c'] >= DANGER_C]
            assert not danger or danger[0] > t_off, 'a die passed %.0f C at %.0f s, boards off at %.0f s' \
                % (DANGER_C, danger[0], t_off)
            peak_on = max(l['hottest_c'] for l in lines if l['t_s'] <= t_off)
            assert peak_on < DANGER_C
            assert all(all_off(l) for l in lines if l['t_s'] >= t_off + 2), 'powered again while stale'
            assert max(l['hottest_c'] for l in lines) < DANGER_C
            report('stale_' + how.replace(' ', '_'), poll_stopped_at_s=T0, boards_off_at_s=t_off,
                   peak_die_until_off_c=round(peak_on, 1), peak_die_c=round(max(l['hottest_c'] for l in lines), 1))
        finally:
            release.set()
            agent.scheduler.request_stop()
            th.join(20)
            agent.shutdown()


def test_chain_answering_garbage_board_off_at_once(tmp_path):
    """One chain answers garbage (every byte corrupted) while the board controller works: no
    chip is found on that board, which goes off at once instead of running blind."""
    from tests.agentproc import AgentProcess
    truth_path = str(tmp_path / 'truth.jsonl')
    with start_sim('S21', time_scale=5, seed=8, truth=truth_path, faults=['corrupt:rate=1,chain=1']) as sim, \
            Broker() as broker:
        with AgentProcess(tmp_path, sim.ports_file, broker, rig='blind', telemetry_s=5) as agent:
            truth = Truth(truth_path)
            deadline = time.monotonic() + 90
            while 'chain 1: 0 chips' not in agent.log():
                assert agent.alive() and time.monotonic() < deadline, agent.log()[-3000:]
                time.sleep(0.3)
            t_found = truth.t()
            lines = truth.wait_until(t_found + 10, 60, agent)
            after = [l for l in lines if l['t_s'] >= t_found + 3]
            assert after and all(not l['boards'][1]['enabled'] for l in after), 'blind board powered'
            assert all(l['boards'][0]['enabled'] for l in after[-3:])
            assert 'no chip found' in agent.log()
            off = [l['t_s'] for l in lines if not l['boards'][1]['enabled']]
            report('blind_board', board1_off_after_scan_s=round(off[0] - t_found, 1) if off else None)
            assert agent.stop() == 0
