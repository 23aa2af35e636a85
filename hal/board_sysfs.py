"""SysfsBoardController: board side over Linux sysfs (hwmon temperatures/fans/voltage/power,
pwm fan control, a regulator or hwmon file for the board voltage, a GPIO-like enable file).

Which file is which board/fan comes from a mapping (paths relative to `root`), so the same code
serves any control board, and tests run it against a fake tree in a temporary directory:

    {'model': 'S21', 'voltage_per': 'rig', 'rpm_max': 6000,
     'temps': [['hwmon0/temp1_input', 'hwmon0/temp2_input'], ...],   # per board, millidegrees
     'fans': [{'pwm': 'hwmon1/pwm1', 'enable': 'hwmon1/pwm1_enable', 'rpm': 'hwmon1/fan1_input'}],
     'voltage': [{'set': 'regulator/vout_mv', 'set_scale': 1, 'read': 'hwmon2/in1_input'}],
                    # one entry (rig rail) or one per board; set_scale 1000 for microvolt files
     'enable': ['gpio/board0/value', ...],                            # per board, '1'/'0'
     'power': 'hwmon3/power1_input',                                   # microwatts
     'board_ids': ['serial-a', ...] or 'eeprom paths'}
"""

import os

from hal.board import BoardController, BoardError


class SysfsBoardController(BoardController):
    def __init__(self, root, mapping, limits=None):
        self.root = root
        self.map = mapping
        self.limits = limits
        for key in ('temps', 'fans'):
            if key not in mapping:
                raise BoardError('sysfs mapping needs %r' % key)
        self.boards = len(mapping['temps'])
        self.voltage_per = mapping.get('voltage_per', 'rig')
        if self.voltage_per not in ('rig', 'board'):
            raise BoardError("sysfs mapping: voltage_per must be 'rig' or 'board'")

    # -- file helpers ------------------------------------------------------------------------
    def _path(self, rel):
        return os.path.join(self.root, rel)

    def _read_int(self, rel):
        """Integer in a sysfs file, or None when missing/unreadable/garbage (failed sensor)."""
        if not rel:
            return None
        try:
            with open(self._path(rel)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _write(self, rel, value):
        try:
            with open(self._path(rel), 'w') as f:
                f.write('%d\n' % value)
        except OSError as exc:
            raise BoardError('cannot write %s: %s' % (rel, exc))

    # -- interface ---------------------------------------------------------------------------
    def info(self):
        return {'boards': self.boards, 'fans': len(self.map['fans']),
                'sensors_per_board': max([len(t) for t in self.map['temps']] or [0]),
                'voltage_per': self.voltage_per, 'rpm_max': self.map.get('rpm_max', 6000),
                'model': self.map.get('model', '')}

    def _do_set_fan_duty(self, fan, pct):
        fans = range(len(self.map['fans'])) if fan is None else [fan]
        raw = int(round(pct * 255 / 100.0))
        for i in fans:
            f = self.map['fans'][i]
            if f.get('enable'):
                self._write(f['enable'], 1)      # 1 = manual PWM control
            self._write(f['pwm'], raw)

    def read_fans(self):
        out = []
        for f in self.map['fans']:
            raw = self._read_int(f.get('pwm'))
            out.append({'duty_pct': None if raw is None else int(round(raw * 100 / 255.0)),
                        'rpm': self._read_int(f.get('rpm'))})
        return out

    def _voltage_entry(self, board):
        v = self.map.get('voltage') or []
        i = 0 if board is None else board
        if self.voltage_per == 'rig':
            i = 0
        if i >= len(v):
            raise BoardError('no voltage file mapped for board %r' % (board,))
        return v[i]

    def _do_set_voltage_mv(self, board, mv):
        e = self._voltage_entry(board)
        if not e.get('set'):
            raise BoardError('voltage of board %r is read-only here' % (board,))
        self._write(e['set'], int(mv * e.get('set_scale', 1)))

    def read_voltage(self, board):
        self._check_index(board, self.boards, 'board')
        e = self._voltage_entry(board)
        sp = self._read_int(e.get('set'))
        rb = self._read_int(e.get('read'))
        en = self.map.get('enable')
        on = self._read_int(en[board]) if en and board < len(en) else 1
        return {'setpoint_mv': None if sp is None else sp // e.get('set_scale', 1),
                'readback_mv': rb, 'enabled': bool(on)}

    def _do_set_enabled(self, board, on):
        en = self.map.get('enable')
        if not en:
            raise BoardError('no enable files mapped')
        for b in (range(self.boards) if board is None else [board]):
            self._write(en[b], 1 if on else 0)

    def read_temps_c(self, board):
        self._check_index(board, self.boards, 'board')
        out = []
        for rel in self.map['temps'][board]:
            v = self._read_int(rel)
            out.append(None if v is None else v / 1000.0)
        return out

    def read_power_w(self):
        v = self._read_int(self.map.get('power'))
        return None if v is None else v / 1e6

    def board_id(self, board):
        self._check_index(board, self.boards, 'board')
        ids = self.map.get('board_ids')
        if not ids or board >= len(ids):
            return 'board%d' % board
        path = self._path(ids[board])
        if os.path.isfile(path):
            with open(path) as f:
                return f.read().strip()
        return ids[board]
