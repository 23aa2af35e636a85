"""Safety must not trust stale readings (issue 17): a chip poll that stops (dead loop, hung
driver, stuck transport) leaves the last die values in place; the supervisor sees their age and
treats them as hot (fans 100 %, derate, then off) with an alarm. A powered board on which no chip
was found goes off at once."""

from agent.safety import Supervisor
from tests.test_safety_unit import S21, RigPlant, ids, run


class FrozenPoll:
    """Snapshot hook: from t0 the die values stop changing and grow older, like a dead poll."""

    def __init__(self, plant, t0, with_age=True):
        self.plant, self.t0, self.with_age = plant, t0, with_age
        self.frozen = None
        self.orig = plant.snapshot
        plant.snapshot = self.snapshot

    def snapshot(self, now_s):
        snap = self.orig(now_s)
        if now_s < self.t0:
            for b in snap['boards']:
                b['die_age_s'] = [0.5] * len(b['die_c'])
            return snap
        if self.frozen is None:
            self.frozen = [list(b['die_c']) for b in snap['boards']]
        for b in snap['boards']:
            if b['enabled']:
                b['die_c'] = list(self.frozen[b['index']])
                b['chips_alive'] = [True] * len(b['die_c'])
                if self.with_age:
                    b['die_age_s'] = [now_s - self.t0 + 0.5] * len(b['die_c'])
        return snap


def heat_up(t, plant, at=120.0):
    if t >= at:
        plant.AMB_C = 55.0          # hot intake air while nobody reads the dies
        plant.block = 0.5           # and a half-blocked filter (tachs read fine)


def test_frozen_dies_without_age_would_cook_the_board():
    """The attack as reported: values frozen, no age -> the supervisor believes them."""
    sup, plant = Supervisor(S21), RigPlant()
    run(sup, plant, 0.0, 120)
    FrozenPoll(plant, 120.0, with_age=False)
    hist, events = run(sup, plant, 120.0, 600, hook=heat_up)
    assert max(h[1] for h in hist) > S21['temp_danger_c']      # the danger is real
    assert all(b['enable'] for b in hist[-1][2]['boards'])


def test_stale_dies_hot_then_off_before_dangerous():
    sup, plant = Supervisor(S21), RigPlant()
    run(sup, plant, 0.0, 120)
    FrozenPoll(plant, 120.0)
    hist, events = run(sup, plant, 120.0, 600, hook=heat_up)
    peak = max(h[1] for h in hist)
    assert peak < S21['temp_danger_c'], peak
    raised = ids(events)
    assert 'board0.dies_stale' in raised
    stale_at = next(h[0] for h in hist if 'board0.dies_stale' in ids(h[2]['events']))
    assert stale_at - 120.0 <= sup.cfg['die_stale_s'] + 2
    fans_full = next(h[0] for h in hist if min(h[2]['fan_duty_pct']) >= 100)
    assert fans_full - 120.0 <= sup.cfg['die_stale_s'] + 2
    off = next(h[0] for h in hist if not any(b['enable'] for b in h[2]['boards']))
    assert off - 120.0 <= sup.cfg['die_stale_s'] + sup.cfg['stale_off_s'] + 2
    print('STALE fans_100_after_s=%.0f off_after_s=%.0f peak_die_c=%.1f'
          % (fans_full - 120, off - 120, peak))


def test_stale_alarm_clears_when_readings_return():
    sup, plant = Supervisor(S21), RigPlant()
    run(sup, plant, 0.0, 60)
    fp = FrozenPoll(plant, 60.0)
    hist, events = run(sup, plant, 60.0, 15)
    assert 'board0.dies_stale' in ids(events)
    plant.snapshot = fp.orig
    hist, events = run(sup, plant, 75.0, 20, hook=lambda t, p: None)
    assert 'board0.dies_stale' in ids(events, 'clear')


def test_board_with_no_chip_found_goes_off_at_once():
    sup, plant = Supervisor(S21), RigPlant()
    orig = plant.snapshot

    def snap(now_s):
        s = orig(now_s)
        b = s['boards'][1]
        b['die_c'], b['chips_alive'], b['chips_found'] = [], [], 0
        return s
    plant.snapshot = snap
    hist, events = run(sup, plant, 0.0, 3)
    assert hist[0][2]['boards'][1]['enable'] is False          # first tick, inside start grace
    assert hist[0][2]['boards'][0]['enable'] is True
    assert any('no chip found' in (e.get('message') or '') for e in events)


def test_stop_reports_what_the_safe_state_writes_did(caplog):
    """A board controller line that answers garbage (here: loop:// echoes our own frames back):
    both safe-state writes fail, and the stop report says so instead of 'boards off'."""
    import types
    from agent.control import ControlLoop
    from agent.runner import Agent, SafeStateWriter
    from hal.board_sim import SimBoardController
    from hal.transport import Transport
    board = SimBoardController(Transport('loop://', 115200), timeout_s=0.05, retries=0)
    control = types.SimpleNamespace(rig=types.SimpleNamespace(board=board), boards=[])
    control.safe_state = types.MethodType(ControlLoop.safe_state, control)
    control.all_off = types.MethodType(ControlLoop.all_off, control)
    for writer, want in ((SafeStateWriter('loop://'), 'sent unconfirmed'),
                         (SafeStateWriter(None), 'FAILED')):
        fake = types.SimpleNamespace(control=control, safe_writer=writer)
        msg, severity = Agent._stop_safe_state(fake)
        assert severity == 'critical' and want in msg and 'may still be powered' in msg, msg
        writer.close()


def test_refused_safety_writes_raise_an_alarm_not_a_claim():
    """Board controller line answering garbage (loop:// echoes our frames): the supervisor's
    'fans 100 %, board off' cannot be written; the control loop says so (rig.write_failed)."""
    from agent.control import ControlLoop
    from hal import models
    from hal.clock import Clock
    from hal.rig import Rig
    model = models.get('GAMMA')
    rig = Rig(model, ['loop://'], 'loop://', clock=Clock(1.0))
    rig.board.timeout_s, rig.board.retries = 0.05, 0
    events = []
    ctl = ControlLoop(rig, Supervisor(model), Clock(1.0), on_event=events.append)
    try:
        ctl.apply({'fan_duty_pct': [100], 'boards': [{'index': 0, 'enable': False}], 'events': []}, 1.0)
        raised = [e for e in events if e['id'] == 'rig.write_failed' and e['action'] == 'raise']
        assert raised and 'board 0 OFF' in raised[0]['message'] and 'fan 0 to 100' in raised[0]['message']
        assert ctl.boards[0].enabled      # not recorded as off: it is not known to be
        ctl.apply({'fan_duty_pct': [100], 'boards': [{'index': 0, 'enable': False}], 'events': []}, 2.0)
        assert len([e for e in events if e['id'] == 'rig.write_failed']) == 1   # raised once
    finally:
        rig.close()
