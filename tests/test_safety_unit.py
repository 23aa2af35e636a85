"""Safety supervisor on synthetic snapshots, with a small S21-like thermal model closing the loop.

The model follows shared/spec/sim-physics.md in miniature: per-chip power split into dynamic
(scaled by the frequency cap) and leakage (rising with temperature), airflow conductance
g_max * d^0.8, dies relaxing with tau 30 s, fans with 2 s. The supervisor's actions are applied
to it every tick, as the runner would.
"""

import math
import random

import pytest

from agent.safety import Supervisor, Watchdog, safe_actions
from hal import models

S21 = models.get('S21')
GAMMA = models.get('GAMMA')


class RigPlant:
    AMB_C = 25.0
    P_DYN_W = 9.2        # per chip at cap 100 %
    P_LEAK_W = 0.8       # per chip at 60 degC
    BOARD_W = 5.0
    G_MAX = 54.4         # W/degC of airflow per board at full fans
    R_JA = 2.0           # degC/W die above local air
    RPM_MAX = 6000.0

    def __init__(self, boards=3, chips=108, fans=4, duty=60.0):
        self.nb, self.nc, self.nf = boards, chips, fans
        self.duty = [duty] * fans
        self.rpm = [duty / 100.0 * self.RPM_MAX] * fans
        self.fan_dead = [False] * fans
        self.block = 1.0             # airflow multiplier (blocked intake: tach reads fine)
        self.enabled = [True] * boards
        self.cap = [100.0] * boards
        self.temps = [[self.AMB_C + 20.0] * chips for _ in range(boards)]
        self.power_scale = 1.0
        self.sensor_override = {}    # (board, sensor) -> value (stuck, None, junk)
        self.die_override = {}       # (board, chip) -> value
        self.rpm_override = {}       # fan -> value
        self.rng = None              # random.Random: sensor noise 0.25 degC, die 0.5 degC (sim)
        for _ in range(400):         # settle at the starting duty
            self.step(1.0)

    def d(self):
        return max(0.03, sum(self.rpm) / (self.nf * self.RPM_MAX) * self.block)

    def chip_w(self, b, t_c):
        if not self.enabled[b]:
            return 0.0
        return (self.P_DYN_W * self.cap[b] / 100.0 * self.power_scale
                + self.P_LEAK_W * math.exp((t_c - 60.0) / 30.0))

    def step(self, dt):
        for k in range(self.nf):
            target = 0.0 if self.fan_dead[k] else self.duty[k] / 100.0 * self.RPM_MAX
            self.rpm[k] += (target - self.rpm[k]) * (1.0 - math.exp(-dt / 2.0))
        g = self.G_MAX * self.d() ** 0.8
        a = 1.0 - math.exp(-dt / 30.0)
        for b in range(self.nb):
            p = [self.chip_w(b, t) for t in self.temps[b]]
            heat = sum(p) + (self.BOARD_W if self.enabled[b] else 0.0)
            for i in range(self.nc):
                ss = self.AMB_C + heat / g * (i + 0.5) / self.nc + self.R_JA * p[i]
                self.temps[b][i] += (ss - self.temps[b][i]) * a

    def power_w(self):
        chips = sum(self.chip_w(b, t) for b in range(self.nb) for t in self.temps[b])
        fans = sum(30.0 * (d / 100.0) ** 3 for d in self.duty)
        on = sum(1 for e in self.enabled if e)
        return (chips + on * self.BOARD_W + fans + 8.0) / 0.94

    def sensors(self, b):
        g = self.G_MAX * self.d() ** 0.8
        p = [self.chip_w(b, t) for t in self.temps[b]]
        heat = sum(p) + (self.BOARD_W if self.enabled[b] else 0.0)
        selfh = self.R_JA * sum(p) / len(p) / 2.0
        n = (lambda: self.rng.gauss(0.0, 0.25)) if self.rng else (lambda: 0.0)
        return [round(self.AMB_C + heat / g * pos + selfh + n(), 2) for pos in (0.15, 0.85)]

    def max_die(self):
        return max(max(t) for t in self.temps)

    def snapshot(self, now_s):
        boards = []
        for b in range(self.nb):
            s = self.sensors(b)
            for (bb, k), v in self.sensor_override.items():
                if bb == b:
                    s[k] = v
            n = (lambda: self.rng.gauss(0.0, 0.5)) if self.rng else (lambda: 0.0)
            dies = [round(t + n(), 2) for t in self.temps[b]] if self.enabled[b] else []
            for (bb, i), v in self.die_override.items():
                if bb == b and i < len(dies):
                    dies[i] = v
            boards.append({'index': b, 'enabled': self.enabled[b], 'sensors_c': s, 'die_c': dies,
                           'chips_alive': [x is not None for x in dies], 'voltage_mv': 14400})
        fans = [{'duty_pct': int(self.duty[k]), 'rpm': self.rpm_override.get(k, int(self.rpm[k]))}
                for k in range(self.nf)]
        return {'now_s': now_s, 'boards': boards, 'fans': fans, 'power_w': self.power_w()}

    def apply(self, actions):
        for k, d in enumerate(actions['fan_duty_pct']):
            self.duty[k] = float(d)
        for b in actions['boards']:
            self.enabled[b['index']] = b['enable']
            self.cap[b['index']] = b['freq_cap_pct']


