"""Hardware limits, enforced in one place: every frequency and voltage request passes here.

Pure; runs on MicroPython. The chain driver and the board controllers call these checks, so no
command, profile or tuner step can push a chip or board past its model's limits.
"""


class LimitError(ValueError):
    pass


class HardwareLimits:
    def __init__(self, model, family, overrides=None):
        o = overrides or {}
        self.freq_min_mhz = max(family['freq_min_mhz'], o.get('freq_min_mhz', family['freq_min_mhz']))
        self.freq_max_mhz = min(family['freq_max_mhz'], model['freq_max_mhz'],
                                o.get('freq_max_mhz', model['freq_max_mhz']))
        self.board_mv_min = max(model['board_mv_min'], o.get('board_mv_min', model['board_mv_min']))
        self.board_mv_max = min(model['board_mv_max'], o.get('board_mv_max', model['board_mv_max']))
        self.fan_duty_min_pct = o.get('fan_duty_min_pct', 0)
        self.temp_danger_c = min(model['temp_danger_c'], o.get('temp_danger_c', model['temp_danger_c']))
        if self.freq_min_mhz > self.freq_max_mhz or self.board_mv_min > self.board_mv_max:
            raise LimitError('limit overrides leave an empty range')

    def check_freq(self, mhz):
        """Return mhz if allowed, else raise LimitError naming the bound."""
        if not isinstance(mhz, (int, float)) or mhz != mhz:
            raise LimitError('frequency must be a number')
        if mhz < self.freq_min_mhz or mhz > self.freq_max_mhz:
            raise LimitError('frequency %.2f MHz outside %.0f..%.0f MHz'
                             % (mhz, self.freq_min_mhz, self.freq_max_mhz))
        return mhz

    def check_board_mv(self, mv):
        if not isinstance(mv, (int, float)) or mv != mv:
            raise LimitError('voltage must be a number')
        if mv < self.board_mv_min or mv > self.board_mv_max:
            raise LimitError('board voltage %d mV outside %d..%d mV'
                             % (mv, self.board_mv_min, self.board_mv_max))
        return int(mv)

    def check_fan_duty(self, pct):
        if not isinstance(pct, (int, float)) or pct != pct:
            raise LimitError('fan duty must be a number')
        if pct < 0 or pct > 100:
            raise LimitError('fan duty %s %% outside 0..100' % (pct,))
        return max(pct, self.fan_duty_min_pct)

    def get_status(self):
        return {'freq_min_mhz': self.freq_min_mhz, 'freq_max_mhz': self.freq_max_mhz,
                'board_mv_min': self.board_mv_min, 'board_mv_max': self.board_mv_max,
                'temp_danger_c': self.temp_danger_c}
