"""Simulator chains through real ptys: discovery, addressing, PLL and counters, version rolling,
nonces, die temperature, baud switch. The simulator runs in its own process (tests/simproc.py)."""

import time

import pytest
import serial

from hal import codec, families, framer, pll
from tests.simproc import start_sim

FAM = families.get('BM1368')
F_NOM = 490.0
SCALE = 5.0


class Link:
    """A chain opened like the driver opens it: serial_for_url on the pty path."""

    def __init__(self, path):
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=0.02)
        self.framer = framer.ResponseFramer(9)

    def send(self, *frames):
        self.port.write(b''.join(frames))

    def collect(self, quiet_s=0.3, frame_len=None, max_s=5.0):
        if frame_len is not None:
            self.framer.set_frame_len(frame_len)
        out = []
        t0 = last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - t0 < max_s:
            data = self.port.read(4096)
            if data:
                last = time.monotonic()
                out.extend(codec.decode_response(f, FAM['nonce_layout'])
                           for f in self.framer.feed(data))
        return out

    def regs(self, quiet_s=0.3, frame_len=None):
        return [r for r in self.collect(quiet_s, frame_len) if r['kind'] == 'reg']

    def read(self, addr, reg, frame_len=None):
        self.send(codec.read_reg(reg, addr))
        got = self.regs(0.15, frame_len)
        assert len(got) == 1, got
        return got[0]['value']

    def close(self):
        self.port.close()


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    truth = tmp_path_factory.mktemp('sim') / 'truth.jsonl'
    with start_sim('S21', time_scale=SCALE, truth=truth) as s:
        yield s


@pytest.fixture
def link(sim):
    # chain 1's chip state is shared by the tests below; each one addresses it again
    ln = Link(sim.ports['chains'][1])
    ln.collect(0.05)
    yield ln
    ln.close()


def address_chain(ln, n=108):
    step = families.address_interval(n)
    ln.send(codec.chain_inactive(), *[codec.set_address(i * step) for i in range(n)])
    ln.collect(0.1)
    return [i * step for i in range(n)]


def test_ports_file(sim):
    p = sim.ports
    assert p['model'] == 'S21' and len(p['chains']) == 3 and p['board']
    assert p['baud'] == 115200 and p['time_scale'] == SCALE and p['pid'] == sim.pid


def test_discovery_counts_108_bm1368_in_chain_order(sim):
    ln = Link(sim.ports['chains'][0])
    ln.send(codec.read_reg(families.REG_CHIP_ID, broadcast=True))
    t0 = time.monotonic()
    got = ln.regs(0.5)
    assert len(got) == 108
    assert all(r['crc_ok'] and r['reg'] == 0 for r in got)
    assert all(families.by_chip_id(r['value'] >> 16)['name'] == 'BM1368' for r in got)
    assert all(r['chip_addr'] == 0 and r['value'] & 0xFF == 0 for r in got)
    # 108 nine-byte answers take 84 ms of wire time at 115200: they cannot come faster
    assert time.monotonic() - t0 >= 0.08
    ln.close()


def test_set_address_then_unicast(link):
    addrs = address_chain(link)
    assert addrs[:3] == [0, 2, 4]
    assert link.read(10, families.REG_CHIP_ID) == 0x13680000 | 10
    link.send(codec.read_reg(families.REG_CHIP_ID, 11))      # nobody has address 11
    assert link.regs(0.15) == []
    link.send(codec.read_reg(families.REG_CHIP_ID, broadcast=True))
    got = link.regs(0.4)
    assert [r['chip_addr'] for r in got] == addrs


def test_register_file_and_bad_crc_ignored(link):
    address_chain(link)
    link.send(codec.write_reg(0x3C, 0x12345678, 4))
    assert link.read(4, 0x3C) == 0x12345678
    bad = bytearray(codec.write_reg(0x3C, 0x0BADF00D, 4))
    bad[-1] ^= 0x01
    link.send(bytes(bad), b'\x00\xff\x13')                     # bad CRC and junk
    assert link.read(4, 0x3C) == 0x12345678