def run(sup, plant, t0, seconds, dt=1.0, hook=None):
    """Close the loop; returns a list of (t, max_die, actions) and all events."""
    hist, events = [], []
    t = t0
    while t < t0 + seconds - 1e-9:
        if hook:
            hook(t, plant)
        act = sup.tick(plant.snapshot(t))
        plant.apply(act)
        events.extend(act['events'])
        hist.append((t, plant.max_die(), act))
        plant.step(dt)
        t += dt
    return hist, events


def ids(events, action='raise'):
    return [e['id'] for e in events if e['action'] == action]


def fresh(config=None, duty=60.0):
    plant = RigPlant(duty=duty)
    sup = Supervisor(S21, config)
    return sup, plant


# ---------------------------------------------------------------------------------------------
def test_baseline_full_load_is_quiet():
    sup, plant = fresh()
    hist, events = run(sup, plant, 0.0, 600)
    assert events == []
    assert all(b['enable'] and b['freq_cap_pct'] == 100.0 for b in hist[-1][2]['boards'])
    assert sup.get_status()['state'] == 'normal'
    # The PID holds the hottest die near the 75 degC target.
    assert abs(hist[-1][1] - 75.0) < 2.0


@pytest.mark.parametrize('dt', [1.0, 2.0])
def test_all_fans_stop_at_full_load_boards_off_before_dangerous(dt):
    sup, plant = fresh()
    run(sup, plant, 0.0, 120, dt)

    def fail(t, p):
        if t >= 120:
            p.fan_dead = [True] * 4
    hist, events = run(sup, plant, 120.0, 300, dt, hook=fail)
    peak = max(h[1] for h in hist)
    assert peak < S21['temp_danger_c'], peak
    off_at = next(h[0] for h in hist if not any(b['enable'] for b in h[2]['boards']))
    assert off_at <= 120 + 3 * dt
    assert all(h[2]['fan_duty_pct'] == [100] * 4 for h in hist if h[0] >= off_at)
    assert 'rig.fans_lost' in ids(events)
    assert sup.get_status()['state'] == 'dangerous'
    # Boards stay off while the fans are dead, however long it cools.
    assert not any(b['enable'] for b in hist[-1][2]['boards'])


def test_fans_fail_one_by_one_derate_then_off():
    """Fans 100 %, derate by lost airflow, and boards off when none is left, before dangerous."""
    sup, plant = fresh()
    run(sup, plant, 0.0, 120)
    caps = {}

    def fail(t, p):
        for k in range(4):
            if t >= 120 + 40 * k:
                p.fan_dead[k] = True
    hist, events = run(sup, plant, 120.0, 300, hook=fail)
    for h in hist:
        if any(b['enable'] for b in h[2]['boards']):
            caps.setdefault(round(max(b['freq_cap_pct'] for b in h[2]['boards'])), h[0])
    assert max(h[1] for h in hist) < S21['temp_danger_c']
    # Derate steps by lost airflow: 3/4 -> ~79 %, 2/4 -> ~57 %, 1/4 -> ~33 %.
    assert 79 in caps and 57 in caps and 33 in caps
    assert caps[79] < caps[57] < caps[33]
    assert all(h[2]['fan_duty_pct'] == [100] * 4 for h in hist if h[0] >= 125)
    off = [h for h in hist if not any(b['enable'] for b in h[2]['boards'])]
    assert off and off[0][0] >= 240
    assert 'rig.airflow' in ids(events) and 'rig.fans_lost' in ids(events)


def test_one_fan_of_four_fails_derate_keep_mining():
    sup, plant = fresh()
    run(sup, plant, 0.0, 120)

    def fail(t, p):
        p.fan_dead[2] = t >= 120
    hist, events = run(sup, plant, 120.0, 600, hook=fail)
    last = hist[-1][2]
    assert all(b['enable'] for b in last['boards'])
    cap = 100.0 * 0.75 ** 0.8
    assert all(abs(b['freq_cap_pct'] - cap) < 0.2 for b in last['boards'])
    assert last['fan_duty_pct'] == [100] * 4
    assert 'fan2.stopped' in ids(events) and 'rig.airflow' in ids(events)
    assert 'rig.fans_lost' not in ids(events)
    assert max(h[1] for h in hist) < S21['temp_hot_c']
    st = sup.get_status()
    assert st['state'] == 'hot' and st['fans'][2]['lost'] and st['airflow_pct'] == 75.0
    # Fan comes back: alarm clears, caps return to 100 %.
    def heal(t, p):
        p.fan_dead[2] = False
    hist, events = run(sup, plant, 720.0, 120, hook=heal)
    assert 'fan2.stopped' in ids(events, 'clear') and 'rig.airflow' in ids(events, 'clear')
    assert all(b['freq_cap_pct'] == 100.0 for b in hist[-1][2]['boards'])


