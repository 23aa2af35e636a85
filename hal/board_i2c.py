"""machine.I2C look-alike over the board-controller protocol's I2C_XFER (docs/board-protocol.md):
the Unix port and the tests reach the simulated Bitaxe parts through it, so the same drivers
(hal/bitaxe/) run against simulated registers as against an ESP32's machine.I2C. Pure.
"""

from hal import board_protocol as bp
from hal.board import BoardError


class BoardI2C:
    """readfrom_mem / writeto_mem / writeto as machine.I2C has them; a NACK raises OSError
    (machine.I2C raises OSError(ENODEV) too)."""

    def __init__(self, controller):
        self.controller = controller        # SerialBoardController (its request() does the frames)
        self.transfers = 0

    def _xfer(self, addr, nread, wbytes):
        self.transfers += 1
        try:
            return self.controller.request(bp.I2C_XFER, bytes([addr & 0x7F, nread]) + bytes(wbytes))
        except BoardError as e:
            raise OSError('I2C 0x%02X: %s' % (addr, e))

    def readfrom_mem(self, addr, memaddr, nbytes):
        data = self._xfer(addr, nbytes, bytes([memaddr]))
        if len(data) != nbytes:
            raise OSError('I2C 0x%02X: %d of %d bytes' % (addr, len(data), nbytes))
        return data

    def writeto_mem(self, addr, memaddr, buf):
        self._xfer(addr, 0, bytes([memaddr]) + bytes(buf))

    def writeto(self, addr, buf):
        self._xfer(addr, 0, bytes(buf))
        return len(buf)
