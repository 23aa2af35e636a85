"""Chain serial line on an ESP32-S3 Bitaxe: machine.UART 1, TX GPIO 17, RX GPIO 18 (ESP-Miner
components/asic/serial.c). Same methods as port/serial_unix.PtySerial. Not runnable on the Unix
port (no machine.UART there): checked by mpy-cross only (docs/micropython.md).
"""

import time

from machine import UART

from hal.errors import TransportError

UART_ID = 1
TX_PIN = 17
RX_PIN = 18


class UartSerial:
    def __init__(self, baud=115200, uart_id=UART_ID, tx=TX_PIN, rx=RX_PIN, rxbuf=2048):
        self.url = 'uart%d' % uart_id
        self.baud = int(baud)
        self.tx_bytes = 0
        self.rx_bytes = 0
        self._args = (uart_id, tx, rx, rxbuf)
        self._uart = UART(uart_id, baudrate=self.baud, tx=tx, rx=rx, rxbuf=rxbuf, timeout=0)

    def write(self, data):
        try:
            n = self._uart.write(data)
        except OSError as e:
            raise TransportError('write to %s failed: %s' % (self.url, e))
        self.tx_bytes += n or 0
        return n or 0

    def read(self, timeout_s=0.0):
        deadline = time.ticks_add(time.ticks_ms(), int(timeout_s * 1000))
        while True:
            n = self._uart.any()
            if n:
                data = self._uart.read(n) or b''
                self.rx_bytes += len(data)
                return data
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return b''
            time.sleep_ms(1)

    def discard_input(self):
        dropped = 0
        while self._uart.any():
            dropped += len(self._uart.read() or b'')
        return dropped

    def drain(self):
        self._uart.flush()

    def supports_baud(self, baud):
        return True

    def set_baud(self, baud):
        self._uart.flush()            # finish sending at the old rate first (serial.c does too)
        self.baud = int(baud)
        self._uart.init(baudrate=self.baud)

    def byte_time_s(self):
        return 10.0 / self.baud

    def close(self):
        self._uart.deinit()

    def get_status(self):
        return {'url': self.url, 'baud': self.baud, 'os_baud_ok': True,
                'tx_bytes': self.tx_bytes, 'rx_bytes': self.rx_bytes}