def test_blocked_airflow_with_lying_tachs_escalates_to_off():
    """Cooling fails but every tach looks fine: the thermal machine must still catch it."""
    sup, plant = fresh()
    run(sup, plant, 0.0, 120)

    def block(t, p):
        p.block = 0.25 if t >= 120 else 1.0
    hist, events = run(sup, plant, 120.0, 400, hook=block)
    peak = max(h[1] for h in hist)
    assert peak < S21['temp_danger_c'], peak
    raised = ids(events)
    # Dies cross hot: fans 100 %, derate; still rising: tripped off before dangerous.
    hot_t = min(e['now_s'] for e in events if e['id'].endswith('.hot'))
    danger_t = min(e['now_s'] for e in events if e['id'].endswith('.dangerous'))
    assert hot_t < danger_t
    assert any('frequency capped at 90 %' in e['message'] or 'capped at 85 %' in e['message']
               for e in events) or min(b['freq_cap_pct'] for h in hist for b in h[2]['boards']) < 95.0
    assert all(h[2]['fan_duty_pct'] == [100] * 4 for h in hist if h[0] >= hot_t)
    # Blockage still there at the end: no board is back at full frequency.
    last = hist[-1][2]['boards']
    assert all((not b['enable']) or b['freq_cap_pct'] < 100.0 for b in last)
    assert 'board0.dangerous' in raised


def test_sensor_stuck_at_30_detected_and_fans_do_not_slow():
    cfg = {'control_source': 'board'}
    sup_ref, plant_ref = fresh(cfg, duty=40.0)
    sup, plant = fresh(cfg, duty=40.0)
    # Load change so that the dies move: start derated, then full load.
    for p in (plant, plant_ref):
        p.power_scale = 0.6
        for _ in range(300):
            p.step(1.0)

    def load(t, p):
        p.power_scale = 1.0 if t >= 30 else 0.6
    plant.sensor_override[(0, 1)] = 30.0
    ref, _ = run(sup_ref, plant_ref, 0.0, 400, hook=load)
    hist, events = run(sup, plant, 0.0, 400, hook=load)
    assert 'board0.sensor1.stuck' in ids(events) or 'board0.sensor1.implausible' in ids(events)
    flagged = min(e['now_s'] for e in events if e['id'].startswith('board0.sensor1'))
    assert flagged <= 120
    for h, r in zip(hist, ref):
        assert h[2]['fan_duty_pct'][0] >= r[2]['fan_duty_pct'][0] - 1e-9, (h[0], h, r)
    after = [h for h in hist if h[0] >= flagged]
    assert all(h[2]['fan_duty_pct'] == [100] * 4 for h in after)
    assert all(h[2]['boards'][0]['freq_cap_pct'] <= 85.0 for h in after)
    st = sup.get_status()['boards'][0]
    assert st['state'] == 'hot' and 1 in st['sensors_bad']


@pytest.mark.parametrize('source', ['die', 'board'])
def test_sensor_freezes_at_30_in_steady_state_with_noise(source):
    """Like the simulator's sensor-stuck fault: readings are noisy, one freezes at 30 degC
    while nothing else moves; its board-mate's jitter gives it away."""
    runs = []
    for stuck in (False, True):
        sup, plant = fresh({'control_source': source})
        plant.rng = random.Random(7)
        def fault(t, p, stuck=stuck):
            if stuck and t >= 100:
                p.sensor_override[(2, 1)] = 30.0
        runs.append(run(sup, plant, 0.0, 300, hook=fault) + (sup,))
    (ref, ref_ev, _), (hist, events, sup) = runs
    assert not ref_ev
    assert 'board2.sensor1.stuck' in ids(events)
    flagged = min(e['now_s'] for e in events if e['id'] == 'board2.sensor1.stuck')
    assert flagged <= 100 + 60 + 2
    # Before it is flagged, the frozen reading may only cost noise-level duty (the PID follows the
    # hottest sensor of all boards, floored by the dies); once flagged, fans go to 100 %.
    for h, r in zip(hist, ref):
        assert h[2]['fan_duty_pct'][0] >= r[2]['fan_duty_pct'][0] - (2 if h[0] < flagged else 0), h[0]
    assert all(h[2]['fan_duty_pct'] == [100] * 4 for h in hist if h[0] >= flagged)
    assert sup.get_status()['boards'][2]['sensors_bad'] == [1]


def test_board_mode_single_board_stuck_low_sensor_cannot_slow_fans():
    """One-board rig, PID on board sensors, both sensors read far too low (not yet flagged):
    the die floor keeps the fans where the dies need them."""
    sup = Supervisor(GAMMA, {'control_source': 'board', 'sensor_disagree_c': 0})
    duties = []
    for t in range(60):
        a = sup.tick({'now_s': float(t), 'boards': [{'index': 0, 'enabled': True,
                      'sensors_c': [30.0 + 0.01 * (t % 2), 31.0 + 0.01 * (t % 3)],
                      'die_c': [70.0], 'chips_alive': [True]}],
                      'fans': [{'duty_pct': 60, 'rpm': 3000}], 'power_w': 18.0})
        duties.append(a['fan_duty_pct'][0])
    # Die 70 > target 65: fans must not fall below where they started.
    assert min(duties[1:]) >= 60 and duties[-1] > 60


def test_sensor_stuck_at_30_with_hot_dies_is_implausible():
    sup = Supervisor(S21)
    for t in range(40):
        snap = synthetic(t, dies=[76.0 + 0.01 * (t % 3)] * 108, sensors=[30.0, 70.0 + 0.01 * t])
        act = sup.tick(snap)
    st = sup.get_status()['boards'][0]
    assert 'board0.sensor0.implausible' in st['alarms']
    assert act['fan_duty_pct'] == [100] * 4 and act['boards'][0]['freq_cap_pct'] <= 85.0


