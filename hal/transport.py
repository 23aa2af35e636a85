"""Serial transport for chains and board controllers: pyserial `serial_for_url()` only.

Works for /dev/ttyS*, ptys, loop://, socket://, spy://. Writes, non-blocking or deadline reads,
baud changes (degrading gracefully where the OS refuses a rate, e.g. 3.125 Mbaud on a pty) and
byte counters. No framing here: framers live in hal/framer.py and hal/board_protocol.py.
"""

import logging
import select
import time

import serial

from hal.errors import TransportError  # noqa: F401  (defined in a pure module, re-exported)

log = logging.getLogger(__name__)

# Fixed pyserial timeout: changing it reconfigures the port (tcsetattr) on every call, so reads
# that wait for a deadline use select() on the descriptor, or loop on this short timeout.
_POLL_S = 0.005


class Transport:
    """One serial line. `url` is anything `serial.serial_for_url()` accepts."""

    def __init__(self, url, baud=115200, ser=None):
        self.url = url
        self.baud = int(baud)          # nominal rate (what the far end uses), even if the OS refused it
        self.os_baud_ok = True
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.baud_notes = []
        if ser is None:
            try:
                ser = serial.serial_for_url(url, baudrate=self.baud, timeout=_POLL_S,
                                            write_timeout=5.0)
            except (serial.SerialException, ValueError, OSError) as exc:
                raise TransportError('cannot open %s: %s' % (url, exc))
        self._ser = ser
        self._fd = None
        try:
            self._fd = ser.fileno()
        except Exception:  # loop:// and friends have no descriptor
            self._fd = None

    @classmethod
    def open(cls, url, baud=115200):
        return cls(url, baud)

    # -- bytes -------------------------------------------------------------------------------
    def write(self, data):
        if not data:
            return 0
        try:
            n = self._ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise TransportError('write to %s failed: %s' % (self.url, exc))
        n = len(data) if n is None else n
        self.tx_bytes += n
        return n

    def read(self, timeout_s=0.0):
        """Whatever bytes are waiting; if none, wait up to timeout_s (wall seconds) for some."""
        ser = self._ser
        try:
            n = ser.in_waiting
            if not n and timeout_s > 0:
                if self._fd is not None:
                    r, _, _ = select.select([self._fd], [], [], timeout_s)
                    n = ser.in_waiting if r else 0
                else:
                    end = time.monotonic() + timeout_s
                    while True:
                        first = ser.read(1)
                        if first:
                            rest = ser.read(ser.in_waiting) if ser.in_waiting else b''
                            data = first + rest
                            self.rx_bytes += len(data)
                            return data
                        if time.monotonic() >= end:
                            return b''
            if not n:
                return b''
            data = ser.read(n)
        except (serial.SerialException, OSError) as exc:
            raise TransportError('read from %s failed: %s' % (self.url, exc))
        self.rx_bytes += len(data)
        return data

    def drain(self):
        """Block until the OS has sent what we wrote (best effort on ptys/loops)."""
        try:
            self._ser.flush()
        except (serial.SerialException, OSError, termios_error()):
            pass

    def discard_input(self):
        """Drop bytes waiting in the receive buffer (counted as received)."""
        dropped = 0
        while True:
            data = self.read(0)
            if not data:
                return dropped
            dropped += len(data)

    # -- line settings -----------------------------------------------------------------------
    def set_baud(self, baud):
        """Move the host UART to `baud`. If the OS refuses the rate (ptys may refuse non-standard
        rates), keep the nominal value for timing and log a note: the simulator paces by the
        chips' own baud register, not by termios."""
        baud = int(baud)
        try:
            self._ser.baudrate = baud
            self.os_baud_ok = True
        except (serial.SerialException, ValueError, OSError) as exc:
            self.os_baud_ok = False
            note = 'OS refused %d baud on %s (%s); keeping nominal rate' % (baud, self.url, exc)
            self.baud_notes.append(note)
            log.info(note)
        self.baud = baud

    def byte_time_s(self):
        """Wire time of one 8N1 byte at the nominal rate."""
        return 10.0 / self.baud

    def close(self):
        try:
            self._ser.close()
        except Exception:
            pass

    def get_status(self):
        return {'url': self.url, 'baud': self.baud, 'os_baud_ok': self.os_baud_ok,
                'tx_bytes': self.tx_bytes, 'rx_bytes': self.rx_bytes}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def termios_error():
    try:
        import termios
        return termios.error
    except ImportError:  # non-POSIX
        return OSError
