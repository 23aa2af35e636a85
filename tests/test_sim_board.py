"""Simulator board controller (hal/board_protocol.py over its own pty) and fault injection."""

import re
import time

import pytest
import serial

from hal import board_protocol as bp
from hal import codec, families, framer
from tests.simproc import start_sim

SCALE = 10.0


class Board:
    def __init__(self, path):
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=0.05)
        self.framer = bp.Framer()
        self.seq = 0

    def call(self, cmd, payload=b''):
        self.seq = (self.seq + 1) & 0xFF
        self.port.write(bp.encode(self.seq, cmd, payload))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for seq, rcmd, body in self.framer.feed(self.port.read(256)):
                if seq == self.seq:
                    assert rcmd == cmd | bp.REPLY_FLAG
                    return body[0], body[1:]
        raise AssertionError('no reply to command 0x%02X' % cmd)

    def temps(self, board):
        st, body = self.call(bp.GET_TEMPS, bytes([board]))
        assert st == bp.ST_OK and body[0] == 2
        return [bp.get_s16(body, 2 + 3 * k) / 100.0 if body[1 + 3 * k] else None
                for k in range(2)]

    def close(self):
        self.port.close()


def chip_ids(path, quiet_s=0.3, max_s=5.0):
    port = serial.serial_for_url(path, baudrate=115200, timeout=0.02)
    port.reset_input_buffer()
    port.write(codec.read_reg(families.REG_CHIP_ID, broadcast=True))
    fr = framer.ResponseFramer(9)
    out = []
    last = t0 = time.monotonic()
    while time.monotonic() - last < quiet_s and time.monotonic() - t0 < max_s:
        data = port.read(4096)
        if data:
            last = time.monotonic()
            out += [codec.decode_response(f) for f in fr.feed(data)]
    port.close()
    return [r for r in out if r['kind'] == 'reg']


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    truth = tmp_path_factory.mktemp('simb') / 'truth.jsonl'
    with start_sim('S21', time_scale=SCALE, truth=truth,
                   faults=['sensor-absent:board=2,sensor=1',
                           'sensor-stuck:board=1,sensor=0,value_c=30'], extra=['--warm']) as s:
        yield s


@pytest.fixture
def board(sim):
    b = Board(sim.ports['board'])
    yield b
    b.close()


def test_info_and_identity(board):
    st, body = board.call(bp.GET_INFO)
    assert st == bp.ST_OK
    assert list(body[:4]) == [3, 4, 2, 0] and bp.get_u16(body, 4) == 6000
    assert body[6:] == b'S21'
    ids = []
    for b in range(3):
        st, body = board.call(bp.GET_BOARD_ID, bytes([b]))
        assert st == bp.ST_OK
        ids.append(body.decode())
        assert re.match(r'^S21-1-B%d-[0-9A-F]{6}$' % b, ids[-1])
    assert len(set(ids)) == 3
    assert board.call(bp.GET_BOARD_ID, bytes([3]))[0] == bp.ST_BAD_ARG
    assert board.call(0x7E)[0] == bp.ST_UNKNOWN_CMD


def test_fans_follow_duty_with_lag(board):
    st, body = board.call(bp.GET_FANS)
    assert st == bp.ST_OK and body[0] == 4
    assert body[1] == 100 and bp.get_u16(body, 2) == pytest.approx(6000, rel=0.02)
    assert board.call(bp.SET_FAN, bytes([bp.ALL, 50]))[0] == bp.ST_OK
    assert board.call(bp.SET_FAN, bytes([1, 101]))[0] == bp.ST_OUT_OF_RANGE
    assert board.call(bp.SET_FAN, bytes([9, 50]))[0] == bp.ST_BAD_ARG
    time.sleep(0.05)
    _st, body = board.call(bp.GET_FANS)
    assert bp.get_u16(body, 2) > 3300          # 2 s time constant: not there yet
    time.sleep(1.5)                             # 15 simulated seconds
    _st, body = board.call(bp.GET_FANS)
    rpms = [bp.get_u16(body, 2 + 3 * k) for k in range(4)]
    assert all(body[1 + 3 * k] == 50 for k in range(4))
    assert all(r == pytest.approx(3000, rel=0.02) for r in rpms)
    assert board.call(bp.SET_FAN, bytes([bp.ALL, 100]))[0] == bp.ST_OK


def test_voltage_rail_range_and_readback(board):
    assert board.call(bp.SET_VOLTAGE, bytes([bp.ALL]) + bp.u16(16000))[0] == bp.ST_OUT_OF_RANGE
    assert board.call(bp.SET_VOLTAGE, bytes([bp.ALL]) + bp.u16(11000))[0] == bp.ST_OUT_OF_RANGE
    assert board.call(bp.SET_VOLTAGE, bytes([0]) + bp.u16(14000))[0] == bp.ST_UNSUPPORTED
    st, body = board.call(bp.SET_VOLTAGE, bytes([bp.ALL]) + bp.u16(14003))
    assert st == bp.ST_OK and bp.get_u16(body, 0) == 14000      # 10 mV resolution
    for b in range(3):
        st, body = board.call(bp.GET_VOLTAGE, bytes([b]))
        assert st == bp.ST_OK and bp.get_u16(body, 0) == 14000
        assert bp.get_u16(body, 2) == pytest.approx(14000, rel=0.01) and body[4] == 1
    assert board.call(bp.SET_VOLTAGE, bytes([bp.ALL]) + bp.u16(14400))[0] == bp.ST_OK


