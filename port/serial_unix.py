"""Chain / board-controller serial line on the Unix port: a pty (the simulator's) opened as a
file, raw mode with VMIN=0 (a read returns what is there), select.poll to wait. Same methods as
hal/transport.Transport as far as the chain driver and SimBoardController use them.
"""

import select
import termios

from hal.errors import TransportError

_VTIME = 5      # c_cc indices (Linux); MicroPython's termios has no VMIN/VTIME names
_VMIN = 6


class PtySerial:
    def __init__(self, path, baud=115200):
        self.url = path
        self.baud = int(baud)
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

    def set_baud(self, baud):
        # The simulator paces by the chips' own baud register: only the nominal rate changes.
        self.baud = int(baud)

    def byte_time_s(self):
        return 10.0 / self.baud

    def close(self):
        try:
            self._f.close()
        except OSError:
            pass

    def get_status(self):
        return {'url': self.url, 'baud': self.baud, 'os_baud_ok': True,
                'tx_bytes': self.tx_bytes, 'rx_bytes': self.rx_bytes}
