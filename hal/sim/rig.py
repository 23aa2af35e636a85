"""The simulated rig: chains of chips, board power rails, fans and ambient, stepped in time.

Ties hal/sim/physics.py (pure model) to the chip state machines (hal/sim/chips.py). Time here is
simulated seconds; the event loop (hal/sim/main.py) converts from wall time with --time-scale.
"""

import random

from hal import families
from hal.sim import physics as P
from hal.sim.chips import Chain

SENSOR_POS = (0.15, 0.85)


class SimRig:
    def __init__(self, model, seed=1, sigma_f=P.SIGMA_F, sigma_l=P.SIGMA_L,
                 ambient_c=P.AMBIENT_C, fan_duty_pct=100.0, overrides=(), lots=(),
                 immersion=False):
        self.model = model
        self.seed = seed
        self.sigma_f = sigma_f
        self.sigma_l = sigma_l
        self.cal = cal = P.immersed(P.calibrate(model)) if immersion else P.calibrate(model)
        self.immersion = bool(immersion)   # in coolant at ambient_c: no fans (spec)
        self.family = families.get(model['chip'])
        self.pop = P.population(cal, random.Random(seed), sigma_f, sigma_l)
        lot_rng = random.Random(seed * 104729 + 11)
        for lot in lots:                 # second silicon lots: {'fraction', 'speed', 'leak'}
            P.bimodal(self.pop, lot_rng, lot['fraction'], lot['speed'], lot['leak'])
        if overrides:                    # per-chip: {'board', 'chip', speed/leak/cap/dead}
            P.apply_overrides(self.pop, overrides)
        self.rng = random.Random(seed * 1000003 + 17)      # run-time noise, not silicon
        self.chains = [Chain(self.family, self.pop[b], cal['cores_per_chip'], cal['f_nom_mhz'],
                             random.Random(seed * 7919 + b + 1)) for b in range(cal['boards'])]
        nb = cal['boards']
        self.board_mv = [model['stock_board_mv']] * nb
        self.enabled = [True] * nb
        duty = fan_duty_pct / 100.0
        self.fan_duty = [duty] * cal['fans']
        self.fan_rpm = [0.0 if immersion else duty * cal['rpm_max']] * cal['fans']
        self.fan_stopped = [bool(immersion)] * cal['fans']   # a tank has no fans turning
        self.ambient_c = ambient_c
        self.ambient_ramp = None   # (t0, from_c, to_c, ramp_s)
        self.sensor_fault = {}     # (board, sensor) -> None (absent) or stuck value_c
        self.t_s = 0.0
        # Start from the steady state of the start-up settings ("the rig has been idling").
        self.temps = [[] for _ in range(nb)]
        self.powers = [[] for _ in range(nb)]
        self.settle()

    def settle(self):
        """Jump every board to the steady state of its current settings."""
        d = self.airflow_d()
        for b in range(len(self.chains)):
            chips = self.chains[b].chips
            st = P.board_steady_state(self.cal, self.pop[b],
                                      [c.freq_mhz if c.hashing() else 0.0 for c in chips],
                                      self.chip_v(b), d, self.ambient_c, self.board_on(b))
            self.temps[b] = list(st['t_c'])
            self.powers[b] = list(st['p_w'])
            for i, c in enumerate(chips):
                c.temp_c = st['t_c'][i]
                c.fmax_mhz = st['fmax_mhz'][i]

    def warm_start(self, freq_mhz=None):
        """Chips as a previous host left them: brought up by the real driver (hal/chain.py)
        at freq_mhz (model f_nom), still at the reset baud, boards at steady state."""
        from hal.sim.link import bring_up
        for chain in self.chains:
            bring_up(chain, self.model, freq_mhz, self.seed)
        self.settle()

    # ------------------------------------------------------------ settings

    def board_on(self, b):
        return self.enabled[b] and self.board_mv[b] > 0

    def chip_v(self, b):
        return P.chip_v(self.cal, self.board_mv[b]) if self.board_on(b) else 0.0

    def set_board_mv(self, board, mv):
        """board None = every board (the rig rail)."""
        for b in (range(len(self.board_mv)) if board is None else (board,)):
            self.board_mv[b] = mv
            self.chains[b].set_power(self.board_on(b), self.t_s)

    def set_enabled(self, board, on):
        for b in (range(len(self.enabled)) if board is None else (board,)):
            self.enabled[b] = bool(on)
            self.chains[b].set_power(self.board_on(b), self.t_s)

    def set_fan_duty(self, fan, duty):
        for f in (range(len(self.fan_duty)) if fan is None else (fan,)):
            self.fan_duty[f] = duty

    def airflow_d(self):
        return sum(self.fan_rpm) / (len(self.fan_rpm) * self.cal['rpm_max'])

    # ------------------------------------------------------------ time

    def step(self, t_s):
        """Advance the physics to simulated time t_s; returns dt_s."""
        dt = t_s - self.t_s
        if dt <= 0.0:
            return 0.0
        cal = self.cal
        if self.ambient_ramp is not None:
            t0, a0, a1, ramp = self.ambient_ramp
            frac = 1.0 if ramp <= 0 else min(1.0, max(0.0, (t_s - t0) / ramp))
            self.ambient_c = a0 + (a1 - a0) * frac
        rpm_max = cal['rpm_max']
        for f in range(len(self.fan_rpm)):
            target = 0.0 if self.fan_stopped[f] else self.fan_duty[f] * rpm_max
            self.fan_rpm[f] = P.relax(self.fan_rpm[f], target, dt, P.TAU_FAN_S)
        g = P.airflow_g(cal, self.airflow_d())
        for b, chain in enumerate(self.chains):
            chain.update_sweeps()
            v = self.chip_v(b)
            on = self.board_on(b)
            temps = self.temps[b]
            chips = chain.chips
            powers = [P.chip_power_w(cal, c.silicon, v, c.freq_mhz if c.hashing() else 0.0,
                                     temps[i]) for i, c in enumerate(chips)]
            _air, target, _rise = P.board_heat(cal, powers, g, self.ambient_c, on)
            for i, c in enumerate(chips):
                temps[i] = P.relax(temps[i], target[i], dt, P.TAU_DIE_S)
                c.accrue(t_s)           # at the err of the interval just past
                c.temp_c = temps[i]
                c.fmax_mhz = P.chip_fmax_mhz(cal, c.silicon, v, temps[i])
            self.powers[b] = powers
        self.t_s = t_s
        return dt

    # ------------------------------------------------------------ readouts

    def sensor_c(self, b, k):
        """Board sensor k of board b (None when absent), with noise."""
        key = (b, k)
        if key in self.sensor_fault:
            return self.sensor_fault[key]
        if self.model.get('die_diode_sensor') == k:
            # the external channel reads chip 0's die diode, only while 0x54 routes it out
            chip = self.chains[b].chips[0]
            if not chip.diode_routed():
                return None
            return self.temps[b][0] + self.rng.gauss(0.0, 0.25)
        g = P.airflow_g(self.cal, self.airflow_d())
        t = P.sensor_c(self.cal, self.powers[b], g, self.ambient_c, SENSOR_POS[k],
                       self.board_on(b))
        return t + self.rng.gauss(0.0, 0.25)

    def wall_w(self):
        on = sum(1 for b in range(len(self.chains)) if self.board_on(b))
        total = sum(sum(p) for p in self.powers)
        return P.wall_power_w(self.cal, total, on, self.fan_duty)

    def board_truth(self, b):
        chain = self.chains[b]
        f, t, p, err, good = [], [], [], [], []
        for i, c in enumerate(chain.chips):
            e = c.err()
            f.append(round(c.freq_mhz if c.hashing() else 0.0, 3))
            t.append(round(self.temps[b][i], 3))
            p.append(round(self.powers[b][i], 4))
            err.append(float('%.6g' % e))
            good.append(round(c.good_rate_units() * 4294967296.0))
        return {'mv': self.board_mv[b], 'enabled': self.enabled[b], 'v_chip': self.chip_v(b),
                'f_mhz': f, 't_c': t, 'p_w': p, 'err': err, 'good_hs': good}

    def get_status(self):
        return {'t_s': self.t_s, 'ambient_c': self.ambient_c, 'board_mv': list(self.board_mv),
                'enabled': list(self.enabled), 'fan_duty': list(self.fan_duty),
                'fan_rpm': list(self.fan_rpm), 'wall_w': self.wall_w()}