@pytest.mark.parametrize('bad,kind', [(None, 'absent'), (float('nan'), 'absent'), ('hot', 'absent'),
                                      (-40.0, 'range'), (151.0, 'range'), (True, 'absent')])
def test_sensor_absent_or_out_of_range_treated_hot(bad, kind):
    sup, plant = fresh()
    plant.sensor_override[(1, 0)] = bad
    hist, events = run(sup, plant, 0.0, 60)
    assert 'board1.sensor0.' + kind in ids(events)
    last = hist[-1][2]
    assert last['fan_duty_pct'] == [100] * 4
    assert last['boards'][1]['freq_cap_pct'] <= 85.0 and last['boards'][1]['enable']
    assert last['boards'][0]['freq_cap_pct'] == 100.0
    assert sup.get_status()['boards'][1]['state'] == 'hot'


def test_power_over_limit_derates_until_under():
    sup, plant = fresh({'power_limit_w': 3300.0})
    hist, events = run(sup, plant, 0.0, 300)
    assert hist[0][2]['events'] and 'rig.power_over' in ids(events)
    late = [plant.power_w()] + [h for h in hist if h[0] >= 200]
    assert plant.power_w() < 3300.0
    caps = [b['freq_cap_pct'] for b in hist[-1][2]['boards']]
    assert all(c < 100.0 for c in caps) and all(b['enable'] for b in hist[-1][2]['boards'])
    assert 'rig.power_over' in ids(events, 'clear')
    # Limit comfortably met again (load drops): caps climb back to 100 %.
    def light(t, p):
        p.power_scale = 0.7
    hist, events = run(sup, plant, 300.0, 400, hook=light)
    assert all(b['freq_cap_pct'] == 100.0 for b in hist[-1][2]['boards'])
    assert late


def synthetic(t, dies, sensors=None, fans_rpm=3600, duty=60, power=3500.0, enabled=True,
              boards=3):
    if sensors is None:   # air sensors a little below the coolest die, as on a real board
        known = [v for v in dies if v is not None]
        base = min(known) if known else 40.0
        sensors = (base - 10.0, base - 2.0)
    out = []
    for b in range(boards):
        d = [(v + 0.001 * b) if v is not None else None for v in dies]
        s = [(v + 0.0001 * t) if isinstance(v, float) else v for v in sensors]
        out.append({'index': b, 'enabled': enabled, 'sensors_c': s, 'die_c': d,
                    'chips_alive': [v is not None for v in d], 'voltage_mv': 14400})
    return {'now_s': float(t), 'boards': out, 'fans': [{'duty_pct': duty, 'rpm': fans_rpm}] * 4,
            'power_w': power}


def drive(sup, temps, t0=0):
    """temps: list of (seconds, die_c); one tick per second. Returns ticks (t, actions)."""
    out = []
    t = t0
    for secs, temp in temps:
        for _ in range(int(secs)):
            out.append((t, sup.tick(synthetic(t, [temp] * 108))))
            t += 1
    return out


def test_hysteresis_and_hold_off_on_recovery():
    # hot 85, hysteresis 5, hold 60 s, step 5 % per 10 s; the step changes below are not
    # physical, so the rise-rate trip is off here (tested on its own).
    sup = Supervisor(S21, {'trend_lead_s': 0.0})
    ticks = drive(sup, [(10, 70.0), (35, 86.0), (200, 82.0), (59, 79.0), (1, 79.0), (100, 79.0)])
    at = dict((t, a) for t, a in ticks)
    st = lambda t: at[t]['boards'][0]['freq_cap_pct']
    assert st(9) == 100.0
    assert st(10) == 95.0 and st(20) == 90.0 and st(30) == 85.0 and st(40) == 80.0  # stepping down
    # 82 degC: below hot but above hot - hysteresis: hold, neither down nor up.
    assert all(st(t) == 80.0 for t in range(45, 245))
    assert all(at[t]['fan_duty_pct'] == [100] * 4 for t in range(10, 245))
    # 79 degC: recover only after the 60 s hold-off, then step up.
    assert all(st(t) == 80.0 for t in range(245, 305))
    assert st(315) == 85.0 and st(345) == 100.0
    events = [e for _, a in ticks for e in a['events'] if e['board'] == 0]
    seq = [(e['id'], e['action']) for e in events]
    assert seq == [('board0.hot', 'raise'), ('board0.hot', 'clear'), ('board0.cooldown', 'raise'),
                   ('board0.cooldown', 'clear')]
    assert '86.0 °C ≥ hot 85 °C' in events[0]['message']
    assert sup.get_status()['boards'][0]['state'] == 'normal'