def hashrate_units_per_s(link, addr, wait_s=0.6):
    a0 = link.read(addr, families.REG_TOTAL_HASH)
    t0 = time.monotonic()
    time.sleep(wait_s)
    a1 = link.read(addr, families.REG_TOTAL_HASH)
    t1 = time.monotonic()
    return (a1 - a0) / ((t1 - t0) * SCALE)


def open_cores(link, addr):
    """The BM1368 per-chip pass (core reset, report enables, clock words, core enable)."""
    chip_step = [s for s in FAM['bringup'] if s[0] == 'chip'][0]
    # a high ticket difficulty first: a hashing chip at mask 0 floods the line with results
    link.send(codec.write_reg(families.REG_TICKET_MASK, families.ticket_mask_value(24), addr),
              *[codec.write_reg(reg, value, addr) for reg, value in chip_step[1]])


def hcn(mhz, chips=108):
    s = pll.solve(FAM, mhz)
    return families.hash_counting_number(FAM, chips, s['fb'], s['ref'], s['pd1'], s['pd2'])


def test_chip_hashes_only_once_set_up_like_silicon(link):
    address_chain(link)
    addr = 20
    link.send(codec.write_reg(families.REG_SOFT_RESET, 0x00070000, addr),
              codec.write_reg(families.REG_HASH_COUNTING, 0, addr))
    assert hashrate_units_per_s(link, addr, 0.3) == 0          # no core enable yet
    open_cores(link, addr)
    assert hashrate_units_per_s(link, addr, 0.3) == 0          # cores on, but no sweep length
    f_reset = pll.decode(FAM, link.read(addr, families.REG_PLL0))
    assert 45 <= f_reset <= 55
    link.send(codec.write_reg(families.REG_HASH_COUNTING, hcn(f_reset), addr))
    reset_rate = hashrate_units_per_s(link, addr)
    assert reset_rate == pytest.approx(f_reset * 1e6 * 1276 / 2 ** 32, rel=0.15)
    sol = pll.solve(FAM, F_NOM)
    link.send(codec.write_reg(families.REG_PLL0, sol['reg'], addr),
              codec.write_reg(families.REG_HASH_COUNTING, hcn(F_NOM), addr))
    rate = hashrate_units_per_s(link, addr)
    assert rate == pytest.approx(sol['freq_mhz'] * 1e6 * 1276 / 2 ** 32, rel=0.1)
    assert rate > 8 * reset_rate
    # report enables off (0x18 high bits clear): cores switch but nothing is counted
    link.send(codec.write_reg(families.REG_MISC_CONTROL, 0x0000C100, addr))
    assert hashrate_units_per_s(link, addr, 0.3) == 0
    link.send(codec.write_reg(families.REG_MISC_CONTROL, 0xF000C100, addr))
    # invalid PLL word: the chip stops hashing
    link.send(codec.write_reg(families.REG_PLL0, 0x40000000, addr))
    assert hashrate_units_per_s(link, addr, 0.3) == 0


def test_die_temperature_needs_the_enable_sequence(link, sim):
    address_chain(link)
    link.send(codec.write_reg(families.REG_TEMP_ENABLE, 0x80000000, broadcast=True))
    assert families.temp_c_from_code(link.read(6, families.REG_TEMP_READ)) is None
    # bit 31 alone (what the old driver wrote) powers the sensor down; so does a wrong order
    link.send(*[codec.write_reg(families.REG_TEMP_ENABLE, v, broadcast=True)
                for v in (0x10020000, 0x01020000, 0x00020000)])
    assert families.temp_c_from_code(link.read(6, families.REG_TEMP_READ)) is None
    link.send(*[codec.write_reg(families.REG_TEMP_ENABLE, v, broadcast=True)
                for v in FAM['temp_enable']])
    t = families.temp_c_from_code(link.read(6, families.REG_TEMP_READ))
    truth = sim.truth_lines()[-1]['boards'][1]['t_c'][3]
    assert t == pytest.approx(truth, abs=3)


