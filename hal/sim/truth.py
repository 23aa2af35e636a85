"""Truth file of the simulator: its hidden state as JSON lines, for tests and benchmarks only.

Line 1: {"type": "header", ...} (model, constants, calibration, seed, per-chip silicon). Then one
{"type": "state", ...} line per --truth-period-s simulated seconds. Format: docs/simulator.md.
"""

import json

from hal.sim import physics as P


class TruthWriter:
    def __init__(self, path, rig, period_s=1.0, time_scale=1.0, faults=()):
        self.rig = rig
        self.period_s = period_s
        self.f = open(path, 'a')
        self.next_t_s = 0.0
        self.lines = 0
        self.nonces_dropped = lambda: 0
        cal = rig.cal
        header = {
            'type': 'header', 'model': rig.model['name'], 'chip': rig.model['chip'],
            'seed': rig.seed, 'sigma_f': rig.sigma_f, 'sigma_l': rig.sigma_l,
            'time_scale': time_scale, 'constants': P.CONSTANTS, 'calibration': cal,
            'faults': list(faults),
            'chips': [[{'speed': c['speed'], 'leak': c['leak'], 'cap': c['cap'],
                        'dead': c['dead']} for c in board] for board in rig.pop],
        }
        self._write(header)

    def _write(self, obj):
        self.f.write(json.dumps(obj, separators=(',', ':')) + '\n')
        self.f.flush()
        self.lines += 1

    def maybe_write(self, t_s):
        """Write a state line when simulated time has reached the next period mark."""
        if t_s + 1e-9 < self.next_t_s:
            return
        self.next_t_s = (int(t_s / self.period_s) + 1) * self.period_s
        self._write(self.record())

    def record(self):
        rig = self.rig
        boards = [rig.board_truth(b) for b in range(len(rig.chains))]
        good = sum(sum(b['good_hs']) for b in boards) / 1e12
        wall = rig.wall_w()
        return {
            'type': 'state', 't_s': round(rig.t_s, 4), 'ambient_c': round(rig.ambient_c, 3),
            'boards': boards,
            'fans': [{'duty_pct': round(rig.fan_duty[f] * 100, 2), 'rpm': round(rig.fan_rpm[f], 1),
                      'stopped': rig.fan_stopped[f]} for f in range(len(rig.fan_rpm))],
            'wall_w': round(wall, 3), 'good_ths': round(good, 6),
            'j_per_th': round(wall / good, 4) if good > 0 else None,
            'hottest_c': round(max(max(t) for t in rig.temps), 3),
            'nonces_dropped': self.nonces_dropped(),
        }

    def close(self):
        try:
            self.f.close()
        except OSError:
            pass