def test_dangerous_cooldown_and_latching_after_repeated_trips():
    sup = Supervisor(S21, {'max_trips': 3, 'hold_s': 30.0})
    t = 0
    trips = 0
    for cycle in range(3):
        a = sup.tick(synthetic(t, [96.2] * 108))
        trips += 1
        b0 = a['boards'][0]
        assert not b0['enable']
        ev = [e for e in a['events'] if e['board'] == 0 and e['action'] == 'raise']
        if cycle < 2:
            assert ev[0]['id'] == 'board0.dangerous'
            assert 'die 96.2 °C ≥ dangerous 95 °C, board powered off' in ev[0]['message']
        else:
            assert ev[-1]['id'] == 'board0.off' and 'latched' in ev[-1]['message']
            break
        # Disabled: dies unreadable, sensors cool. Hold-off 30 s below 80 degC before enable.
        t += 1
        enabled_at = None
        for k in range(120):
            on = sup.boards[0].enable
            a = sup.tick(synthetic(t, [60.0] * 108 if on else [],
                                   sensors=None if on else [30.0, 35.0], enabled=on))
            if a['boards'][0]['enable'] and enabled_at is None:
                enabled_at = t
                assert a['boards'][0]['freq_cap_pct'] == 50.0
            t += 1
        assert enabled_at is not None and enabled_at >= 30
    st = sup.get_status()['boards'][0]
    assert st['state'] == 'off' and st['trips'] == 3 and 'latched' in st['reason']
    # Stays off however cold it gets, until reset.
    for k in range(300):
        a = sup.tick(synthetic(t, [], sensors=[25.0, 25.0], enabled=False))
        t += 1
    assert not any(b['enable'] for b in a['boards'])   # all three boards saw 96.2 degC
    assert sup.reset(0, now_s=t) == [0]                # only board 0 is unlatched
    with pytest.raises(ValueError):
        sup.reset(7)
    for k in range(40):
        a = sup.tick(synthetic(t, [], sensors=[25.0, 25.0], enabled=sup.boards[0].enable))
        t += 1
    assert a['boards'][0]['enable'] and sup.get_status()['boards'][0]['state'] == 'cooldown'
    assert not a['boards'][1]['enable'] and sup.get_status()['boards'][1]['state'] == 'off'
    assert sup.reset(now_s=t) == [1, 2]


def test_fast_rise_trips_before_dangerous():
    sup = Supervisor(S21)
    ticks = drive(sup, [(5, 75.0), (1, 78.0), (1, 82.0), (1, 86.0)])
    off = [t for t, a in ticks if not a['boards'][0]['enable']]
    assert off and off[0] <= 6          # tripped at 82 degC, far below 95
    msg = [e['message'] for t, a in ticks for e in a['events'] if e['id'] == 'board0.dangerous'][0]
    assert 'rising' in msg and 'would pass dangerous 95 °C' in msg
    # A slow climb through the same temperatures does not trip (it derates instead).
    sup = Supervisor(S21)
    ticks = drive(sup, [(1, 75.0 + 0.1 * k) for k in range(120)])
    assert all(a['boards'][0]['enable'] for t, a in ticks)


def test_dead_chips_marked_rest_keep_running():
    sup = Supervisor(S21)
    dies = [70.0] * 108
    dies[5] = dies[50] = dies[77] = None
    events = []
    for t in range(100):
        a = sup.tick(synthetic(t, dies))
        events.extend(a['events'])
    dead = [e for e in events if e['id'] == 'board0.dead_chips']
    assert len(dead) == 1 and '3 of 108 chips' in dead[0]['message']
    assert a['boards'][0]['enable'] and a['boards'][0]['freq_cap_pct'] == 100.0
    assert sup.get_status()['boards'][0]['dead_chips'] == 3


def test_whole_board_dies_unreadable_treated_hot_then_blind_off():
    sup = Supervisor(S21)
    for t in range(50):   # start-up grace: chains still initialising, no die readings yet
        a = sup.tick(synthetic(t, [], sensors=[40.0, 50.0 + 0.01 * t]))
        assert not a['events'] and a['boards'][0]['freq_cap_pct'] == 100.0
    for t in range(50, 70):
        a = sup.tick(synthetic(t, [70.0] * 108))
    for t in range(70, 90):
        a = sup.tick(synthetic(t, [None] * 108))
    assert sup.get_status()['boards'][0]['state'] == 'hot'
    assert a['fan_duty_pct'] == [100] * 4 and a['boards'][0]['freq_cap_pct'] < 100.0
    # Nothing readable at all (dies and sensors): off after blind_max_s.
    for t in range(90, 110):
        a = sup.tick(synthetic(t, [None] * 108, sensors=[None, None]))
    assert not a['boards'][0]['enable']


def test_watchdog_expiry_and_safe_state():
    wd = Watchdog(10.0)
    assert not wd.expired(100.0)             # not armed before the first kick
    wd.kick(100.0)
    assert not wd.expired(110.0) and wd.expired(110.5)
    assert wd.check(111.0) == 'trip' and wd.check(112.0) is None
    assert wd.expired(float('nan'))          # cannot tell: fail safe
    assert wd.kick(113.0) is True and not wd.expired(114.0)
    with pytest.raises(ValueError):
        Watchdog(0)
    safe = safe_actions(S21)
    assert safe['fan_duty_pct'] == [100] * 4
    assert [b['enable'] for b in safe['boards']] == [False] * 3
    # After a stall the supervisor brings boards back only through cooldown.
    sup = Supervisor(S21)
    sup.tick(synthetic(0, [70.0] * 108))
    sup.note_stall(15.0, 15.0)
    a = sup.tick(synthetic(15, [], enabled=False))
    assert not any(b['enable'] for b in a['boards'])
    assert any('stalled' in e['message'] for e in a['events'])


