"""Board-side interface (fans, board voltage and enable, board sensors, PSU power).

Implemented by hal/board_serial.py (byte protocol client) and hal/board_sysfs.py (Linux hwmon/pwm).
Every voltage and fan request passes HardwareLimits before anything reaches the hardware.
"""


class BoardError(RuntimeError):
    """The board side refused or did not answer a request."""


class BoardController:
    """Interface; subclasses implement the _do_* hooks, this class applies the limits."""

    limits = None

    def info(self):
        raise NotImplementedError

    def set_fan_duty(self, fan, pct):
        """fan index, or None = all fans. pct passes HardwareLimits.check_fan_duty first."""
        if self.limits is None:
            raise BoardError('no HardwareLimits: refusing to drive fans')
        pct = self.limits.check_fan_duty(pct)
        self._check_index(fan, self.info()['fans'], 'fan')
        return self._do_set_fan_duty(fan, pct)

    def read_fans(self):
        raise NotImplementedError

    def set_voltage_mv(self, board, mv):
        """board index, or None = the shared rail (voltage_per == 'rig')."""
        if self.limits is None:
            raise BoardError('no HardwareLimits: refusing to set voltage')
        mv = self.limits.check_board_mv(mv)
        info = self.info()
        if board is None and info['voltage_per'] != 'rig':
            raise BoardError('this rig sets voltage per board; give a board index')
        if board is not None and info['voltage_per'] == 'rig':
            raise BoardError('this rig has one shared rail; use board=None')
        self._check_index(board, info['boards'], 'board')
        return self._do_set_voltage_mv(board, mv)

    def read_voltage(self, board):
        raise NotImplementedError

    def set_enabled(self, board, on):
        self._check_index(board, self.info()['boards'], 'board')
        return self._do_set_enabled(board, bool(on))

    def read_temps_c(self, board):
        raise NotImplementedError

    def read_power_w(self):
        raise NotImplementedError

    def board_id(self, board):
        raise NotImplementedError

    def set_heartbeat_watchdog(self, timeout_s):
        """Arm the controller's own watchdog: if no request reaches it for timeout_s (0 = off),
        it switches every board off and every fan to 100 %. Returns its trip count, or None
        where the hardware has no such watchdog."""
        return None

    def close(self):
        pass

    @staticmethod
    def _check_index(idx, count, what):
        if idx is None:
            return
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < count:
            raise BoardError('%s index %r outside 0..%d' % (what, idx, count - 1))

    def get_status(self):
        """One dict of everything readable (for telemetry); never raises on a failed read."""
        out = {'info': None, 'fans': None, 'boards': [], 'power_w': None, 'errors': []}
        try:
            info = self.info()
            out['info'] = info
            out['fans'] = self.read_fans()
            for b in range(info['boards']):
                entry = {'temps_c': self.read_temps_c(b)}
                try:
                    entry['voltage'] = self.read_voltage(b)
                except BoardError as exc:
                    entry['voltage'] = None
                    out['errors'].append(str(exc))
                out['boards'].append(entry)
            out['power_w'] = self.read_power_w()
        except (BoardError, OSError) as exc:
            out['errors'].append(str(exc))
        return out
