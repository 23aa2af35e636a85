"""Pseudo-terminals of the simulator and the UART pacing of a chain (bytes at the chain's baud).

RX: bytes read from the pty are given wire arrival times (10 bits per byte, 8N1, line busy until
the previous byte arrived); a command is acted on when its last byte has arrived. TX: a response is
scheduled when the command that caused it has arrived, occupies the line for its length, and is
written to the pty when its last byte's wire time has come. Real (wall) time throughout.
"""

import collections
import errno
import fcntl
import os
import random
import struct
import termios
import time
import tty

from hal import framer

NONCE_BACKLOG_MAX = 1024   # bytes pending on the chain's output: beyond this, new nonces drop
# Commands are acted on up to this long before their last byte's wire time (their answers are
# still scheduled from the arrival time), so a fast pipelined burst costs few loop turns.
RX_LOOKAHEAD_S = 0.02
RX_BATCH = 16
TX_COALESCE_S = 0.0005
# Host bytes are read from the pty only while the simulated RX line is less than this far
# behind; beyond it the pty buffer fills and the host's writes block, as on a real UART.
RX_AHEAD_MAX_S = 0.1
OUTBUF_MAX = 65536         # bytes due but not taken by the pty (nobody reading): beyond, dropped
BAUD_TOLERANCE = 0.05      # 8N1 receivers sample mid-bit: beyond ~5 % apart every byte is wrong
TCGETS2 = 0x802C542A       # Linux: struct termios2 with the real c_ispeed / c_ospeed


def host_baud(fd):
    """The rate the host set on the pty (pyserial sets custom rates through termios2), or None
    where the OS cannot tell; then the host is taken to match the chips."""
    buf = bytearray(44)
    try:
        fcntl.ioctl(fd, TCGETS2, buf)
    except (OSError, ValueError):
        return None
    ospeed = struct.unpack_from('I', buf, 40)[0]
    return ospeed or None


def baud_mismatch(host, chip):
    return host is not None and abs(host - chip) > BAUD_TOLERANCE * chip