MALFORMED = [
    None, 'snapshot', 42, [], {},
    {'now_s': 'soon'},
    {'now_s': float('nan'), 'boards': None, 'fans': None, 'power_w': None},
    {'now_s': 1.0, 'boards': 'x', 'fans': 'y', 'power_w': 'lots'},
    {'now_s': 1.0, 'boards': [None, 5, 'b'], 'fans': [None, 'f', 3, {}], 'power_w': float('inf')},
    {'now_s': 1.0, 'boards': [{'index': 'zero', 'die_c': 'hot'}], 'fans': [{'duty_pct': 'max', 'rpm': 'fast'}] * 4},
    {'now_s': 1.0, 'boards': [{'index': 0, 'enabled': 'yes', 'sensors_c': 'warm', 'die_c': [float('nan')] * 108,
                               'chips_alive': 'all'}], 'fans': [{'duty_pct': 60, 'rpm': -5}] * 4, 'power_w': -1},
    {'now_s': 1.0, 'boards': [{'index': True, 'sensors_c': [None, {}], 'die_c': [[], {}, 'x', 1e308 * 10]}],
     'fans': [{'duty_pct': float('nan'), 'rpm': float('nan')}] * 4, 'power_w': [3500]},
]


@pytest.mark.parametrize('snap', MALFORMED)
def test_malformed_snapshots_never_raise_and_are_unsafe(snap):
    sup = Supervisor(S21)
    # A healthy history first, so that "unsafe" has something to differ from.
    for t in range(40):
        a = sup.tick(synthetic(t, [70.0] * 108))
    assert a['fan_duty_pct'][0] < 100
    if isinstance(snap, dict) and 'now_s' in snap and snap['now_s'] == 1.0:
        snap = dict(snap, now_s=40.0)
    for k in range(6):
        if isinstance(snap, dict) and isinstance(snap.get('now_s'), float) and snap['now_s'] == snap['now_s']:
            snap = dict(snap, now_s=40.0 + k)
        a = sup.tick(snap)
        assert a['fan_duty_pct'] == [100] * 4
        assert len(a['boards']) == 3
        for b in a['boards']:
            assert b['freq_cap_pct'] <= 100.0
    st = sup.get_status()
    assert st['state'] != 'normal'
    assert st['alarms']


def test_fan_rpm_implausible_and_unreadable_count_as_lost():
    sup = Supervisor(S21)
    events = []
    for t in range(40):
        s = synthetic(t, [70.0] * 108)
        s['fans'] = [{'duty_pct': 60, 'rpm': 3600}, {'duty_pct': 60, 'rpm': 99999},
                     {'duty_pct': 60, 'rpm': None if t >= 10 else 3600}, {'duty_pct': 60, 'rpm': 3590}]
        a = sup.tick(s)
        events.extend(a['events'])
        if t == 10:   # unreadable for the first tick: fans full, not yet counted lost
            assert a['fan_duty_pct'] == [100] * 4
    assert 'fan1.implausible' in ids(events) and 'fan2.unreadable' in ids(events)
    assert sup.get_status()['airflow_pct'] == 50.0
    assert all(abs(b['freq_cap_pct'] - 100 * 0.5 ** 0.8) < 0.2 for b in a['boards'])


def test_gamma_single_fan_lost_is_off():
    sup = Supervisor(GAMMA)
    for t in range(20):
        a = sup.tick({'now_s': float(t), 'boards': [{'index': 0, 'enabled': True, 'sensors_c': [40.0 + t * 0.01, 55.0],
                                                      'die_c': [60.0], 'chips_alive': [True]}],
                      'fans': [{'duty_pct': 60, 'rpm': 0 if t >= 10 else 3000}], 'power_w': 18.0})
    assert not a['boards'][0]['enable'] and a['fan_duty_pct'] == [100]


@pytest.mark.parametrize('cfg,key', [
    ({'temp_hot_c': 96.0}, 'temp_hot_c'),
    ({'temp_danger_c': 99.0}, 'temp_danger_c'),
    ({'temp_hot_c': 70.0}, 'temp_target_c'),
    ({'power_limit_w': 5000.0}, 'power_limit_w'),
    ({'hold_s': -1}, 'hold_s'),
    ({'hysteresis_c': 'five'}, 'hysteresis_c'),
    ({'max_trips': 2.5}, 'max_trips'),
    ({'max_trips': True}, 'max_trips'),
    ({'derate_step_pct': float('nan')}, 'derate_step_pct'),
    ({'wobble_s': 1}, 'wobble_s'),
    ({'control_source': 'air'}, 'control_source'),
    ({'fan': {'kp': -2}}, 'fan.kp'),
    ({'recover_start_pct': 20.0}, 'recover_start_pct'),
])
def test_bad_config_raises_naming_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        Supervisor(S21, cfg)


def test_config_overrides_and_model_defaults():
    sup = Supervisor(S21, {'temp_hot_c': 80.0, 'temp_danger_c': 90.0, 'temp_target_c': 0,
                           'power_limit_w': 0, 'fan': {'mode': 'manual', 'manual_duty_pct': 70}})
    lim = sup.get_status()['limits']
    assert lim == {'temp_target_c': 75.0, 'temp_hot_c': 80.0, 'temp_danger_c': 90.0, 'power_limit_w': 4000.0}
    a = sup.tick(synthetic(0, [70.0] * 108))
    assert a['fan_duty_pct'] == [70] * 4
    a = sup.tick(synthetic(1, [81.0] * 108))
    assert a['fan_duty_pct'] == [100] * 4            # safety overrides manual
    with pytest.raises(ValueError):
        sup.set_fan_mode('manual', 101)


