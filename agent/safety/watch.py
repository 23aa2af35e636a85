"""Per-board watch: one board's readings each tick (die temperatures, board sensors, dead chips,
stale or missing readings, a board that ignores 'off') turned into alarms and the numbers the
supervisor's thermal machine needs. Pure core (MicroPython-safe).
"""

from agent.options import finite
from agent.safety.detectors import Debounce, SensorMonitor

MAX_SENSORS = 16


def _list(v):
    return v if isinstance(v, list) or isinstance(v, tuple) else None


class BoardWatch:
    """Detector state of one board that is not the thermal machine (agent.safety.board)."""

    def __init__(self, index, cfg, chips):
        self.index = index
        self.cfg = cfg
        self.chips = chips
        self.sensors = [SensorMonitor(index, k, cfg) for k in range(cfg['sensors_per_board'])]
        self.dead = Debounce()
        self.dies_unreadable = Debounce()
        self.blind = Debounce()
        self.stale = Debounce()
        self.stuck_on = Debounce()
        self.dead_count = 0
        self.no_chips = False
        self.die_max_c = None
        self.temp_c = None
        self.sensor_bad = False

    def read(self, now, e, board, alarms, problems):
        """This tick's snapshot entry `e` of the board (None or junk = nothing readable)."""
        e = e if isinstance(e, dict) else {}
        powered = self._powered(now, e, board, alarms)
        dies, stale = self._dies(e, powered)
        self._stale(now, e, board, powered, stale > 0 and not dies, alarms)
        self.die_max_c = max(dies) if dies else None
        trusted = self._sensors(now, e, dies, alarms, problems)
        # Limits are die limits: with die readings the dies decide (an air sensor near the outlet
        # may legitimately read above a die); the sensors stand in only when no die answers.
        temps = dies if dies else trusted
        self.temp_c = max(temps) if temps else None
        expect_dies = powered and not board.in_grace(now)
        self._dead_chips(now, expect_dies, len(dies), alarms)
        self.blind.update(expect_dies and self.temp_c is None, now, self.cfg['blind_max_s'], 0.0)
        board.track_rate(now, self.die_max_c)

    def _powered(self, now, e, board, alarms):
        """The hardware's word wins: a board we switched off that still reports power is read
        (and alarmed), never assumed cold."""
        i, en = self.index, e.get('enabled')
        powered = en if isinstance(en, bool) else board.enable
        if self.stuck_on.update(powered and not board.enable, now, self.cfg['dies_missing_s'], 0.0):
            alarms.raise_('board%d.disable_failed' % i, 'critical', 'board %d: commanded off but '
                          'still reports power; runner must retry or cut the PSU' % i, now, i)
        else:
            alarms.clear('board%d.disable_failed' % i, 'board %d: now off as commanded' % i, now)
        return powered

    def _dies(self, e, powered):
        """Plausible, current die readings of live chips -> (dies, count of stale ones)."""
        if not powered:
            return [], 0
        c = self.cfg
        raw = _list(e.get('die_c')) or []
        alive = _list(e.get('chips_alive')) or []
        ages = _list(e.get('die_age_s'))
        dies, stale = [], 0
        for k in range(min(len(raw), self.chips)):
            v = finite(raw[k])
            if v is None or v < c['die_min_c'] or v > c['die_max_c']:
                continue
            if k < len(alive) and alive[k] is False:
                continue
            age = finite(ages[k]) if ages is not None and k < len(ages) else 0.0
            if age is None or age > c['die_stale_s']:
                stale += 1      # an old value is no reading: unknown, hence hot
                continue
            dies.append(v)
        return dies, stale

    def _stale(self, now, e, board, powered, all_stale, alarms):
        """Readings that stopped coming (poll loop or driver stopped), and a powered board on
        which no chip was found (it hashes blind: off at once)."""
        c, i = self.cfg, self.index
        expect = powered and not board.in_grace(now)
        if self.stale.update(expect and all_stale, now, c['stale_off_s'], 0.0) or \
                self.stale.bad_since is not None:
            alarms.raise_('board%d.dies_stale' % i, 'critical', 'board %d: die readings older '
                          'than %.0f s (chip poll stopped or driver hung): treated as hot, '
                          'fans 100 %%, off after %.0f s' % (i, c['die_stale_s'], c['stale_off_s']),
                          now, i)
        else:
            alarms.clear('board%d.dies_stale' % i, 'board %d: die readings current again' % i, now)
        self.no_chips = powered and e.get('chips_found') == 0

    def _sensors(self, now, e, dies, alarms, problems):
        """Board sensors judged against the dies (or each other) -> trusted readings."""
        raw = _list(e.get('sensors_c'))
        if raw is None:
            if e.get('sensors_c') is not None:
                problems.append('board %d: sensors_c is not a list' % self.index)
            raw = []
        while len(self.sensors) < len(raw) and len(self.sensors) < MAX_SENSORS:
            self.sensors.append(SensorMonitor(self.index, len(self.sensors), self.cfg))
        n = len(self.sensors)
        vals = [finite(raw[k]) if k < len(raw) else None for k in range(n)]
        die_mean = sum(dies) / len(dies) if dies else None
        die_min = min(dies) if dies else None
        for k in range(n):
            ref = die_mean if die_mean is not None else _mean_of_others(vals, k)
            peers = [self.sensors[j] for j in range(n) if j != k]
            self.sensors[k].update(now, raw[k] if k < len(raw) else None, ref, die_min, alarms, peers)
        self.sensor_bad = any(s.bad() for s in self.sensors)
        return [s.trusted() for s in self.sensors if s.trusted() is not None]

    def _dead_chips(self, now, expect_dies, n_dies, alarms):
        c, i = self.cfg, self.index
        missing = self.chips - n_dies
        if expect_dies:
            self.dead_count = missing
        if expect_dies and 0 < missing < self.chips:
            if self.dead.update(True, now, c['dead_chip_s'], c['dead_chip_s']):
                alarms.raise_('board%d.dead_chips' % i, 'warning', 'board %d: %d of %d chips give no '
                              'die temperature (dead or not answering); the rest keep running'
                              % (i, missing, self.chips), now, i)
        elif expect_dies and missing == 0:
            if not self.dead.update(False, now, c['dead_chip_s'], c['dead_chip_s']):
                alarms.clear('board%d.dead_chips' % i, 'board %d: all chips answer again' % i, now)
        if self.dies_unreadable.update(expect_dies and not n_dies, now, c['dies_missing_s'], 0.0):
            alarms.raise_('board%d.dies_unreadable' % i, 'critical', 'board %d: no die temperature '
                          'readable; treated as hot' % i, now, i)
        else:
            alarms.clear('board%d.dies_unreadable' % i, 'board %d: die temperatures readable again'
                         % i, now)

    def bad_sensor_reason(self, cap_pct):
        bad = ['sensor %d %s' % (s.index, '/'.join(s.reasons())) for s in self.sensors if s.bad()]
        return 'board %d: %s: treated as hot, fans 100 %%, cap <= %.0f %%' % (
            self.index, ', '.join(bad), cap_pct)

    def trusted_sensors(self):
        return [s.trusted() for s in self.sensors if s.trusted() is not None]


def _mean_of_others(vals, k):
    others = [vals[j] for j in range(len(vals)) if j != k and vals[j] is not None]
    return sum(others) / len(others) if others else None
