"""In-process plant on hal/sim/physics.py implementing the tuner IO (fast tests, no ptys).

Same physics as the simulator: per-chip fmax/err/power, die temperatures relaxing (30 s) toward
the steady state of the board's air, Poisson error counts, exact hash counts, PSU power +-1 %,
die temperature noise. Time advances only through advance(dt_s).
"""

import random

from hal import families, models, pll
from hal.limits import HardwareLimits
from hal.sim import physics as P
from agent.autotune.io import TunerIO

TWO32 = 4294967296.0


class PlantIO(TunerIO):
    def __init__(self, model_name, seed=1, sigma_f=P.SIGMA_F, sigma_l=P.SIGMA_L, fan_duty=0.7,
                 ambient_c=P.AMBIENT_C, time_scale=1.0, baud=115200, rig_limits=False,
                 cold_start=False, nonces=False):
        self._model = models.get(model_name)
        self._family = families.get(self._model['chip'])
        self.lim = HardwareLimits(self._model, self._family)
        self.cal = P.calibrate(self._model)
        self.pop = P.population(self.cal, random.Random(seed), sigma_f, sigma_l)
        self.rng = random.Random(seed * 31 + 7)
        self.fan_duty = fan_duty
        self.ambient_c = ambient_c
        self.time_scale = time_scale
        self.baud = baud
        self.seed = seed
        nb = self.cal['boards']
        f0 = self._model['f_nom_mhz']
        self.freqs = [[f0] * len(b) for b in self.pop]
        self.mv = [self._model['stock_board_mv']] * nb
        # cold_start: dies at the idle steady state (chips not hashing), as the simulator
        # starts before the driver brings the chains up; else at stock steady state
        idle = [[0.0] * len(b) for b in self.pop] if cold_start else self.freqs
        st = P.rig_steady_state(self.cal, self.pop, idle, self.mv, fan_duty, ambient_c)
        self.temps = [list(b['t_c']) for b in st['boards']]
        self.powers = [list(b['p_w']) for b in st['boards']]
        self.h_units = [[0.0] * len(b) for b in self.pop]
        self.e_units = [[0] * len(b) for b in self.pop]
        self.rate = [[0.0] * len(b) for b in self.pop]
        self.errf = [[0.0] * len(b) for b in self.pop]
        self.t_s = 0.0
        self.ticket = [8] * nb
        self.safe = True
        # rig_limits: safety_ok also says no, as RigIO's does, when a power reading is over the
        # model's power limit or a die over danger - 3 C (a tuner must stay clear of both)
        self.rig_limits = rig_limits
        self.power_limit_w = self._model['power_limit_w']
        self.temp_stop_c = self._model['temp_danger_c'] - 3.0
        self.trips = 0
        self.requests = 0
        # nonces=True: the tuner sees only verified nonces (Poisson at the ticket difficulty,
        # dropped beyond the UART's frame capacity), no counters
        self.source = 'nonces' if nonces else 'counters'
        self.n_good = [[0] * len(b) for b in self.pop]
        self.n_bad = [[0] * len(b) for b in self.pop]
        self.nonces_dropped = 0

    # -- time ------------------------------------------------------------------------------
    def advance(self, dt_s):
        cal = self.cal
        g = P.airflow_g(cal, self.fan_duty)
        cores = cal['cores_per_chip']
        for b, chips in enumerate(self.pop):
            v = P.chip_v(cal, self.mv[b])
            temps = self.temps[b]
            powers = [P.chip_power_w(cal, chips[i], v, self.freqs[b][i], temps[i])
                      for i in range(len(chips))]
            _air, target, _r = P.board_heat(cal, powers, g, self.ambient_c, True)
            for i, chip in enumerate(chips):
                fm = P.chip_fmax_mhz(cal, chip, v, temps[i])
                f = self.freqs[b][i] if not chip['dead'] else 0.0
                e = P.chip_err(f, fm)
                units = f * 1e6 * cores * dt_s / TWO32
                self.h_units[b][i] += units
                self.e_units[b][i] += P.poisson(self.rng, e * units)
                self.rate[b][i] = f * 1e6 * cores
                self.errf[b][i] = e
                temps[i] = P.relax(temps[i], target[i], dt_s, P.TAU_DIE_S)
            self.powers[b] = powers
            if self.source == 'nonces':
                self._nonces(b, dt_s)
        self.t_s += dt_s

    def _nonces(self, b, dt_s):
        """Nonces of board b over dt_s: one per 2^(32+N) hashes, wrong at the error fraction;
        beyond the UART's frames (wall time: time_scale) the excess is dropped."""
        lam = [r * dt_s / TWO32 / (1 << self.ticket[b]) for r in self.rate[b]]
        room = self.baud / 110.0 * dt_s / self.time_scale
        keep = min(1.0, room / sum(lam)) if sum(lam) > 0 else 1.0
        for i, x in enumerate(lam):
            good = P.poisson(self.rng, x * keep * (1.0 - self.errf[b][i]))
            bad = P.poisson(self.rng, x * keep * self.errf[b][i])
            self.n_good[b][i] += good
            self.n_bad[b][i] += bad
            self.nonces_dropped += P.poisson(self.rng, x * (1.0 - keep))

    def wall_w(self):
        total = sum(sum(p) for p in self.powers)
        return P.wall_power_w(self.cal, total, self.cal['boards'], [self.fan_duty] * self.cal['fans'])

    def good_ths(self):
        return sum(self.rate[b][i] * (1.0 - self.errf[b][i])
                   for b in range(len(self.pop)) for i in range(len(self.pop[b]))) / 1e12

    # -- TunerIO ---------------------------------------------------------------------------
    def now_s(self):
        return self.t_s

    def model(self):
        return self._model

    def family(self):
        return self._family

    def limits(self):
        return self.lim.get_status()

    def board_ids(self):
        return ['PLANT-%s-%d-%d' % (self._model['name'], self.seed, b)
                for b in range(self.cal['boards'])]

    def chips(self):
        out = []
        for b, chips in enumerate(self.pop):
            row = []
            for i in range(len(chips)):
                h = self.h_units[b][i]
                row.append({'freq_mhz': self.freqs[b][i],
                            'temp_c': self.temps[b][i] + self.rng.gauss(0.0, 0.5),
                            'hashrate_ghs': self.rate[b][i] / 1e9,
                            'err_pct': 100.0 * self.errf[b][i], 'alive': not chips[i]['dead'],
                            'hash_units': h, 'err_units': self.e_units[b][i]})
                if self.source == 'nonces':
                    row[-1]['hash_units'] = float(self.n_good[b][i] + self.n_bad[b][i])
                    row[-1]['err_units'] = self.n_bad[b][i]
            out.append(row)
        return out

    def power_w(self):
        return self.wall_w() * (1.0 + self.rng.uniform(-0.01, 0.01))

    def voltage_mv(self):
        return list(self.mv)

    def set_voltage_mv(self, board, mv):
        mv = self.lim.check_board_mv(mv)
        if board is None:
            self.mv = [mv] * len(self.mv)
        else:
            self.mv[board] = mv

    def request_frequencies(self, plan):
        self.requests += 1
        for (b, i), mhz in plan.items():
            self.lim.check_freq(mhz)
            self.freqs[b][i] = pll.solve(self._family, mhz)['freq_mhz']

    def uart(self):
        return [{'baud': self.baud, 'time_scale': self.time_scale} for _ in self.pop]

    def set_ticket_bits(self, board, bits):
        self.ticket[board] = bits

    def safety_ok(self):
        if not self.safe:
            return False
        if self.rig_limits and (self.power_w() > self.power_limit_w or
                                max(max(b) for b in self.temps) > self.temp_stop_c):
            self.trips += 1
            return False
        return True