def test_board_that_ignores_disable_is_still_watched():
    sup = Supervisor(S21)
    a = sup.tick(synthetic(0, [96.0] * 108))
    assert not a['boards'][0]['enable']
    events = []
    for t in range(1, 10):   # hardware keeps the board powered and hot
        a = sup.tick(synthetic(t, [96.0] * 108, enabled=True))
        events.extend(a['events'])
        assert not a['boards'][0]['enable'] and a['fan_duty_pct'] == [100] * 4
    assert 'board0.disable_failed' in ids(events)
    assert sup.get_status()['boards'][0]['state'] == 'dangerous'   # not "cooled" on sensors alone


def test_fuzzed_snapshots_never_raise():
    rng = random.Random(1234)
    junk = [None, 'x', float('nan'), float('inf'), -1e9, 1e9, True, [], {}, -5, 0, 3600, 75.0, 200.0]

    def pick(good):
        return good if rng.random() < 0.6 else rng.choice(junk)
    sup = Supervisor(S21)
    for t in range(400):
        boards = []
        for b in range(rng.choice([0, 1, 3, 4])):
            boards.append(pick({'index': pick(b), 'enabled': pick(True),
                                'sensors_c': pick([pick(50.0), pick(60.0)]),
                                'die_c': pick([pick(70.0 + rng.random()) for _ in range(rng.choice([0, 5, 108, 200]))]),
                                'chips_alive': pick([pick(True)] * 108), 'voltage_mv': pick(14400)}))
        snap = pick({'now_s': pick(float(t)), 'boards': pick(boards),
                     'fans': pick([pick({'duty_pct': pick(60), 'rpm': pick(3600)}) for _ in range(rng.choice([0, 4, 6]))]),
                     'power_w': pick(3500.0)})
        a = sup.tick(snap)
        assert len(a['fan_duty_pct']) == 4 and all(0 <= d <= 100 for d in a['fan_duty_pct'])
        assert [b['index'] for b in a['boards']] == [0, 1, 2]
        assert all(0.0 <= b['freq_cap_pct'] <= 100.0 for b in a['boards'])
        sup.get_status()



# --- the simulator's own physics (hal/sim/rig.py SimRig, in process, no ptys) -----------------

def _sim_snapshot(rig, t, rng):
    boards = []
    for b in range(len(rig.chains)):
        on = rig.board_on(b)
        dies = [round(rig.temps[b][i] + rng.gauss(0.0, 0.5), 2) if not c.silicon['dead'] else None
                for i, c in enumerate(rig.chains[b].chips)] if on else []
        boards.append({'index': b, 'enabled': rig.enabled[b],
                       'sensors_c': [rig.sensor_c(b, k) for k in range(2)],
                       'die_c': dies, 'chips_alive': [d is not None for d in dies]})
    fans = [{'duty_pct': int(round(rig.fan_duty[f] * 100)),
             'rpm': int(rig.fan_rpm[f] * (1.0 + rng.uniform(-0.01, 0.01)))} for f in range(len(rig.fan_rpm))]
    return {'now_s': t, 'boards': boards, 'fans': fans,
            'power_w': rig.wall_w() * (1.0 + rng.uniform(-0.01, 0.01))}


def _sim_apply(rig, act, f_nom_mhz):
    for k, d in enumerate(act['fan_duty_pct']):
        rig.set_fan_duty(k, d / 100.0)
    for b in act['boards']:
        i = b['index']
        if rig.enabled[i] != b['enable']:
            rig.set_enabled(i, b['enable'])
        if b['enable']:
            for c in rig.chains[i].chips:
                c.freq_mhz = f_nom_mhz * b['freq_cap_pct'] / 100.0


def _sim_fault(kind):
    def apply(rig, t):
        if t < 200:
            return
        if kind == 'fans-stop':
            rig.fan_stopped = [True] * len(rig.fan_stopped)
        elif kind == 'fan-stop':
            rig.fan_stopped[1] = True
        elif kind == 'sensor-stuck':
            rig.sensor_fault[(1, 1)] = 30.0
        elif kind == 'sensor-absent':
            rig.sensor_fault[(2, 0)] = None
        elif kind == 'ambient':
            rig.ambient_c = 45.0
    return apply


# kind, tick s, raised alarm ids expected, boards enabled at the end, max final cap, hottest die limit
SIM_SCENARIOS = [
    ('none', 1.0, [], True, 100.0, 'temp_hot_c'),
    ('fans-stop', 1.0, ['rig.fans_lost', 'board0.dangerous'], False, 100.0, 'temp_danger_c'),
    ('fans-stop', 2.0, ['rig.fans_lost', 'board0.dangerous'], False, 100.0, 'temp_danger_c'),
    ('fan-stop', 1.0, ['fan1.stopped', 'rig.airflow'], True, 79.5, 'temp_hot_c'),
    ('sensor-stuck', 1.0, ['board1.sensor1.stuck'], True, 100.0, 'temp_hot_c'),
    ('sensor-absent', 1.0, ['board2.sensor0.absent'], True, 100.0, 'temp_hot_c'),
    ('ambient', 1.0, [], True, 100.0, 'temp_danger_c'),
]


