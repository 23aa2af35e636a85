"""Transport (pyserial URLs, deadline reads, counters, graceful baud refusal) and the read
pipeline's bookkeeping without a simulator: loop:// echoes our own command frames, which are
never valid answers, so every request must time out, be retried and end as None."""

import os
import time
import tty

import serial
from serial.urlhandler.protocol_loop import Serial as LoopSerial

from hal.framer import ResponseFramer
from hal.pipeline import ReadPipeline, auto_window
from hal.transport import Transport, TransportError

import pytest


def test_loop_write_read_and_counters():
    t = Transport('loop://', 115200)
    assert t.read(0) == b''
    t0 = time.monotonic()
    assert t.read(0.05) == b''
    assert time.monotonic() - t0 >= 0.04              # waited for the deadline
    t.write(b'\x01\x02\x03')
    assert t.read(0.1) == b'\x01\x02\x03'
    assert t.get_status()['tx_bytes'] == 3 and t.rx_bytes == 3
    t.write(b'xyz')
    assert t.discard_input() == 3
    t.close()


def test_spy_url_on_a_pty():
    master, slave = os.openpty()
    tty.setraw(master)
    try:
        t = Transport('spy://%s?file=/dev/null' % os.ttyname(slave), 115200)
        t.write(b'ab')
        assert os.read(master, 16) == b'ab'
        os.write(master, b'cd')
        assert t.read(0.5) == b'cd'
        t.set_baud(3125000)                 # ptys take it or refuse it: either way no error
        assert t.baud == 3125000
        t.close()
    finally:
        os.close(master)
        os.close(slave)


def test_bad_url_is_a_clear_error():
    with pytest.raises(TransportError, match='cannot open'):
        Transport('/dev/does-not-exist-hp', 115200)


class RefusingSerial(LoopSerial):
    """Stands in for an OS that refuses non-standard rates (as some pty drivers do)."""

    def _reconfigure_port(self):
        if self._baudrate not in serial.Serial.BAUDRATES:
            raise ValueError('Invalid baud rate: %r' % self._baudrate)
        LoopSerial._reconfigure_port(self)


def test_set_baud_degrades_gracefully_when_the_os_refuses():
    ser = RefusingSerial('loop://', baudrate=115200, timeout=0.005)
    t = Transport('loop://', 115200, ser=ser)
    t.set_baud(3125000)
    assert t.baud == 3125000 and t.os_baud_ok is False and t.baud_notes
    t.set_baud(1000000)
    assert t.os_baud_ok is True
    t.write(b'still works')
    assert t.read(0.1) == b'still works'


def test_pipeline_gives_up_on_a_silent_chain_without_raising():
    t = Transport('loop://', 115200)
    pipe = ReadPipeline(t, ResponseFramer(11), window=4)
    reqs = [(2 * i, 0x8C) for i in range(40)] + [(0, 0x8C)]     # one duplicate
    t0 = time.monotonic()
    values, times = pipe.run(reqs, retries=2)
    assert values == {(2 * i, 0x8C): None for i in range(40)}
    st = pipe.last_stats
    assert st['requests'] == 40 and st['silent'] is True
    # One window's worth of timeouts decides it: not 40 requests x 3 attempts of waiting.
    assert st['timeouts'] >= 4 and st['sent'] < 12
    assert time.monotonic() - t0 < 1.0
    assert t.tx_bytes == st['sent'] * 7


def test_auto_window_bounds():
    assert auto_window(115200) == 16
    assert auto_window(3125000) == 128   # 15 ms of 35 us answers, capped


