"""Chain / board-controller serial line on the Unix port: a pty (the simulator's) opened as a
file, raw mode with VMIN=0 (a read returns what is there), select.poll to wait. Same methods as
hal/transport.Transport as far as the chain driver and SerialBoardController use them.
"""

import select
import termios

from hal.errors import TransportError

_VTIME = 5      # c_cc indices (Linux); MicroPython's termios has no VMIN/VTIME names
_VMIN = 6


_TOLERANCE = 0.05   # 8N1: a receiver copes with rates this far apart (the simulator too)
_RATES = (9600, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000)


def _speed_code(baud):
    """termios Bnnn of the standard rate nearest to baud within 5 % (BM1370's 1 041 667 runs
    as B1000000, 4 % slow), or None."""
    best = None
    for r in _RATES:
        if abs(r - baud) <= _TOLERANCE * baud and (best is None or abs(r - baud) < abs(best - baud)):
            best = r
    return getattr(termios, 'B%d' % best, None) if best else None


class PtySerial:
    def __init__(self, path, baud=115200):
        self.url = path
        self.baud = int(baud)
        self.os_baud_ok = True
        self.tx_bytes = 0
        self.rx_bytes = 0
        try:
            self._f = open(path, 'r+b')
            fd = self._f.fileno()
            termios.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[6][_VMIN] = 0
            attrs[6][_VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            self._set_speed(self.baud)
        except OSError as e:
            raise TransportError('cannot open %s: %s' % (path, e))
        self._rx = bytearray(512)          # one receive buffer: no 4 KB allocation per read
        self._rxv = memoryview(self._rx)
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)

    def write(self, data):
        if not data:
            return 0
        try:
            n = self._f.write(data)
        except OSError as e:
            raise TransportError('write to %s failed: %s' % (self.url, e))
        n = len(data) if n is None else n
        self.tx_bytes += n
        return n

    def read(self, timeout_s=0.0):
        """Whatever bytes are waiting; if none, wait up to timeout_s (wall seconds) for some."""
        try:
            n = self._f.readinto(self._rx)
            if not n and timeout_s > 0:
                if self._poll.poll(int(timeout_s * 1000) + 1):
                    n = self._f.readinto(self._rx)
        except OSError as e:
            raise TransportError('read from %s failed: %s' % (self.url, e))
        if not n:
            return b''
        self.rx_bytes += n
        return bytes(self._rxv[:n])

    def discard_input(self):
        dropped = 0
        while True:
            data = self.read(0)
            if not data:
                return dropped
            dropped += len(data)

    def drain(self):
        pass

    def _set_speed(self, baud):
        """The line rate in termios, as a UART driver sets it (the simulator garbles bytes sent
        at a rate its chips do not use). Only the standard Bnnn rates MicroPython's termios
        knows; another rate keeps the nominal value for timing (os_baud_ok False)."""
        code = _speed_code(baud)
        if code is None:
            self.os_baud_ok = False
            return
        fd = self._f.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[4] = code
        attrs[5] = code
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.os_baud_ok = True

    def supports_baud(self, baud):
        return _speed_code(baud) is not None

    def set_baud(self, baud):
        self.baud = int(baud)
        try:
            self._set_speed(self.baud)
        except OSError as e:
            raise TransportError('baud %d on %s: %s' % (baud, self.url, e))

    def byte_time_s(self):
        return 10.0 / self.baud

    def close(self):
        try:
            self._f.close()
        except OSError:
            pass

    def get_status(self):
        return {'url': self.url, 'baud': self.baud, 'os_baud_ok': self.os_baud_ok,
                'tx_bytes': self.tx_bytes, 'rx_bytes': self.rx_bytes}