def test_temps_power_and_sensor_faults(board, sim):
    t0 = board.temps(0)
    assert all(25 < t < 90 for t in t0) and t0[1] > t0[0]      # downstream sensor is warmer
    assert board.temps(1)[0] == pytest.approx(30.0)
    assert board.temps(2)[1] is None
    st, body = board.call(bp.GET_POWER)
    assert st == bp.ST_OK
    watts = bp.get_u32(body, 0) / 10.0
    truth = sim.truth_lines()[-1]['wall_w']
    assert watts == pytest.approx(truth, rel=0.05)


def test_enable_off_silences_chain_and_resets_chips(board, sim):
    path = sim.ports['chains'][2]
    # the rig started warm (chips hashing, 11-byte answers): a power cycle resets them
    assert board.call(bp.SET_ENABLE, bytes([2, 0]))[0] == bp.ST_OK
    assert board.call(bp.SET_ENABLE, bytes([2, 1]))[0] == bp.ST_OK
    port = serial.serial_for_url(path, baudrate=115200, timeout=0.02)
    port.write(codec.chain_inactive() + codec.set_address(0x40))   # chip 0 -> address 0x40
    port.close()
    assert chip_ids(path)[0]['chip_addr'] == 0x40
    assert board.call(bp.SET_ENABLE, bytes([2, 0]))[0] == bp.ST_OK
    _st, body = board.call(bp.GET_VOLTAGE, bytes([2]))
    assert body[4] == 0 and bp.get_u16(body, 2) == 0
    assert chip_ids(path) == []
    assert board.call(bp.SET_ENABLE, bytes([2, 1]))[0] == bp.ST_OK
    got = chip_ids(path)
    assert len(got) == 108 and got[0]['chip_addr'] == 0      # back in reset state
    assert board.call(bp.SET_ENABLE, bytes([2, 7]))[0] == bp.ST_BAD_ARG


def test_chip_dead_fault_makes_chip_silent():
    with start_sim('S21', time_scale=SCALE, faults=['chip-dead:board=0,chip=5,at=6']) as s:
        path = s.ports['chains'][0]
        port = serial.serial_for_url(path, baudrate=115200, timeout=0.02)
        port.write(codec.chain_inactive() + b''.join(codec.set_address(2 * i)
                                                     for i in range(108)))
        port.write(codec.read_reg(families.REG_CHIP_ID, 10))
        fr = framer.ResponseFramer(9)
        time.sleep(0.1)
        before = fr.feed(port.read(4096))
        assert len(before) == 1
        time.sleep(0.8)                       # simulated t = 6 s has passed
        port.reset_input_buffer()
        port.write(codec.read_reg(families.REG_CHIP_ID, 10))
        time.sleep(0.2)
        assert fr.feed(port.read(4096)) == []
        port.close()
        assert len(chip_ids(path)) == 107


def test_corrupt_fault_damages_chip_stream():
    with start_sim('S21', time_scale=SCALE, faults=['corrupt:rate=0.01,chain=1']) as s:
        clean = chip_ids(s.ports['chains'][0])
        assert len(clean) == 108
        port = serial.serial_for_url(s.ports["chains"][1], baudrate=115200, timeout=0.02)
        fr = framer.ResponseFramer(9)
        for _ in range(3):
            port.write(codec.read_reg(families.REG_CHIP_ID, broadcast=True))
            time.sleep(0.15)
            fr.feed(port.read(8192))
        port.close()
        st = fr.stats()
        assert st['frames'] < 3 * 108 and st['dropped_bytes'] > 0


def test_gamma_per_board_voltage_and_identity():
    with start_sim('GAMMA', time_scale=SCALE, extra=['--warm']) as s:
        b = Board(s.ports['board'])
        st, body = b.call(bp.GET_INFO)
        assert st == bp.ST_OK and list(body[:4]) == [1, 1, 2, 1]
        assert bp.get_u16(body, 4) == 5000 and body[6:] == b'GAMMA'
        st, body = b.call(bp.SET_VOLTAGE, bytes([0]) + bp.u16(1203))
        assert st == bp.ST_OK and bp.get_u16(body, 0) == 1203            # 1 mV resolution
        assert b.call(bp.SET_VOLTAGE, bytes([0]) + bp.u16(1350))[0] == bp.ST_OUT_OF_RANGE
        assert b.call(bp.SET_VOLTAGE, bytes([1]) + bp.u16(1200))[0] == bp.ST_BAD_ARG
        _st, body = b.call(bp.GET_VOLTAGE, bytes([0]))
        assert bp.get_u16(body, 0) == 1203
        st, body = b.call(bp.GET_POWER)
        assert 5 < bp.get_u32(body, 0) / 10.0 < 30
        b.close()
