"""Simulated board controller: serves hal/board_protocol.py over its own pty (fans, voltage,
enable, board sensors, PSU power, board identity). Reference: docs/board-protocol.md.
"""

import hashlib

from hal import board_protocol as bp
from hal.sim import i2cparts
from hal.sim.uart import Pty

VP_CODE = {'rig': 0, 'board': 1}


def board_serial(model_name, seed, board):
    """Stable identity from model, seed and board index, e.g. 'S21-1-B0-3F9A2C'."""
    h = hashlib.sha1(('%s/%d/%d' % (model_name, seed, board)).encode()).hexdigest()[:6].upper()
    return '%s-%d-B%d-%s' % (model_name, seed, board, h)


class BoardServer:
    def __init__(self, rig, rng, sim_time=None):
        self.rig = rig
        self.rng = rng
        self.sim_time = sim_time or (lambda wall: wall)
        # Heartbeat watchdog (SET_WATCHDOG): counts simulated time, like the MCU's own clock.
        self.wd_timeout_s = 0.0
        self.wd_last_s = 0.0
        self.wd_tripped = False
        self.wd_trips = 0
        self.model = rig.model
        self.pty = Pty()
        self.framer = bp.Framer()
        self.requests = 0
        self.handlers = {
            bp.GET_INFO: self._info, bp.SET_FAN: self._set_fan, bp.GET_FANS: self._get_fans,
            bp.SET_VOLTAGE: self._set_voltage, bp.GET_VOLTAGE: self._get_voltage,
            bp.SET_ENABLE: self._set_enable, bp.GET_BOARD_ID: self._board_id,
            bp.GET_TEMPS: self._temps, bp.GET_POWER: self._power,
            bp.SET_WATCHDOG: self._set_watchdog, bp.I2C_XFER: self._i2c_xfer,
        }
        # Bitaxe-class boards: their I2C parts (fan controller, regulator...), hal/sim/i2cparts.py
        self.i2c = i2cparts.build_bus(rig, rng, rig.model.get('i2c_parts', ()))

    def wants_read(self, now):
        return True

    def on_readable(self, now):
        data = self.pty.read()
        if not data:
            return
        out = bytearray()
        for seq, cmd, payload in self.framer.feed(data):
            self.requests += 1
            self.wd_last_s = self.sim_time(now)
            self.wd_tripped = False
            out.extend(self.handle(seq, cmd, payload))
        if out:
            self.pty.write(bytes(out))

    def service(self, now):
        if self.pty.outbuf:
            self.pty.write()
        if self.wd_timeout_s and not self.wd_tripped \
                and self.sim_time(now) - self.wd_last_s > self.wd_timeout_s:
            # The host went quiet: nobody watches the rig, so make it safe on our own.
            self.wd_tripped = True
            self.wd_trips += 1
            self.rig.set_enabled(None, False)
            self.rig.set_fan_duty(None, 1.0)

    def handle(self, seq, cmd, payload):
        """One request -> reply frame bytes (never raises on bad input)."""
        h = self.handlers.get(cmd)
        if h is None:
            return bp.reply(seq, cmd, bp.ST_UNKNOWN_CMD)
        status, body = h(payload)
        return bp.reply(seq, cmd, status, body)

    # ------------------------------------------------------------ helpers

    def _board(self, idx, allow_all):
        """Board index from a payload byte: int, None (ALL) or False (invalid)."""
        if idx == bp.ALL and allow_all:
            return None
        if 0 <= idx < self.model['boards']:
            return idx
        return False

    # ------------------------------------------------------------ commands

    def _info(self, p):
        if p:
            return bp.ST_BAD_ARG, b''
        m = self.model
        return bp.ST_OK, (bytes([m['boards'], m['fans'], 2, VP_CODE[m['voltage_per']]])
                          + bp.u16(m['rpm_max']) + m['name'].encode())

    def _set_fan(self, p):
        if len(p) != 2:
            return bp.ST_BAD_ARG, b''
        fan = None if p[0] == bp.ALL else p[0]
        if fan is not None and fan >= self.model['fans']:
            return bp.ST_BAD_ARG, b''
        if p[1] > 100:
            return bp.ST_OUT_OF_RANGE, b''
        self.rig.set_fan_duty(fan, p[1] / 100.0)
        return bp.ST_OK, b''

    def _get_fans(self, p):
        if p:
            return bp.ST_BAD_ARG, b''
        rig = self.rig
        out = bytearray([len(rig.fan_rpm)])
        for f in range(len(rig.fan_rpm)):
            rpm = rig.fan_rpm[f] * (1.0 + self.rng.uniform(-0.01, 0.01))
            out.append(int(round(rig.fan_duty[f] * 100)))
            out.extend(bp.u16(max(0, min(0xFFFF, int(round(rpm))))))
        return bp.ST_OK, bytes(out)

    def _set_voltage(self, p):
        if len(p) != 3:
            return bp.ST_BAD_ARG, b''
        m = self.model
        if m['voltage_per'] == 'rig':
            if p[0] != bp.ALL:
                return bp.ST_UNSUPPORTED, b''    # one PSU rail: address it as 0xFF
            board = None
        else:
            board = self._board(p[0], True)
            if board is False:
                return bp.ST_BAD_ARG, b''
        mv = bp.get_u16(p, 1)
        if mv < m['board_mv_min'] or mv > m['board_mv_max']:
            return bp.ST_OUT_OF_RANGE, b''
        step = m['voltage_step_mv']
        mv = int(round(mv / float(step))) * step
        self.rig.set_board_mv(board, mv)
        return bp.ST_OK, bp.u16(mv)

    def _get_voltage(self, p):
        if len(p) != 1:
            return bp.ST_BAD_ARG, b''
        board = self._board(p[0], True)
        if board is False:
            return bp.ST_BAD_ARG, b''
        b = 0 if board is None else board
        rig = self.rig
        setpoint = rig.board_mv[b]
        readback = 0
        if rig.board_on(b):
            readback = int(round(setpoint * (1.0 + self.rng.gauss(0.0, 0.001))))
        return bp.ST_OK, bp.u16(setpoint) + bp.u16(readback) + bytes([1 if rig.enabled[b] else 0])

    def _set_enable(self, p):
        if len(p) != 2 or p[1] > 1:
            return bp.ST_BAD_ARG, b''
        board = self._board(p[0], True)
        if board is False:
            return bp.ST_BAD_ARG, b''
        self.rig.set_enabled(board, p[1] == 1)
        return bp.ST_OK, b''

    def _board_id(self, p):
        if len(p) != 1:
            return bp.ST_BAD_ARG, b''
        board = self._board(p[0], False)
        if board is False:
            return bp.ST_BAD_ARG, b''
        return bp.ST_OK, board_serial(self.model['name'], self.rig.seed, board).encode()

    def _temps(self, p):
        if len(p) != 1:
            return bp.ST_BAD_ARG, b''
        board = self._board(p[0], False)
        if board is False:
            return bp.ST_BAD_ARG, b''
        out = bytearray([2])
        for k in range(2):
            t = self.rig.sensor_c(board, k)
            if t is None:
                out.extend(b'\x00\x00\x00')
            else:
                out.append(1)
                out.extend(bp.s16(max(-32768, min(32767, int(round(t * 100))))))
        return bp.ST_OK, bytes(out)

    def _set_watchdog(self, p):
        if len(p) != 2:
            return bp.ST_BAD_ARG, b''
        self.wd_timeout_s = bp.get_u16(p, 0) / 10.0
        return bp.ST_OK, bp.u16(min(0xFFFF, self.wd_trips))

    def _power(self, p):
        if p:
            return bp.ST_BAD_ARG, b''
        w = self.rig.wall_w() * (1.0 + self.rng.uniform(-0.01, 0.01))
        return bp.ST_OK, bp.u32(max(0, int(round(w * 10))))

    def _i2c_xfer(self, p):
        if len(p) < 2 or p[1] > bp.MAX_PAYLOAD - 1 or (len(p) == 2 and not p[1]):
            return bp.ST_BAD_ARG, b''
        ok, data = i2cparts.transfer(self.i2c, p[0], p[1], p[2:])
        return (bp.ST_OK, data) if ok else (bp.ST_NACK, b'')

    def get_status(self):
        return {'path': self.pty.path, 'requests': self.requests,
                'dropped_bytes': self.framer.dropped_bytes, 'watchdog_s': self.wd_timeout_s,
                'watchdog_trips': self.wd_trips}