def test_version_rolling_switches_to_11_byte_frames_and_nonces(link):
    address_chain(link)
    link.send(codec.write_reg(families.REG_VERSION_ROLLING, families.VERSION_ROLLING_ON,
                              broadcast=True))
    link.send(codec.read_reg(families.REG_CHIP_ID, 8))
    got = link.collect(0.15, frame_len=11)
    assert len(got) == 1 and got[0]['length'] == 11 and got[0]['chip_addr'] == 8
    # a chip set up to hash, ticket mask 2^4 at 490 MHz -> ~36 nonces per simulated second
    sol = pll.solve(FAM, F_NOM)
    open_cores(link, 8)
    link.send(codec.write_reg(families.REG_PLL0, sol['reg'], 8),
              codec.write_reg(families.REG_HASH_COUNTING, hcn(F_NOM), 8),
              codec.write_reg(families.REG_TICKET_MASK, families.ticket_mask_value(4), 8))
    frames = link.collect(0.6, max_s=0.6)
    nonces = [r for r in frames if r['kind'] == 'nonce']
    assert nonces and all(r['crc_ok'] and r['length'] == 11 for r in nonces)
    assert all(r['chip_addr'] == 8 for r in nonces)
    assert len({r['nonce'] for r in nonces}) == len(nonces)   # random nonce bits
    link.send(codec.write_reg(families.REG_VERSION_ROLLING, 0, broadcast=True),
              codec.write_reg(families.REG_TICKET_MASK, families.ticket_mask_value(24), 8))
    link.collect(0.2, frame_len=11)
    link.framer = framer.ResponseFramer(9)
    link.send(codec.read_reg(families.REG_CHIP_ID, 8))
    got = link.regs(0.15)
    assert len(got) == 1 and got[0]['length'] == 9


def test_baud_switch_paces_faster(link):
    addrs = address_chain(link)
    regs = (families.REG_CHIP_ID, families.REG_TOTAL_HASH, families.REG_PLL0)
    reads = b''.join(codec.read_reg(r, a) for a in addrs for r in regs)
    want = len(addrs) * len(regs)
    slow_wire_s = want * 9 * 10 / 115200.0

    def timed():
        fr = framer.ResponseFramer(9)
        link.port.timeout = 0.005
        t0 = time.monotonic()
        link.send(reads)
        n = 0
        while n < want and time.monotonic() - t0 < 3:
            n += len(fr.feed(link.port.read(4096)))
        return time.monotonic() - t0, n
    slow, n = timed()
    assert n == want and slow >= slow_wire_s
    link.send(codec.write_reg(families.REG_UART_BAUD, FAM['fast_bauds'][3125000],
                              broadcast=True))
    time.sleep(0.1)
    # the host still at 115200: what the chips send at 3.125 Mbaud arrives as garbage
    _, n = timed()
    assert n == 0
    link.port.baudrate = 3125000
    fast, n = timed()
    link.send(codec.write_reg(families.REG_UART_BAUD, FAM['reset_baud_word'], broadcast=True))
    time.sleep(0.1)
    link.port.baudrate = 115200
    link.port.timeout = 0.02
    assert n == want and fast < slow_wire_s / 3


def test_truth_lines_well_formed(sim):
    time.sleep(0.5)
    lines = sim.truth_lines()
    head, states = lines[0], lines[1:]
    assert head['type'] == 'header' and head['model'] == 'S21' and head['seed'] == 1
    assert len(head['chips']) == 3 and len(head['chips'][0]) == 108
    assert set(head['chips'][0][0]) >= {'speed', 'leak', 'cap'}
    assert len(states) >= 2
    ts = [s['t_s'] for s in states]
    assert ts == sorted(ts) and ts[-1] - ts[0] >= 1
    s = states[-1]
    for key in ('t_s', 'ambient_c', 'boards', 'fans', 'wall_w', 'good_ths', 'j_per_th',
                'nonces_dropped'):
        assert key in s
    b = s['boards'][0]
    assert b['mv'] == 14400 and b['enabled'] is True
    for key in ('f_mhz', 't_c', 'p_w', 'err', 'good_hs'):
        assert len(b[key]) == 108
    assert len(s['fans']) == 4 and s['wall_w'] > 0


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