def test_counter_accounting_wrap_window_and_glitch():
    from hal import families, models
    from hal.chain import Chip, ChainDriver
    from hal.limits import HardwareLimits
    drv = ChainDriver(Transport('loop://'), 'BM1368',
                      limits=HardwareLimits(models.get('S21'), families.get('BM1368')))
    c = Chip(0, 0x1368)
    c.freq_mhz = 490.0
    per_s = 490e6 * 1276 / 2 ** 32                  # 0x8C units per second
    start = 0xFFFFFFFF - 50                          # wraps inside the window
    drv.account(c, 10.0, start, 0xFFFFFFFF)
    drv.account(c, 10.5, (start + int(per_s / 2)) & 0xFFFFFFFF, 0)   # < 1 s: no rate yet
    assert c.hashrate_ghs is None
    drv.account(c, 12.0, (start + int(2 * per_s)) & 0xFFFFFFFF, 1)
    assert abs(c.hashrate_ghs - 625.24) < 1.0
    assert abs(c.err_pct - 100.0 * 2 / int(2 * per_s)) < 1e-9       # 0xFFFFFFFF -> 1 is 2
    good = c.hashrate_ghs
    base = (start + int(2 * per_s)) & 0xFFFFFFFF
    drv.account(c, 14.0, base ^ 0x40000000, 1)       # a bit flip that passed the CRC
    assert drv.counter_glitches == 1 and c.hashrate_ghs == good
    drv.account(c, 16.0, (base + int(4 * per_s)) & 0xFFFFFFFF, 1)   # bad ref -> glitch again
    drv.account(c, 18.0, (base + int(6 * per_s)) & 0xFFFFFFFF, 1)
    assert drv.counter_glitches == 2 and abs(c.hashrate_ghs - 625.24) < 1.0


def test_poll_survives_a_failed_port():
    from hal import families, models
    from hal.chain import Chip, ChainDriver
    from hal.limits import HardwareLimits
    t = Transport('loop://')
    drv = ChainDriver(t, 'BM1368', limits=HardwareLimits(models.get('S21'),
                                                         families.get('BM1368')), dead_after=2)
    drv.chips = [Chip(i, 0x1368) for i in range(3)]
    for i, c in enumerate(drv.chips):
        c.addr = 2 * i
    drv.by_addr = dict((c.addr, c) for c in drv.chips)
    t.close()                                          # writes now fail
    st = drv.poll()
    assert st['link_error'] and st['alive'] == 3
    st = drv.poll()
    assert st['alive'] == 0                            # two misses: marked dead, no exception


def test_chain_cli_errors_are_clear(capsys):
    from hal.tools import chain_cli
    assert chain_cli.main(['scan', '--port', 'loop://', '--silence-s', '0.1']) == 1
    assert 'no chips answered' in capsys.readouterr().err
    assert chain_cli.main(['status', '--port', '/dev/nonexistent-hp']) == 1
    assert 'cannot open' in capsys.readouterr().err


def test_hashes_are_counted_once_in_the_driver():
    """Accepted windows add to the chip's cumulative counts (what the tuner's statistics read);
    glitches and implausible windows add nothing; a frequency change restarts the window."""
    from hal import families, models
    from hal.chain import Chip, ChainDriver
    from hal.limits import HardwareLimits
    drv = ChainDriver(Transport('loop://'), 'BM1368',
                      limits=HardwareLimits(models.get('S21'), families.get('BM1368')))
    c = Chip(0, 0x1368)
    c.freq_mhz = 490.0
    per_s = int(490e6 * 1276 / 2 ** 32)
    drv.account(c, 0.0, 1000, 7)
    drv.account(c, 2.0, 1000 + 2 * per_s, 9)
    assert (c.hash_units, c.err_units) == (2 * per_s, 2)
    drv.account(c, 4.0, (1000 + 2 * per_s) ^ 0x40000000, 9)     # glitch: restarts, adds nothing
    assert (c.hash_units, c.err_units) == (2 * per_s, 2) and drv.counter_glitches == 1
    base = (1000 + 2 * per_s) ^ 0x40000000
    # 3x what 1280 cores can count: passes the glitch bound (8192 cores) but not the statistics
    drv.account(c, 6.0, (base + 6 * per_s) & 0xFFFFFFFF, 9)
    assert c.hash_units == 2 * per_s and c.hashrate_ghs > 1800
    drv.account(c, 8.0, (base + 8 * per_s) & 0xFFFFFFFF, 10)
    assert (c.hash_units, c.err_units) == (4 * per_s, 3)
