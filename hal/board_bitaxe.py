"""BitaxeBoardController: a single-board miner's fan, core rail, sensors and power from its own
I2C parts (Gamma: EMC2101 + TPS546; older boards: EMC2101 + DS4432U + INA260), through the
hal/board.py interface, so safety, fan PID and tuner drive a Bitaxe as they drive an Antminer.
Pure, MicroPython-safe: the bus is machine.I2C on an ESP32 or hal/board_i2c.BoardI2C.

Sensors of board 0: [EMC2101 internal (board air), EMC2101 external diode (the ASIC's die)].
Power: VOUT x IOUT of the TPS546 plus the model's power_offset_w (ESP-Miner's estimate), or the
INA260's input power where there is one.
"""

from hal.bitaxe import ds4432u, emc2101, ina260, tps546
from hal.board import BoardController, BoardError


class BitaxeBoardController(BoardController):
    def __init__(self, bus, model, limits=None, identity=None, heartbeat=None):
        self.bus = bus
        self.model = model
        self.limits = limits
        self.identity = identity            # callable -> str (ESP32: machine.unique_id)
        self.heartbeat = heartbeat          # callable(timeout_s) -> trips, or None
        parts = model.get('i2c_parts', ())
        self.emc = emc2101.EMC2101(bus) if 'EMC2101' in parts else None
        self.tps = tps546.TPS546(bus) if 'TPS546' in parts else None
        self.dac = ds4432u.DS4432U(bus) if 'DS4432U' in parts else None
        self.ina = ina260.INA260(bus) if 'INA260' in parts else None
        if self.emc is None or (self.tps is None and self.dac is None):
            raise BoardError('model %s: needs an EMC2101 and a TPS546 or DS4432U (i2c_parts)'
                             % model.get('name'))
        self.setpoint_mv = model['stock_board_mv']
        self.enabled = True
        self.io_errors = 0

    def init(self):
        """Probe and configure the parts (raises BoardError naming the part that failed)."""
        for name, part in (('EMC2101', self.emc), ('TPS546', self.tps), ('INA260', self.ina)):
            if part is None:
                continue
            try:
                part.init()
            except OSError as e:
                raise BoardError('%s: %s' % (name, e))
        if self.tps is not None:
            self.setpoint_mv = self._call(self.tps.vout_command_mv)
            self.enabled = self._call(self.tps.is_on)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except (OSError, ValueError) as e:
            self.io_errors += 1
            raise BoardError('%s: %s' % (getattr(fn, '__name__', 'i2c'), e))

    def info(self):
        m = self.model
        return {'boards': 1, 'fans': 1, 'sensors_per_board': 2, 'voltage_per': 'board',
                'rpm_max': m['rpm_max'], 'model': m['name']}

    def _do_set_fan_duty(self, fan, pct):
        self._call(self.emc.set_duty_pct, pct)

    def read_fans(self):
        return [{'duty_pct': int(round(self._call(self.emc.duty_pct))),
                 'rpm': self._call(self.emc.rpm)}]

    def _do_set_voltage_mv(self, board, mv):
        if self.tps is not None:
            self.setpoint_mv = self._call(self.tps.set_vout_mv, mv)
        else:
            self.setpoint_mv = self._call(self.dac.set_mv, mv)
        return self.setpoint_mv

    def read_voltage(self, board):
        self._check_index(board, 1, 'board')
        if self.tps is not None:
            on = self._call(self.tps.is_on)
            return {'setpoint_mv': self._call(self.tps.vout_command_mv),
                    'readback_mv': self._call(self.tps.vout_mv) if on else 0, 'enabled': on}
        # DS4432U boards: no readback of the rail; the INA260 sees the input side only.
        return {'setpoint_mv': self._call(self.dac.mv),
                'readback_mv': self._call(self.dac.mv) if self.enabled else 0,
                'enabled': self.enabled}

    def _do_set_enabled(self, board, on):
        if self.tps is not None:
            self._call(self.tps.set_on, on)
        self.enabled = on

    def read_temps_c(self, board):
        self._check_index(board, 1, 'board')
        return [self._call(self.emc.internal_c), self._call(self.emc.external_c)]

    def read_power_w(self):
        if self.ina is not None:
            return self._call(self.ina.power_w)
        if not self._call(self.tps.is_on):
            return self.model.get('power_offset_w', 0.0)
        vout_v = self._call(self.tps.vout_mv) / 1000.0
        return vout_v * self._call(self.tps.iout_a) + self.model.get('power_offset_w', 0.0)

    def board_id(self, board):
        self._check_index(board, 1, 'board')
        if self.identity is None:
            return ''
        return self.identity()

    def set_heartbeat_watchdog(self, timeout_s):
        return self.heartbeat(timeout_s) if self.heartbeat is not None else None

    def get_status(self):
        out = BoardController.get_status(self)
        out['link'] = {'i2c_errors': self.io_errors}
        return out
