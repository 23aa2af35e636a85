"""The safe-state writer: the watchdog's side channel to the hardware. Fire-and-forget frames
(all boards off, all fans 100 %) on its own port handle, or its own sysfs controller, so a
control thread stuck in a transaction cannot hold it up. CPython (serial transport).
"""

import logging

from hal import board_protocol
from hal.transport import Transport

log = logging.getLogger('hashpilot')


class SafeStateWriter:
    """Watchdog side channel: fire-and-forget safe-state frames on its own port handle (or
    its own sysfs controller), so a control thread stuck in a transaction cannot hold it up.
    """

    def __init__(self, board_url, sysfs_board=None):
        self.transport = Transport(board_url, 115200) if board_url and sysfs_board is None else None
        self.sysfs_board = sysfs_board
        self.seq = 0x80

    def apply(self):
        if self.sysfs_board is not None:
            try:
                self.sysfs_board.set_fan_duty(None, 100)
                self.sysfs_board.set_enabled(None, False)
                return True
            except Exception as e:
                log.error('watchdog: writing the safe state failed: %s', e)
                return False
        if self.transport is None:
            return False
        frames = b''
        for _ in range(2):   # twice: a frame garbled on the line is not fatal
            for cmd, payload in ((board_protocol.SET_FAN, bytes([board_protocol.ALL, 100])),
                                 (board_protocol.SET_ENABLE, bytes([board_protocol.ALL, 0]))):
                self.seq = (self.seq + 1) & 0xFF
                frames += board_protocol.encode(self.seq, cmd, payload)
        try:
            self.transport.write(frames)
            return True
        except Exception as e:
            log.error('watchdog: writing the safe state failed: %s', e)
            return False

    def close(self):
        if self.transport is not None:
            self.transport.close()