class Pty:
    """A pty pair. We keep the slave open ourselves so the master never sees EIO/HUP while a
    host (pyserial) opens and closes the slave; the slave is put in raw mode."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave, termios.TCSANOW)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.outbuf = bytearray()
        self.dropped_out_bytes = 0
        self.io_errors = 0

    def read(self):
        """Bytes available from the host, b'' if none (EAGAIN/EIO never raise)."""
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, InterruptedError):
            return b''
        except OSError as e:
            if e.errno in (errno.EIO, errno.EAGAIN):
                self.io_errors += 1
                return b''
            raise

    def write(self, data=b''):
        """Queue data and write as much as the pty takes now (the rest waits for writable)."""
        if data:
            self.outbuf.extend(data)
        if len(self.outbuf) > OUTBUF_MAX:
            self.dropped_out_bytes += len(self.outbuf)
            self.outbuf = bytearray()
        if not self.outbuf:
            return
        try:
            n = os.write(self.master, self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno in (errno.EIO, errno.EAGAIN):
                self.io_errors += 1
                self.dropped_out_bytes += len(self.outbuf)
                self.outbuf = bytearray()
                return
            raise
        del self.outbuf[:n]

    def wants_write(self):
        return bool(self.outbuf)

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class ChainPort:
    """One chain's UART: paces host->chip commands and chip->host frames at chain.baud."""

    def __init__(self, chain, sim_time, corrupt=None):
        self.chain = chain
        self.sim_time = sim_time       # wall -> simulated seconds
        self.corrupt = corrupt         # callable(bytes) -> bytes, or None
        self.pty = Pty()
        self.rxbuf = bytearray()
        self.rx_free = 0.0
        self.rxq = collections.deque()  # [arrival_wall, frame]
        self.tx_free = 0.0
        self.txq = collections.deque()  # (due_wall, frame)
        self.tx_pending = 0
        self.nonces_dropped = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.garbled_bytes = 0
        self._garble = random.Random(0x5EED)
        self._host_baud = None

    def _rx_host_rates(self):
        """The host rates bytes read now may have been sent at: the current one and, right after
        the host moved its UART, the previous one too (a lagging simulator cannot tell whether
        pending bytes were written before or after the switch)."""
        now = host_baud(self.pty.master)
        before = self._host_baud
        self._host_baud = now
        return (now, before) if (before is not None and now != before) else (now,)

    def _at_wrong_baud(self, data, hosts=None):
        """Bytes sent at a rate the other end does not use arrive as garbage."""
        if hosts is None:
            hosts = (host_baud(self.pty.master),)
        if not all(baud_mismatch(h, self.chain.baud) for h in hosts):
            return data
        self.garbled_bytes += len(data)
        rnd = self._garble.getrandbits
        return bytes(rnd(8) for _ in data)

    def bytetime(self):
        return 10.0 / self.chain.baud

    def on_readable(self, now):
        data = self.pty.read()
        if not data:
            return
        self.bytes_in += len(data)
        data = self._at_wrong_baud(data, self._rx_host_rates())
        bt = self.bytetime()
        t0 = self.rx_free if self.rx_free > now else now
        cs = len(self.rxbuf)            # where this chunk starts in rxbuf
        self.rxbuf.extend(data)
        self.rx_free = t0 + len(data) * bt
        buf = self.rxbuf
        pos = 0
        while True:
            status, begin, end = framer.scan_command(buf, pos)
            if status == framer.FRAME:
                # the frame's last byte is in this chunk (earlier frames were taken already)
                self.rxq.append([t0 + (end - cs) * bt, bytes(buf[begin:end])])
                pos = end
            elif status == framer.JUNK or status == framer.BAD:
                pos = end
            else:
                pos = begin
                break
        if pos:
            del buf[:pos]

    def wants_read(self, now):
        return self.rx_free - now < RX_AHEAD_MAX_S

    def next_due(self, now):
        """Wall time this port next needs the loop. TX wakes are coalesced: wait up to
        TX_COALESCE_S past the head frame's due time to write more frames at once, but never
        past the last queued frame's due time."""
        t = None
        if self.rxq:
            t = self.rxq[0][0] - RX_LOOKAHEAD_S
        if not self.wants_read(now):
            resume = self.rx_free - RX_AHEAD_MAX_S
            if t is None or resume < t:
                t = resume
        txq = self.txq
        if txq:
            head = txq[0][0]
            tx = now + TX_COALESCE_S
            if tx > txq[-1][0]:
                tx = txq[-1][0]
            if tx < head:
                tx = head
            if t is None or tx < t:
                t = tx
        return t

    def schedule(self, frame, ready):
        bt = self.bytetime()
        start = self.tx_free if self.tx_free > ready else ready
        self.tx_free = start + len(frame) * bt
        self.txq.append((self.tx_free, frame))
        self.tx_pending += len(frame)

    def queue_nonces(self, dt_s, now):
        """Nonces of the last dt_s: queued while the output backlog is under
        NONCE_BACKLOG_MAX bytes, dropped (and counted) beyond it."""
        room = NONCE_BACKLOG_MAX - self.tx_pending - len(self.pty.outbuf)
        frames, dropped = self.chain.nonce_frames(dt_s, room)
        self.nonces_dropped += dropped
        for fr in frames:
            self.schedule(fr, now)

    def service(self, now):
        """Act on commands that have fully arrived and write every frame that is due.

        Alternates small batches of commands with writes, so a long pipelined burst does not
        hold back answers that are already due.
        """
        rxq = self.rxq
        while True:
            self._flush(now)
            n = 0
            while rxq and n < RX_BATCH and rxq[0][0] <= now + RX_LOOKAHEAD_S:
                arrival, frame = rxq.popleft()
                n += 1
                baud = self.chain.baud
                for resp in self.chain.handle(frame, self.sim_time(arrival)):
                    self.schedule(resp, arrival)
                if self.chain.baud != baud:
                    # commands already read but not yet arrived come in at the new rate
                    bt = self.bytetime()
                    t = arrival
                    for item in rxq:
                        t += len(item[1]) * bt
                        item[0] = t
                    self.rx_free = t if t > now else now
            if not n:
                return
            now = time.monotonic()

    def _flush(self, now):
        txq = self.txq
        if txq and txq[0][0] <= now:
            out = bytearray()
            while txq and txq[0][0] <= now:
                out.extend(txq.popleft()[1])
            self.tx_pending -= len(out)
            self.bytes_out += len(out)
            if self.corrupt is not None:
                out = self.corrupt(out)
            self.pty.write(self._at_wrong_baud(out))
        elif self.pty.outbuf:
            self.pty.write()

    def get_status(self):
        return {'path': self.pty.path, 'baud': self.chain.baud, 'chain': self.chain.get_status(),
                'bytes_in': self.bytes_in, 'bytes_out': self.bytes_out,
                'nonces_dropped': self.nonces_dropped, 'tx_pending': self.tx_pending,
                'out_dropped': self.pty.dropped_out_bytes, 'garbled_bytes': self.garbled_bytes}
