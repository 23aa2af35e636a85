"""The tuner maths and state machine run unchanged under MicroPython 1.27 (pure core): a tuner
drives a deterministic one-chip plant (hal/sim/physics.py) in both interpreters; results match."""

import os
import subprocess

import pytest

from tests import mpyunix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ['hal/__init__.py', 'hal/pll.py', 'hal/families.py', 'hal/models.py',
           'hal/sim/__init__.py', 'hal/sim/physics.py', 'agent/__init__.py',
           'agent/autotune/__init__.py', 'agent/autotune/maths.py', 'agent/autotune/tuner.py',
           'agent/autotune/search.py', 'agent/autotune/voltage.py',
           'agent/autotune/thermal.py', 'agent/autotune/thermal_one.py',
           'agent/autotune/nonces.py']

SCRIPT = r'''
import sys
from hal import families, models
from hal.sim import physics as P
from agent.autotune import maths
from agent.autotune.tuner import Tuner

M = models.get('GAMMA')
F = families.get('BM1370')
CAL = P.calibrate(M)
CHIP = P.make_chip(0.5, -0.3, 0.2)
SRC = sys.argv[1] if len(sys.argv) > 1 else 'counters'
MODE = sys.argv[2] if len(sys.argv) > 2 else 'power'   # thermal: the one-chip loop


class IO:
    """Deterministic plant: expected error counts (no randomness), steady temperature."""
    def __init__(self):
        self.t = 0.0
        self.f = M['f_nom_mhz']
        self.mv = M['stock_board_mv']
        self.h = 0.0
        self.e = 0.0
        self.temp = 50.0
        self.source = SRC
        self.bits = 0
    def advance(self, dt):
        v = P.chip_v(CAL, self.mv)
        st = P.board_steady_state(CAL, [CHIP], [self.f], v, 0.7, 25.0)
        self.temp = st['t_c'][0]
        u = self.f * 1e6 * CAL['cores_per_chip'] * dt / 4294967296.0
        self.h += u
        self.e += st['err'][0] * u
        self.p = P.wall_power_w(CAL, st['sum_p_w'], 1, [0.7])
        self.g = st['good_hs_total'] / 1e12
        self.t += dt
    def now_s(self): return self.t
    def model(self): return M
    def family(self): return F
    def limits(self): return {'freq_min_mhz': 50.0, 'freq_max_mhz': 800.0,
                              'board_mv_min': 1000, 'board_mv_max': 1300}
    def board_ids(self): return ['G1']
    def chips(self):
        d = 1 << self.bits if SRC == 'nonces' else 1     # nonces: one per 2^(32+N) hashes
        return [[{'freq_mhz': self.f, 'temp_c': self.temp, 'alive': True,
                  'hashrate_ghs': self.g * 1000.0, 'err_pct': 0.0,
                  'hash_units': float(int(self.h / d)) if d > 1 else self.h,
                  'err_units': int(self.e / d)}]]
    def power_w(self): return self.p
    def voltage_mv(self): return [self.mv]
    def set_voltage_mv(self, b, mv): self.mv = mv
    def request_frequencies(self, plan):
        for k in plan: self.f = plan[k]
    def uart(self): return [{'baud': 115200, 'time_scale': 1.0}]
    def set_ticket_bits(self, b, n): self.bits = n
    def safety_ok(self): return True


prof = {'mode': MODE, 'err_target_pct': 0.2, 'err_max_pct': 0.8, 'temp_margin_c': 3.0,
        'board_mv_min': 0, 'board_mv_max': 0, 'freq_min_mhz': 0.0, 'freq_max_mhz': 0.0,
        'power_tol_pct': 1.0, 'time_budget_s': 1800.0, 'settle_s': 45.0, 'verify_s': 120.0,
        'min_err_count': 8.0, 'retune_temp_c': 6.0, 'name': 'mpy'}
io = IO()
io.advance(1.0)
t = Tuner(io, prof, 17.0 if MODE == 'power' else 66.0)
while io.t < 1800 and t.stage != 'done':
    t.step(io.t)
    io.advance(5.0)
print(t.stage, io.mv, '%.3f' % io.f, io.bits, int(io.t), maths.ticket_bits(1e13, 115200, 30.0),
      type(t.voltage).__name__, t.source)
'''


@pytest.mark.parametrize('source,mode', [('counters', 'power'), ('nonces', 'power'),
                                         ('counters', 'thermal')])
def test_tuner_runs_the_same_under_micropython(tmp_path, source, mode):
    path = tmp_path / 'tuner_check.py'
    path.write_text(SCRIPT)
    cp = subprocess.run(['python', str(path), source, mode], cwd=ROOT, capture_output=True,
                        text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith('done ') and cp.stdout.strip().endswith(source)
    if mode == 'thermal':      # a one-chip rig runs the one-chip loop (thermal_one.py)
        assert ' OneChipLoop ' in cp.stdout, cp.stdout
    mp = mpyunix.run(path, MODULES, tmp_path / 'lib', vendor=False, args=(source, mode))
    assert mp.returncode == 0, mp.stderr + mp.stdout
    assert mp.stdout.strip() == cp.stdout.strip()