@pytest.mark.parametrize('kind,dt,alarms,enabled,max_cap,peak_key', SIM_SCENARIOS)
def test_against_simulator_physics(kind, dt, alarms, enabled, max_cap, peak_key):
    from hal.sim.rig import SimRig
    rig = SimRig(S21, seed=1, fan_duty_pct=60.0)
    f_nom = S21['f_nom_mhz']
    rig.warm_start(f_nom)            # the strict chips hash (and heat) only once brought up
    for k in range(1, 301):          # reach full-load steady state at 60 % fans
        rig.step(float(k))
    sup, rng, fault = Supervisor(S21), random.Random(5), _sim_fault(kind)
    t, peak, events = 300.0, 0.0, []
    while t < 300.0 + 500.0:
        fault(rig, t - 300.0)
        act = sup.tick(_sim_snapshot(rig, t, rng))
        _sim_apply(rig, act, f_nom)
        events.extend(act['events'])
        t += dt
        rig.step(t)
        if t > 310.0:
            peak = max(peak, max(max(x) for x in rig.temps))
    assert peak < S21[peak_key], (kind, peak)
    raised = ids(events)
    for a in alarms:
        assert a in raised, (kind, raised)
    if kind == 'none':
        assert raised == []
    last = act['boards']
    assert all(b['enable'] == enabled for b in last), last
    assert all(b['freq_cap_pct'] <= max_cap for b in last)
    if kind != 'none':
        # Every fault ran the fans at 100 % from detection (the ambient case: the PID did).
        assert act['fan_duty_pct'][0] >= 95


# --- pure core: the same scenario gives the same actions under MicroPython 1.27 -----------------

MPY_SCRIPT = """
from hal import models
from agent.fan import FanControl
from agent.safety import Supervisor, Watchdog, safe_actions
sup = Supervisor(models.get('S21'))
for t in range(80):
    dies = [70.0 + 0.2 * t] * 108
    if t > 30:
        dies[3] = None
    snap = {'now_s': float(t), 'boards': [{'index': b, 'enabled': True,
            'sensors_c': [dies[0] - 10 + 0.01 * t, 65.0 + 0.01 * (t % 7)], 'die_c': dies,
            'chips_alive': [d is not None for d in dies]} for b in range(3)],
            'fans': [{'duty_pct': 60, 'rpm': 3600 if t < 60 else 0}] * 4, 'power_w': 3500.0 + 10 * t}
    a = sup.tick(snap)
    # caps through %.1f: MicroPython's round() may return 94.40000000000001 where CPython has 94.4
    print(repr((t, a['fan_duty_pct'], [(b['enable'], '%.1f' % b['freq_cap_pct']) for b in a['boards']])))
    for e in a['events']:
        print(e['id'] + ' ' + e['action'] + ' ' + e['message'])   # repr() escapes differ for non-ASCII
print(repr(sup.tick(None)['fan_duty_pct']))
st = sup.get_status()
print(repr((st['state'], [b['state'] for b in st['boards']], st['alarms'])))
wd = Watchdog(10)
wd.kick(0.0)
print(repr((wd.expired(5.0), wd.expired(11.0), wd.check(12.0),
            [sorted(b.items()) for b in safe_actions(models.get('GAMMA'))['boards']])))
fc = FanControl(75.0)
print(repr([int(fc.update(float(t), die_c=80.0) * 1000) for t in range(5)]))
"""
MPY_MODULES = ['hal/__init__.py', 'hal/models.py', 'agent/__init__.py', 'agent/options.py',
               'agent/alarms.py', 'agent/fan.py',
               'agent/safety/__init__.py', 'agent/safety/config.py', 'agent/safety/board.py',
               'agent/safety/detectors.py', 'agent/safety/supervisor.py', 'agent/safety/watchdog.py',
               'agent/safety/watch.py']


def test_pure_core_same_under_micropython(tmp_path):
    import io
    from contextlib import redirect_stdout
    from tests import mpyunix
    buf = io.StringIO()
    with redirect_stdout(buf):
        exec(MPY_SCRIPT, {})
    path = tmp_path / 'safety_mpy.py'
    path.write_text(MPY_SCRIPT)
    proc = mpyunix.run(path, MPY_MODULES, tmp_path / 'lib', vendor=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    want = buf.getvalue().splitlines()
    assert 'fans_lost' in buf.getvalue() and 'dead_chips' in buf.getvalue()   # the scenario bites
    assert proc.stdout.splitlines() == want


@pytest.mark.parametrize('outage_s,boards_off', [(5, False), (15, True)])
def test_fan_tach_outage_short_is_tolerated_long_is_not(outage_s, boards_off):
    sup = Supervisor(S21)
    off = False
    for t in range(80):
        s = synthetic(t, [70.0] * 108)
        if 40 <= t < 40 + outage_s:
            s['fans'] = [{'duty_pct': 60, 'rpm': None}] * 4
            a = sup.tick(s)
            assert a['fan_duty_pct'] == [100] * 4
        else:
            s['fans'] = [{'duty_pct': 100 if t >= 40 else 60, 'rpm': 6000 if t >= 40 else 3600}] * 4
            a = sup.tick(s)
        off = off or not a['boards'][0]['enable']
    assert off == boards_off
