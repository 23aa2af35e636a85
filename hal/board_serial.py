"""SerialBoardController: the serial board-controller backend, a client of the byte protocol
(hal/board_protocol.py) over a Transport: sequence numbers, timeouts, retries, clear errors on a
non-ok status. It talks to the simulator's board server or to a controller MCU alike.
"""

from hal import board_protocol as bp
from hal.board import BoardController, BoardError
from hal.clock import Clock

VOLTAGE_PER = {0: 'rig', 1: 'board'}


class SerialBoardController(BoardController):
    def __init__(self, transport, limits=None, timeout_s=0.3, retries=2, clock=None):
        self.transport = transport
        self.limits = limits
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock = clock or Clock(1.0)
        self.framer = bp.Framer()
        self.seq = 0
        self.timeouts = 0
        self.stale_replies = 0
        self._info = None

    # -- request/reply -----------------------------------------------------------------------
    def request(self, cmd, payload=b''):
        """Send one request and return the reply payload after the status byte.

        Retries on timeout (a bad-CRC frame gets no reply); raises BoardError on a non-ok status
        or after the last retry.
        """
        for attempt in range(self.retries + 1):
            self.seq = (self.seq + 1) & 0xFF
            seq = self.seq
            self.transport.write(bp.encode(seq, cmd, payload))
            end = self.clock.wall() + self.timeout_s
            while True:
                left = end - self.clock.wall()
                if left <= 0:
                    self.timeouts += 1
                    break
                data = self.transport.read(min(left, 0.05))
                for rseq, rcmd, rpayload in self.framer.feed(data):
                    if rseq != seq or rcmd != (cmd | bp.REPLY_FLAG):
                        self.stale_replies += 1   # a late reply to an earlier attempt
                        continue
                    if not rpayload:
                        raise BoardError('board controller: empty reply to command 0x%02X' % cmd)
                    status = rpayload[0]
                    if status != bp.ST_OK:
                        raise BoardError('board controller refused command 0x%02X: %s (status %d)'
                                         % (cmd, bp.STATUS_TEXT.get(status, 'unknown'), status))
                    return rpayload[1:]
        raise BoardError('board controller on %s: no reply to command 0x%02X after %d tries'
                         % (self.transport.url, cmd, self.retries + 1))

    @staticmethod
    def _idx(i):
        return bp.ALL if i is None else i

    # -- interface ---------------------------------------------------------------------------
    def info(self):
        if self._info is None:
            p = self.request(bp.GET_INFO)
            if len(p) < 6:
                raise BoardError('short GET_INFO reply')
            self._info = {'boards': p[0], 'fans': p[1], 'sensors_per_board': p[2],
                          'voltage_per': VOLTAGE_PER.get(p[3], 'rig'),
                          'rpm_max': bp.get_u16(p, 4),
                          'model': bytes(p[6:]).decode('ascii', 'replace')}
        return dict(self._info)

    def _do_set_fan_duty(self, fan, pct):
        self.request(bp.SET_FAN, bytes([self._idx(fan), int(round(pct))]))

    def read_fans(self):
        p = self.request(bp.GET_FANS)
        n = p[0] if p else 0
        if len(p) < 1 + 3 * n:
            raise BoardError('short GET_FANS reply')
        return [{'duty_pct': p[1 + 3 * i], 'rpm': bp.get_u16(p, 2 + 3 * i)} for i in range(n)]

    def _do_set_voltage_mv(self, board, mv):
        self.request(bp.SET_VOLTAGE, bytes([self._idx(board)]) + bp.u16(mv))

    def read_voltage(self, board):
        self._check_index(board, self.info()['boards'], 'board')
        p = self.request(bp.GET_VOLTAGE, bytes([board]))
        if len(p) < 5:
            raise BoardError('short GET_VOLTAGE reply')
        return {'setpoint_mv': bp.get_u16(p, 0), 'readback_mv': bp.get_u16(p, 2),
                'enabled': bool(p[4])}

    def _do_set_enabled(self, board, on):
        self.request(bp.SET_ENABLE, bytes([self._idx(board), 1 if on else 0]))

    def read_temps_c(self, board):
        self._check_index(board, self.info()['boards'], 'board')
        p = self.request(bp.GET_TEMPS, bytes([board]))
        n = p[0] if p else 0
        if len(p) < 1 + 3 * n:
            raise BoardError('short GET_TEMPS reply')
        out = []
        for i in range(n):
            ok = p[1 + 3 * i]
            out.append(bp.get_s16(p, 2 + 3 * i) / 100.0 if ok else None)
        return out

    def read_power_w(self):
        p = self.request(bp.GET_POWER)
        if len(p) < 4:
            raise BoardError('short GET_POWER reply')
        return bp.get_u32(p, 0) / 10.0

    def board_id(self, board):
        self._check_index(board, self.info()['boards'], 'board')
        return bytes(self.request(bp.GET_BOARD_ID, bytes([board]))).decode('ascii', 'replace')

    def set_heartbeat_watchdog(self, timeout_s):
        if not 0 <= timeout_s <= 6553.5:
            raise BoardError('heartbeat watchdog timeout %s s outside 0..6553.5 s' % (timeout_s,))
        p = self.request(bp.SET_WATCHDOG, bp.u16(int(round(timeout_s * 10))))
        return bp.get_u16(p, 0) if len(p) >= 2 else None

    def close(self):
        self.transport.close()

    def get_status(self):
        out = BoardController.get_status(self)
        out['link'] = {'timeouts': self.timeouts, 'stale_replies': self.stale_replies,
                       'dropped_bytes': self.framer.dropped_bytes}
        return out
